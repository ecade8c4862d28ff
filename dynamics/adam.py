"""Adam and AdamW at finite step η and finite β as an ODE in continuous time t = η·step.

torch.optim.Adam's step k (g_k = ∇L(θ_{k−1}) + λ_c θ_{k−1}),

    m_k = β₁m_{k−1} + (1 − β₁)g_k,   v_k = β₂v_{k−1} + (1 − β₂)g_k²,
    θ_k = θ_{k−1} − η·m̂_k/(√v̂_k + ε) − ηλ_d θ_{k−1},   m̂_k = m_k/(1 − β₁^k), v̂_k = v_k/(1 − β₂^k),

read in t = η·k (README "Conventions") is, to first order in η at fixed β, the ODE

    ṁ = c₁(g − m),   v̇ = c₂(g ⊙ g − v),   θ̇ = −m̂/(√v̂ + ε) − λ_d θ,
    m̂ = m/(1 − β₁^{t/η}),   v̂ = v/(1 − β₂^{t/η}),   c_i = −ln(β_i)/η,

with torch's ε placement (outside the root) and bias corrections, g = ∇L + λ_c θ derived from
the model's loss (:func:`dynamics.symbolic.full_flow`: every model, built-in or a user's file);
Adam: λ_c = λ, λ_d = 0; AdamW (``decoupled``): λ_c = 0, λ_d = λ. The rate c_i = −ln(β_i)/η
(= (1 − β_i)/η + O((1 − β_i)²/η)) is the one whose exponential decay over one step is exactly
β_i, so the ODE's moment is the exact exponential average of a g that is constant over each step,
and 1 − β_i^{t/η} = 1 − e^{−c_i t} is exactly its bias: m̂ → g and v̂ → g² as t → 0 (torch's first
step), so the start is regular; the right-hand side at t = 0 uses those limits (0/0 otherwise).
β_i = 0 has no moment: m̂ = g (v̂ = g²) algebraically; β₁ = β₂ = 0 is the sign flow at any η.
As η → 0 at fixed β the moments follow g instantly and the ODE tends to the sign flow
dθ/dt = −g/(|g| + ε) (:class:`dynamics.methods.Sign`).

Start (``exact_steps``, default K = ⌈1/(1 − β₁)⌉ = 10 at β₁ = 0.9). The ODE replaces each moment's
sum over past steps by an integral, which holds while the state changes little over a step. Adam's
first steps break that: every coordinate moves by ≈ η per step (exactly η on step 1, m̂/√v̂ = ±1),
and the projection of that step on the target's directions, ~η√n, is as large as the initial
overlaps ~σ: on a factorization n = 100, rank 3, at η = 1e-3 torch's first step changes the
overlaps AᵀX, BᵀY by 58 % (σ = 1e-2) and 580 % (σ = 1e-3), and the ODE lands 17 % and 56 % of that
change away from torch's overlaps (5 % and 16 % after 10 steps; tests/benchmarks/adam_start.py).
Usually that is a small shift of time, but where near-degenerate modes compete (target singular
values 1.08, 1.00, 0.86) it decides how long the learned modes stay rotated against the target's:
the ODE from t = 0 had a shoulder at L ≈ 0.4 L_ref that Adam does not (σ = 1e-2) or lacked Adam's
(σ = 1e-3), t_0.1 +19.7 % and −9.5 % at η = 1e-3, +24.5 % at 1e-2 (σ = 1e-2). It is neither ε
(1e-12 and 1e-16 move the ODE's t_0.1 by ≤ 1.1e-4 relative), nor the solver (rtol 1e-6 vs 1e-11: ≤
5e-7), nor precision (float64 both), nor the bias index: the ODE restarted from torch's own (θ, m,
v) after k steps, with bias 1 − β_i^{t/η} = torch's 1 − β_i^k there, misses t_0.1 by +19.7, −3.2,
−1.1, +0.2, +0.03 % for k = 0, 1, 3, 10, 30 (σ = 1e-2). Nor does it shrink ∝ η (σ = 1e-3: −9.5,
−3.1, −0.3, +0.06 % at η = 1e-3, 5e-4, 2.5e-4, 1e-4): it is set by η√n/σ at the start. So the
first K steps are Adam's exact map (here in numpy with torch's arithmetic: g with Adam's coupled
λθ, AdamW's θ(1 − ηλ) before the step, bias corrections 1 − β_i^k, ε outside the root) and the ODE
starts at t = Kη from their (θ, m, v). K is the first moment's window: until then its
bias-corrected average has fewer than 1/(1 − β₁) terms, a sum no integral represents. The start
costs K gradients (the ODE takes hundreds to thousands) and lasts Kη → 0 as η → 0, so the
sign-flow limit is unchanged. ``exact_steps=0``: the ODE from t = 0. Limits (README "Adam as an
ODE"): without momentum (β₁ = 0) the ODE misses Adam by 2–4 % at η = 1e-3 and 11–25 % at 1e-2 all
along the run, not at the start; with a momentum window η/(1 − β₁) longer than the drop (β₁ =
0.95, η = 1e-2) by up to 17 %.

Modified equation (``half_step``, default on). torch's step k uses g at the step's start θ_{k−1};
with the rate c_i each step's kernel mass equals torch's weight, so torch's m_k is the ODE's
moment of g delayed by η/2 (left-endpoint rule, up to c_iη²/12), and the increment −η·m̂_k/(√v̂_k
+ ε) is the ODE's integral over the step at its midpoint t_k − η/2. Both agree to O(η) once the
moments' clocks run η/2 ahead of θ's: at the handover (t = Kη) the moments take half a step of the
frozen gradient g(θ_K), m ← β₁^{1/2}m + (1 − β₁^{1/2})g (v alike; at K = 0 m(0) = (1 −
β₁^{1/2})g₀), and the bias is 1 − β_i^{t/η + 1/2}. With the exact start, every error of the
acceptance grid (README "Adam as an ODE") is ≤ 0.1 % at η = 1e-3 and ≤ 0.6 % at η = 1e-2 (without
the correction 0.8 % and 2.2 %); from t = 0 it over-corrected the long plateaus (rank 1, σ = 1e-3,
η = 1e-2: −2.6 % → +4.0 %), an error of the start, not of the correction. ``half_step=False``: the
first-order ODE.

Adam acts per coordinate, so the ODE lives in the full parameter space: 3× the learned entries
(the Trajectory's ``state_size``); it does not close in order parameters.

Solver. The moment equations are linear and fast (c₁ = 100 at η = 1e-3, β₁ = 0.9) but θ̇ has no
direct θ-dependence, so the stiffness is c₁ and the θ–m loop's √(c₁·∇²L/√v̂); on the S-curve
problems both stay moderate, and an explicit Runge–Kutta pair (scipy's DOP853, rtol
:data:`RTOL`) takes a few hundred to a few thousand steps, each one gradient: cheaper than an
implicit solver's dense Jacobians of size (3N)². The integration stops at the loss
:data:`LOSS_STOP`·L_ref (Adam's late phase, v decaying as e^{−c₂t} while g → 0, grows ever
stiffer; t_0.5, t_0.1 and t_0.01 are before it), at a stalled state or at the cap, like the
other continuous methods (:func:`dynamics.integrate._solve_chunks`, streamed: it keeps only the
observations on a log grid and root-finds the crossing times in the step that crosses them:
memory independent of the step count), or once a doubling of t lowered the loss below ½L_ref
by less than :data:`STALL` (relative): a fixed point above the stop level (weight decay), where
the θ–m loop's frequency grows as v decays and the steps would shrink without end. Every
coordinate moves at speed ≲ 1 in t, so the first chunk is :data:`FIRST`·θ_* long (θ_* the rms
entry of the model's constants, the size of the solution), the chunks doubling after it.
"""

