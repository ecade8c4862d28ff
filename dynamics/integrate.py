"""Predict: integrate the derived dynamics of a problem spec into a :class:`Trajectory`.

Methods (all in continuous time t; a gradient step of rate η advances t by η):

``flow``      dθ/dt = −∇L(θ) − λθ, through the reduced order-parameter ODE when the problem has
              one (MSE), through the full parameters otherwise (cross-entropy).
``modified``  the first-order modified equation of GD with step η,
              dθ/dt = −∇L − (η/2)∇²L∇L (reduced when the flow is).
``discrete``  the exact reduced map of full-batch GD (optionally heavy-ball momentum μ),
              θ_{m+1} = θ_m − η·buf_{m+1}, sampled at every step m at t = η·m.
``full``      the full-parameter flow (the check of the reduced one; cross-entropy).
``sign``      Adam's small-step limit, dθ/dt = −g/(|g| + ε) per coordinate with g = ∇L + λθ
              (full parameters); AdamW's: dθ/dt = −g/(|g| + ε) − λθ with g = ∇L.

The end time is automatic: integration proceeds in chunks of doubling length until the loss
is below ``1e-6·L_ref``, or the state has stopped moving (‖dy/dt‖ < 1e-9·s·‖y‖, s the
target's largest singular value, or y has collapsed to 0), or the cap ``t_max`` is reached
(default ``1e6/s_min`` with s_min the smallest nonzero singular value of the target; the
discrete map is also capped at 10⁷ steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from . import symbolic
from .problems import Factorization, Problem
from .trajectory import Trajectory

__all__ = ["METHODS", "IntegrationError", "predict"]

METHODS = ("flow", "modified", "discrete", "full", "sign")
LOSS_STOP = 1e-6  # stop once L < LOSS_STOP · L_ref
MAX_STEPS = 10_000_000
SAMPLES = 1500  # dense-output samples per trajectory (log- and linearly spaced)


class IntegrationError(RuntimeError):
    """solve_ivp failed (stiffness, overflow); the message names spec, method and time."""


@dataclass(frozen=True)
class _Packer:
    """Flatten a dict of arrays into one vector for ``solve_ivp`` and back."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray]) -> _Packer:
        return cls(tuple(arrays), tuple(np.shape(arrays[k]) for k in arrays))

    def pack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.ravel(arrays[k]) for k in self.keys])

    def unpack(self, y: np.ndarray) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for key, shape in zip(self.keys, self.shapes, strict=True):
            size = int(np.prod(shape))
            out[key] = y[start : start + size].reshape(shape)
            start += size
        return out


def _singular_scale(spec: Problem) -> tuple[float, float]:
    """(largest, smallest nonzero) learning-rate scale of the target.

    Factorization: the singular values of C = ABᵀ. Attention head: those of each circuit
    (M = QKᵀ, N = OVᵀ) times the other circuit's norm (the circuit's effective target).
    Vector: 1 (the flow is dx/dt = a − x).
    """
    targets = [t for t, _ in spec.factors().values()]
    if len(targets) == 1:
        return 1.0, 1.0
    pairs = zip(targets[::2], targets[1::2], strict=True)
    circuits = [np.linalg.svd(a @ b.T, compute_uv=False) for a, b in pairs]
    if len(circuits) == 2:
        norms = [float(np.linalg.norm(c)) for c in circuits]
        circuits = [circuits[0] * norms[1], circuits[1] * norms[0]]
    s = np.concatenate(circuits)
    s = s[s > 1e-12 * s.max()]
    return float(s.max()), float(s.min())


def _uses_reduced(spec: Problem, method: str) -> bool:
    return method in ("flow", "modified", "discrete") and getattr(spec, "loss", "mse") == "mse"


