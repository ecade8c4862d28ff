"""Theory of the modes task: every capability's loss under mean, grouped and other group losses.

The task (``validation.tasks.ModesTask``): a deep linear network y = W₂W₁x fits y = Cx with
C = Σ_g s_g u_g v_gᵀ; capability g's examples are x = v_g with frequency p_g. Write the model as
a factorization Z = XYᵀ with X = W₂ (n×k), Y = W₁ᵀ (n×k), and collect the targets in A = [u_g],
B = [v_g] (n×G), S = diag(s_g). The residual of capability g is column g of R = XYᵀB − AS, so

    ℓ_g = ½‖XYᵀv_g − s_g u_g‖² = ½ (RᵀR)_gg.

A *group loss* is any F(ℓ_1, …, ℓ_G) = Σ_g f(ℓ_g, w_g) (:data:`FUNCTIONALS`; w_g a per-group
weight). By the chain rule ∇F = Σ_g (∂f/∂ℓ_g) ∇ℓ_g, and ℓ_g = ½tr(R E_g Rᵀ) with E_g = e_g e_gᵀ
is linear in E_g, so ∇F = ∇L_D at D = diag(d), d_g = ∂f/∂ℓ_g held fixed, where

    L_D = ½ tr(R D Rᵀ)                                   (a weighted factorization loss).

L_D is an ordinary :class:`dynamics.model.Model` (:data:`MODEL`: learned X, Y; constants A, B,
S, D; large n), so its dynamics come from the mechanism every model uses
(:mod:`dynamics.symbolic`): the gradients by ``sp.diff`` term by term, the reduced flow and the
exact GD map in the order parameters that :class:`dynamics.matexpr.PairReducer` finds by
closure, with D a constant that this module sets to diag(d(ℓ)) at every evaluation. Writing
P = AᵀX, Q = BᵀY (G×k), U = XᵀX (k×k), G_A = AᵀA, G_B = BᵀB (G×G; the derived programs name
them ``At_X``, ``Bt_Y``, ``Xt_X``, ``At_A``, ``Bt_B``), with Sᵀ = S and Dᵀ = D,

    dP/dt = G_A S D Q − P Qᵀ D Q          dQ/dt = G_B D S P − G_B D Q U
    dU/dt = Pᵀ S D Q + Qᵀ D S P − U Qᵀ D Q − Qᵀ D Q U
    RᵀR = Q U Qᵀ − Q Pᵀ S − S P Qᵀ + S G_A S           (contracted by the same reducer),

closed for any n (Y enters the loss only through BᵀY, so YᵀY is not part of the state): the loss
of every capability, under any group loss, is predicted exactly by a (2G·k + k²)-dimensional ODE
in continuous time t (a step of rate η advances t by η). The exact full-batch GD map
(X' = X − η∂L_D/∂X, D at the current point) closes the same way.

Methods (:data:`METHODS`), the training losses of :mod:`validation.grouped` on the full batch:

* ``mean``     f = p̂_g ℓ_g            d_g = p̂_g                         (frequency-weighted)
* ``grouped``  f = ℓ_g²               d_g = 2ℓ_g
* ``root``     f = √(ℓ_g + ε)         d_g = 1/(2√(ℓ_g + ε))
* ``svd``      f = p̂_g ℓ_g²           d_g = 2p̂_g ℓ_g  (SVD-grouped loss if the per-example
  gradients of different capabilities are orthogonal, σ_g² = p̂_g; an approximation here)
* ``dro``      f = q_g ℓ_g            d_g = q_g, q = softmax(z), dz_g/dt = (c/η) ℓ_g
  (Group DRO with step c per training step; the flow depends on η through c/η).

Why the two task variants differ (derived from the flow, :func:`plateau_rates`): while capability
g is unlearned its strength w_g = u_gᵀXYᵀv_g grows like e^{λ_g t} with λ_g = 2 d_g s_g, d_g at
ℓ_g = s_g²/2, and it emerges at t_g ≈ ln(s_g(1 − 2^{−½})/w_g(0))/λ_g. Mean loss: λ_g = 2p̂_g s_g.
Grouped loss: λ_g = 2s_g³ — the frequency is gone (equal s: simultaneous) but the scale enters
cubed (spread s: *less* simultaneous than the mean loss). Root loss: λ_g = √2 s_g/√(s_g² + 2ε)
≈ √2 for both; the group-loss power γ (f = ℓ^γ, λ_g ∝ s_g^{2γ−1}) makes λ_g independent of both
p_g and s_g only at γ = ½.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike
from scipy.integrate import quad, solve_ivp
from sympy.matrices.expressions import MatrixSymbol, Trace

from .matexpr import ChainPrinter, PairReducer, latex_form
from .model import Model
from .phases import crossing_times
from .symbolic import (
    _key_exprs,
    _latex_names,
    _load_or_derive,
    _Program,
    _program,
    full_flow,
    reduced_flow,
    reduced_gd,
)

__all__ = [
    "FUNCTIONALS",
    "METHODS",
    "MODEL",
    "ROOT_EPS",
    "GroupPrediction",
    "ModesDynamics",
    "ModesProblem",
    "mode_emergence_time",
    "modes_dynamics",
    "plateau_rates",
    "predict_groups",
]

METHODS = ("mean", "grouped", "root", "svd", "dro")
ROOT_EPS = 1e-2
"""Default ε of the root loss √(ℓ_g + ε) (loss units): keeps the gradient bounded at ℓ_g → 0."""

Arrays = dict[str, np.ndarray]

# --------------------------------------------------------------------------- the loss, once

_N, _G, _K = sp.symbols("n G k", integer=True, positive=True)
_A, _B = MatrixSymbol("A", _N, _G), MatrixSymbol("B", _N, _G)
_X, _Y = MatrixSymbol("X", _N, _K), MatrixSymbol("Y", _N, _K)
_S, _D = MatrixSymbol("S", _G, _G), MatrixSymbol("D", _G, _G)
_RESIDUAL = _X * _Y.T * _B - _A * _S
"""R = XYᵀB − AS (n×G): column g is capability g's residual."""

