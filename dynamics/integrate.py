"""Predict: integrate the derived dynamics of a problem spec into a :class:`Trajectory`.

Methods (objects of :mod:`dynamics.methods`, each with its own options; all in continuous time
t, a gradient step of rate η advances t by η):

``flow``      dθ/dt = −∇L(θ) − λθ, through the reduced order-parameter ODE when the problem has
              one (MSE), through the full parameters otherwise (cross-entropy).
``modified``  the first-order modified equation of GD with step η,
              dθ/dt = −∇L − (η/2)∇²L∇L (reduced when the flow is).
``discrete``  the exact reduced map of full-batch GD (optionally heavy-ball momentum μ),
              θ_{m+1} = θ_m − η_m·buf_{m+1}, at t = η·m; with a learning-rate schedule
              (:mod:`dynamics.schedules`) η_m is the schedule's and t_m = Σ_{j<m} η_j. Every
              step is kept, or (``record="log"``) a log-spaced subset that still holds the two
              steps around every crossing.
``full``      the full-parameter flow (the check of the reduced one; cross-entropy).
``sign``      Adam's small-step limit, dθ/dt = −g/(|g| + ε) per coordinate with g = ∇L + λθ
              (full parameters); AdamW's: dθ/dt = −g/(|g| + ε) − λθ with g = ∇L. Integrated by
              sign descent with a vanishing relative step (see below), not by ``solve_ivp``.
``adam``      Adam(W) at step η and finite β as an ODE in (θ, m, v): :mod:`dynamics.adam`.

End time (automatic). ``flow``/``modified``/``full`` integrate in chunks of doubling length
until the loss is below ``1e-6·L_ref`` (``1e-3·L_ref`` under a group objective whose slopes vary:
its power-law tails), or the state has stopped moving (‖dy/dt‖ < 1e-9·s·‖y‖,
s the target's largest singular value, or y has collapsed to 0), or the cap ``t_max`` is
reached (default ``1e6/s_min``, s_min the smallest nonzero singular value of the target). The
discrete processes (``discrete``, ``sign``) stop at the same loss level, or once they have
stopped changing (``discrete``: a step of rate η_m > 0 changes the order parameters by less
than rounding, 1e-13 relative, or a schedule's rate stays 0, or they collapsed to 0; ``sign``
once, over a doubling of the step count, the best loss improved by less than 1e-9 relative
while the parameters chattered in place), or at the cap (``discrete`` also after 10⁷ steps,
``sign`` after 2·10⁶).

Sampling and crossing times. Continuous methods are sampled at 1500 log- and linearly spaced
times, refined by bisection wherever ln L changes by more than 0.1 between neighbours (a sharp
drop late in time, e.g. the attention head's; at most 1500 more samples), plus, for
f ∈ {0.5, 0.1, 0.01}, the crossing time t_f itself, found by root finding on the dense output,
so ``Trajectory.crossing_times()`` is as accurate as the integration (rtol 1e-10), not limited by
the sampling. Discrete processes keep the steps around each crossing (README "Conventions").

The sign flow. dθ/dt = −g/(|g| + ε) is discontinuous in the limit ε → 0 and, with Adam's
ε = 1e-8, extremely stiff: once a coordinate's gradient reaches zero it *slides* on g_i = 0
(Filippov), held there by a restoring rate ~∇²L/ε ~ 10⁸, and on a factorization with n = 100
dozens of coordinates slide from t ≈ 0.01 on. Explicit solvers then need steps ~ε/∇²L (the bug:
``scurve predict`` of an n = 100, r = 3 spec ran > 5 minutes; RK45 at rtol 1e-8 reached only
t = 0.046 of the 0.26 needed in 60 s, at 10⁴ right-hand sides per second); implicit ones fail
too, because Newton's method in θ cannot converge across the kink of g/(|g| + ε) (BDF and
Radau: no result in 5 minutes each, LSODA none in 2.5). So the flow is integrated by its own
defining limit, *sign descent with a vanishing step*, θ_{m+1} = θ_m − h_m·[g/(|g| + ε) + λ_dθ]:
Euler's method for the differential inclusion, which converges to the Filippov solution as
h → 0 with order 1 (a sliding coordinate chatters by ±h around g_i = 0 instead of being
resolved at scale ε). This is Adam with β₁ = β₂ = 0 at a step far below any one trains with.
The step is relative,

    h_m = κ · min(rms θ_m, θ_*·clip(10·√(L/L_ref), 10⁻², 1)),   κ = :data:`SIGN_STEP` = 2e-3,

θ_* = the rms entry of the target factors (the size of the solution; every coordinate moves at
speed ≤ 1, so learning takes a time ~θ_*). Every coordinate moves by at most κ·rms θ per step,
which resolves the start at any init scale (a step comparable to the init makes sign descent
oscillate around the saddle at 0 instead of leaving it: t_0.5 off by up to 50x at σ = 1e-6
with a fixed step 4e-3·θ_*); once L < 10⁻² L_ref, by at most ~κ times the distance to the
minimum, so the chattering floor ∝ h² recedes with the loss and the 1e-6 L_ref stop is
reached. The rule respects the problem's scaling symmetry (factors and θ -> cθ, t -> ct,
ε -> c³ε; tested). Measured against κ -> 0 (Richardson extrapolation of κ = 1e-3 and 5e-4;
the errors halve with κ), relative errors at the default of t_0.5 ≤ 4.6e-4 and of t_0.1,
t_0.01 ≤ 9.2e-4 on factorizations n = 100, r = k ∈ {1, 3, 10}, σ ∈ {1e-6, 1e-3} and an
attention head (d = 20, h = 2), in 0.5-1 s each; the bug's spec takes 5171 steps, 0.6 s.
Where several coordinates slide at once Filippov's solution may be non-unique and sign descent
picks one sliding motion; Adam's moment averages (β₁, β₂ > 0) could pick another — how close
Adam at small η comes is for the experiment to say (``scurve compare``), not this integrator.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from . import groups, symbolic
from .errors import ScurveError, UsageError
from .matexpr import ReductionError
from .methods import Discrete, Flow, Method
from .model import Model
from .problems import Problem
from .record import SaveAt, Stop, as_saveat
from .trajectory import Trajectory

__all__ = ["RECORDS", "SIGN_STEP", "IntegrationError", "NotReducedWarning", "predict"]

RECORDS = ("all", "log")  # the legacy ``record=`` shorthands (SaveAt.every(), SaveAt.log())
LOSS_STOP = 1e-6  # stop once L < LOSS_STOP · L_ref
GROUPED_LOSS_STOP = 1e-3  # ... under a group objective whose slopes vary (power-law tails)
MAX_STEPS = 10_000_000  # discrete GD map
MAX_SIGN_STEPS = 2_000_000  # sign descent
SAMPLES = 1500  # dense-output samples per trajectory (log- and linearly spaced): SaveAt.grid()
MAX_LOG_STEP = 0.1  # ... plus up to SAMPLES more where ln L changes by more between neighbours
SIGN_STEP = 2e-3  # κ: relative step of the sign descent (module docstring)
SIGN_REACH = (10.0, 1e-2)  # sign step: reach = θ_*·clip(10·√(L/L_ref), 1e-2, 1)
STALL = 1e-9  # sign: "stopped changing" = best loss improved by less than this (relative)
STALL_MIN_STEPS = 1000  # ... while the step count doubled from at least this many steps
WALL_LIMIT = 600.0  # seconds before a continuous integration gives up


class IntegrationError(ScurveError, RuntimeError):
    """Integration failed (solve_ivp failure, overflow, divergence, the wall-clock limit); the
    message is one line naming the spec, the method, the time reached and why. A
    :class:`ScurveError` (the CLI: one line, exit 2): it is the consequence of the settings
    asked for (a step size that diverges, an end time out of reach), not a bug."""


class _OutOfTime(Exception):
    """Raised from inside a right-hand side once :data:`WALL_LIMIT` has passed."""


@dataclass(frozen=True)
class _Packer:
    """Flatten a dict of arrays into one vector for ``solve_ivp`` and back."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        """Number of scalar state variables."""
        return self._bounds[-1][2] if self._bounds else 0

    @cached_property
    def _bounds(self) -> tuple[tuple[str, int, int, tuple[int, ...]], ...]:
        """(key, start, stop, shape) of each array in the vector (unpack runs per rhs call)."""
        out, start = [], 0
        for key, shape in zip(self.keys, self.shapes, strict=True):
            stop = start + math.prod(shape)
            out.append((key, start, stop, shape))
            start = stop
        return tuple(out)

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray]) -> _Packer:
        return cls(tuple(arrays), tuple(np.shape(arrays[k]) for k in arrays))

    def pack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.ravel(arrays[k]) for k in self.keys])

    def unpack(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return {key: y[start:stop].reshape(shape) for key, start, stop, shape in self._bounds}


def predict(
    spec: Problem,
    method: Method | None = None,
    saveat: SaveAt | None = None,
    stop: Stop | None = None,
    *,
    t_max: float | None = None,
    record: str | None = None,
) -> Trajectory:
    """Integrate ``spec`` from its initial point with ``method`` (see module docstring).

    Args:
        spec: the problem (its λ and loss are used).
        method: a method object of :mod:`dynamics.methods` (``Flow()``, ``Modified(lr)``,
            ``Discrete(lr, momentum, schedule)``, ``Full()``, ``Sign(eps, decoupled)``), which
            carries the method's own options; default ``Flow()``.
        saveat: what to save (:class:`dynamics.record.SaveAt`); default: the method's
            (continuous methods ``SaveAt.grid(1500)``, refined where ln L jumps; ``Discrete``
            every step; ``Sign`` log-spaced). Every record keeps the crossings of
            f·L_ref, f ∈ ``saveat.crossings``, exactly.
        stop: when to stop (:class:`dynamics.record.Stop`: ``t_max`` in t, ``loss`` as a
            fraction of L_ref, ``stall``); ``None`` fields are automatic (module docstring).
        t_max: shorthand for ``Stop(t_max=…)``.
        record: shorthand for ``saveat`` of a discrete process: ``"all"`` (every step) or
            ``"log"`` (the first 100 steps, then one whenever t has grown by 1 %, the last
            step, and the two steps around each crossing).

    Returns:
        A :class:`Trajectory` holding loss and order parameters (``method`` = the method's
        name); ``steps`` set for the discrete processes.

    Raises:
        ValueError (``UsageError``): bad arguments. IntegrationError: the integration failed or
        diverged.
    """
    method = Flow() if method is None else method
    if not isinstance(method, Method):
        raise ValueError(f"method must be a dynamics.methods object (Flow(), Discrete(lr), ...), "
                         f"got {method!r}")
    if t_max is not None and not (np.isfinite(t_max) and t_max > 0):
        raise ValueError(f"t_max must be a finite number > 0, got {t_max!r}")
    stop = Stop() if stop is None else stop
    if not isinstance(stop, Stop):
        raise ValueError(f"stop must be a dynamics.record.Stop, got {stop!r}")
    if t_max is not None:
        if stop.t_max is not None:
            raise ValueError("give the end time once: t_max or stop=Stop(t_max=...)")
        stop = Stop(t_max, stop.loss, stop.stall)
    if record is not None:
        if saveat is not None:
            raise ValueError("give what to save once: record or saveat")
        if record not in RECORDS:
            raise ValueError(f"unknown record {record!r} (expected one of {', '.join(RECORDS)})")
        saveat = as_saveat(record, "all")
    if saveat is not None and not isinstance(saveat, SaveAt):
        raise ValueError(f"saveat must be a dynamics.record.SaveAt, got {saveat!r}")
    method.check(spec)
    s_max, s_min = spec.rate_scale()
    stop = stop.with_defaults(t_max=1e6 / s_min)  # the loss and stall rules: the method's
    return method.run(spec, saveat, stop, s_max)  # each method object owns its algorithm


class NotReducedWarning(UserWarning):
    """The model's dynamics do not close in order parameters: the full flow is integrated."""