def predict(
    spec: Problem,
    method: str = "flow",
    lr: float | None = None,
    t_max: float | None = None,
    momentum: float = 0.0,
    eps: float = 1e-8,
    decoupled: bool = False,
) -> Trajectory:
    """Integrate ``spec`` from its initial point with ``method`` (see module docstring).

    Args:
        spec: the problem (its λ and loss are used).
        method: one of :data:`METHODS`.
        lr: step size η (required by ``modified`` and ``discrete``).
        t_max: end-time cap in t (default: automatic, see module docstring).
        momentum: heavy-ball μ for ``discrete``.
        eps: ε of the sign flow (Adam's eps).
        decoupled: sign flow with AdamW's decoupled decay, dθ/dt = −g/(|g|+ε) − λθ, g = ∇L.

    Returns:
        A :class:`Trajectory` with loss, cosines and norms; ``steps`` set for ``discrete``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")
    if method in ("modified", "discrete") and (lr is None or not lr > 0):
        raise ValueError(f"method {method!r} needs a step size lr > 0")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if t_max is not None and not (np.isfinite(t_max) and t_max > 0):
        raise ValueError(f"t_max must be a finite number > 0, got {t_max!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if momentum and method != "discrete":
        raise ValueError("momentum is only modelled by the 'discrete' method")
    if method in ("flow", "modified") and getattr(spec, "loss", "mse") == "ce" and method != "flow":
        raise ValueError("cross-entropy has no reduced dynamics: use --method flow|full|sign")
    s_max, s_min = _singular_scale(spec)
    cap = float(t_max) if t_max is not None else 1e6 / s_min
    if method == "discrete":
        return _discrete(spec, float(lr), momentum, cap)
    return _continuous(spec, method, lr or 0.0, eps, cap, s_max, decoupled)


def _continuous(
    spec: Problem, method: str, lr: float, eps: float, cap: float, s_max: float,
    decoupled: bool,
) -> Trajectory:
    lam = spec.weight_decay
    targets = {name: t for name, (t, _) in spec.factors().items()}
    gram = {name: t.T @ t for name, t in targets.items()}
    if _uses_reduced(spec, method):
        flow = symbolic.reduced_flow(spec.kind, modified=method == "modified")
        state, _ = symbolic.state_from_spec(spec)
        packer = _Packer.of(state)

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return packer.pack(flow.rhs(packer.unpack(y), gram, lam, lr))

        def observe(y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
            st = packer.unpack(y)
            return flow.loss_value(st, gram), st
    else:
        loss = getattr(spec, "loss", "mse")
        flow = symbolic.full_flow(spec.kind, loss=loss, modified=method == "modified")
        state = {name: w for name, (_, w) in spec.factors().items()}
        packer = _Packer.of(state)
        if method == "sign":

            coupled, decay = (0.0, lam) if decoupled else (lam, 0.0)

            def rhs(_t: float, y: np.ndarray) -> np.ndarray:
                g = packer.pack(flow.grad(packer.unpack(y), targets, coupled))
                return -g / (np.abs(g) + eps) - decay * y
        else:

            def rhs(_t: float, y: np.ndarray) -> np.ndarray:
                return packer.pack(flow.rhs(packer.unpack(y), targets, lam, lr))

        def observe(y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
            params = packer.unpack(y)
            st = {}
            for name, w in params.items():
                st[f"P_{name}"] = targets[name].T @ w
                st[f"U_{name}"] = w.T @ w
            return flow.loss_value(params, targets, lam), st

    y0 = packer.pack(state)
    l_ref = spec.l_ref
    t_grid, ys = _solve_chunks(spec, method, rhs, observe, y0, l_ref, cap, s_max,
                               sign=method == "sign")
    losses, order = [], {name: ([], []) for name in targets}
    for y in ys:
        value, st = observe(y)
        losses.append(value)
        for name in targets:
            order[name][0].append(st[f"P_{name}"])
            order[name][1].append(st[f"U_{name}"])
    order_arrays = {k: (np.array(p), np.array(u)) for k, (p, u) in order.items()}
    return Trajectory.from_order_parameters(t_grid, np.array(losses), l_ref, order_arrays, gram,
                                            method=method)


def _solve_chunks(
    spec: Problem,
    method: str,
    rhs: Callable[[float, np.ndarray], np.ndarray],
    observe: Callable[[np.ndarray], tuple[float, dict]],
    y0: np.ndarray,
    l_ref: float,
    cap: float,
    s_max: float,
    sign: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integrate in doubling chunks until a stop criterion holds; sample dense output."""

    def below(t: float, y: np.ndarray) -> float:
        return observe(y)[0] - LOSS_STOP * l_ref

    below.terminal = True  # type: ignore[attr-defined]
    t0, y, chunk = 0.0, y0, min(cap, 2.0 / s_max)
    sols = []
    norm0 = float(np.linalg.norm(y0)) or 1.0
    started = time.perf_counter()
    while True:
        t1 = min(cap, t0 + chunk)
        sol = solve_ivp(rhs, (t0, t1), y, method="DOP853", rtol=1e-10,
                        atol=1e-14 * norm0, dense_output=True, events=below)
        if sol.status == -1 or not np.all(np.isfinite(sol.y[:, -1])):
            raise IntegrationError(
                f"{spec.describe()}: method {method!r} failed at t = {sol.t[-1]:.6g} "
                f"({sol.message})"
            )
        sols.append(sol)
        t0, y = float(sol.t[-1]), sol.y[:, -1]
        if sol.status == 1 or t0 >= cap:
            break
        speed = float(np.linalg.norm(rhs(t0, y)))
        size = float(np.linalg.norm(y))
        if sign:
            stopped = speed < 1e-9 * np.sqrt(y.size)
        else:
            stopped = speed < 1e-9 * s_max * size or size < 1e-12 * norm0
        if stopped:
            break
        chunk = t0  # doubling
        if time.perf_counter() - started > 600:
            raise IntegrationError(f"{spec.describe()}: method {method!r} still running at "
                                   f"t = {t0:.6g} after 600 s")
    t_end = t0
    first = min(sol.t[1] for sol in sols if sol.t.size > 1) if t_end > 0 else 0.0
    grid = np.unique(np.concatenate([
        [0.0],
        np.geomspace(max(first, t_end * 1e-6), t_end, SAMPLES // 2),
        np.linspace(0.0, t_end, SAMPLES // 2),
    ]))
    ys = []
    for t in grid:
        sol = next(s for s in sols if t <= s.t[-1] + 1e-12 * max(t_end, 1.0))
        ys.append(sol.sol(min(t, sol.t[-1])))
    return grid, ys


def _discrete(spec: Problem, lr: float, momentum: float, cap: float) -> Trajectory:
    """Iterate the exact reduced GD map; the loss is kept at every step m (t = η·m)."""
    if isinstance(spec, Factorization) and spec.loss != "mse":
        raise ValueError("cross-entropy has no reduced GD map: train it with 'scurve train'")
    gd = symbolic.reduced_gd(spec.kind, momentum=momentum > 0)
    state, gram = symbolic.state_from_spec(spec, momentum=momentum > 0)
    lam, l_ref = spec.weight_decay, spec.l_ref
    names = [name for name in spec.factors()]
    max_steps = int(min(MAX_STEPS, np.ceil(cap / lr)))
    losses = [gd.loss_value(state, gram)]
    order = {name: ([state[f"P_{name}"]], [state[f"U_{name}"]]) for name in names}
    for step in range(1, max_steps + 1):
        state = gd.step(state, gram, lr, lam, momentum)
        value = gd.loss_value(state, gram)
        if not np.isfinite(value) or value > 1e12 * l_ref:
            raise IntegrationError(f"{spec.describe()}: GD diverged at step {step} "
                                   f"(t = {step * lr:.6g}, loss {value:.3g}); lower lr")
        losses.append(value)
        for name in names:
            order[name][0].append(state[f"P_{name}"])
            order[name][1].append(state[f"U_{name}"])
        if value < LOSS_STOP * l_ref:
            break
        if step > 100 and abs(losses[-2] - value) <= 1e-15 * value:
            break
    steps = np.arange(len(losses))
    order_arrays = {k: (np.array(p), np.array(u)) for k, (p, u) in order.items()}
    return Trajectory.from_order_parameters(steps * lr, np.array(losses), l_ref, order_arrays,
                                            gram, method="discrete", steps=steps)
