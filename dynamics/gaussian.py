"""Gaussian integrals of an activation g, the one place committee machines get them from.

For jointly Gaussian fields λ ~ N(0, C) (DESIGN.md §3, "Committee machines"):

* I2(a, b)       = E[g(λ_a) g(λ_b)]                     (no ½: ε = ½ Σ c c' I2)
* J2(a, b)       = E[g′(λ_a) g′(λ_b)]
* I3(a, b, c)    = E[g′(λ_a) λ_b g(λ_c)]
* I4(a, b, c, d) = E[g′(λ_a) g′(λ_b) g(λ_c) g(λ_d)]

Every numeric function takes covariance matrices of shape (..., n, n) (n = 2, 2, 3, 4) and
returns an array of shape (...). Sources, per activation:

* ``erf`` (g(x) = erf(x/√2)): closed arcsin forms for all four (Saad & Solla 1995).
* ``linear``: I2 = C_ab, J2 = 1, I3 = C_bc, I4 = C_cd.
* ``relu``: I2 the arc-cosine kernel √(C_aa C_bb)/(2π)·(sin θ + (π − θ) cos θ), cos θ = ρ_ab;
  J2 = (π − θ)/(2π); I3 by Stein's lemma, I3 = C_ab E[g″(λ_a) g(λ_c)] + C_bc J2(a, c) with
  E[δ(λ_a) relu(λ_c)] = √(C_aa C_cc − C_ac²)/(2π C_aa); I4 by one smooth 1-d integral along
  the covariance path (Price's theorem; :func:`_relu_i4`), 16 Gauss–Legendre nodes, error
  ≲ 1e-9 relative (tests/dynamics/test_relu_i4.py).
* polynomials: exact, by Isserlis' (Wick's) theorem E[λ_i f] = Σ_j C_ij E[∂_j f], in SymPy.
* anything else (``tanh``, a user's expression): tensor Gauss–Hermite quadrature in the
  whitened variables z (λ = C^{1/2} z), ``QUAD_POINTS`` nodes per dimension (24 for I4).
  Measured error: tanh's I2 against 160 nodes, ρ = 0.5: 3e-12 at C_aa = 1, 4e-9 at 2, 8e-7
  at 4; coinciding fields (E[tanh(λ)²], C_aa = 1): 5.7e-9 (tests/dynamics/
  test_committee_epsilon_mc.py, test_committee_tanh.py); I4 ≲ 1e-7 at unit variances.
  Plain Gauss–Hermite across a kink is poor: relu's I4 by 24⁴ nodes was up to 13 % off
  (hence :func:`_relu_i4`).

SymPy forms of I2 (and of E[g(λ)²] as a function of the variance alone, which avoids the
singular derivative of the arcsin forms at ρ = 1) exist for erf, linear, relu and polynomials;
:mod:`dynamics.models.committee` differentiates them. ``activation(name_or_expr)`` returns an
:class:`Activation`; an unknown name or an expression whose integrals diverge raises
:class:`ActivationError` (one line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import sympy as sp

from .errors import SpecError

__all__ = ["ACTIVATIONS", "Activation", "ActivationError", "activation", "gaussian_moment"]

x = sp.Symbol("x", real=True)
QUAD_POINTS = {2: 60, 3: 40, 4: 24}


class ActivationError(SpecError):
    """Unknown activation, or one whose Gaussian integrals do not exist (one-line message)."""


# ----------------------------------------------------------------------------- Isserlis


def gaussian_moment(powers: tuple[int, ...], cov: sp.Matrix) -> sp.Expr:
    """E[Π_i λ_i^{p_i}] for λ ~ N(0, cov), exactly, by E[λ_i f] = Σ_j C_ij E[∂_j f] (Isserlis)."""
    @cache
    def m(p: tuple[int, ...]) -> sp.Expr:
        if sum(p) % 2:
            return sp.Integer(0)
        if sum(p) == 0:
            return sp.Integer(1)
        i = next(j for j, q in enumerate(p) if q)
        rest = list(p)
        rest[i] -= 1
        out = sp.Integer(0)
        for j, q in enumerate(rest):
            if q:
                d = list(rest)
                d[j] -= 1
                out += q * cov[i, j] * m(tuple(d))
        return sp.expand(out)

    return m(tuple(powers))


def _poly_expectation(expr: sp.Expr, fields: list[sp.Symbol], cov: sp.Matrix) -> sp.Expr:
    poly = sp.Poly(sp.expand(expr), *fields)
    return sp.expand(sum(c * gaussian_moment(p, cov) for p, c in poly.terms()))


def _cov_symbols(n: int) -> tuple[sp.Matrix, list[sp.Symbol]]:
    names = [sp.Symbol(f"c{i}{j}", real=True) for i in range(n) for j in range(i, n)]
    it = iter(names)
    cov = sp.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            cov[i, j] = cov[j, i] = next(it)
    return cov, names


def _entries(c: np.ndarray) -> list[np.ndarray]:
    n = c.shape[-1]
    return [c[..., i, j] for i in range(n) for j in range(i, n)]


# ----------------------------------------------------------------------------- quadrature


@cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2 * math.pi)


def _sqrtm(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of PSD matrices (..., n, n) (singular ones allowed)."""
    val, vec = np.linalg.eigh(c)
    return (vec * np.sqrt(np.clip(val, 0, None))[..., None, :]) @ np.swapaxes(vec, -1, -2)


