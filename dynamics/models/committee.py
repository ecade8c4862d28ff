"""Committee machines on Gaussian inputs: the loss of the order parameters, its reduced gradient
flow (derived by the chain rule), online SGD in the N → ∞ limit, and the symmetric plateau.

Model (Saad & Solla 1995; Goldt et al. 2019). Inputs x ~ N(0, I_N), fresh at every step.
Student φ(x) = Σ_k v_k g(w_k·x/√N) (k = 1..K), teacher φ*(x) = Σ_m a_m g(w*_m·x/√N) + σ_ζ ζ
(m = 1..M). Normalised weights J = W/√N; order parameters Q = J Jᵀ (K×K), R = J J*ᵀ (K×M),
T = J* J*ᵀ (M×M), and v, a. With C = [[Q, R], [Rᵀ, T]] and I2 from :mod:`dynamics.gaussian`,

    ε(Q, R, T, v, a) = ½ E[(φ − φ*)²] = ½ [Σ_kl v_k v_l I2(k,l) − 2 Σ_km v_k a_m I2(k,m)
                                          + Σ_mn a_m a_n I2(m,n)]          (+ σ_ζ²/2, apart)

is built once as a SymPy expression of the entries (K, M fixed when the spec is loaded).

**Reduced gradient flow** (``flow``), in t with dJ/dt = −∇_J ε (and dv/dt = −∂ε/∂v when the
second layer is trained). Since ε depends on J only through the contractions Q = JJᵀ and
R = JJ*ᵀ, the chain rule gives ∇_J ε = D J + P J* with D_kl = ∂ε/∂Q_kl (k ≠ l, each pair one
symbol), D_kk = 2 ∂ε/∂Q_kk and P = ∂ε/∂R — derived by SymPy from ε, no hand-written committee
equations — hence

    dQ/dt = −(D Q + P Rᵀ) − (D Q + P Rᵀ)ᵀ,    dR/dt = −(D R + P T).

:func:`gram_flow` is that chain rule for any loss of a Gram matrix.

**Online SGD** (``online``, rate η, B fresh samples per step): w_k ← w_k + (η/B) Σ_b Δ_b v_k
g′(λ_kb) x_b/√N, Δ = φ* − φ; the second layer (when trained) takes steps η/N. In the N → ∞
limit, in t = η·step/N (Saad & Solla's α = step/N = t/η),

    dQ_kl/dt = (flow) + (η/B) v_k v_l [Σ_pq c_p c_q I4(k, l, p, q) + σ_ζ² J2(k, l)],

p, q over the K + M fields with c = (−v, a); dR/dt and dv/dt are the flow's.

**Plateau** (:func:`plateau`): Newton on the reduced vector field from where the exactly
permutation-symmetric path comes to rest finds the symmetric fixed point y*; λ is the largest
real eigenvalue of its Jacobian; a start at asymmetry δ₀ leaves it at
t_esc ≈ t₀ + (1/λ) ln(1/δ₀); with δ₀ ∝ N^{−1/2}, t_esc ≈ (1/2λ) ln N for large N. At η > 0 the
path first passes a second symmetric fixed point where the students coincide (Q_kl = Q_kk),
unstable inside the symmetric subspace too; it is not the plateau the escape leaves from, but
while the path drifts away from it the asymmetry grows faster than at y*, so at moderate N the
slope against ln N lies between 1/(2λ) there and 1/(2λ) at y* (README, issue 20). How far the
path gets from that point before the escape depends on the init: from σ = 0.1 it is a quarter
of the way to y* by t = 50; from σ = 10⁻³ it arrives within ~10⁻⁶ of it and, at η = 0.5, 1,
escapes from there long before drifting to y* (Newton from the curve's state then finds it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from ..errors import SpecError
from ..gaussian import NUMPY_MODULES, Activation, activation
from ..phases import emergence_time

__all__ = [
    "CommitteeError",
    "CommitteeModel",
    "CommitteeSpec",
    "Curve",
    "Plateau",
    "epsilon",
    "gram_flow",
    "integrate",
    "is_symmetric",
    "load",
    "model_of",
    "plateau",
    "sample",
    "sample_state",
    "symmetric_path_end",
    "symmetrize",
    "vector_field",
]

KIND = "committee"
SECOND_LAYER = ("fixed", "trained")


class CommitteeError(SpecError):
    """A committee spec or option is invalid (one-line message naming the key)."""


# ============================================================================ the spec


@dataclass(frozen=True, eq=False)
class CommitteeSpec:
    """A committee-machine problem (module docstring): teacher ``Wt`` (M×N), ``a`` (M),
    student ``W0`` (K×N), ``v0`` (K), ``noise`` σ_ζ ≥ 0, ``second_layer`` fixed|trained."""

    activation: str
    Wt: np.ndarray
    a: np.ndarray
    W0: np.ndarray
    v0: np.ndarray
    noise: float = 0.0
    second_layer: str = "fixed"
    kind: str = KIND

    def __post_init__(self) -> None:
        fix = object.__setattr__
        act = str(self.activation)
        activation(act)  # raises ActivationError (a ValueError) for an unknown name
        fix(self, "activation", act)
        for key, ndim in (("Wt", 2), ("a", 1), ("W0", 2), ("v0", 1)):
            arr = np.asarray(getattr(self, key), dtype=float)
            if arr.ndim != ndim:
                raise CommitteeError(f"spec key {key!r}: expected {ndim} dimensions, got shape "
                                     f"{arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise CommitteeError(f"spec key {key!r}: contains NaN or inf")
            fix(self, key, arr)
        k, n = self.W0.shape
        m, nt = self.Wt.shape
        if k == 0 or m == 0:
            raise CommitteeError(f"committee needs K >= 1 students and M >= 1 teachers (got "
                                 f"K = {k}, M = {m})")
        if n != nt:
            raise CommitteeError(f"spec keys 'W0' {self.W0.shape} and 'Wt' {self.Wt.shape} "
                                 "disagree in N")
        if self.a.shape != (m,):
            raise CommitteeError(f"spec keys 'a' {self.a.shape} and 'Wt' {self.Wt.shape} "
                                 "disagree in M")
        if self.v0.shape != (k,):
            raise CommitteeError(f"spec keys 'v0' {self.v0.shape} and 'W0' {self.W0.shape} "
                                 "disagree in K")
        noise = float(self.noise)
        if not (np.isfinite(noise) and noise >= 0):
            raise CommitteeError(f"spec key 'noise' must be >= 0, got {noise:g}")
        fix(self, "noise", noise)
        if self.second_layer not in SECOND_LAYER:
            raise CommitteeError(f"spec key 'second_layer' must be fixed or trained, got "
                                 f"{self.second_layer!r}")

    @property
    def K(self) -> int:
        return self.W0.shape[0]

    @property
    def M(self) -> int:
        return self.Wt.shape[0]

    @property
    def N(self) -> int:
        return self.W0.shape[1]

    @property
    def trained(self) -> bool:
        return self.second_layer == "trained"

    @property
    def model(self) -> CommitteeModel:
        return model_of(self.activation, self.K, self.M, self.trained)

    def order_parameters(self, w: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(Q, R, T) = (WWᵀ, WW*ᵀ, W*W*ᵀ)/N of ``w`` (default the initial W0)."""
        w = self.W0 if w is None else w
        n = self.N
        return w @ w.T / n, w @ self.Wt.T / n, self.Wt @ self.Wt.T / n

    def initial_state(self) -> np.ndarray:
        q, r, _ = self.order_parameters()
        return self.model.pack(q, r, self.v0)

    @property
    def T(self) -> np.ndarray:
        return self.Wt @ self.Wt.T / self.N

    @property
    def l_ref(self) -> float:
        """½ E[φ*²] without the noise (the zero student's ε)."""
        k = self.K
        return epsilon(self.activation, np.zeros((k, k)), np.zeros((k, self.M)), self.T,
                       np.zeros(k), self.a)

    @property
    def noise_floor(self) -> float:
        """σ_ζ²/2, the constant the output noise adds to ε (reported apart)."""
        return self.noise**2 / 2

    def initial_loss(self) -> float:
        return float(self.model.loss(self.initial_state(), self.T, self.a, self.v0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"kind": np.array(KIND), "activation": np.array(self.activation),
                "Wt": self.Wt, "a": self.a, "W0": self.W0, "v0": self.v0,
                "noise": np.array(self.noise), "second_layer": np.array(self.second_layer)}

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.arrays())

    def __eq__(self, other: object) -> bool:
        """Equal arrays and settings (``load(save(spec)) == spec``)."""
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.arrays(), other.arrays()  # type: ignore[attr-defined]
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]

    def describe(self) -> str:
        return (f"committee K={self.K} M={self.M} N={self.N} g={self.activation} "
                f"second layer {self.second_layer}, noise {self.noise:g}")


