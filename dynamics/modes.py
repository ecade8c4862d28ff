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

SymPy derives (``sp.diff`` term by term, :func:`dynamics.matexpr.termwise_gradient`) the
gradients of L_D, d_g = ∂f/∂ℓ_g for each method, and — contracting adjacent n-row pairs into the
order parameters P_X = AᵀX, Q = P_Y = BᵀY (G×k), U_X = XᵀX, U_Y = YᵀY (k×k), G_A = AᵀA,
G_B = BᵀB (:class:`dynamics.matexpr.Contraction`, the machinery of :mod:`dynamics.symbolic`) —

    dP_X/dt = G_A S D Q − P_X Qᵀ D Q          dQ/dt = G_B D S P_X − G_B D Q U_X
    dU_X/dt = P_Xᵀ S D Q + Qᵀ D S P_X − U_X Qᵀ D Q − Qᵀ D Q U_X      (and dU_Y/dt)
    RᵀR = Q U_X Qᵀ − Q P_Xᵀ S − S P_X Qᵀ + S G_A S,

closed for any n: the loss of every capability, under any group loss, is predicted exactly by
a (G·k + k²)-dimensional ODE (continuous time t; a step of rate η advances t by η). The exact
full-batch GD map (X' = X − η∂L_D/∂X, D at the current point) closes the same way.

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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike
from scipy.integrate import quad, solve_ivp
from sympy.matrices.expressions import MatAdd, MatMul, MatrixSymbol, Trace, Transpose

from .matexpr import Contraction, MultiDotPrinter, latex_form, normalize, termwise_gradient
from .phases import crossing_times

__all__ = [
    "FUNCTIONALS",
    "METHODS",
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
_ETA = sp.Symbol("eta", real=True)
_ELL, _W, _EPS = sp.symbols("ell w epsilon", positive=True)

FUNCTIONALS: dict[str, sp.Expr] = {
    "mean": _W * _ELL,
    "grouped": _ELL**2,
    "root": sp.sqrt(_ELL + _EPS),
    "svd": _W * _ELL**2,
    "dro": _W * _ELL,
}
"""Group loss F = Σ_g f(ℓ_g, w_g) per method, as f(ell, w, epsilon); w = p̂_g (or q_g, DRO)."""


@dataclass(frozen=True)
class _Symbols:
    A: MatrixSymbol
    B: MatrixSymbol
    X: MatrixSymbol
    Y: MatrixSymbol
    S: MatrixSymbol
    D: MatrixSymbol
    state: dict[str, MatrixSymbol]
    gram: dict[str, MatrixSymbol]
    contract: Contraction
    diagonal: dict[sp.Basic, sp.Basic]  # Sᵀ -> S, Dᵀ -> D
    latex_names: dict[sp.Basic, str]

    @property
    def residual(self) -> sp.MatrixExpr:
        """R = XYᵀB − AS (n×G): column g is capability g's residual."""
        return self.X * self.Y.T * self.B - self.A * self.S

    @property
    def loss(self) -> sp.Expr:
        """L_D = ½ tr(R D Rᵀ)."""
        r = self.residual
        return Trace(r * self.D * r.T) / 2


@cache
def _symbols() -> _Symbols:
    a, b = MatrixSymbol("A", _N, _G), MatrixSymbol("B", _N, _G)
    x, y = MatrixSymbol("X", _N, _K), MatrixSymbol("Y", _N, _K)
    s, d = MatrixSymbol("S", _G, _G), MatrixSymbol("D", _G, _G)
    px, py = MatrixSymbol("P_X", _G, _K), MatrixSymbol("P_Y", _G, _K)
    ux, uy = MatrixSymbol("U_X", _K, _K), MatrixSymbol("U_Y", _K, _K)
    ga, gb = MatrixSymbol("G_A", _G, _G), MatrixSymbol("G_B", _G, _G)
    pairs = {
        (a, a): ga, (a, x): px, (x, a): px.T, (x, x): ux,
        (b, b): gb, (b, y): py, (y, b): py.T, (y, y): uy,
    }  # fmt: skip
    contract = Contraction(pairs, _N, [ux, uy, ga, gb, s, d])
    names = {
        px: "P_X", py: "Q", ux: "U_X", uy: "U_Y", ga: "G_A", gb: "G_B", _ETA: r"\eta",
    }  # fmt: skip
    return _Symbols(
        a, b, x, y, s, d,
        state={"P_X": px, "U_X": ux, "P_Y": py, "U_Y": uy},
        gram={"G_A": ga, "G_B": gb},
        contract=contract,
        diagonal={s.T: s, d.T: d},
        latex_names=names,
    )  # fmt: skip


def _clean(sym: _Symbols, expr: sp.Basic, contract: bool = False) -> sp.Basic:
    """Expanded form with Sᵀ = S, Dᵀ = D (both diagonal); contracted to order parameters."""
    expr = normalize(expr, big=(_N,)).xreplace(sym.diagonal)
    if contract:
        expr = sym.contract(expr).xreplace(sym.diagonal)
    return normalize(expr)


class _ChainPrinter(MultiDotPrinter):
    """Matrix chains as left-to-right ``@`` products: the reduced equations hold only G×k and
    k×k matrices, for which ``multi_dot``'s ordering search costs more than it saves."""

    def _print_MatMul(self, expr: MatMul) -> str:
        scalars = [a for a in expr.args if not a.is_Matrix]
        mats = [self.parenthesize(a, 50) for a in expr.args if a.is_Matrix]
        body = mats[0] if len(mats) == 1 else f"({' @ '.join(mats)})"
        if not scalars:
            return body
        return f"{self.parenthesize(sp.Mul(*scalars), 50)}*{body}"


def _lambdify(
    args: Sequence[sp.Basic], outs: Mapping[str, sp.Basic], printer: type = _ChainPrinter
) -> Callable[..., dict]:
    fn = sp.lambdify(list(args), list(outs.values()), printer=printer, cse=True, dummify=False)
    names = tuple(outs)

    def run(*values: object) -> dict:
        return dict(zip(names, fn(*values), strict=True))

    return run


class ModesDynamics:
    """The derived dynamics of the weighted loss L_D = ½tr(R D Rᵀ), R = XYᵀB − AS.

    Every method works on float64 arrays: ``state`` holds ``P_X`` = AᵀX, ``P_Y`` = BᵀY (G×k),
    ``U_X`` = XᵀX, ``U_Y`` = YᵀY (k×k); ``consts`` holds ``G_A`` = AᵀA, ``G_B`` = BᵀB and
    ``S`` = diag(s) (G×G); ``d`` is the weight vector (G,), D = diag(d). Time is t.
    """

    def __init__(self) -> None:
        sym = _symbols()
        self._sym = sym
        loss = sym.loss
        grads = {
            "X": _clean(sym, termwise_gradient(loss, sym.X)),
            "Y": _clean(sym, termwise_gradient(loss, sym.Y)),
        }
        targets = {"X": sym.A, "Y": sym.B}
        rates, steps = {}, {}
        for f, g in grads.items():
            t, w = targets[f], getattr(sym, f)
            dw = MatMul(-1, g)
            rates[f"P_{f}"] = _clean(sym, MatMul(t.T, dw), contract=True)
            rates[f"U_{f}"] = _clean(sym, MatAdd(MatMul(Transpose(dw), w), MatMul(w.T, dw)), True)
            w_new = MatAdd(w, MatMul(_ETA, dw))
            steps[f"P_{f}"] = _clean(sym, MatMul(t.T, w_new), contract=True)
            steps[f"U_{f}"] = _clean(sym, MatMul(Transpose(w_new), w_new), contract=True)
        self.grads, self.rates, self.steps = grads, rates, steps
        self.errors = _clean(sym, sym.residual.T * sym.residual, contract=True)  # RᵀR
        self.reduced_loss = _clean(sym, loss, contract=True)
        state, gram = list(sym.state.values()), list(sym.gram.values())
        diag = [sym.S, sym.D]
        self._grad = _lambdify([sym.X, sym.Y, sym.A, sym.B, *diag], grads, MultiDotPrinter)
        self._rhs = _lambdify([*state, *gram, *diag], rates)
        self._step = _lambdify([*state, *gram, *diag, _ETA], steps)
        self._errors = _lambdify([*state, *gram, sym.S], {"E": self.errors})
        self._weights = {
            m: sp.lambdify([_ELL, _W, _EPS], sp.diff(f, _ELL), "numpy")
            for m, f in FUNCTIONALS.items()
        }

    # -- evaluation --------------------------------------------------------------------

    @staticmethod
    def _diag(consts: Mapping[str, np.ndarray], d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return consts["S"], np.diag(np.asarray(d, dtype=np.float64))

    def group_losses(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]):
        """ℓ_g = ½(RᵀR)_gg from the order parameters, (G,)."""
        e = self._errors(
            state["P_X"], state["U_X"], state["P_Y"], state["U_Y"], consts["G_A"], consts["G_B"],
            consts["S"],
        )["E"]  # fmt: skip
        return 0.5 * np.diagonal(e).copy()

    def weights(self, method: str, losses: np.ndarray, w: ArrayLike, eps: float) -> np.ndarray:
        """d_g = ∂f/∂ℓ_g of ``method``'s :data:`FUNCTIONALS` at ℓ_g = ``losses``, w_g = ``w``."""
        out = self._weights[method](np.asarray(losses, dtype=float), np.asarray(w, float), eps)
        return np.broadcast_to(np.asarray(out, dtype=float), np.shape(losses)).copy()

    def gradient(
        self, x: np.ndarray, y: np.ndarray, consts: Mapping[str, np.ndarray], d: ArrayLike
    ) -> Arrays:
        """∂L_D/∂X and ∂L_D/∂Y in the full parameters (``consts`` also holds ``A``, ``B``)."""
        s, dd = self._diag(consts, d)
        return self._grad(x, y, consts["A"], consts["B"], s, dd)

    def _args(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], d):
        s, dd = self._diag(consts, d)
        return (
            state["P_X"], state["U_X"], state["P_Y"], state["U_Y"], consts["G_A"], consts["G_B"],
            s, dd,
        )  # fmt: skip

    @staticmethod
    def _symmetrise(out: Arrays) -> Arrays:
        for key in ("U_X", "U_Y"):
            out[key] = 0.5 * (out[key] + out[key].T)
        return out

    def rhs(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], d) -> Arrays:
        """d(state)/dt of the gradient flow of L_D (U outputs symmetrised exactly)."""
        return self._symmetrise(self._rhs(*self._args(state, consts, d)))

    def step(
        self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], d, lr: float
    ) -> Arrays:
        """The state after one full-batch GD step X' = X − η∂L_D/∂X (same for Y)."""
        return self._symmetrise(self._step(*self._args(state, consts, d), lr))

    def latex(self) -> list[str]:
        """The derived equations as LaTeX strings (``lhs = rhs``)."""
        names = self._sym.latex_names

        def tex(e: sp.Basic) -> str:
            return sp.latex(latex_form(e), symbol_names=names)

        lines = [
            rf"\ell_g = \tfrac12 \left[{tex(self.errors)}\right]_{{gg}}",
            rf"L_D = {tex(self.reduced_loss)}",
        ]
        lhs = {"P_X": "P_X", "U_X": "U_X", "P_Y": "Q", "U_Y": "U_Y"}
        lines += [rf"\frac{{d{lhs[k]}}}{{dt}} = {tex(v)}" for k, v in self.rates.items()]
        lines += [
            rf"d_g^{{\mathrm{{{m}}}}} = \partial f/\partial \ell_g = "
            + sp.latex(sp.diff(f, _ELL), symbol_names={_ELL: r"\ell_g", _W: "w_g"})
            for m, f in FUNCTIONALS.items()
        ]
        return lines