def _quad(fns: list, c: np.ndarray, points: int | None = None) -> np.ndarray:
    """E[Π_i f_i(λ_i)] for λ ~ N(0, c), tensor Gauss–Hermite in whitened coordinates."""
    c = np.asarray(c, float)
    n = c.shape[-1]
    z, w = _hermite(points or QUAD_POINTS[n])
    grid = np.stack(np.meshgrid(*[z] * n, indexing="ij"), -1).reshape(-1, n)
    weight = np.prod(np.stack(np.meshgrid(*[w] * n, indexing="ij"), -1).reshape(-1, n), -1)
    s = _sqrtm(c)  # (..., n, n)
    lam = np.einsum("...ij,pj->...pi", s, grid)
    prod = np.ones(lam.shape[:-1])
    for i, f in enumerate(fns):
        prod = prod * f(lam[..., i])
    return prod @ weight


def _scale_corr(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """√(C_aa C_bb) and the correlation ρ = C_ab/√(C_aa C_bb) (clipped to [−1, 1]; 0 at 0)."""
    s = np.sqrt(c[..., 0, 0] * c[..., 1, 1])
    return s, np.clip(c[..., 0, 1] / np.where(s > 0, s, 1), -1, 1)


def _cond(c: np.ndarray, given: list[int], keep: list[int]) -> np.ndarray:
    """Covariance of the fields ``keep`` given the fields ``given`` = 0 (Schur complement;
    one or two given fields, inverted in closed form)."""
    ckk = c[..., keep, :][..., :, keep]
    if len(given) == 1:
        col = c[..., keep, given[0]]
        return ckk - col[..., :, None] * col[..., None, :] / np.maximum(
            c[..., given[0], given[0]], 1e-300)[..., None, None]
    i, j = given
    a, b, d = c[..., i, i], c[..., i, j], c[..., j, j]
    det = np.maximum(a * d - b * b, 1e-300)[..., None, None]
    ci, cj = c[..., keep, i], c[..., keep, j]
    quad = (d[..., None, None] * ci[..., :, None] * ci[..., None, :]
            - b[..., None, None] * (ci[..., :, None] * cj[..., None, :]
                                    + cj[..., :, None] * ci[..., None, :])
            + a[..., None, None] * cj[..., :, None] * cj[..., None, :])
    return ckk - quad / det


def _density0(c: np.ndarray) -> np.ndarray:
    """The N(0, c) density at 0: 1/√det(2π c) (c of shape (..., n, n))."""
    n = c.shape[-1]
    return 1 / np.sqrt((2 * np.pi) ** n * np.maximum(np.linalg.det(c), 1e-300))


def _orthant2(c: np.ndarray) -> np.ndarray:
    """P(λ_1 > 0, λ_2 > 0) = ¼ + arcsin(ρ)/(2π) (Sheppard)."""
    return 0.25 + np.arcsin(_scale_corr(c)[1]) / (2 * np.pi)


def _relu_kernel(c: np.ndarray) -> np.ndarray:
    """E[relu(λ_1) relu(λ_2)] (arc-cosine kernel)."""
    s, rho = _scale_corr(c)
    return s / (2 * np.pi) * (np.sqrt(1 - rho**2) + (np.pi - np.arccos(rho)) * rho)


def _step_step_relu(c: np.ndarray) -> np.ndarray:
    """E[Θ(λ_1) Θ(λ_2) relu(λ_3)] of a 3×3 covariance, by Stein's lemma on λ_3:
    Σ_j C_3j p_j(0) P(the other two > 0 | λ_j = 0)."""
    out = 0.0
    for j, rest in ((0, [1, 2]), (1, [0, 2]), (2, [0, 1])):
        cjj = np.maximum(c[..., j, j], 1e-300)
        out = out + (c[..., 2, j] / np.sqrt(2 * np.pi * cjj)
                     * _orthant2(_cond(c, [j], rest)))
    return out


RELU_I4_NODES = 16


def _relu_i4(c: np.ndarray, nodes: int = RELU_I4_NODES) -> np.ndarray:
    """I4 = E[Θ(λ_0) Θ(λ_1) relu(λ_2) relu(λ_3)] for ReLU, semi-analytically.

    Along C(t) = D + t(C − D), D = diag C, Price's theorem gives dI4/dt = Σ_{i<j} ΔC_ij
    E_t[∂_i∂_j f] (ΔC = C − D). Every E[∂_i∂_j f] is a closed form (a Gaussian density at 0
    times an orthant probability or ReLU kernel of the conditional covariance, reduced once more
    by Stein's lemma) except ∂_2∂_3 f = Θ_0Θ_1Θ_2Θ_3, the 4-d orthant probability P4(t), whose
    own t-derivative is closed (Plackett); so I4 = I4(D) + ΔC_23/16 + ∫_0^1 [Σ_{ij ≠ 23} ΔC_ij
    E_t[∂_i∂_j f] + ΔC_23 (1 − t) P4′(t)] dt, one smooth 1-d integral (Gauss–Legendre in u
    with t = sin(πu/2), which removes the 1/√(1 − t²) of coinciding fields). Error against
    MC and 2-d adaptive quadrature: tests/dynamics/test_relu_i4.py (≲ 1e-12 at 16 nodes: they
    move it by 1e-14 against 120 nodes)."""
    c = np.asarray(c, float)
    u, w = np.polynomial.legendre.leggauss(nodes)
    u, w = (u + 1) / 2, w / 2
    t = np.sin(np.pi * u / 2)
    w = w * np.pi / 2 * np.cos(np.pi * u / 2)
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    dmat = np.eye(4) * diag[..., None, :]
    dc = c - dmat
    ct = dmat[..., None, :, :] + t[:, None, None] * dc[..., None, :, :]  # (..., n, 4, 4)

    def phi1(i):
        return 1 / np.sqrt(2 * np.pi * np.maximum(ct[..., i, i], 1e-300))

    terms = (dc[..., None, 0, 1] * _density0(ct[..., :2, :2])
             * _relu_kernel(_cond(ct, [0, 1], [2, 3])))
    for i, other in ((0, 1), (1, 0)):
        for j, k in ((2, 3), (3, 2)):  # ∂_i∂_j f = δ_i Θ_other Θ_j relu_k
            terms = terms + (dc[..., None, i, j] * phi1(i)
                             * _step_step_relu(_cond(ct, [i], [other, j, k])))
    p4 = 0.0
    for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
        rest = [m for m in range(4) if m not in (i, j)]
        sub = ct[..., [i, j], :][..., :, [i, j]]
        p4 = p4 + dc[..., None, i, j] * _density0(sub) * _orthant2(_cond(ct, [i, j], rest))
    terms = terms + dc[..., None, 2, 3] * (1 - t) * p4
    start = np.sqrt(diag[..., 2] * diag[..., 3]) / (8 * np.pi)  # ¼ · E relu(λ_2) E relu(λ_3)
    return start + dc[..., 2, 3] / 16 + terms @ w


class ReluI2(sp.Function):
    """ReLU's arc-cosine kernel E[relu(λ_a) relu(λ_b)] = (1/2π)[√(C_aa C_bb − C_ab²)
    + (π − arccos ρ) C_ab] with its derivatives written cancelled: ∂/∂C_ab = (π − arccos ρ)/2π
    (Price), ∂/∂C_aa = √(C_aa C_bb − C_ab²)/(4π C_aa). The plain form's derivative is a
    difference of two terms ∝ 1/√(1 − ρ²), NaN at ρ = 1, where a symmetric plateau sits."""

    nargs = 3

    def fdiff(self, argindex=1):
        caa, cab, cbb = self.args
        root = sp.sqrt(caa * cbb - cab**2)
        if argindex == 1:
            return root / (4 * sp.pi * caa)
        if argindex == 3:
            return root / (4 * sp.pi * cbb)
        return (sp.pi - sp.acos(cab / sp.sqrt(caa * cbb))) / (2 * sp.pi)

    def _eval_evalf(self, prec):
        caa, cab, cbb = self.args
        s = sp.sqrt(caa * cbb)
        rho = cab / s
        return (s / (2 * sp.pi) * (sp.sqrt(1 - rho**2) + (sp.pi - sp.acos(rho)) * rho)
                ).evalf(prec)


def _relu_i2_numeric(caa, cab, cbb):
    c = np.stack([np.stack([caa, cab], -1), np.stack([cab, cbb], -1)], -2)
    return _named("relu").i2(c)


#: numpy versions for lambdify: ReLU's kernel, and sqrt / arccos clipped to their domain (a
#: correlation of exactly ±1 can come out 1 + 1e-16 in floating point)
NUMPY_MODULES = {"ReluI2": _relu_i2_numeric,
                 "sqrt": lambda v: np.sqrt(np.maximum(v, 0)),
                 "acos": lambda v: np.arccos(np.clip(v, -1, 1))}


# ----------------------------------------------------------------------------- activations


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation g and its Gaussian integrals (module docstring).

    ``expr`` is g as a SymPy expression in :data:`x`; ``name`` its label in specs.
    """

    name: str
    expr: sp.Expr
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- elementwise numpy functions
    @property
    def g(self):
        return self._fn("g", self.expr)

    @property
    def dg(self):
        return self._fn("dg", sp.diff(self.expr, x))

    @property
    def d2g(self):
        return self._fn("d2g", sp.diff(self.expr, x, 2))

    def _fn(self, key: str, expr: sp.Expr):
        if key not in self._cache:
            f = sp.lambdify(x, expr, modules=[{"erf": _erf}, "numpy"])
            self._cache[key] = lambda v, f=f: np.broadcast_to(f(v), np.shape(v)).astype(float)
        return self._cache[key]

    @property
    def kind(self) -> str:
        """``erf``, ``linear``, ``relu``, ``polynomial`` or ``quadrature``."""
        if self.name in ("erf", "linear", "relu"):
            return self.name
        return "polynomial" if self.expr.is_polynomial(x) else "quadrature"

    # ---- symbolic I2 (for the derived flow)
    def i2_sym(self, caa: sp.Expr, cab: sp.Expr, cbb: sp.Expr) -> sp.Expr:
        """E[g(λ_a) g(λ_b)] as a SymPy expression of the covariance entries (a ≠ b)."""
        k = self.kind
        if k == "erf":
            return 2 / sp.pi * sp.asin(cab / sp.sqrt((1 + caa) * (1 + cbb)))
        if k == "linear":
            return cab
        if k == "relu":
            return ReluI2(caa, cab, cbb)
        if k == "polynomial":
            cov, names = _cov_symbols(2)
            a, b = sp.symbols("la lb", real=True)
            e = _poly_expectation(self.expr.subs(x, a) * self.expr.subs(x, b), [a, b], cov)
            return e.subs(dict(zip(names, (caa, cab, cbb), strict=True), simultaneous=True))
        raise ActivationError(f"activation {self.name!r} has no closed-form I2 (quadrature only)")

    def i2_diag_sym(self, caa: sp.Expr) -> sp.Expr:
        """E[g(λ)²] for λ ~ N(0, caa), a SymPy expression."""
        k = self.kind
        if k == "erf":
            return 2 / sp.pi * sp.asin(caa / (1 + caa))
        if k == "linear":
            return caa
        if k == "relu":
            return caa / 2
        if k == "polynomial":
            a = sp.Symbol("la", real=True)
            return _poly_expectation(self.expr.subs(x, a) ** 2, [a], sp.Matrix([[caa]]))
        raise ActivationError(f"activation {self.name!r} has no closed-form I2 (quadrature only)")

    @property
    def symbolic(self) -> bool:
        return self.kind != "quadrature"

    # ---- numeric integrals
    def i2(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, float)
        k = self.kind
        if k == "erf":
            return 2 / np.pi * np.arcsin(c[..., 0, 1] / np.sqrt((1 + c[..., 0, 0]) *
                                                                  (1 + c[..., 1, 1])))
        if k == "linear":
            return c[..., 0, 1]
        if k == "relu":
            s, rho = _scale_corr(c)
            return s / (2 * np.pi) * (np.sqrt(1 - rho**2) + (np.pi - np.arccos(rho)) * rho)
        if k == "polynomial":
            return self._poly("i2", c)
        return _quad([self.g, self.g], c)

    def j2(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, float)
        k = self.kind
        if k == "erf":
            a, b, ab = c[..., 0, 0], c[..., 1, 1], c[..., 0, 1]
            return 2 / np.pi / np.sqrt(1 + a + b + a * b - ab**2)
        if k == "linear":
            return np.ones(c.shape[:-2])
        if k == "relu":
            _, rho = _scale_corr(c)
            return (np.pi - np.arccos(rho)) / (2 * np.pi)
        if k == "polynomial":
            return self._poly("j2", c)
        return _quad([self.dg, self.dg], c)

    def i3(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, float)
        k = self.kind
        if k == "erf":
            aa, ab, ac, bc, cc = (c[..., 0, 0], c[..., 0, 1], c[..., 0, 2], c[..., 1, 2],
                                  c[..., 2, 2])
            lam3 = (1 + aa) * (1 + cc) - ac**2
            return 2 / np.pi * (bc * (1 + aa) - ab * ac) / ((1 + aa) * np.sqrt(lam3))
        if k == "linear":
            return c[..., 1, 2]
        if k == "relu":  # Stein: C_ab E[δ(λ_a) relu(λ_c)] + C_bc E[H(λ_a) H(λ_c)]
            aa, ab, ac, bc, cc = (c[..., 0, 0], c[..., 0, 1], c[..., 0, 2], c[..., 1, 2],
                                  c[..., 2, 2])
            delta = np.sqrt(np.clip(aa * cc - ac**2, 0, None)) / (2 * np.pi * aa)
            sub = c[..., [0, 2], :][..., :, [0, 2]]
            return ab * delta + bc * self.j2(sub)
        if k == "polynomial":
            return self._poly("i3", c)
        # Stein's lemma on λ_b keeps the quadrature two-dimensional and smooth
        sub = c[..., [0, 2], :][..., :, [0, 2]]
        return (c[..., 0, 1] * _quad([self.d2g, self.g], sub)
                + c[..., 1, 2] * _quad([self.dg, self.dg], sub))

    def i4(self, c: np.ndarray, points: int | None = None) -> np.ndarray:
        c = np.asarray(c, float)
        k = self.kind
        if k == "erf":  # Saad & Solla (1995), appendix
            c11, c22, c33, c44 = (c[..., i, i] for i in range(4))
            c12, c13, c14 = c[..., 0, 1], c[..., 0, 2], c[..., 0, 3]
            c23, c24, c34 = c[..., 1, 2], c[..., 1, 3], c[..., 2, 3]
            lam4 = (1 + c11) * (1 + c22) - c12**2
            lam0 = (lam4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22)
                    + c12 * c13 * c24 + c12 * c14 * c23)
            lam1 = lam4 * (1 + c33) - c23**2 * (1 + c11) - c13**2 * (1 + c22) + 2 * c12 * c13 * c23
            lam2 = lam4 * (1 + c44) - c24**2 * (1 + c11) - c14**2 * (1 + c22) + 2 * c12 * c14 * c24
            return 4 / np.pi**2 / np.sqrt(lam4) * np.arcsin(lam0 / np.sqrt(lam1 * lam2))
        if k == "linear":
            return c[..., 2, 3]
        if k == "polynomial":
            return self._poly("i4", c)
        if k == "relu" and points is None:
            return _relu_i4(c)
        return _quad([self.dg, self.dg, self.g, self.g], c, points)

    def _poly(self, which: str, c: np.ndarray) -> np.ndarray:
        if which not in self._cache:
            n = {"i2": 2, "j2": 2, "i3": 3, "i4": 4}[which]
            cov, names = _cov_symbols(n)
            lam = sp.symbols(f"l0:{n}", real=True)
            g = [self.expr.subs(x, v) for v in lam]
            dg = [sp.diff(self.expr, x).subs(x, v) for v in lam]
            integrand = {"i2": lambda: g[0] * g[1], "j2": lambda: dg[0] * dg[1],
                         "i3": lambda: dg[0] * lam[1] * g[2],
                         "i4": lambda: dg[0] * dg[1] * g[2] * g[3]}[which]()
            e = _poly_expectation(integrand, list(lam), cov)
            self._cache[which] = sp.lambdify(names, e, "numpy")
        out = self._cache[which](*_entries(c))
        return np.broadcast_to(out, c.shape[:-2]).astype(float)


def _erf(v):
    from scipy.special import erf

    return erf(v)


_SQ2 = sp.sqrt(2)
ACTIVATIONS: dict[str, sp.Expr] = {
    "erf": sp.erf(x / _SQ2),
    "relu": sp.Max(x, 0),
    "linear": x,
    "tanh": sp.tanh(x),
}


@cache
def _named(name: str) -> Activation:
    return Activation(name, ACTIVATIONS[name])


def activation(spec: str | sp.Expr, name: str | None = None) -> Activation:
    """The :class:`Activation` of a built-in name (``erf``, ``relu``, ``linear``, ``tanh``) or
    of a one-variable SymPy expression in :data:`dynamics.gaussian.x` (checked: its Gaussian
    integrals must be finite, i.e. g grows at most polynomially)."""
    if isinstance(spec, str):
        if spec not in ACTIVATIONS:
            raise ActivationError(f"unknown activation {spec!r} (known: "
                                  f"{', '.join(ACTIVATIONS)}; or a SymPy expression in x)")
        return _named(spec)
    expr = sp.sympify(spec)
    free = expr.free_symbols - {x}
    if free:
        other = sorted(map(str, free))[0]
        raise ActivationError(f"activation {expr} must depend on x only, not on {other}")
    act = Activation(name or str(expr), expr)
    if act.kind == "quadrature":
        # E[g(λ)²] must converge: compare growth at large |x| with a polynomial's
        for big in (30.0, -30.0):
            with np.errstate(all="ignore"):
                v = act.g(np.array([big]))[0] ** 2 * math.exp(-big * big / 4)
            if not np.isfinite(v) or v > 1e3:
                raise ActivationError(f"activation {expr}: its Gaussian integrals do not "
                                      "converge (g grows faster than exp(x²/4))")
        probe = act.i2(np.array([[1.0, 0.5], [0.5, 1.0]]))
        if not np.isfinite(probe):
            raise ActivationError(f"activation {expr}: its Gaussian integrals are not finite")
    return act


def fields_cov(c: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    """Sub-covariance C[idx, idx] (helper for callers building I-integral arguments)."""
    return c[..., list(idx), :][..., :, list(idx)]