from __future__ import annotations

import math

import numpy as np

from . import symbolic
from .integrate import (
    IntegrationError,
    _full_overlaps,
    _grid,
    _Packer,
    _solve_chunks,
    _trajectory,
)
from .methods import Adam
from .problems import Problem
from .record import SaveAt, Stop
from .trajectory import Trajectory

__all__ = ["LOSS_STOP", "RTOL", "SOLVER", "run_adam"]

SOLVER = "DOP853"  # solve_ivp method (module docstring)
RTOL = 1e-8  # its relative tolerance (error measured in tests/dynamics/test_adam.py)
LOSS_STOP = 1e-4  # stop once L < LOSS_STOP · L_ref
FIRST = 2.0  # first chunk: FIRST·θ_* in t (θ_* the rms constant entry; Adam moves at speed ~1)
STALL = 1e-3  # ... or once a doubling of t lowered the loss by less than this (relative)


def _rates(method: Adam) -> tuple[float | None, float | None]:
    """c_i = −ln(β_i)/η per unit t, or None for β_i = 0 (no moment: it equals its input)."""
    return tuple(None if b == 0 else -math.log(b) / method.lr  # type: ignore[return-value]
                 for b in method.betas)


def run_adam(
    spec: Problem,
    method: Adam,
    t_max: float | None = None,
    rtol: float = RTOL,
    solver: str = SOLVER,
    *,
    stop: Stop | None = None,
    saveat: SaveAt | None = None,
) -> Trajectory:
    """Integrate the Adam(W) ODE of ``method`` (module docstring) from ``spec``'s initial point.

    Args:
        spec: the problem; its λ is used unless ``method.weight_decay`` is given.
        method: the :class:`dynamics.methods.Adam` object (η, β, ε, λ, decoupled; ``exact_steps``:
            the exact Adam steps before the ODE, module docstring "Start"; ``half_step``: the
            O(η) correction, "Modified equation").
        t_max: end-time cap in t (default 1e6/s_min, as :func:`dynamics.integrate.predict`).
        rtol, solver: solve_ivp's relative tolerance and method (tests use a tighter one).
        stop, saveat: :class:`dynamics.record.Stop` (its None fields: ``t_max``, loss
            :data:`LOSS_STOP`, stall :data:`STALL`) and the grid (``SaveAt.grid()``).

    Returns:
        A :class:`Trajectory` in t (``method`` = "adam", ``state_size`` = entries of θ, m, v):
        every step t = η·k of the exact start, then the ODE's samples.

    Raises:
        dynamics.integrate.IntegrationError: the ODE blew up (a non-finite gradient, or the
        solver failed), naming the t reached and why. ValueError: a group objective (the ODE
        is not modelled for them).
    """
    if spec.group_objective is not None:
        raise ValueError(f"objective {spec.group_objective.label}: the Adam ODE is not modelled "
                         "for group objectives; use --method flow or discrete")
    model, values = spec.model, spec.values()
    lam = spec.weight_decay if method.weight_decay is None else float(method.weight_decay)
    coupled, decay = (0.0, lam) if method.decoupled else (lam, 0.0)
    full = symbolic.full_flow(model)
    fixed = {c: values[c] for c in model.constant_names}
    params = {w: np.array(values[w], dtype=np.float64) for w in model.learned_names}
    theta = _Packer.of(params)
    n = theta.size
    c1, c2 = _rates(method)
    eta, eps = method.lr, method.eps
    b1, b2 = method.betas
    log_b1, log_b2 = (math.log(b) if b > 0 else -math.inf for b in method.betas)
    m_at, v_at = n, n + (n if c1 is not None else 0)
    size = v_at + (n if c2 is not None else 0)

    def gradient(t: float, th: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            g = theta.pack(full.grad(theta.unpack(th) | fixed, weight_decay=coupled))
        if not np.all(np.isfinite(g)):
            raise FloatingPointError(
                f"the gradient is not finite at t = {t:.6g} (max |θ| = "
                f"{float(np.max(np.abs(th))):.3g}): the ODE blew up")
        return g

    shift = 0.5 * eta if method.half_step else 0.0  # the moments' clock runs ahead of θ's

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        th = y[:n]
        g = gradient(t, th)
        t = t + shift  # the moments' clock
        out = np.empty_like(y)
        if c1 is None:
            m_hat = g
        else:
            m = y[m_at:m_at + n]
            out[m_at:m_at + n] = c1 * (g - m)
            bias = -math.expm1(t / eta * log_b1)  # 1 − β₁^{t/η}
            m_hat = m / bias if bias > 0 else g
        if c2 is None:
            v_hat = g * g
        else:
            v = y[v_at:v_at + n]
            out[v_at:v_at + n] = c2 * (g * g - v)
            bias = -math.expm1(t / eta * log_b2)
            v_hat = v / bias if bias > 0 else g * g
        out[:n] = -m_hat / (np.sqrt(np.maximum(v_hat, 0.0)) + eps) - decay * th
        return out

    def observe(y: np.ndarray) -> tuple[float, dict]:
        both = theta.unpack(y[:n]) | fixed
        return full.loss_value(both), _full_overlaps(model, both)

    def loss(y: np.ndarray) -> float:
        return full.loss_value(theta.unpack(y[:n]) | fixed)

    entries = np.concatenate([c.ravel() for c in fixed.values()])
    scale = float(np.sqrt(np.mean(entries**2))) if entries.size else 1.0  # θ_*
    s_max, s_min = spec.rate_scale()
    stop = (Stop() if stop is None else stop).with_defaults(
        t_max=float(t_max) if t_max is not None else 1e6 / s_min, loss=LOSS_STOP, stall=STALL)
    cap = float(stop.t_max)

    # the start: K exact steps of torch.optim.Adam(W) (module docstring, "Start")
    th, m, v = theta.pack(params), np.zeros(n), np.zeros(n)
    times, observed = [0.0], [observe(th)]
    k_max = min(int(method.exact_steps or 0), math.floor(cap / eta + 1e-9))
    k = 0
    try:
        while k < k_max and observed[-1][0] > stop.loss * spec.l_ref:
            g = gradient(k * eta, th)
            k += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            th = th * (1 - eta * decay) - (eta / (1 - b1**k)) * m / (
                np.sqrt(v) / math.sqrt(1 - b2**k) + eps)
            times.append(k * eta)
            observed.append(observe(th))
        t_k = k * eta
        if shift > 0:  # the moments half a step on, of the frozen gradient at θ_K
            g = gradient(t_k, th)
            m = b1**0.5 * m + (1 - b1**0.5) * g
            v = b2**0.5 * v + (1 - b2**0.5) * g * g
    except FloatingPointError as exc:
        raise IntegrationError(f"{spec.describe()}: method 'adam' failed at t = {k * eta:.6g} "
                               f"({exc})") from None
    if not np.isfinite(observed[-1][0]) or not np.all(np.isfinite(th)):
        raise IntegrationError(f"{spec.describe()}: method 'adam' failed at t = {t_k:.6g} "
                               "(the exact start's steps left a non-finite state)")
    y0 = np.concatenate([th] + ([m] if c1 is not None else []) + ([v] if c2 is not None else []))
    if observed[-1][0] > stop.loss * spec.l_ref and cap - t_k > 1e-12 * max(cap, 1.0):
        def shifted(s: float, y: np.ndarray) -> np.ndarray:
            return rhs(s + t_k, y)

        grid, kept = _solve_chunks(spec, "adam", shifted, observe, y0, spec.l_ref, cap - t_k,
                                   s_max, solver=solver, rtol=rtol, stop=stop.loss,
                                   first=min(2.0 / s_max, FIRST * scale), stall=stop.stall,
                                   saveat=_grid("adam", saveat), loss=loss)
        times += [t_k + float(s) for s in grid[1:]]  # its first sample is the step-K state
        observed += kept[1:]
    return _trajectory(np.array(times), [v for v, _ in observed], [o for _, o in observed], spec,
                       "adam", size)