MODEL = Model(
    "modes",
    Trace(_RESIDUAL * _D * _RESIDUAL.T) / 2,
    [_X, _Y],
    [_A, _B, _S, _D],
    [_N],
    targets={"X": "A", "Y": "B"},
    description="L_D = ½tr(R D Rᵀ), R = XYᵀB − AS (A, B n x G; S, D diagonal G x G; X, Y n x k)",
)
"""The weighted factorization loss L_D = ½ tr(R D Rᵀ) of the modes task (module docstring)."""

_ELL, _W, _EPS = sp.symbols("ell w epsilon", positive=True)

FUNCTIONALS: dict[str, sp.Expr] = {
    "mean": _W * _ELL,
    "grouped": _ELL**2,
    "root": sp.sqrt(_ELL + _EPS),
    "svd": _W * _ELL**2,
    "dro": _W * _ELL,
}
"""Group loss F = Σ_g f(ℓ_g, w_g) per method, as f(ell, w, epsilon); w = p̂_g (or q_g, DRO)."""


def _derive_errors() -> dict:
    """RᵀR (G×G) contracted by :class:`PairReducer` into the order parameters of :data:`MODEL`."""
    reducer = PairReducer(MODEL.large, names=MODEL.symbols)
    errors = reducer(_RESIDUAL.T * _RESIDUAL)
    args = sorted(errors.atoms(MatrixSymbol), key=str)
    names = _latex_names(MODEL, reducer)
    tex = sp.latex(latex_form(errors), symbol_names=names)
    return {
        "programs": {"errors": _program(args, {"E": errors}, ChainPrinter)},
        "latex": [rf"\ell_g = \tfrac12 \left[{tex}\right]_{{gg}}"],
        "meta": {"learned": list(MODEL.learned_names)},
    }


def _errors_key() -> tuple:
    """Disk-cache key of :func:`_derive_errors`: the model, RᵀR and the recipe's own source (the
    cache's code version covers :mod:`dynamics.symbolic` and :mod:`dynamics.matexpr` only)."""
    recipe = hashlib.sha256(inspect.getsource(_derive_errors).encode()).hexdigest()[:16]
    return (*_key_exprs(MODEL), _RESIDUAL.T * _RESIDUAL, sp.Symbol(f"recipe_{recipe}"))