def _loss_stop(spec: Problem) -> float:
    """The stop level (× L_ref): :data:`LOSS_STOP`, or :data:`GROUPED_LOSS_STOP` under a group
    objective whose slopes d_g vary with ℓ_g (power q > 0: the last groups' losses then fall like
    a power of 1/t, ℓ ~ 1/(2s²t) at q = 1, and 10⁻⁶ L_ref would take t ~ 10⁶)."""
    obj = spec.group_objective
    return LOSS_STOP if obj is None or obj.constant_slopes else GROUPED_LOSS_STOP


def _grouped(spec: Problem, inner: object, full: bool = False) -> object:
    """``inner`` under the spec's group objective (:func:`dynamics.groups.grouped`): D set from
    the current group losses at every evaluation; ``inner`` itself for ungrouped specs."""
    obj = spec.group_objective
    if obj is None:
        return inner
    return groups.grouped(inner, obj, spec.frequencies, spec.model.group_weights.name, full)


def _reduced(spec: Problem, derive: Callable[[], symbolic._Reduced]) -> symbolic._Reduced | None:
    """The reduced flow/map of ``spec``'s model, or None (with a one-line warning naming the
    term that does not close) when it does not close."""
    try:
        return derive()
    except ReductionError as exc:
        warnings.warn(f"{spec.model.name}: no reduced dynamics ({exc}); integrating the full "
                      "parameters instead (exact, but the state grows with the large dimensions)",
                      NotReducedWarning, stacklevel=4)
        return None


