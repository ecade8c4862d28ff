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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from .errors import SpecError, UsageError

__all__ = [
    "ELL",
    "NAMES",
    "ROOT_EPS",
    "SUM",
    "WEIGHT",
    "GroupObjective",
    "GroupedDynamics",
    "GroupedFullFlow",
    "balanced_strengths",
    "emergence_law",
    "escape_rates",
    "grouped",
    "mode_emergence_time",
    "objective",
    "parse",
    "zipf_frequencies",
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

    def dro_increment(self, losses: Any) -> Any:
        """Group DRO's per-step increment of the logits z: c·ℓ_g, so a step is z ← z + c·ℓ and,
        in t = η·step, dz/dt = c·ℓ/η (weights w = softmax(z)). The one definition of the update,
        used by the GD map, the flow and both torch trainers (numpy arrays or torch tensors)."""
        if self.dro_step is None:
            raise UsageError(f"objective {self.label!r} is not Group DRO: it has no logits")
        return self.dro_step * losses

    @cached_property
    def constant_slopes(self) -> bool:
        """Whether d = ∂F/∂ℓ does not depend on ℓ (F linear in the group losses: the mean)."""
        return (self.outer is None and self.dro_step is None
                and sp.simplify(sp.diff(self.f, ELL, 2)) == 0)

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
    def _functions(self):
        """f, ∂f/∂ℓ, outer and outer′ printed for numpy, once per objective."""
        f, outer = self.expression
        return (sp.lambdify([ELL, WEIGHT], f, "numpy"),
                sp.lambdify([ELL, WEIGHT], sp.diff(f, ELL), "numpy"),
                sp.lambdify([SUM], outer, "numpy"),
                sp.lambdify([SUM], sp.diff(outer, SUM), "numpy"))

    def _inner(self, losses: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, ...]:
        """ℓ, f(ℓ, w) and ∂f/∂ℓ broadcast to ℓ's shape, and u = Σ_g f (groups last)."""
        ell = np.asarray(losses, dtype=float)
        w = np.broadcast_to(np.asarray(weights, dtype=float), ell.shape)
        f, df, _, _ = self._functions
        value = np.broadcast_to(np.asarray(f(ell, w), dtype=float), ell.shape)
        slope = np.broadcast_to(np.asarray(df(ell, w), dtype=float), ell.shape)
        return ell, slope, np.sum(value, axis=-1)

    def slopes(self, losses: ArrayLike, weights: ArrayLike) -> np.ndarray:
        """d_g = ∂F/∂ℓ_g = outer′(Σ_h f(ℓ_h, w_h)) · ∂f/∂ℓ(ℓ_g, w_g), float64, shape of ``losses``
        (groups on the last axis)."""
        ell, slope, total = self._inner(losses, weights)
        scale = np.asarray(self._functions[3](total), dtype=float)
        return slope * np.broadcast_to(scale[..., None] if scale.ndim else scale, ell.shape)

    def value(self, losses: ArrayLike, weights: ArrayLike) -> np.ndarray:
        """F itself (numpy), for reporting; groups on the last axis."""
        _, _, total = self._inner(losses, weights)
        return np.asarray(self._functions[2](total), dtype=float)


def objective(name: str, q: float | None = None, tau: float | None = None,
              eps: float | None = None, step: float | None = None) -> GroupObjective:
    """The objective ``name`` (one of :data:`NAMES`) with its parameter: ``q`` (power), ``tau``
    (tilted, τ ≠ 0), ``eps`` (power q < 0, root), ``step`` (dro's c). One-line ValueError for a
    missing, superfluous or out-of-range parameter."""
    given = {"q": q, "tau": tau, "step": step}
    allowed = {"power": {"q"}, "tilted": {"tau"}, "dro": {"step"}}.get(name, set())
    if name not in NAMES:
        raise SpecError(f"unknown group objective {name!r} (choose from {', '.join(NAMES)})")
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    if extra:
        raise SpecError(f"group objective {name!r} takes no {', '.join(extra)}")
    if eps is not None and not (np.isfinite(eps) and eps >= 0):
        raise SpecError(f"eps must be a finite number >= 0, got {eps!r}")
    if name == "mean":
        return GroupObjective("mean", WEIGHT * ELL, weighted=True)
    if name == "grouped":
        return GroupObjective("grouped", ELL**2)
    if name == "root":
        e = ROOT_EPS if eps is None else eps
        return GroupObjective("root", sp.sqrt(ELL + e), params={"eps": e})
    if name == "power":
        if q is None or not np.isfinite(q):
            raise SpecError("group objective 'power' needs a finite q (e.g. q=1)")
        e = (ROOT_EPS if q < 0 else 0.0) if eps is None else eps
        if q <= -1 and e == 0:
            raise SpecError(f"power q={q:g} needs eps > 0 (its slope diverges at loss 0)")
        qs = sp.nsimplify(q)
        shifted = ELL + e
        f = sp.log(shifted) if qs == -1 else shifted ** (qs + 1) / (qs + 1)
        return GroupObjective("power", f, params={"q": float(q)} | ({"eps": e} if e else {}))
    if name == "tilted":
        if tau is None or not np.isfinite(tau) or tau == 0:
            raise SpecError("group objective 'tilted' needs a finite tau != 0 (e.g. tau=1)")
        t = sp.nsimplify(tau)
        return GroupObjective("tilted", WEIGHT * sp.exp(t * ELL), sp.log(SUM) / t,
                              params={"tau": float(tau)}, weighted=True)
    c = DRO_STEP if step is None else step
    if not (np.isfinite(c) and c > 0):
        raise SpecError(f"dro step must be a finite number > 0, got {step!r}")
    return GroupObjective("dro", WEIGHT * ELL, params={"step": float(c)}, weighted=True,
                          dro_step=float(c))


def zipf_frequencies(count: int, exponent: float = 1.0) -> np.ndarray:
    """Group frequencies p_g ∝ g^−α, g = 1..count, normalised to sum 1."""
    weights = np.arange(1, count + 1, dtype=float) ** -float(exponent)
    return weights / weights.sum()


def escape_rates(objective: GroupObjective, scales: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """λ_g = 2 d_g s_g at the plateau ℓ_g = s_g²/2 (rate per unit t): an unlearned mode of
    strength w grows like e^{λ_g t} while every group is still near its reference loss."""
    s = np.asarray(scales, dtype=float)
    return 2 * objective.slopes(s**2 / 2, weights) * s


def parse(text: str) -> GroupObjective:
    """The objective of a label: ``mean``, ``power(q=1)``, ``tilted(tau=2)``, ``dro(step=0.01)``,
    ``root(eps=0.01)`` (:attr:`GroupObjective.label` round-trips). One-line ValueError."""
    match = re.fullmatch(r"\s*([a-z]+)\s*(?:\((.*)\))?\s*", str(text))
    if not match:
        raise SpecError(f"objective: cannot read {text!r} (e.g. 'mean', 'power(q=1)')")
    name, inner = match.group(1), match.group(2)
    params: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (inner or "").split(","))):
        key, _, value = part.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise SpecError(f"objective: {part!r} in {text!r} is not key=number") from None
    unknown = sorted(set(params) - {"q", "tau", "eps", "step"})
    if unknown:
        raise SpecError(f"objective: unknown parameter {unknown[0]!r} in {text!r}")
    return objective(name, **params)