class ModesDynamics:
    """The derived dynamics of the weighted loss L_D = ½tr(R D Rᵀ), R = XYᵀB − AS.

    :attr:`flow`, :attr:`gd` and :attr:`full` are :func:`dynamics.symbolic.reduced_flow`,
    :func:`~dynamics.symbolic.reduced_gd` and :func:`~dynamics.symbolic.full_flow` of
    :data:`MODEL`. Every method works on float64 arrays: ``state`` holds the order parameters
    :attr:`keys` (``At_X`` = AᵀX, ``Bt_Y`` = BᵀY, ``Xt_X`` = XᵀX); ``consts`` holds ``At_A`` =
    AᵀA, ``Bt_B`` = BᵀB and ``S`` = diag(s) (G×G), and ``A``, ``B`` for :meth:`gradient`;
    ``d`` is the weight vector (G,), D = diag(d). Time is t.
    """

    def __init__(self) -> None:
        self.flow = reduced_flow(MODEL)
        self.gd = reduced_gd(MODEL)
        self.full = full_flow(MODEL)
        self.keys = self.flow.keys
        payload, _ = _load_or_derive("modes-errors", _errors_key(), _derive_errors)
        self._errors = _Program(payload["programs"]["errors"])
        unknown = set(self._errors.args) - {*self.flow.keys, *self.flow.constants}
        if unknown:  # both reducers name a pair by its definition (a guard, not expected)
            raise RuntimeError(f"RᵀR needs {sorted(unknown)}, not in the reduced flow")
        self._latex = payload["latex"]
        self._weights = {
            m: sp.lambdify([_ELL, _W, _EPS], sp.diff(f, _ELL), "numpy")
            for m, f in FUNCTIONALS.items()
        }

    # -- evaluation --------------------------------------------------------------------

    def initial(self, values: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        """``(state, consts)`` at ``values`` (``A``, ``B``, ``S``, ``X``, ``Y``); consts also hold
        ``A`` and ``B`` (for :meth:`gradient`), D is set by every call that needs it."""
        state, consts = self.flow.initial(dict(values) | {"D": np.eye(len(values["S"]))})
        del consts["D"]
        return state, consts | {"A": values["A"], "B": values["B"]}

    def group_losses(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]):
        """ℓ_g = ½(RᵀR)_gg (loss units) from the order parameters, shape (G,)."""
        e = self._errors(dict(state) | dict(consts))["E"]
        return 0.5 * np.diagonal(e).copy()

    def weights(self, method: str, losses: np.ndarray, w: ArrayLike, eps: float) -> np.ndarray:
        """d_g = ∂f/∂ℓ_g of ``method``'s :data:`FUNCTIONALS` at ℓ_g = ``losses``, w_g = ``w``."""
        out = self._weights[method](np.asarray(losses, dtype=float), np.asarray(w, float), eps)
        return np.broadcast_to(np.asarray(out, dtype=float), np.shape(losses)).copy()

    @staticmethod
    def _with(consts: Mapping[str, np.ndarray], d: ArrayLike) -> dict:
        return dict(consts) | {"D": np.diag(np.asarray(d, dtype=np.float64))}

    def gradient(
        self, x: np.ndarray, y: np.ndarray, consts: Mapping[str, np.ndarray], d: ArrayLike
    ) -> Arrays:
        """∂L_D/∂X and ∂L_D/∂Y in the full parameters (``consts`` holds ``A``, ``B``, ``S``)."""
        values = {"X": x, "Y": y} | {k: consts[k] for k in ("A", "B", "S")}
        return self.full.grad(self._with(values, d), 0.0)

    def rhs(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], d) -> Arrays:
        """d(state)/dt per unit t of the flow dX/dt = −∂L_D/∂X, dY/dt = −∂L_D/∂Y at D = diag(d)
        (``Xt_X``'s rate symmetrised exactly)."""
        return self.flow.rhs(state, self._with(consts, d), 0.0)

    def step(
        self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], d, lr: float
    ) -> Arrays:
        """The state after one full-batch GD step X' = X − η∂L_D/∂X (same for Y), D = diag(d)
        at the current point; the step advances t by η = ``lr``."""
        return self.gd.step(state, self._with(consts, d), lr, 0.0)

    def latex(self) -> list[str]:
        """The derived equations as LaTeX strings (``lhs = rhs``): ℓ_g, L_D, the reduced flow
        (λ is the weight decay, 0 here) and d_g per method."""
        return [
            *self._latex,
            *self.flow.latex(),
            *(
                rf"d_g^{{\mathrm{{{m}}}}} = \partial f/\partial \ell_g = "
                + sp.latex(sp.diff(f, _ELL), symbol_names={_ELL: r"\ell_g", _W: "w_g"})
                for m, f in FUNCTIONALS.items()
            ),
        ]