def _full_overlaps(model: Model, values: dict[str, np.ndarray]
                   ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{W: (TᵀW, WᵀW, TᵀT)}`` from full parameters, for the model's ``targets``."""
    return {w: (values[t].T @ values[w], values[w].T @ values[w], values[t].T @ values[t])
            for w, t in model.targets.items()}


def _trajectory(
    t: np.ndarray,
    losses: list[float] | np.ndarray,
    overlaps: list[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]],
    spec: Problem,
    method: str,
    state_size: int,
    steps: np.ndarray | None = None,
    group_loss: list[np.ndarray] | None = None,
) -> Trajectory:
    first = overlaps[0] if overlaps else {}
    order = {w: (np.array([o[w][0] for o in overlaps]), np.array([o[w][1] for o in overlaps]))
             for w in first}
    gram = {w: first[w][2] for w in first}
    return Trajectory.from_order_parameters(
        t, np.asarray(losses, dtype=np.float64), spec.l_ref, order, gram, method=method,
        steps=steps, state_size=state_size,
        group_loss=None if group_loss is None else np.array(group_loss, dtype=np.float64))


# --------------------------------------------------------------------------- continuous


def _continuous(spec: Problem, method: str, lr: float, saveat: SaveAt | None, stop: Stop,
                s_max: float) -> Trajectory:
    """Integrate the flow of ``method`` (``flow``, ``modified``, ``full``) until ``stop``
    (:func:`_solve_chunks`), sampled as ``saveat`` says (a grid; default ``SaveAt.grid()``)."""
    saveat = _grid(method, saveat)
    lam, model, values = spec.weight_decay, spec.model, spec.values()
    reduced = None
    if method in ("flow", "modified") and not model.cross_entropy():
        modified = method == "modified"
        reduced = _reduced(spec, lambda: symbolic.reduced_flow(model, modified=modified))
    grouped = model.grouped
    if reduced is not None:
        flow = _grouped(spec, reduced)
        state, consts = flow.initial(values)
        packer = _Packer.of(state)

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return packer.pack(flow.rhs(packer.unpack(y), consts, weight_decay=lam, lr=lr))

        def observe(y: np.ndarray) -> tuple[float, dict, np.ndarray | None]:
            st = packer.unpack(y)
            return (flow.loss_value(st, consts), flow.overlaps(st, consts),
                    flow.group_losses(st, consts) if grouped else None)
    else:
        full = _grouped(spec, symbolic.full_flow(model, modified=method == "modified"), True)
        state = {w: values[w] for w in model.learned_names}
        fixed = {c: values[c] for c in model.constant_names}
        packer = _Packer.of(state)

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return packer.pack(full.rhs(packer.unpack(y) | fixed, weight_decay=lam, lr=lr))

        def observe(y: np.ndarray) -> tuple[float, dict, np.ndarray | None]:
            params = packer.unpack(y) | fixed
            return (full.loss_value(params), _full_overlaps(model, params),
                    full.group_losses(params) if grouped else None)

    t_grid, ys = _solve_chunks(spec, method, rhs, observe, packer.pack(state), spec.l_ref,
                               float(stop.t_max), s_max, stop=stop.loss, stall=stop.stall,
                               saveat=saveat)
    observed = [observe(y) for y in ys]
    return _trajectory(t_grid, [v for v, _, _ in observed], [o for _, o, _ in observed], spec,
                       method, packer.size, group_loss=[g for _, _, g in observed] if grouped
                       else None)