def mode_emergence_time(obj: GroupObjective, scale: float, w0: float, weight: float = 1.0,
                        fraction: float = 0.5) -> float:
    """t at which one decoupled, balanced mode reaches ℓ = fraction·s²/2 from strength w0.

    With the mode's two factors equal, w = p·q and no other group changing, ℓ = ½(s − w)² and
    dw/dt = 2 d(ℓ) w (s − w), d = ∂F/∂ℓ at this group alone (other groups' ℓ held at 0 in
    ``outer``: exact for separable objectives), so t = ∫_{w0}^{w_f} dw / [2 d w (s − w)] with
    w_f = s(1 − √fraction). Mean loss: the logistic time ln[(w_f/w0)(s − w0)/(s − w_f)]/(2ps).
    """
    if obj.dro_step is not None:
        raise UsageError("Group DRO couples the groups through its weights; integrate it")
    w_end = scale * (1 - np.sqrt(fraction))

    def dt_du(u: float) -> float:  # u = ln w
        w = np.exp(u)
        d = obj.slopes(np.array([0.5 * (scale - w) ** 2]), np.array([weight]))[0]
        return 1.0 / (2 * d * (scale - w))

    from scipy.integrate import quad  # here, not at module level: sampling needs no SciPy

    value, _ = quad(dt_du, np.log(w0), np.log(w_end), limit=200)
    return float(value)