@cache
def modes_dynamics() -> ModesDynamics:
    """The derived :class:`ModesDynamics` (derived once per process, 1–3 s)."""
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

    def consts(self) -> Arrays:
        """``G_A``, ``G_B``, ``S`` for the reduced dynamics and ``A``, ``B`` for the full."""
        a, b = self.left, self.right
        return {"A": a, "B": b, "G_A": a.T @ a, "G_B": b.T @ b, "S": np.diag(self.scales)}

    def initial_state(self) -> Arrays:
        """P_X = AᵀX₀, P_Y = BᵀY₀, U_X = X₀ᵀX₀, U_Y = Y₀ᵀY₀."""
        x, y = self.x0, self.y0
        return {"P_X": self.left.T @ x, "U_X": x.T @ x, "P_Y": self.right.T @ y, "U_Y": y.T @ y}


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
    consts = problem.consts()
    state0 = problem.initial_state()
    keys = tuple(state0)
    shapes = {k: state0[k].shape for k in keys}
    sizes = [int(np.prod(shapes[k])) for k in keys]
    split = np.cumsum(sizes)[:-1]
    groups = problem.num_groups
    freq = problem.frequencies
    dro = method == "dro"

    def pack(state: Mapping[str, np.ndarray], z: np.ndarray | None) -> np.ndarray:
        parts = [np.ravel(state[k]) for k in keys]
        return np.concatenate([*parts, z] if z is not None else parts)

    def unpack(y: np.ndarray) -> tuple[Arrays, np.ndarray | None]:
        body, z = (y[:-groups], y[-groups:]) if dro else (y, None)
        parts = np.split(body, split)
        return {k: p.reshape(shapes[k]) for k, p in zip(keys, parts, strict=True)}, z

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