def _solve_chunks(
    spec: Problem,
    method: str,
    rhs: Callable[[float, np.ndarray], np.ndarray],
    observe: Callable[[np.ndarray], tuple[float, dict]],
    y0: np.ndarray,
    l_ref: float,
    cap: float,
    s_max: float,
    solver: str = "DOP853",
    rtol: float = 1e-10,
    stop: float | None = None,
    first: float | None = None,
    stall: float | None = None,
    saveat: SaveAt | None = None,
    loss: Callable[[np.ndarray], float] | None = None,
) -> tuple[np.ndarray, list]:
    """Integrate in doubling chunks until a stop criterion holds; sample the dense output.

    ``solver``/``rtol``: :func:`scipy.integrate.solve_ivp`'s method and relative tolerance
    (atol = 1e-14·‖y₀‖); ``stop``: the loss level (× L_ref) to stop at (default
    :func:`_loss_stop`); ``first``: the first chunk's length in t (default 2/s_max);
    ``stall``: also stop once a chunk lowered the loss by less than this fraction while it is
    below ½L_ref (a fixed point above the stop level: weight decay); ``saveat``: the grid
    (:meth:`SaveAt.times`, default ``SaveAt.grid()``) and the crossings kept. Returns the
    sample times (module docstring: 1500 log- and linearly spaced plus the exact crossing
    times) and the state at each. ``loss`` (L(y) alone, cheap) given: streamed instead
    (:func:`_streamed`, for a large state): the same stops, memory independent of the step
    count, and the observations ``observe(y)`` returned in place of the states.
    """

    level = _loss_stop(spec) if stop is None else stop
    saveat = SaveAt.grid(SAMPLES) if saveat is None else saveat
    if loss is not None:
        return _streamed(spec, method, rhs, loss, observe, y0, l_ref, cap, s_max, solver, rtol,
                         level, first, stall, saveat)

    def below(t: float, y: np.ndarray) -> float:
        return observe(y)[0] - level * l_ref

    below.terminal = True  # type: ignore[attr-defined]
    t0, y, chunk = 0.0, y0, min(cap, 2.0 / s_max if first is None else first)
    sols = []
    norm0 = float(np.linalg.norm(y0)) or 1.0
    timed = _timed(rhs)

    while True:
        t1 = min(cap, t0 + chunk)
        try:  # trial steps that overflow are rejected by the step control: no warnings
            with np.errstate(over="ignore", invalid="ignore"):
                sol = solve_ivp(timed, (t0, t1), y, method=solver, rtol=rtol,
                                atol=1e-14 * norm0, dense_output=True, events=below)
        except _OutOfTime as exc:
            raise IntegrationError(
                f"{spec.describe()}: method {method!r} still running at t = {exc.args[0]:.6g} "
                f"after {WALL_LIMIT:.0f} s (a stiff or very long run: give an earlier t_max)"
            ) from None
        except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            raise IntegrationError(
                f"{spec.describe()}: method {method!r} failed after t = {t0:.6g} "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        if sol.status == -1 or not np.all(np.isfinite(sol.y[:, -1])):
            raise IntegrationError(
                f"{spec.describe()}: method {method!r} failed at t = {sol.t[-1]:.6g} "
                f"({sol.message})"
            )
        sols.append(sol)
        before = observe(y)[0] if stall is not None else 0.0
        t0, y = float(sol.t[-1]), sol.y[:, -1]
        if sol.status == 1 or t0 >= cap:
            break
        if stall is not None:
            after = observe(y)[0]
            if after < 0.5 * l_ref and after >= (1 - stall) * before:
                break
        speed = float(np.linalg.norm(rhs(t0, y)))
        size = float(np.linalg.norm(y))
        if speed < 1e-9 * s_max * size or size < 1e-12 * norm0:
            break
        chunk = t0  # doubling
    t_end = t0
    first = min((s.t[1] for s in sols if s.t.size > 1), default=t_end)
    grid = saveat.times(t_end, first)

    def state_at(t: float) -> np.ndarray:
        sol = next(s for s in sols if t <= s.t[-1] + 1e-12 * max(t_end, 1.0))
        return sol.sol(min(t, sol.t[-1]))

    ys = [state_at(t) for t in grid]
    losses = np.array([observe(y)[0] for y in ys])
    added = 0
    while added < saveat.samples:  # refine where ln L jumps between neighbours (sharp drops)
        log_loss = np.log(np.maximum(losses, 1e-300))
        jumps = np.flatnonzero(np.abs(np.diff(log_loss)) > MAX_LOG_STEP)[: saveat.samples - added]
        if jumps.size == 0:
            break
        mids = 0.5 * (grid[jumps] + grid[jumps + 1])
        new_ys = [state_at(t) for t in mids]
        grid = np.insert(grid, jumps + 1, mids)
        losses = np.insert(losses, jumps + 1, [observe(y)[0] for y in new_ys])
        for j, y in zip(jumps[::-1], new_ys[::-1], strict=True):
            ys.insert(int(j) + 1, y)
        added += jumps.size
    extra = []
    for f in saveat.crossings:  # t_f itself, by root finding on the dense output
        level = f * l_ref
        hit = np.flatnonzero(losses <= level)
        if hit.size == 0 or hit[0] == 0:
            continue
        lo, hi = grid[hit[0] - 1], grid[hit[0]]
        try:
            root = brentq(lambda t, lv=level: math.log(max(observe(state_at(t))[0], 1e-300) / lv),
                          lo, hi, xtol=1e-14 * hi, rtol=4 * np.finfo(float).eps)
        except ValueError:  # no sign change at rounding level: the sample is the crossing
            continue
        extra.append(root)
    if extra:
        grid = np.unique(np.concatenate([grid, extra]))
        ys = [state_at(t) for t in grid]
    return grid, ys


def _timed(rhs: Callable[[float, np.ndarray], np.ndarray]
           ) -> Callable[[float, np.ndarray], np.ndarray]:
    """``rhs`` that raises :class:`_OutOfTime` once :data:`WALL_LIMIT` seconds have passed since
    this call (checked every 64 evaluations, so inside a solver's step loop)."""
    started = time.perf_counter()
    calls = [0]

    def timed(t: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] % 64 == 1 and time.perf_counter() - started > WALL_LIMIT:
            raise _OutOfTime(t)
        return rhs(t, y)

    return timed


def _streamed(spec: Problem, method: str, rhs: Callable, loss: Callable, observe: Callable,
              y0: np.ndarray, l_ref: float, cap: float, s_max: float, solver: str, rtol: float,
              level: float, first: float | None, stall: float | None, saveat: SaveAt
              ) -> tuple[np.ndarray, list[tuple[float, dict]]]:
    """:func:`_solve_chunks` with ``loss``: for a large state, in memory independent of the
    step count.

    One pass of the solver's steps (scipy's ``OdeSolver`` classes: the same steps as
    ``solve_ivp``) that keeps no dense output and no state: after each step it evaluates
    ``loss`` (L(y), cheap), and it keeps ``observe(y)`` when t has grown by the factor
    1 + 10/``saveat.samples`` since the last kept sample or ln L has changed by more than
    :data:`MAX_LOG_STEP` (log-spaced in t, refined at drops), at the cap and at the end. The
    crossing times of ``saveat.crossings`` and the stop level are root-found on the dense
    output of the step that crosses them (then discarded), so crossing times are those of
    :func:`_solve_chunks`. Stall and speed checks as there, at t doubling from ``first``.
    Memory: O(kept samples × observation), not O(steps × state) (solve_ivp's dense output
    of every step: 5 GB at 3N = 2400 state entries and 28 545 steps).
    Returns the sample times and the observations at them.
    """
    import scipy.integrate

    ratio = 1.0 + 10.0 / saveat.samples
    norm0 = float(np.linalg.norm(y0)) or 1.0
    timed = _timed(rhs)

    def fail(why: str) -> IntegrationError:
        return IntegrationError(f"{spec.describe()}: method {method!r} {why}")

    if not hasattr(scipy.integrate, solver):
        raise UsageError(f"unknown solver {solver!r}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            ode = getattr(scipy.integrate, solver)(timed, 0.0, y0, cap, rtol=rtol,
                                                   atol=1e-14 * norm0)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        raise fail(f"failed after t = 0 ({exc.__class__.__name__}: {exc})") from exc
    times, kept = [0.0], [observe(y0)]
    last_t, last_log = 0.0, math.log(max(kept[0][0], 1e-300))
    pending = sorted((f for f in saveat.crossings if f * l_ref < kept[0][0]), reverse=True)
    check = min(cap, 2.0 / s_max if first is None else first)
    check_loss = kept[0][0]
    while True:
        t_old = ode.t
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                ode.step()
        except _OutOfTime as exc:
            raise fail(f"still running at t = {exc.args[0]:.6g} after {WALL_LIMIT:.0f} s "
                       "(a stiff or very long run: give an earlier t_max)") from None
        except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            raise fail(f"failed after t = {t_old:.6g} ({exc.__class__.__name__}: {exc})"
                       ) from exc
        t, y = float(ode.t), ode.y
        if ode.status == "failed" or not np.all(np.isfinite(y)):
            raise fail(f"failed at t = {t:.6g} (step size too small or a non-finite state)")
        value = loss(y)
        dense = None
        for f in [f for f in pending if value <= f * l_ref] + (
                [level] if value <= level * l_ref else []):
            dense = dense or ode.dense_output()
            target = f * l_ref
            try:
                root = brentq(lambda s, lv=target, d=dense: math.log(max(loss(d(s)), 1e-300) / lv),
                              t_old, t, xtol=1e-14 * t, rtol=4 * np.finfo(float).eps)
            except ValueError:
                root = t
            if root > times[-1]:
                times.append(root)
                kept.append(observe(dense(root)))
            if f in pending:
                pending.remove(f)
        if value <= level * l_ref:
            break
        log_value = math.log(max(value, 1e-300))
        if t >= cap or t >= last_t * ratio or abs(log_value - last_log) > MAX_LOG_STEP:
            times.append(t)
            kept.append(observe(y))
            last_t, last_log = t, log_value
        if t >= cap or ode.status == "finished":
            break
        if t >= check:
            if stall is not None and value < 0.5 * l_ref and value >= (1 - stall) * check_loss:
                break
            speed = float(np.linalg.norm(rhs(t, y)))
            size = float(np.linalg.norm(y))
            if speed < 1e-9 * s_max * size or size < 1e-12 * norm0:
                break
            check, check_loss = 2.0 * t, value
    if times[-1] < ode.t and value > level * l_ref:
        times.append(float(ode.t))
        kept.append(observe(ode.y))
    return np.array(times), kept


# --------------------------------------------------------------------------- discrete processes


class _Stall:
    """Sign descent has "stopped changing": between two checks (at step counts doubling from
    :data:`STALL_MIN_STEPS`) the best loss improved by less than :data:`STALL` (relative) *and*
    the parameters' net displacement (rms per coordinate) was below 10⁻³ of the path length
    Σh_m — chattering in place around a stationary point (weight decay, a saddle), not the
    slow coherent motion of a plateau, whose loss may change by less than 10⁻⁹."""

    def __init__(self, params: dict[str, np.ndarray], threshold: float = STALL) -> None:
        self.threshold = threshold
        self.size = sum(w.size for w in params.values())
        self.best, self.path = math.inf, 0.0
        self.check_at = STALL_MIN_STEPS
        self.then = (math.inf, 0.0, {k: w.copy() for k, w in params.items()})

    def __call__(self, step: int, h: float, loss: float, params: dict[str, np.ndarray]) -> bool:
        self.best, self.path = min(self.best, loss), self.path + h
        if step < self.check_at:
            return False
        best_then, path_then, params_then = self.then
        net = math.sqrt(sum(float(np.sum((w - params_then[k]) ** 2))
                            for k, w in params.items()) / self.size)
        stalled = (self.best >= (1 - self.threshold) * best_then
                   and net <= 1e-3 * (self.path - path_then))
        self.check_at = 2 * step
        self.then = (self.best, self.path, {k: w.copy() for k, w in params.items()})
        return stalled


class _FullGD:
    """Full-batch GD (torch.optim.SGD semantics) on the full parameters, the fallback of the
    exact reduced map: b' = μb + g, W' = W − ηb', g from the derived :class:`FullFlow`."""

    def __init__(self, spec: Problem, momentum: bool) -> None:
        self.model, values = spec.model, spec.values()
        self.full = _grouped(spec, symbolic.full_flow(self.model), full=True)
        self.fixed = {c: values[c] for c in self.model.constant_names}
        self.momentum = momentum
        state = {w: values[w] for w in self.model.learned_names}
        if momentum:
            state |= {f"b_{w}": np.zeros_like(values[w]) for w in self.model.learned_names}
        self.state = state

    def step(self, state: dict, *, lr: float, weight_decay: float, momentum: float) -> dict:
        params = {w: state[w] for w in self.model.learned_names}
        grads = self.full.grad(params | self.fixed, weight_decay=weight_decay)
        out = {}
        for w, g in grads.items():
            buf = momentum * state[f"b_{w}"] + g if self.momentum else g
            out[w] = state[w] - lr * buf
            if self.momentum:
                out[f"b_{w}"] = buf
        return out

    def loss(self, state: dict) -> float:
        return self.full.loss_value({w: state[w] for w in self.model.learned_names} | self.fixed)

    def overlaps(self, state: dict) -> dict:
        return _full_overlaps(self.model, dict(state) | self.fixed)

    def group_losses(self, state: dict) -> np.ndarray:
        return self.full.group_losses({w: state[w] for w in self.model.learned_names}
                                      | self.fixed)


class _ReducedGD:
    """The exact reduced GD map behind the same interface as :class:`_FullGD`."""

    def __init__(self, spec: Problem, gd: symbolic.ReducedGD) -> None:
        self.gd = _grouped(spec, gd)
        self.state, self.consts = self.gd.initial(spec.values())

    def step(self, state: dict, *, lr: float, weight_decay: float, momentum: float) -> dict:
        return self.gd.step(state, self.consts, lr=lr, weight_decay=weight_decay,
                            momentum=momentum)

    def loss(self, state: dict) -> float:
        return self.gd.loss_value(state, self.consts)

    def overlaps(self, state: dict) -> dict:
        return self.gd.overlaps(state, self.consts)

    def group_losses(self, state: dict) -> np.ndarray:
        return self.gd.group_losses(state, self.consts)


def _grid(method: str, saveat: SaveAt | None) -> SaveAt:
    """The grid a continuous method samples (``SaveAt.grid()`` by default); a per-step record
    is refused (one line): a flow has no steps."""
    if saveat is None:
        return SaveAt.grid(SAMPLES)
    if saveat.mode != "grid":
        raise UsageError(f"method {method!r} is continuous: save on a grid, SaveAt.grid(n), "
                         f"not {saveat.mode!r}")
    return saveat


def _discrete(spec: Problem, method: Discrete, saveat: SaveAt | None, stop: Stop) -> Trajectory:
    """Iterate the exact reduced GD map (the full-parameter GD where it does not close): step
    m of rate η_m (``method.lr``, or its schedule's η_m) at t_m = η·m (with a schedule
    t_m = Σ_{j<m} η_j); keep every step (or a log-spaced subset).

    Stops below the loss level, or when the state has stopped changing (relative change of
    the state in one step of rate η_m > 0 below 1e-13, i.e. rounding; or two steps in a row of
    rate 0: a schedule that reached 0 so stays, cosine's η_min = 0 being a single step; or its
    norm fell below 1e-12 of the initial one), or at the cap (t >= cap or 10⁷ steps).
    ``stop``: t_max (the cap) and the loss level (default :func:`_loss_stop`); ``saveat``:
    the steps kept (default every step; :class:`dynamics.record.Recorder`).
    """
    model, lr, momentum, schedule = spec.model, method.lr, method.momentum, method.schedule
    gd = _reduced(spec, lambda: symbolic.reduced_gd(model, momentum=momentum > 0))
    process = _ReducedGD(spec, gd) if gd is not None else _FullGD(spec, momentum > 0)
    state = process.state
    lam, l_ref = spec.weight_decay, spec.l_ref
    rates = None if schedule is None else schedule.iterate(lr)
    stop = stop.with_defaults(loss=_loss_stop(spec))
    cap, level = float(stop.t_max), stop.level(l_ref)  # type: ignore[arg-type]
    max_steps = MAX_STEPS if rates is not None else int(min(MAX_STEPS, np.ceil(cap / lr)))
    rec = (SaveAt.every() if saveat is None else saveat).recorder(l_ref)
    value = process.loss(state)
    rec.add(0, 0.0, value, state)
    norm0 = _norm(state) or 1.0
    t, previous = 0.0, lr
    for step in range(1, max_steps + 1):
        rate = lr if rates is None else next(rates)
        new = process.step(state, lr=rate, weight_decay=lam, momentum=momentum)
        t = step * lr if rates is None else t + rate  # t_m = Σ_{j<m} η_j (= η·m)
        value = process.loss(new)
        if not np.isfinite(value) or value > 1e12 * l_ref:
            raise IntegrationError(f"{spec.describe()}: method 'discrete' (GD, η = {rate:g}) "
                                   f"diverged at step {step} (t = {t:.6g}, loss "
                                   f"{value:.3g}); lower lr")
        size = _norm(new)
        moved = math.sqrt(sum(float(np.sum((new[k] - state[k]) ** 2)) for k in new))
        state = new
        rec.add(step, t, value, state)
        if (value < level or (rate > 0 and moved <= 1e-13 * size)
                or rate == previous == 0 or size < 1e-12 * norm0
                or (rates is not None and t >= cap)):
            break  # (without a schedule the cap is max_steps)
        previous = rate
    rec.finish()
    size = int(sum(np.size(v) for v in process.state.values()))
    return _trajectory(np.array(rec.t), rec.loss, [process.overlaps(s) for s in rec.states],
                       spec, "discrete", size, steps=np.array(rec.steps),
                       group_loss=[process.group_losses(s) for s in rec.states]
                       if model.grouped else None)


def _norm(state: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(v**2)) for v in state.values()))


