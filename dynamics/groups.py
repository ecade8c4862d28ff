"""Group objectives: the losses F(ℓ_1, …, ℓ_G) that combine the losses of capability groups.

Every objective here is written once, as SymPy, in the form

    F = outer(u),   u = Σ_g f(ℓ_g, w_g),

with ℓ_g the (mean) loss of group g and w_g ≥ 0 a per-group weight — the group's frequency
p̂_g = n_g/N unless said otherwise (:attr:`GroupObjective.weighted`). The theory needs only the
slopes d_g = ∂F/∂ℓ_g = outer′(u)·∂f/∂ℓ_g, because ∇_θ F = Σ_g d_g ∇_θ ℓ_g: a gradient step on F
is a step on the weighted loss Σ_g d_g ℓ_g with d held fixed (:meth:`GroupObjective.slopes`,
numpy). Training needs F itself, under autograd: :attr:`GroupObjective.expression` printed for
torch by :mod:`validation.grouped` (same expression, another printer).

The families (:func:`objective`):

* ``mean``        f = w ℓ                      F = Σ_g p̂_g ℓ_g, the ordinary mean over examples
* ``power`` (q)   f = (ℓ + ε)^{q+1}/(q + 1)    q-FFL (Li et al., ICLR 2020): q = 0 the unweighted
  mean over groups, q = 1 ½Σℓ_g², q = −½ 2Σ√ℓ_g; q = −1 is f = ln(ℓ + ε). ε (loss units)
  keeps the slope (ℓ + ε)^q finite at ℓ → 0 for q < 0 (default 10⁻², 0 for q ≥ 0).
* ``grouped``     f = ℓ²                       the seed's grouped loss Σ_g ℓ_g² (= 2 × power q = 1)
* ``root``        f = √(ℓ + ε)                 (= ½ × power q = −½)
* ``tilted`` (τ)  f = w e^{τℓ}, outer = ln(u)/τ  tilted ERM over groups (Li et al., ICLR 2021):
  τ → 0 the mean loss, τ → ∞ the worst group.
* ``dro`` (c)     f = w ℓ with w = q_g = softmax(z)_g, z_g advanced by c·ℓ_g every training step
  (Group DRO, Sagawa et al. 2020): in t, dz_g/dt = (c/η)·ℓ_g. The weights are state, not
  frequencies (:attr:`GroupObjective.dro_step`).

Near a plateau an unlearned linear mode of strength s_g escapes at rate λ_g = 2 d_g s_g; with
ℓ_g ≈ s_g²/2 the power family gives λ_g ∝ s_g^{1+2q} (frequency drops out of every unweighted
objective), the mean loss λ_g = 2 p̂_g s_g (:func:`escape_rates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

__all__ = [
    "ELL",
    "NAMES",
    "ROOT_EPS",
    "SUM",
    "WEIGHT",
    "GroupObjective",
    "escape_rates",
    "objective",
]

ELL, WEIGHT, SUM = sp.symbols("ell w u", positive=True)
"""The symbols of every objective: ℓ (a group's loss), w (its weight), u = Σ_g f(ℓ_g, w_g)."""

ROOT_EPS = 1e-2
"""Default ε (loss units) of the objectives whose slope diverges at ℓ → 0 (root, power q < 0)."""

NAMES = ("mean", "power", "grouped", "root", "tilted", "dro")
DRO_STEP = 0.01


@dataclass(frozen=True)
class GroupObjective:
    """F = outer(Σ_g f(ℓ_g, w_g)) (module docstring); ``f`` in :data:`ELL`, :data:`WEIGHT`,
    ``outer`` in :data:`SUM` (None: the identity)."""

    name: str
    f: sp.Expr
    outer: sp.Expr | None = None
    params: dict[str, float] = field(default_factory=dict)
    weighted: bool = False
    """Whether w_g = p̂_g enters f (else w is ignored: every group counts alike)."""
    dro_step: float | None = None
    """Group DRO's step c per training step (w = softmax(z) is then state, see module doc)."""

    @property
    def label(self) -> str:
        """``name`` with its parameters, e.g. ``power(q=1)``."""
        inner = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({inner})" if inner else self.name

    @cached_property
    def expression(self) -> tuple[sp.Expr, sp.Expr]:
        """``(f, outer)`` with ``outer`` = u when there is none."""
        return self.f, (SUM if self.outer is None else self.outer)

    @cached_property
    def _slope_functions(self):
        f, outer = self.expression
        return (
            sp.lambdify([ELL, WEIGHT], sp.diff(f, ELL), "numpy"),
            sp.lambdify([ELL, WEIGHT], f, "numpy"),
            sp.lambdify([SUM], sp.diff(outer, SUM), "numpy"),
        )

    def slopes(self, losses: ArrayLike, weights: ArrayLike) -> np.ndarray:
        """d_g = ∂F/∂ℓ_g = outer′(Σ_h f(ℓ_h, w_h)) · ∂f/∂ℓ(ℓ_g, w_g), float64, shape of ``losses``
        (groups on the last axis)."""
        ell = np.asarray(losses, dtype=float)
        w = np.broadcast_to(np.asarray(weights, dtype=float), ell.shape)
        df, f, dout = self._slope_functions
        inner = np.broadcast_to(np.asarray(df(ell, w), dtype=float), ell.shape)
        total = np.sum(np.broadcast_to(np.asarray(f(ell, w), dtype=float), ell.shape), axis=-1)
        scale = np.asarray(dout(total), dtype=float)
        return inner * np.broadcast_to(scale[..., None] if scale.ndim else scale, ell.shape)

    def value(self, losses: ArrayLike, weights: ArrayLike) -> np.ndarray:
        """F itself (numpy), for reporting; groups on the last axis."""
        ell = np.asarray(losses, dtype=float)
        w = np.broadcast_to(np.asarray(weights, dtype=float), ell.shape)
        f, outer = self.expression
        inner = sp.lambdify([ELL, WEIGHT], f, "numpy")(ell, w)
        total = np.sum(np.broadcast_to(np.asarray(inner, dtype=float), ell.shape), axis=-1)
        return np.asarray(sp.lambdify([SUM], outer, "numpy")(total), dtype=float)


def objective(name: str, q: float | None = None, tau: float | None = None,
              eps: float | None = None, step: float | None = None) -> GroupObjective:
    """The objective ``name`` (one of :data:`NAMES`) with its parameter: ``q`` (power), ``tau``
    (tilted, τ ≠ 0), ``eps`` (power q < 0, root), ``step`` (dro's c). One-line ValueError for a
    missing, superfluous or out-of-range parameter."""
    given = {"q": q, "tau": tau, "step": step}
    allowed = {"power": {"q"}, "tilted": {"tau"}, "dro": {"step"}}.get(name, set())
    if name not in NAMES:
        raise ValueError(f"unknown group objective {name!r} (choose from {', '.join(NAMES)})")
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    if extra:
        raise ValueError(f"group objective {name!r} takes no {', '.join(extra)}")
    if eps is not None and not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if name == "mean":
        return GroupObjective("mean", WEIGHT * ELL, weighted=True)
    if name == "grouped":
        return GroupObjective("grouped", ELL**2)
    if name == "root":
        e = ROOT_EPS if eps is None else eps
        return GroupObjective("root", sp.sqrt(ELL + e), params={"eps": e})
    if name == "power":
        if q is None or not np.isfinite(q):
            raise ValueError("group objective 'power' needs a finite q (e.g. q=1)")
        e = (ROOT_EPS if q < 0 else 0.0) if eps is None else eps
        if q <= -1 and e == 0:
            raise ValueError(f"power q={q:g} needs eps > 0 (its slope diverges at loss 0)")
        qs = sp.nsimplify(q)
        shifted = ELL + e
        f = sp.log(shifted) if qs == -1 else shifted ** (qs + 1) / (qs + 1)
        return GroupObjective("power", f, params={"q": float(q)} | ({"eps": e} if e else {}))
    if name == "tilted":
        if tau is None or not np.isfinite(tau) or tau == 0:
            raise ValueError("group objective 'tilted' needs a finite tau != 0 (e.g. tau=1)")
        t = sp.nsimplify(tau)
        return GroupObjective("tilted", WEIGHT * sp.exp(t * ELL), sp.log(SUM) / t,
                              params={"tau": float(tau)}, weighted=True)
    c = DRO_STEP if step is None else step
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"dro step must be a finite number > 0, got {step!r}")
    return GroupObjective("dro", WEIGHT * ELL, params={"step": float(c)}, weighted=True,
                          dro_step=float(c))


def escape_rates(objective: GroupObjective, scales: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """λ_g = 2 d_g s_g at the plateau ℓ_g = s_g²/2 (rate per unit t): an unlearned mode of
    strength w grows like e^{λ_g t} while every group is still near its reference loss."""
    s = np.asarray(scales, dtype=float)
    return 2 * objective.slopes(s**2 / 2, weights) * s
