"""In-context linear regression with linear attention (Zhang, Singh, Latham & Saxe, ICML 2025).

Data. A sequence holds N context pairs (xₙ, yₙ) and a query x_q, xₙ, x_q ~ N(0, Λ) in D
dimensions, yₙ = wᵀxₙ with w ~ N(0, I_D) drawn fresh per sequence; the target is y_q = wᵀx_q.
Λ = U diag(λ) Uᵀ, λ ∝ 1, 2, …, D, tr Λ = 1, U a seeded random orthonormal basis (as in the
paper's code ``data.gen_cov``). P sequences make the training set.

Merged key–query linear attention (the paper's ``ATTN_M``). Tokens eₙ = [xₙ; yₙ] ∈ R^{D+1}, the
query token e_q = [x_q; 0]; head h has a key–query matrix W^KQ_h and a value matrix W^V_h, and the
prediction is the y-output at the query, ŷ = Σ_h (W^V_h Σₙ eₙ eₙᵀ W^KQ_h e_q)_{D+1}. Only the
x→x block W_h (D×D) of W^KQ_h and the y→y entry v_h of W^V_h carry the prediction (the paper's
code zeroes the blocks that would mix the query's y = 0 or the values' x into it), and then

    ŷ = Σ_h v_h Σₙ yₙ xₙᵀ W_h x_q = Σ_h v_h ⟨W_h, z⟩,   z = (Σₙ yₙ xₙ) x_qᵀ  (D×D),

a two-layer linear network on the cubic feature z: first layer W (H×D², row h = vec W_h,
row-major), second layer v (1×H). The model is that network written once,

    L = ½ ‖y − v W Z‖²   (½ × sum over the P sequences; Z = [vec z_p] is D²×P, y is 1×P),

so the sequence count P is its large dimension: the data enter through Z Zᵀ and y Zᵀ, the state
is (W, v) whatever P. Time is continuous, t = η·step for GD with rate η on this L.

Mapping the paper's loss: its ``nn.MSELoss`` is L_paper = (1/P) Σ_p (ŷ_p − y_p)² = (2/P)·L, so
SGD with rate η_paper on L_paper is GD with η = 2η_paper/P on L (same steps, t = η·step).

Saddle levels of separate rank-one heads (paper eq. for 𝓛ₘ, per sequence, P → ∞, mean squared
error without the ½): 𝓛₀ = tr Λ, 𝓛ₘ₊₁ = 𝓛ₘ − λₘ / (1 + (1 + tr Λ/λₘ)/N), λ in decreasing order
(:func:`saddle_levels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import numpy as np
import sympy as sp

from ..model import Family, Model, ModelError
from ..problems import ModelSpec, SpecError

__all__ = [
    "ICL",
    "IclError",
    "covariance",
    "features",
    "saddle_levels",
    "sample_icl",
    "sequences",
]


class IclError(SpecError):
    """Impossible in-context-regression settings; one-line message."""


_D2, _H, _P = sp.symbols("D2 H P", integer=True, positive=True)
_Z = sp.MatrixSymbol("Z", _D2, _P)  # cubic features, one sequence per column
_Y = sp.MatrixSymbol("y", 1, _P)  # query targets
_W = sp.MatrixSymbol("W", _H, _D2)  # row h = vec of head h's key-query block
_V = sp.MatrixSymbol("v", 1, _H)  # head values (y -> y)
_E = _Y - _V * _W * _Z

ICL = Model(
    "icl",
    loss=sp.Trace(_E.T * _E) / 2,
    learned=[_W, _V],
    constants=[_Z, _Y],
    large=[_P],
    latex={"Z": "Z", "y": "y", "W": "W^{KQ}", "v": "v"},
    description="merged linear attention on in-context regression = ½‖y − v W Z‖², Z the cubic "
                "features (Σₙ yₙxₙ)x_qᵀ of P sequences",
)


@cache
def separate(heads: int) -> Model:
    """Separate rank-one keys and queries (the paper's ``ATTN_S``, R = 1), H heads, as a
    per-sample model: per head a key k_h, a query q_h (x-parts, D×1) and a value v_h (y → y,
    1×1), ŷ_p = Σ_h v_h (Σₙ yₙ xₙᵀ k_h)(q_hᵀ x_q) = tr(Z_pᵀ Σ_h k_h v_h q_hᵀ), Z_p = z_p (D×D),

        L = ½ Σ_p (tr(Z_pᵀ Σ_h k_h v_h q_hᵀ) − y_p)²,

    reduced through Σ_p [vec Z_p, y_p][vec Z_p, y_p]ᵀ (:mod:`dynamics.persample`). Spec keys:
    ``Zs`` (P×D×D), ``ys`` (P×1×1), ``K0``, ``Q0`` (H×D×1), ``v0`` (H×1×1)."""
    heads = int(heads)
    d, p = sp.symbols("D P", integer=True, positive=True)
    z, y = sp.MatrixSymbol("Zs", d, d), sp.MatrixSymbol("ys", 1, 1)
    ks = [sp.MatrixSymbol(f"k{h}", d, 1) for h in range(heads)]
    qs = [sp.MatrixSymbol(f"q{h}", d, 1) for h in range(heads)]
    vs = [sp.MatrixSymbol(f"v{h}", 1, 1) for h in range(heads)]
    r = sum((sp.Trace(z.T * k * v * q.T) for k, v, q in zip(ks, vs, qs, strict=True)), sp.S.Zero)
    keys = {m.name: (f"{m.name[0].upper() if m.name[0] != 'v' else 'v'}0", h)
            for group in (ks, qs, vs) for h, m in enumerate(group)}
    return Model(
        "icl", loss=None, learned=[*ks, *qs, *vs], constants=[z, y], large=[p],
        residual=r - sp.Trace(y), per_sample=[z, y], samples=p, keys=keys,
        description=f"separate rank-1 linear attention, {heads} heads, on in-context regression",
    )


def _select(spec: Mapping[str, object]) -> Model:
    k0 = spec.get("K0")
    if k0 is None:
        return ICL
    k0 = np.asarray(k0)
    if k0.ndim != 3 or k0.shape[0] < 1:
        raise ModelError(f"K0: expected an H x D x 1 array, got shape {k0.shape}")
    return separate(k0.shape[0])


FAMILY = Family("icl", _select, (("merged", {}),), ICL.description)
"""Registered by :mod:`dynamics.models.icl_cli` (its sampler and options, without SymPy)."""


def _check_int(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise IclError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def covariance(dim: int, seed: int = 0, eigenvalues: np.ndarray | None = None) -> np.ndarray:
    """Λ = U diag(λ) Uᵀ / Σλ (tr Λ = 1), U orthonormal from the QR of a seeded Gaussian D×D
    matrix; λ = 1, 2, …, D by default. Raises :class:`IclError` unless λ > 0 (Λ PD)."""
    dim = _check_int("dim", dim)
    lam = np.arange(1, dim + 1, dtype=np.float64) if eigenvalues is None else np.asarray(
        eigenvalues, dtype=np.float64)
    if lam.shape != (dim,):
        raise IclError(f"eigenvalues: {lam.size} values for dim = {dim}")
    if not (np.all(np.isfinite(lam)) and np.all(lam > 0)):
        raise IclError("eigenvalues: Λ must be positive definite (every eigenvalue finite > 0)")
    u, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (u * (lam / lam.sum())) @ u.T


def _check_covariance(cov: np.ndarray, dim: int) -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (dim, dim):
        raise IclError(f"covariance: shape {cov.shape}, expected ({dim}, {dim})")
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, rtol=0, atol=1e-12):
        raise IclError("covariance: Λ must be a finite symmetric matrix")
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise IclError("covariance: Λ is not positive definite")
    return cov


def sequences(cov: np.ndarray, context: int, count: int, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sequences of ``context`` pairs and a query: x (P, N+1, D) with rows ~ N(0, Λ)
    (the last row is the query), y (P, N+1) = x w_p, w_p ~ N(0, I_D) fresh per sequence."""
    cov = np.asarray(cov, dtype=np.float64)
    dim = cov.shape[0]
    context, count = _check_int("context", context), _check_int("sequences", count)
    cov = _check_covariance(cov, dim)
    rng = np.random.default_rng(seed)
    root = np.linalg.cholesky(cov)
    x = rng.standard_normal((count, context + 1, dim)) @ root.T
    w = rng.standard_normal((count, dim))
    return x, np.einsum("pnd,pd->pn", x, w)


def features(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z (D²×P), column p = vec((Σₙ yₙxₙ) x_qᵀ) row-major over the N context pairs, and the
    query targets (1×P)."""
    beta = np.einsum("pn,pnd->pd", y[:, :-1], x[:, :-1])
    z = np.einsum("pd,pe->pde", beta, x[:, -1]).reshape(x.shape[0], -1)
    return z.T.copy(), y[:, -1][None, :].copy()


def sample_icl(
    dim: int,
    context: int,
    sequences_count: int,
    heads: int,
    init: float = 1e-2,
    seed: int = 0,
    separate: bool = False,
    rank: int = 1,
    cov: np.ndarray | None = None,
) -> ModelSpec:
    """A spec of merged linear attention on in-context regression (module docstring).

    Λ from :func:`covariance` (seed ``seed``) unless ``cov`` is given; then P sequences, then the
    initial W (H×D²) and v (1×H), i.i.d. N(0, init²) per coordinate, all from one generator
    seeded by ``seed``. ``separate``: the rank-one key/query model :func:`separate` on the same
    sequences, K0, Q0 (H×D×1) and v0 (H×1×1) i.i.d. N(0, init²) (rank > 1 is refused).
    """
    dim, context = _check_int("dim", dim), _check_int("context", context)
    count, heads = _check_int("sequences", sequences_count), _check_int("heads", heads)
    rank = _check_int("rank", rank)
    if rank > dim + 1:
        raise IclError(f"rank: {rank} exceeds the token dimension D + 1 = {dim + 1}")
    init = float(init)
    if not np.isfinite(init) or init < 0:
        raise IclError(f"init: must be a finite number >= 0, got {init!r}")
    cov = covariance(dim, seed) if cov is None else _check_covariance(cov, dim)
    if separate and rank != 1:
        raise IclError(f"rank: separate heads of rank {rank} are not built yet (rank 1 is)")
    x, y = sequences(cov, context, count, seed=seed + 1)
    z, yq = features(x, y)
    rng = np.random.default_rng([seed, 2])
    if separate:
        data = {"Zs": z.T.reshape(count, dim, dim).copy(), "ys": yq.reshape(count, 1, 1),
                "K0": rng.standard_normal((heads, dim, 1)) * init,
                "Q0": rng.standard_normal((heads, dim, 1)) * init,
                "v0": rng.standard_normal((heads, 1, 1)) * init}
        return ModelSpec("icl", data)
    data = {"Z": z, "y": yq,
            "W0": rng.standard_normal((heads, dim * dim)) * init,
            "v0": rng.standard_normal((1, heads)) * init}
    return ModelSpec("icl", data)


def saddle_levels(eigenvalues: np.ndarray, context: int) -> np.ndarray:
    """𝓛₀ = Σλ = tr Λ, 𝓛ₘ₊₁ = 𝓛ₘ − λₘ/(1 + (1 + tr Λ/λₘ)/N), λ sorted decreasing: the saddle
    losses (per sequence, mean squared error) of separate rank-one heads; D + 1 values."""
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    context = _check_int("context", context)
    tr = lam.sum()
    drops = lam / (1 + (1 + tr / lam) / context)
    return tr - np.concatenate([[0.0], np.cumsum(drops)])


def sample_from_options(options: object, seed: int) -> ModelSpec:
    """:func:`sample_icl` from parsed ``scurve sample icl`` options (one-line IclError)."""
    get = options.__dict__.get  # type: ignore[attr-defined]
    for name in ("dim", "context", "sequences"):
        if get(name) is None:
            raise IclError(f"sample icl needs --{name}")
    cov = None
    if get("eigenvalues") is not None:
        try:
            lam = np.array([float(s) for s in str(get("eigenvalues")).split(",")])
        except ValueError:
            raise IclError(f"eigenvalues: expected L1,...,LD numbers, got "
                           f"{get('eigenvalues')!r}") from None
        cov = covariance(get("dim"), seed, lam) if lam.size == get("dim") else np.diag(lam)
    return sample_icl(get("dim"), get("context"), get("sequences"), get("heads"),
                      init=get("init"), seed=seed, separate=bool(get("separate")),
                      rank=get("rank") or 1, cov=cov)