def _sign(spec: Problem, eps: float, decoupled: bool, saveat: SaveAt | None, stop: Stop
          ) -> Trajectory:
    """Sign descent with a vanishing relative step (module docstring: "The sign flow").

    θ_{m+1} = θ_m − h_m·[g/(|g| + ε) + λ_d θ_m], g = ∇L + λ_c θ_m (λ_c = λ, λ_d = 0; AdamW:
    λ_c = 0, λ_d = λ), h_m = κ·min(rms θ_m, θ_*·clip(10√(L/L_ref), 10⁻², 1)), t_{m+1} = t_m + h_m.
    θ_* is the rms entry of the model's constants (the size of the solution). ``stop``: t_max,
    the loss level (default :data:`LOSS_STOP`) and the stall (default :data:`STALL`,
    :class:`_Stall`); ``saveat``: the steps kept (default ``SaveAt.log()``).
    """
    lam, l_ref, model, values = spec.weight_decay, spec.l_ref, spec.model, spec.values()
    coupled, decay = (0.0, lam) if decoupled else (lam, 0.0)
    full = symbolic.full_flow(model)
    fixed = {c: values[c] for c in model.constant_names}
    params = {w: np.array(values[w], dtype=np.float64) for w in model.learned_names}
    size = sum(w.size for w in params.values())
    entries = np.concatenate([t.ravel() for t in fixed.values()])
    scale = float(np.sqrt(np.mean(entries**2)))  # θ_*

    def observe() -> tuple[float, dict]:
        both = params | fixed
        return full.loss_value(both), _full_overlaps(model, both)

    stop = stop.with_defaults(loss=LOSS_STOP, stall=STALL)
    cap, level = float(stop.t_max), stop.level(l_ref)  # type: ignore[arg-type]
    rec = (SaveAt.log() if saveat is None else saveat).recorder(l_ref)
    stall = _Stall(params, stop.stall)  # type: ignore[arg-type]
    t, value, state = 0.0, *observe()
    rec.add(0, t, value, state)
    for step in range(1, MAX_SIGN_STEPS + 1):
        rms = math.sqrt(sum(float(np.vdot(w, w)) for w in params.values()) / size)
        gain, floor = SIGN_REACH
        reach = scale * min(1.0, max(floor, gain * math.sqrt(max(value, 0.0) / l_ref)))
        h = min(SIGN_STEP * max(min(rms, reach), 1e-12 * scale), cap - t)
        grads = full.grad(params | fixed, weight_decay=coupled)
        for name, w in params.items():
            g = grads[name]
            w -= h * (g / (np.abs(g) + eps) + decay * w)
        t += h
        value, state = observe()
        if not np.isfinite(value):
            raise IntegrationError(f"{spec.describe()}: method 'sign' overflowed at t = {t:.6g}")
        rec.add(step, t, value, state)
        if value < level or t >= cap or stall(step, h, value, params):
            break
    rec.finish()
    return _trajectory(np.array(rec.t), rec.loss, rec.states, spec, "sign", size)