def from_arrays(data: Mapping[str, object]) -> CommitteeSpec:
    """A spec from ``.npz`` entries (one-line :class:`CommitteeError` for a missing key)."""
    for key in ("activation", "Wt", "a", "W0", "v0"):
        if key not in data:
            raise CommitteeError(f"committee spec: missing key {key!r}")
    scalar = {k: np.asarray(data[k]).item() for k in ("activation", "noise", "second_layer")
              if k in data}
    return CommitteeSpec(activation=str(scalar["activation"]), Wt=data["Wt"], a=data["a"],
                         W0=data["W0"], v0=data["v0"], noise=float(scalar.get("noise", 0.0)),
                         second_layer=str(scalar.get("second_layer", "fixed")))


def load(path: str | Path) -> CommitteeSpec:
    with np.load(path, allow_pickle=False) as f:
        return from_arrays({k: f[k] for k in f.files})


def sample(students: int, teachers: int, n: int, activation: str = "erf", init: float = 1e-3,
           seed: int = 0, noise: float = 0.0, second_layer: str = "fixed",
           z: np.ndarray | None = None) -> CommitteeSpec:
    """Teacher rows with w*_m·w*_m'/N = δ_mm' (T = I), a = 1; student entries i.i.d. N(0, init²),
    v0 = 1. Needs M ≤ N. With ``z`` (K×M) the students' projections on the teacher directions
    u_m = w*_m/√N are set to init·z (R(0) = init·z/√N exactly) and the rest of each row is the
    i.i.d. draw projected off the teacher span — the same law as i.i.d. rows when z ~ N(0, 1),
    so one z can couple random starts across N."""
    if students < 1 or teachers < 1:
        raise CommitteeError(f"committee needs K >= 1 students and M >= 1 teachers (got "
                             f"K = {students}, M = {teachers})")
    if teachers > n:
        raise CommitteeError(f"T = I needs M <= N (got M = {teachers}, N = {n})")
    if not init > 0:
        raise CommitteeError(f"--init must be > 0, got {init:g}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, teachers)))
    wt = q.T * np.sqrt(n)
    w0 = rng.normal(scale=init, size=(students, n))
    if z is not None:
        z = np.asarray(z, float)
        if z.shape != (students, teachers):
            raise CommitteeError(f"z must have shape (K, M) = ({students}, {teachers}), got "
                                 f"{z.shape}")
        u = q.T  # orthonormal teacher directions
        w0 = init * z @ u + w0 - (w0 @ u.T) @ u
    return CommitteeSpec(activation, wt, np.ones(teachers), w0, np.ones(students), noise,
                         second_layer)


def sample_state(k: int, m: int, n: int, init: float, rng: np.random.Generator,
                 z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Initial (Q, R) of :func:`sample`'s student (rows i.i.d. N(0, init²·I_N)) against a
    teacher with T = I, drawn exactly without the N-dimensional rows: the rows' projections on
    the teacher directions u_m = w*_m/√N are σz (z ~ N(0, 1), K×M, or the given ``z``), the
    rest is a Gaussian in N − M dimensions, so

        R = σ z/√N,    Q = (σ²/N)(z zᵀ + W),   W ~ Wishart_K(N − M, I)  (Bartlett).

    Cost independent of N, so the online ODE can start from an exact finite-N draw at any N."""
    if z is None:
        z = rng.normal(size=(k, m))
    df = n - m
    if df < k:
        raise CommitteeError(f"sample_state needs N - M >= K (got N = {n}, M = {m}, K = {k})")
    # Bartlett: W = L Lᵀ, L lower triangular, L_ii² ~ χ²(df − i), L_ij ~ N(0, 1) below
    low = np.tril(rng.normal(size=(k, k)), -1)
    low[np.diag_indices(k)] = np.sqrt(rng.chisquare(df - np.arange(k)))
    sigma = float(init)
    return sigma**2 / n * (z @ z.T + low @ low.T), sigma * z / np.sqrt(n)


# ============================================================================ the model


def epsilon(act: str | Activation | sp.Expr, q: np.ndarray, r: np.ndarray, t: np.ndarray,
            v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """ε = ½ cᵀ I2(C) c with c = (v, −a), C = [[Q, R], [Rᵀ, T]], evaluated numerically (any
    activation: a name, an :class:`Activation` or a SymPy expression in x, quadrature ones
    included); Q, R, v may carry leading batch axes (..., K, K)."""
    g = act if isinstance(act, Activation) else activation(act)
    q, r, v = np.asarray(q, float), np.asarray(r, float), np.asarray(v, float)
    batch = np.broadcast_shapes(q.shape[:-2], r.shape[:-2], v.shape[:-1])
    tt = np.broadcast_to(t, batch + np.shape(t))
    c = np.concatenate([np.concatenate([np.broadcast_to(q, batch + q.shape[-2:]),
                                        np.broadcast_to(r, batch + r.shape[-2:])], -1),
                        np.concatenate([np.swapaxes(np.broadcast_to(r, batch + r.shape[-2:]),
                                                    -1, -2), tt], -1)], -2)
    d = np.diagonal(c, axis1=-2, axis2=-1)
    pair = np.stack([np.stack([d[..., :, None] + 0 * c, c], -1),
                     np.stack([c, d[..., None, :] + 0 * c], -1)], -2)  # (..., n, n, 2, 2)
    coef = np.concatenate([np.broadcast_to(v, batch + v.shape[-1:]),
                           -np.broadcast_to(a, batch + np.shape(a))], -1)
    return 0.5 * np.einsum("...i,...ij,...j->...", coef, g.i2(pair), coef)


def gram_flow(dq: np.ndarray, dr: np.ndarray, q: np.ndarray, r: np.ndarray,
              t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chain rule through the contractions: for a loss ε(Q, R) with Q = JJᵀ, R = JJ*ᵀ,
    ``dq[k, l]`` = ∂ε/∂Q_kl (one symbol per pair k ≤ l, mirrored) and ``dr`` = ∂ε/∂R, the flow
    dJ/dt = −∇_J ε = −(D J + P J*) (D = dq off the diagonal, 2·dq on it; P = dr) moves the
    contractions as dQ/dt = −(DQ + PRᵀ) − (DQ + PRᵀ)ᵀ, dR/dt = −(DR + PT). Units: per unit t."""
    d = dq + np.diag(np.diag(dq))
    g = d @ q + dr @ r.T
    return -(g + g.T), -(d @ r + dr @ t)


@dataclass(frozen=True, eq=False)
class CommitteeModel:
    """ε of (Q, R, T, v, a) for fixed K, M, g, and its derived reduced dynamics.

    State vector y = (Q_kl for k ≤ l, R row-major, v if the second layer is trained).
    """

    act: Activation
    K: int
    M: int
    trained: bool

    def __post_init__(self) -> None:
        if not self.act.symbolic:  # tanh, a user's expression: ε and its gradient numerically
            fix = object.__setattr__
            fix(self, "epsilon", None)
            fix(self, "symbols", None)
            fix(self, "_loss", self._numeric_loss)
            fix(self, "_grad", self._numeric_grad)
            fix(self, "_iu", np.triu_indices(self.K))
            return
        k, m = self.K, self.M
        q = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"Q{min(i, j)}_{max(i, j)}", real=True))
        r = sp.Matrix(k, m, lambda i, j: sp.Symbol(f"R{i}_{j}", real=True))
        t = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"T{min(i, j)}_{max(i, j)}", real=True))
        v = sp.Matrix(k, 1, lambda i, _: sp.Symbol(f"v{i}", real=True))
        a = sp.Matrix(m, 1, lambda i, _: sp.Symbol(f"a{i}", real=True))
        i2, i2d = self.act.i2_sym, self.act.i2_diag_sym

        def pair(diag_x, diag_y, cross, same):  # E[g g], the diagonal as a function of C_aa
            return i2d(diag_x) if same else i2(diag_x, cross, diag_y)

        eps = 0
        for i in range(k):
            for j in range(k):
                eps += v[i] * v[j] * pair(q[i, i], q[j, j], q[i, j], i == j)
            for j in range(m):
                eps -= 2 * v[i] * a[j] * i2(q[i, i], r[i, j], t[j, j])
        for i in range(m):
            for j in range(m):
                eps += a[i] * a[j] * pair(t[i, i], t[j, j], t[i, j], i == j)
        eps = eps / 2
        qsyms = [q[i, j] for i in range(k) for j in range(i, k)]
        rsyms = list(r)
        vsyms = list(v)
        state = qsyms + rsyms + (vsyms if self.trained else [])
        consts = [t[i, j] for i in range(m) for j in range(i, m)] + list(a) + \
            ([] if self.trained else vsyms)
        grads = [sp.diff(eps, s) for s in qsyms + rsyms + vsyms]
        fix = object.__setattr__
        fix(self, "epsilon", eps)
        fix(self, "symbols", (qsyms, rsyms, vsyms, consts))
        args = state + consts
        modules = [NUMPY_MODULES, "numpy"]
        fix(self, "_loss", sp.lambdify(args, eps, modules, cse=True))
        fix(self, "_grad", sp.lambdify(args, grads, modules, cse=True))
        fix(self, "_iu", np.triu_indices(k))

    # ---------------------------------------------------------------- quadrature activations
    def _numeric_parts(self, args):
        """(C, c) from the flat argument list of ``_loss``/``_grad``: the (K+M)² covariance
        of the fields and the coefficients c = (v, −a)."""
        k, m = self.K, self.M
        ns = self.state_size
        y, rest = np.asarray(args[:ns], float), np.asarray(args[ns:], float)
        nt = m * (m + 1) // 2
        t = np.zeros((m, m))
        t[np.triu_indices(m)] = rest[:nt]
        t = t + np.triu(t, 1).T
        a = rest[nt:nt + m]
        q, r, v = self.unpack(y, None if self.trained else rest[nt + m:nt + m + k])
        return np.block([[q, r], [r.T, t]]), np.concatenate([v, -a])

    def _numeric_loss(self, *args) -> float:
        """ε = ½ Σ_ab c_a c_b I2(a, b) by the activation's quadrature (:func:`epsilon`)."""
        c, coef = self._numeric_parts(args)
        k = self.K
        return float(epsilon(self.act, c[:k, :k], c[:k, k:], c[k:, k:], coef[:k], -coef[k:]))

    def _numeric_grad(self, *args) -> list[float]:
        """∂ε/∂(Q_kl for k ≤ l, R, v) by Price's theorem, the integrals by quadrature:
        ∂I2(a,b)/∂C_ab = J2(a,b), ∂I2(a,b)/∂C_aa = ½E[g″(λ_a) g(λ_b)] (a ≠ b) and
        dE[g(λ_a)²]/dC_aa = E[g′² + g g″]; so ∂ε/∂Q_kl = v_k v_l J2(k,l) (k < l),
        ∂ε/∂Q_kk = ½v_k²(J2(k,k) + H(k,k)) + ½v_k Σ_{b≠k} c_b H(k,b) with H(a,b) =
        E[g″(λ_a) g(λ_b)], ∂ε/∂R_km = −v_k a_m J2(k, m), ∂ε/∂v_k = Σ_b c_b I2(k, b)."""
        from ..gaussian import _quad

        c, coef = self._numeric_parts(args)
        k = self.K
        d = np.diagonal(c)
        pair = np.stack([np.stack([d[:, None] + 0 * c, c], -1),
                         np.stack([c, d[None, :] + 0 * c], -1)], -2)  # (n, n, 2, 2)
        j2 = self.act.j2(pair)
        h = _quad([self.act.d2g, self.act.g], pair)
        i2 = self.act.i2(pair)
        vv = coef[:k]
        dq = np.outer(vv, vv) * j2[:k, :k]
        off = h[:k] * coef[None, :]
        off[np.arange(k), np.arange(k)] = 0
        np.fill_diagonal(dq, 0.5 * vv**2 * (np.diag(j2)[:k] + np.diag(h)[:k])
                         + 0.5 * vv * off.sum(1))
        dr = np.outer(vv, coef[k:]) * j2[:k, k:]
        dv = i2[:k] @ coef
        return list(dq[self._iu]) + list(dr.ravel()) + list(dv)

    # ---------------------------------------------------------------- packing
    @property
    def state_size(self) -> int:
        """K(K+1)/2 + KM (+ K when the second layer learns): independent of N."""
        k, m = self.K, self.M
        return k * (k + 1) // 2 + k * m + (k if self.trained else 0)

    def pack(self, q: np.ndarray, r: np.ndarray, v: np.ndarray) -> np.ndarray:
        parts = [np.asarray(q)[self._iu], np.ravel(r)]
        if self.trained:
            parts.append(np.ravel(v))
        return np.concatenate(parts).astype(float)

    def unpack(self, y: np.ndarray, v: np.ndarray | None = None):
        """(Q, R, v) from a state vector (v = the fixed ``v`` when not trained)."""
        k, m = self.K, self.M
        nq = k * (k + 1) // 2
        q = np.zeros((k, k))
        q[self._iu] = y[:nq]
        q = q + np.triu(q, 1).T
        r = np.reshape(y[nq:nq + k * m], (k, m))
        if self.trained:
            v = y[nq + k * m:]
        return q, r, np.asarray(v, float)

    def _args(self, y, t, a, v):
        m = self.M
        consts = list(np.asarray(t)[np.triu_indices(m)]) + list(a)
        if not self.trained:
            consts += list(v)
        return list(y) + consts

    # ---------------------------------------------------------------- dynamics
    def loss(self, y: np.ndarray, t: np.ndarray, a: np.ndarray,
             v: np.ndarray | None = None) -> float:
        """ε(Q, R, T, v, a) (no noise term)."""
        return float(self._loss(*self._args(y, t, a, v)))

    def flow(self, y: np.ndarray, t: np.ndarray, a: np.ndarray,
             v: np.ndarray | None = None) -> np.ndarray:
        """dy/dt of the population gradient flow dJ/dt = −∇_J ε (module docstring)."""
        k, m = self.K, self.M
        g = np.asarray(self._grad(*self._args(y, t, a, v)), float)
        nq = k * (k + 1) // 2
        dq = np.zeros((k, k))
        dq[self._iu] = g[:nq]
        dq = dq + np.triu(dq, 1).T
        dr = g[nq:nq + k * m].reshape(k, m)
        q, r, _ = self.unpack(y, v)
        dqdt, drdt = gram_flow(dq, dr, q, r, t)
        parts = [dqdt[self._iu], drdt.ravel()]
        if self.trained:
            parts.append(-g[nq + k * m:])
        return np.concatenate(parts)

    def online_term(self, y: np.ndarray, t: np.ndarray, a: np.ndarray,
                    v: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
        """The bracket multiplying η/B in dQ_kl/dt: v_k v_l [Σ_pq c_p c_q I4(k,l,p,q) + σ² J2(k,l)]
        (zero for R and v); as a state vector."""
        k, m = self.K, self.M
        q, r, vv = self.unpack(y, v)
        c = np.block([[q, r], [r.T, t]])
        coef = np.concatenate([-vv, a])
        kk, ll = self._iu
        nf = k + m
        p, qq = np.triu_indices(nf)
        idx = np.stack([np.repeat(kk, len(p)), np.repeat(ll, len(p)),
                        np.tile(p, len(kk)), np.tile(qq, len(kk))], -1)  # (pairs*fieldpairs, 4)
        cov = c[idx[:, :, None], idx[:, None, :]]
        i4 = self.act.i4(cov).reshape(len(kk), len(p))
        w = coef[p] * coef[qq] * np.where(p == qq, 1.0, 2.0)
        bracket = i4 @ w
        if noise:
            bracket = bracket + noise**2 * self.act.j2(c[np.stack([kk, ll], -1)[:, :, None],
                                                         np.stack([kk, ll], -1)[:, None, :]])
        out = np.zeros(self.state_size)
        out[:len(kk)] = vv[kk] * vv[ll] * bracket
        return out


@cache
def _model(act: str, k: int, m: int, trained: bool) -> CommitteeModel:
    return CommitteeModel(activation(act), k, m, trained)


def model_of(act: str, k: int, m: int, trained: bool = False) -> CommitteeModel:
    """The committee family's member for K, M, g (built once per combination)."""
    activation(act)  # raises ActivationError for an unknown name
    return _model(act, k, m, trained)


# ============================================================================ integration


@dataclass(frozen=True)
class Curve:
    """A predicted curve in t: ``loss`` = ε (noise floor apart), ``y`` the states."""

    t: np.ndarray
    loss: np.ndarray
    y: np.ndarray
    method: str

    def escape_time(self, level: float) -> float | None:
        """First t with ε ≤ level/2 (half the plateau level), interpolated in ln ε: the
        emergence time (:func:`dynamics.phases.emergence_time`) of the fall from ``level``
        to 0; None if never."""
        t = emergence_time(self.t, self.loss, level)
        return None if math.isnan(t) else t


def vector_field(spec: CommitteeSpec, lr: float = 0.0, batch: int = 1):
    """dy/dt as a function of the state: the reduced flow, plus (η/B)·(online term) when
    ``lr`` = η > 0 (module docstring); per unit t = η·step/N."""
    model, tt, a, v = spec.model, spec.T, spec.a, spec.v0
    scale = lr / batch

    def f(y: np.ndarray) -> np.ndarray:
        out = model.flow(y, tt, a, v)
        if scale:
            out = out + scale * model.online_term(y, tt, a, v, spec.noise)
        return out

    return f


def is_symmetric(spec: CommitteeSpec) -> bool:
    """Whether the reduced dynamics commute with every permutation of the students and of the
    teachers: all a_m equal, all v_k equal, T with one diagonal and one off-diagonal value."""
    t, m = spec.T, spec.M
    off = t[~np.eye(m, dtype=bool)]
    scale = max(float(np.max(np.abs(t))), 1e-300)
    return bool(np.ptp(spec.a) <= 1e-12 * np.max(np.abs(spec.a))
                and np.ptp(spec.v0) <= 1e-12 * max(np.max(np.abs(spec.v0)), 1e-300)
                and np.ptp(np.diag(t)) <= 1e-12 * scale
                and (off.size == 0 or np.ptp(off) <= 1e-12 * scale))


def symmetrize(model: CommitteeModel, y: np.ndarray) -> np.ndarray:
    """The average of the state over all permutations of the students and of the teachers
    (the projection onto the permutation-symmetric subspace): Q's diagonal to its mean, its
    off-diagonal to theirs, every R_km to the mean of R, every v_k to the mean of v."""
    q, r, v = model.unpack(np.asarray(y, float), np.zeros(model.K))
    k = model.K
    off = q[~np.eye(k, dtype=bool)]
    qs = np.full((k, k), off.mean() if off.size else 0.0)
    np.fill_diagonal(qs, np.diag(q).mean())
    return model.pack(qs, np.full_like(r, r.mean()), np.full_like(v, v.mean()))


def symmetric_path_end(spec: CommitteeSpec, y0: np.ndarray, lr: float = 0.0, batch: int = 1,
                       t_chunk: float = 200.0, t_max: float = 1e4,
                       speed: float = 1e-5) -> np.ndarray:
    """Where the exactly symmetric path from ``symmetrize(y0)`` comes to rest: the ODE
    dy/dt = S f(S y) (S = :func:`symmetrize`, f the online ODE at η = ``lr``; the flow at 0)
    integrated in chunks of ``t_chunk`` until |dy/dt| < ``speed`` or t = ``t_max``. Projected
    at every evaluation, the path cannot leave the subspace through rounding."""
    model = spec.model
    f = vector_field(spec, lr, batch)

    def rhs(_, y):
        return symmetrize(model, f(symmetrize(model, y)))

    y = symmetrize(model, y0)
    t = 0.0
    while t < t_max and np.linalg.norm(rhs(t, y)) >= speed:  # Newton polishes the end
        sol = solve_ivp(rhs, (0, t_chunk), y, method="LSODA", rtol=1e-6, atol=1e-9)
        if not sol.success:
            raise CommitteeError(f"integration failed: {sol.message}")
        y, t = sol.y[:, -1], t + t_chunk
    return y


def integrate(spec: CommitteeSpec, t_end: float, method: str = "flow", lr: float = 0.0,
              batch: int = 1, y0: np.ndarray | None = None, points: int = 400,
              rtol: float = 1e-9, times: np.ndarray | None = None) -> Curve:
    """Integrate the reduced ``flow`` or ``online`` ODE (rate ``lr`` = η, ``batch`` = B) from
    the spec's initial order parameters (or ``y0``) to ``t_end`` (t = η·step/N), sampled at
    ``points`` equally spaced times (or at ``times``)."""
    if method not in ("flow", "online"):
        raise CommitteeError(f"unknown committee method {method!r} (flow, online)")
    if method == "online" and not lr > 0:
        raise CommitteeError("--method online needs --lr > 0")
    if batch < 1:
        raise CommitteeError(f"--batch must be >= 1, got {batch}")
    model, tt, a, v = spec.model, spec.T, spec.a, spec.v0
    field = vector_field(spec, lr if method == "online" else 0.0, batch)

    def rhs(_, y):
        return field(y)

    y0 = spec.initial_state() if y0 is None else np.asarray(y0, float)
    ts = np.linspace(0, t_end, points) if times is None else np.asarray(times, float)
    sol = solve_ivp(rhs, (0, t_end), y0, t_eval=ts, method="LSODA", rtol=rtol,
                    atol=rtol * 1e-3)
    if not sol.success:
        raise CommitteeError(f"integration failed: {sol.message}")
    loss = np.array([model.loss(y, tt, a, v) for y in sol.y.T])
    return Curve(sol.t, loss, sol.y.T, method)


# ============================================================================ the plateau


@dataclass(frozen=True)
class Plateau:
    """The fixed point y* a plateau sits at, its level ε(y*), the escape eigenvalue λ (largest
    real eigenvalue of the Jacobian of dy/dt there, per unit t) and its eigenvector."""

    y: np.ndarray
    level: float
    rate: float
    direction: np.ndarray

    def escape_time(self, t0: float, delta0: float) -> float:
        """t_esc ≈ t₀ + (1/λ) ln(1/δ₀)."""
        return t0 + np.log(1 / delta0) / self.rate


def _jacobian(f, y, h=1e-6):
    cols = []
    for i in range(len(y)):
        e = np.zeros_like(y)
        e[i] = h * max(1.0, abs(y[i]))
        cols.append((f(y + e) - f(y - e)) / (2 * e[i]))
    return np.stack(cols, 1)


def _newton(f, y: np.ndarray, tol: float) -> np.ndarray:
    """Newton on f(y) = 0 from ``y`` (least-squares steps, halved while they would leave the
    domain of the Gaussian integrals); raises :class:`CommitteeError` when it fails."""
    y = np.asarray(y, float).copy()
    for _ in range(50):
        fy = f(y)
        if np.linalg.norm(fy) < tol:
            break
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN: checked just below
            jac = _jacobian(f, y)
        if not (np.all(np.isfinite(jac)) and np.all(np.isfinite(fy))):
            raise CommitteeError("Newton left the domain of ε (a correlation beyond ±1)")
        step = np.linalg.lstsq(jac, fy, rcond=None)[0]
        # a full step can leave the domain of the Gaussian integrals (a correlation of the
        # fields beyond ±1: NaN from their arcsin/sqrt, which used to be evaluated and warned
        # about); halve it until the vector field is defined at the trial point
        scale = 1.0
        while not _defined(f, y - scale * step):
            scale /= 2
            if scale < 1e-6:
                raise CommitteeError("Newton left the domain of ε (a correlation beyond ±1)")
        y = y - scale * step
        if np.linalg.norm(scale * step) < 1e-13 * (1 + np.linalg.norm(y)):
            break
    if np.linalg.norm(f(y)) > 1e-8:
        raise CommitteeError(f"Newton did not converge to a fixed point (|dy/dt| = "
                             f"{np.linalg.norm(f(y)):.2e})")
    return y


def _defined(f, y: np.ndarray) -> bool:
    with np.errstate(invalid="ignore", divide="ignore"):
        return bool(np.all(np.isfinite(f(y))))


def plateau(spec: CommitteeSpec, start: np.ndarray | Curve | None = None, lr: float = 0.0,
            batch: int = 1, tol: float = 1e-12) -> Plateau:
    """Newton on dy/dt = 0 from ``start``: a state; or, for a curve (None: the spec's own
    initial state), where the exactly
    symmetric path from the curve's first state comes to rest (:func:`symmetric_path_end`;
    permutation-symmetric specs, :func:`is_symmetric`) or else the curve's point of least
    |dy/dt|/ε after its first drop. Returns :class:`Plateau`. ``lr`` > 0 uses the online ODE.
    Raises :class:`CommitteeError` when Newton fails or lands on the global minimum (ε = 0)."""
    model, tt, a, v = spec.model, spec.T, spec.a, spec.v0
    f = vector_field(spec, lr, batch)
    if start is None:
        if not is_symmetric(spec):
            raise CommitteeError("plateau without a start needs a permutation-symmetric spec "
                                 "(equal a, equal v0, T with one diagonal and one off-diagonal "
                                 "value)")
        start = Curve(np.zeros(1), np.zeros(1), spec.initial_state()[None], "start")
    if isinstance(start, Curve) and is_symmetric(spec):
        # the plateau a random start escapes from is where the symmetric part of its path
        # comes to rest: at η > 0 the path first passes a second symmetric fixed point (the
        # students coincide, Q_kl = Q_kk), unstable *inside* the symmetric subspace, which
        # Newton from the curve's slowest point can land on although the path has left it
        # (tests/benchmarks/committee_fixed_points.py: λ 0.0748 there against 0.0591 at the
        # plateau, η = 1, σ = 0.1). From a tiny init (σ = 10⁻³) the path arrives so close to
        # that point (~10⁻⁶) that it rests there for t ~ 10³ and escapes from it: then it is
        # the plateau, and the speed criterion of symmetric_path_end stops there too.
        y = _newton(f, symmetric_path_end(spec, start.y[0], lr, batch), tol)
    elif isinstance(start, Curve):
        speed = np.array([np.linalg.norm(f(y)) for y in start.y])
        first = int(np.argmax(start.loss < 0.9 * start.loss[0])) or 1
        # slowest relative to its loss: on a plateau |dy/dt| → 0 at ε* > 0, whereas the final
        # approach to ε = 0 has |dy/dt| ∝ ε
        ratio = speed[first:] / np.maximum(start.loss[first:], 1e-300)
        y = _newton(f, start.y[first + int(np.argmin(ratio))], tol)
    else:
        y = _newton(f, start, tol)
    level = model.loss(y, tt, a, v)
    if not level > 1e-10 * max(spec.l_ref, 1e-300):
        raise CommitteeError("no plateau: Newton found the minimum ε = 0, not a saddle")
    vals, vecs = np.linalg.eig(_jacobian(f, y))
    i = int(np.argmax(vals.real))
    return Plateau(y, level, float(vals.real[i]), np.real(vecs[:, i]))