def balanced_strengths(a: np.ndarray, b: np.ndarray, x0: np.ndarray, y0: np.ndarray
                       ) -> np.ndarray:
    """Effective initial strength of each mode: w_g(0) = ‖(a_gᵀX₀ + b_gᵀY₀)/2‖².

    Linearised at small weights, mode g's overlaps p_g = a_gᵀX, q_g = b_gᵀY (k-vectors) obey
    ṗ_g = c q_g, q̇_g = c p_g (c = d_g s_g): the balanced part (p_g + q_g)/2 grows like e^{ct},
    the other part decays, so w_g = p_g·q_g ≈ ‖(p_g + q_g)/2‖² e^{2ct} once it dominates."""
    return np.sum(((a.T @ x0 + b.T @ y0) / 2) ** 2, axis=1)


def emergence_law(obj: GroupObjective, scales: ArrayLike, weights: ArrayLike,
                  strengths: ArrayLike, fraction: float = 0.5) -> np.ndarray:
    """Predicted emergence time t_g of every mode (ℓ_g = fraction·s_g²/2), each decoupled from
    the others (:func:`mode_emergence_time` from w_g(0) = ``strengths``, weight w_g). Near the
    plateau λ_g = 2 d_g s_g (:func:`escape_rates`), so t_g ≈ ln(s_g(1 − √fraction)/w_g(0))/λ_g;
    under the power family λ_g ∝ s_g^{1+2q}, and the spread t_last/t_first follows."""
    s, w, w0 = (np.asarray(v, dtype=float) for v in (scales, weights, strengths))
    return np.array([mode_emergence_time(obj, float(sg), float(w0g), float(wg), fraction)
                     for sg, wg, w0g in zip(s, w, w0, strict=True)])


Arrays = dict[str, np.ndarray]