@cache
def modes_dynamics() -> ModesDynamics:
    """The derived :class:`ModesDynamics` (derived once, then cached on disk like every model)."""
    return ModesDynamics()


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class ModesProblem:
    """One modes-task run in float64: targets, frequencies and the initial weights.

    ``left`` = A = [u_g], ``right`` = B = [v_g] (n×G), ``scales`` s_g, ``frequencies`` p̂_g
    (the weights of the mean loss), ``x0`` = W₂ (n×k) and ``y0`` = W₁ᵀ (n×k) at t = 0.
    """

    scales: np.ndarray
    frequencies: np.ndarray
    left: np.ndarray
    right: np.ndarray
    x0: np.ndarray
    y0: np.ndarray

    def __post_init__(self) -> None:
        for name in ("scales", "frequencies", "left", "right", "x0", "y0"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    @property
    def num_groups(self) -> int:
        return len(self.scales)

    @property
    def reference_loss(self) -> np.ndarray:
        """ℓ_g of the zero model, s_g²/2."""
        return self.scales**2 / 2

    def values(self) -> Arrays:
        """The matrices of :data:`MODEL` at t = 0 by symbol name (all but D)."""
        return {"A": self.left, "B": self.right, "S": np.diag(self.scales), "X": self.x0,
                "Y": self.y0}

    def consts(self) -> Arrays:
        """``At_A``, ``Bt_B``, ``S`` for the reduced dynamics and ``A``, ``B`` for the full."""
        return modes_dynamics().initial(self.values())[1]

    def initial_state(self) -> Arrays:
        """The order parameters at t = 0: ``At_X`` = AᵀX₀, ``Bt_Y`` = BᵀY₀, ``Xt_X`` = X₀ᵀX₀."""
        return modes_dynamics().initial(self.values())[0]


@dataclass
class GroupPrediction:
    """Predicted per-group losses ``group_loss`` (T, G) at times ``t`` (T,) for one method.

    ``steps`` is set for the discrete map (t = η·step). ``weights`` (T, G): the d_g used.
    """

    method: str
    t: np.ndarray
    group_loss: np.ndarray
    weights: np.ndarray
    reference: np.ndarray
    seconds: float
    steps: np.ndarray | None = None
    lr: float | None = None
    info: dict = field(default_factory=dict)

    def crossing_times(self, fraction: float = 0.5) -> np.ndarray:
        """First t with ℓ_g ≤ fraction·ℓ_ref,g per group (:func:`dynamics.phases.crossing_times`,
        log-interpolated); NaN where never reached."""
        out = []
        for g in range(self.group_loss.shape[1]):
            value = crossing_times(self.t, self.group_loss[:, g], self.reference[g], (fraction,))
            out.append(np.nan if value[fraction] is None else value[fraction])
        return np.array(out)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")


def predict_groups(
    problem: ModesProblem,
    method: str,
    t: ArrayLike,
    lr: float | None = None,
    discrete: bool = False,
    eps: float = ROOT_EPS,
    dro_step: float = 0.01,
    rtol: float = 1e-10,
) -> GroupPrediction:
    """Per-group losses of ``problem`` trained with ``method`` on the full batch, at times ``t``.

    Flow (default): solve_ivp (DOP853, ``rtol``, atol 1e-14) of the derived reduced ODE with
    D = diag(d(ℓ)) recomputed at every evaluation. ``discrete``: the exact GD map of rate
    ``lr`` (t = η·step; ``t`` rounded to whole steps). ``eps``: ε of the root loss; ``dro_step``:
    Group DRO's c per step (the flow needs ``lr`` for it, dz/dt = (c/η)ℓ).
    """
    _check_method(method)
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 1 or np.any(np.diff(t) < 0) or t[0] < 0:
        raise ValueError("t must be a non-decreasing 1-d array of times >= 0")
    if (discrete or method == "dro") and not (lr is not None and lr > 0):
        raise ValueError("the discrete map and Group DRO need a step size lr > 0")
    dyn = modes_dynamics()
    state0, consts = dyn.initial(problem.values())
    shapes = {k: v.shape for k, v in state0.items()}
    groups = problem.num_groups
    freq = problem.frequencies
    dro = method == "dro"

    def pack(state: Mapping[str, np.ndarray], z: np.ndarray | None) -> np.ndarray:
        body = dyn.flow.pack(state)
        return body if z is None else np.concatenate([body, z])

    def unpack(y: np.ndarray) -> tuple[Arrays, np.ndarray | None]:
        body, z = (y[:-groups], y[-groups:]) if dro else (y, None)
        return dyn.flow.unpack(body, shapes), z

    def weights(state: Mapping[str, np.ndarray], z: np.ndarray | None) -> tuple:
        losses = dyn.group_losses(state, consts)
        if z is not None:
            q = np.exp(z - z.max())
            w = q / q.sum()
        else:
            w = freq
        return losses, dyn.weights(method, losses, w, eps)

    start = time.perf_counter()
    z0 = np.zeros(groups) if dro else None
    if discrete:
        steps = np.rint(t / lr).astype(np.int64)
        state, z = state0, z0
        out_loss, out_d = np.empty((t.size, groups)), np.empty((t.size, groups))
        m, i = 0, 0
        while i < t.size:
            if dro:  # GroupDRO: q ← q exp(c ℓ) before the loss of the step
                losses = dyn.group_losses(state, consts)
                z_next = z + dro_step * losses
            losses, d = weights(state, z_next if dro else None)
            while i < t.size and steps[i] == m:
                out_loss[i], out_d[i] = losses, d
                i += 1
            if i == t.size:
                break
            state = dyn.step(state, consts, d, lr)
            if dro:
                z = z_next
            m += 1
        return GroupPrediction(
            method, t, out_loss, out_d, problem.reference_loss, time.perf_counter() - start,
            steps=steps, lr=lr,
        )  # fmt: skip

    rate = dro_step / lr if dro else 0.0

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        state, z = unpack(y)
        losses, d = weights(state, z)
        out = pack(dyn.rhs(state, consts, d), rate * losses if dro else None)
        return out

    solution = solve_ivp(
        rhs, (0.0, float(t[-1])), pack(state0, z0), method="DOP853", t_eval=t, rtol=rtol,
        atol=1e-14,
    )  # fmt: skip
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed for method {method!r}: {solution.message}")
    out_loss, out_d = [], []
    for y in solution.y.T:
        losses, d = weights(*unpack(y))
        out_loss.append(losses)
        out_d.append(d)
    return GroupPrediction(
        method, t, np.array(out_loss), np.array(out_d), problem.reference_loss,
        time.perf_counter() - start, lr=lr, info={"nfev": solution.nfev},
    )  # fmt: skip


# --------------------------------------------------------------------------- closed forms


def plateau_rates(
    scales: ArrayLike, frequencies: ArrayLike, method: str, eps: float = ROOT_EPS
) -> np.ndarray:
    """Growth rate λ_g = 2 d_g s_g of capability g's strength during its plateau (1/t).

    Linearising the flow at small weights, the balanced component of mode g grows like
    e^{d_g s_g t} in each factor (dP_X/dt ≈ S D Q, dQ/dt ≈ D S P_X), so w_g = u_gᵀXYᵀv_g grows
    like e^{λ_g t}; d_g at ℓ_g = s_g²/2 (DRO: uniform q, d_g = 1/G).
    """
    _check_method(method)
    s = np.asarray(scales, dtype=float)
    w = np.full_like(s, 1 / s.size) if method == "dro" else np.asarray(frequencies, float)
    d = modes_dynamics().weights(method, s**2 / 2, w, eps)
    return 2 * d * s


def mode_emergence_time(
    scale: float,
    w0: float,
    method: str,
    frequency: float = 1.0,
    eps: float = ROOT_EPS,
    fraction: float = 0.5,
) -> float:
    """t at which a single decoupled, balanced mode reaches ℓ = fraction·ℓ_ref from w(0) = w0.

    With p = q (balanced), w = p·q and no other modes: ℓ = ½(s − w)² and
    dw/dt = 2 d(ℓ) w (s − w), so t = ∫_{w0}^{w_f} dw / [2 d(ℓ(w)) w (s − w)] with
    w_f = s(1 − √fraction). Mean loss: the logistic time ln[(w_f/w0)(s − w0)/(s − w_f)]/(2ps).
    (DRO is not a function of one mode alone; it is refused.)
    """
    if method == "dro":
        raise ValueError("Group DRO couples the modes through q; use predict_groups")
    _check_method(method)
    dyn = modes_dynamics()
    w_end = scale * (1 - np.sqrt(fraction))

    def dt_du(u: float) -> float:  # u = ln w
        w = np.exp(u)
        d = dyn.weights(method, np.array([0.5 * (scale - w) ** 2]), frequency, eps)[0]
        return 1.0 / (2 * d * (scale - w))

    value, _ = quad(dt_du, np.log(w0), np.log(w_end), limit=200)
    return float(value)