class GroupedDynamics:
    """The dynamics of a group objective F on a grouped model's derived *reduced* dynamics.

    ``inner`` is a derived reduced flow or reduced GD map of a model with ``group_weights`` D
    (:mod:`dynamics.symbolic`); :class:`GroupedFullFlow` does the same on the full flow. Since
    ∇F = ∇L at D = diag(d), d_g = ∂F/∂ℓ_g (module docstring), every evaluation computes ℓ from
    the current point (the derived ``group_losses`` program), sets D = diag(d(ℓ, w)) and calls
    the inner dynamics:

    * flow:  dθ/dt = −∇L_D(θ), D = diag(d(ℓ(θ)))  (per unit t);
    * GD:    θ' = θ − η∇L_D(θ), D at the current point (a step advances t by η);
    * DRO:   w = softmax(z) is state: dz/dt = (c/η)ℓ in the flow, and in GD z' = z + cℓ *before*
      the step's weights (as torch Group DRO updates q, then takes the loss q·ℓ).

    The weights w are the frequencies p̂_g = diag of the spec's D (the mean loss over examples).
    The interface is the inner one's (``initial``, ``rhs`` / ``step``, ``loss_value``,
    ``overlaps``, ``group_losses``); the state gains ``z`` for DRO. ``loss_value`` is the mean
    loss Σ_g p̂_g ℓ_g, whatever F is trained.
    """

    def __init__(self, inner: Any, obj: GroupObjective, frequencies: ArrayLike,
                 name: str) -> None:
        self.inner, self.objective, self.name = inner, obj, name
        self.frequencies = np.asarray(frequencies, dtype=np.float64)
        self.dro = obj.dro_step is not None
        self.keys = tuple(inner.keys) + (("z",) if self.dro else ())

    def __getattr__(self, attr: str) -> Any:  # latex(), pairs, constants, ... of the inner one
        return getattr(self.inner, attr)

    def _split(self, state: Mapping[str, np.ndarray]) -> tuple[Arrays, np.ndarray | None]:
        core = {k: v for k, v in state.items() if k != "z"}
        return core, (np.asarray(state["z"]) if self.dro else None)

    def _weights(self, z: np.ndarray | None) -> np.ndarray:
        if z is None:
            return self.frequencies
        q = np.exp(z - z.max())
        return q / q.sum()

    def matrix(self, losses: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """D = diag(∂F/∂ℓ) at group losses ``losses`` (DRO: weights softmax(z))."""
        return np.diag(self.objective.slopes(losses, self._weights(z)))

    def _dz(self, losses: np.ndarray, lr: float) -> np.ndarray:
        if not lr > 0:
            raise UsageError("Group DRO's flow needs the step size η (dz/dt = (c/η)ℓ)")
        return self.objective.dro_increment(losses) / lr

    def initial(self, values: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        state, consts = self.inner.initial(values)
        if self.dro:
            state = dict(state) | {"z": np.zeros(len(self.frequencies))}
        return state, consts

    def group_losses(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]
                     ) -> np.ndarray:
        return self.inner.group_losses(self._split(state)[0], consts)

    def loss_value(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]
                   ) -> float:
        return float(self.frequencies @ self.group_losses(state, consts))

    def overlaps(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]) -> dict:
        return self.inner.overlaps(self._split(state)[0], consts)

    def rhs(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], *,
            lam: float, lr: float = 0.0) -> Arrays:
        """d(state)/dt per unit t (``lr`` = η enters DRO's dz/dt and a modified equation)."""
        core, z = self._split(state)
        losses = self.inner.group_losses(core, consts)
        out = self.inner.rhs(core, dict(consts) | {self.name: self.matrix(losses, z)}, lam=lam,
                             lr=lr)
        return dict(out) | ({"z": self._dz(losses, lr)} if self.dro else {})

    def step(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], *,
             lam: float, lr: float, mu: float = 0.0) -> Arrays:
        """One GD step of rate η = ``lr`` (reduced map), D from the current point."""
        core, z = self._split(state)
        losses = self.inner.group_losses(core, consts)
        if self.dro:
            z = z + self.objective.dro_increment(losses)
        new = self.inner.step(core, dict(consts) | {self.name: self.matrix(losses, z)},
                              lam=lam, lr=lr, mu=mu)
        return dict(new) | ({"z": z} if self.dro else {})


class GroupedFullFlow(GroupedDynamics):
    """:class:`GroupedDynamics` on the full-parameter flow (models that do not reduce): the
    ``values`` hold the parameters and constants, as :class:`dynamics.symbolic.FullFlow`'s do.
    Group DRO (whose weights are state) needs the reduced dynamics."""

    def __init__(self, inner: Any, obj: GroupObjective, frequencies: ArrayLike,
                 name: str) -> None:
        if obj.dro_step is not None:
            raise UsageError("Group DRO's theory needs reduced dynamics (its weights are state)")
        super().__init__(inner, obj, frequencies, name)

    def initial(self, values: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        raise TypeError("the full flow has no order-parameter state")

    def group_losses(self, values: Mapping[str, np.ndarray],  # type: ignore[override]
                     consts: object = None) -> np.ndarray:
        return self.inner.group_losses(values)

    def loss_value(self, values: Mapping[str, np.ndarray],  # type: ignore[override]
                   consts: object = None) -> float:
        return float(self.frequencies @ self.group_losses(values))

    def grad(self, values: Mapping[str, np.ndarray], lam: float) -> Arrays:
        """g_W = ∂L_D/∂W + λW at D = diag(d(ℓ)) (full parameters)."""
        d = self.matrix(self.inner.group_losses(values))
        return self.inner.grad(dict(values) | {self.name: d}, lam)

    def rhs(self, values: Mapping[str, np.ndarray], *,  # type: ignore[override]
            lam: float, lr: float = 0.0) -> Arrays:
        d = self.matrix(self.inner.group_losses(values))
        return self.inner.rhs(dict(values) | {self.name: d}, lam=lam, lr=lr)


def grouped(inner: Any, obj: GroupObjective, frequencies: ArrayLike, name: str,
            full: bool = False) -> GroupedDynamics:
    """``inner`` (a reduced flow/map, or with ``full`` a full flow) under objective ``obj``."""
    return (GroupedFullFlow if full else GroupedDynamics)(inner, obj, frequencies, name)
