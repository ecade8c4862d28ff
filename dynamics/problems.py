"""Problem specs: the constants and initial values of a model (README "Conventions").

A spec instantiates a :class:`dynamics.model.Model`: ``spec.model`` is the loss, written once
(:mod:`dynamics.catalog` for the built-ins), ``spec.values()`` every constant and initial
learned matrix by symbol name. The built-ins keep their classes, samplers and spec keys:

=================  ====================================  ===================================
spec class         learned <- targets (spec keys)        loss (½ x sum of squares)
=================  ====================================  ===================================
``Vector``         ``x0`` <- ``a`` (n x 1)                ½‖a − x‖²
``Factorization``  ``X0``, ``Y0`` <- ``A``, ``B``          ½‖A Bᵀ − X Yᵀ‖² (or cross-entropy)
``AttentionHead``  ``Q0``, ``K0``, ``O0``, ``V0`` <- ``Q``…  ½‖(QKᵀ)⊗(OVᵀ) − (Q̃K̃ᵀ)⊗(ÕṼᵀ)‖²
``Chain``          ``X0``, ``Y0``, ``M0`` <- ``A``, ``B``    ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖²
=================  ====================================  ===================================

Any other registered model (a user's ``--model FILE.py``) has a :class:`ModelSpec`: ``kind`` =
the model's name, each constant under its symbol's name, each learned matrix's initial value
under its name + ``0``; :func:`sample_model` draws one. Weight decay λ adds ½λ‖θ‖² to the loss,
so the gradient flow gains −λθ. Specs are sampled from an explicit seed and saved to / loaded
from ``.npz`` files with an exact round trip; loading validates every key and raises
:class:`SpecError` naming it (and both shapes when two disagree).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import sympy as sp

from .groups import GroupObjective
from .groups import parse as parse_objective
from .model import Model, ModelError
from .model import entry as model_entry
from .model import get as get_model
from .model import known as known_models
from .model import register as register_model

__all__ = [
    "AttentionHead",
    "Chain",
    "Factorization",
    "ModelSpec",
    "Problem",
    "SampleOptions",
    "SpecError",
    "Vector",
    "check_arrays",
    "load",
    "sample_model",
    "sample_modes",
    "save",
    "values_of",
    "zero_loss",
]

LOSSES = ("mse", "ce")


class SpecError(ValueError):
    """A problem spec (arguments or ``.npz`` file) is invalid; the message names the key."""


@dataclass(frozen=True)
class SampleOptions:
    """The command line's problem options (``scurve sample``), one set for every built-in:
    each spec class's :meth:`sample_from` reads the ones it has (``n`` is d for the attention
    head, ``rank`` its head dimension h, ``model_rank`` h′)."""

    n: int
    rank: int = 1
    model_rank: int | None = None
    init: float = 1e-3
    singular_values: list[float] | None = None
    scale: float = 1.0
    weight_decay: float = 0.0
    loss: str = "mse"
    depth: int = 3
    seed: int = 0

    def only_mse(self, kind: str) -> None:
        if self.loss != "mse":
            raise SpecError(f"loss: --loss {self.loss} is only available for factorization, "
                            f"not {kind}")


def _as_matrix(name: str, value: object, ndim: int = 2) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise SpecError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{name}: contains non-finite values")
    return arr


def _check_decay(value: float) -> float:
    lam = float(value)
    if not np.isfinite(lam) or lam < 0:
        raise SpecError(f"weight_decay: must be a finite number >= 0, got {value!r}")
    return lam


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise SpecError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def _check_int(name: str, value: int, low: int = 1) -> int:
    if int(value) != value or value < low:
        raise SpecError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def _orthonormal(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """n x r matrix with orthonormal columns, Haar-distributed (QR with sign fix)."""
    q, rr = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.sign(np.diag(rr))


def _target_factors(
    rng: np.random.Generator,
    n: int,
    r: int,
    singular_values: list[float] | None,
    scale: float,
    count: int = 2,
) -> list[np.ndarray]:
    """Target factors T_1..T_count (n x r).

    With ``singular_values`` s_1..s_r: T_1 = U diag(s^{1/count}), ... with random orthonormal
    U's, so the product T_1 T_2ᵀ (count = 2) has exactly these singular values and balanced
    factors. Otherwise i.i.d. Gaussian entries of variance scale^{2/count}/n, so each product of
    two columns has norm ≈ scale (typical singular value ≈ scale).
    """
    if singular_values is not None:
        s = np.asarray(singular_values, dtype=np.float64)
        if s.shape != (r,):
            raise SpecError(f"singular_values: expected {r} values (the rank), got {s.size}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise SpecError("singular_values: must be finite and > 0")
        root = s ** (1.0 / count)
        return [_orthonormal(rng, n, r) * root for _ in range(count)]
    std = scale ** (1.0 / count) / np.sqrt(n)
    return [rng.standard_normal((n, r)) * std for _ in range(count)]


@dataclass(frozen=True, eq=False)
class _Spec:
    """Shared behaviour: the model, its values, L_ref, equality, npz round trip.

    ``arrays()`` holds the spec file's arrays by key; ``values()`` the same by the model's
    symbol names (a stacked key such as the chain's ``M0`` split into M1, M2, ...).
    """

    kind: ClassVar[str]

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.model.spec_keys()}

    @property
    def model(self) -> Model:
        """The :class:`dynamics.model.Model` whose loss this spec instantiates."""
        return get_model(self.kind, self._selection())

    def _selection(self) -> dict[str, object]:
        """What a model family reads to pick its member (the factorization's ``loss``, ...)."""
        return {}

    @property
    def group_objective(self) -> GroupObjective | None:
        """The group objective trained (a grouped model's :class:`ModelSpec`), else None."""
        return None

    def values(self) -> dict[str, np.ndarray]:
        """Every constant and initial learned matrix by symbol name (float64)."""
        return values_of(self.model, self.arrays())

    def factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{learned name: (its target T, its initial value W)}`` for the model's ``targets``
        (x <- a; X <- A, Y <- B; Q <- Q⋆, ...), in the model's order."""
        values = self.values()
        return {w: (values[t], values[w]) for w, t in self.model.targets.items()}

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()  # type: ignore[union-attr]
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]

    @property
    def l_ref(self) -> float:
        """Loss of the zero model (every learned matrix 0; README "Conventions")."""
        return zero_loss(self.model, self.values())

    @property
    def n(self) -> int:
        """Size of the first large dimension (rows of the learned factors)."""
        return _dims(self.model, self.values()).get(str(self.model.large[0]), 0) \
            if self.model.large else 0

    def rate_scale(self) -> tuple[float, float]:
        """(largest, smallest) rate scale of the dynamics, in 1/t, for step and end-time
        choices of the integrators. Generic models: √(2 L_ref) for both (the size of a target
        whose zero-model loss is L_ref)."""
        s = math.sqrt(2.0 * self.l_ref) if self.l_ref > 0 else 1.0
        return s, s

    def describe(self) -> str:
        dims = ", ".join(f"{d}={v}" for d, v in _dims(self.model, self.values()).items())
        return f"{self.kind} {dims} λ={self.weight_decay:g}"  # type: ignore[attr-defined]


def _equal(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


def values_of(model: Model, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Symbol name -> array for ``model`` from spec ``arrays`` (stacked keys split)."""
    out = {}
    for name in model.symbols:
        key = model.key(name)
        if isinstance(key, tuple):
            out[name] = np.asarray(arrays[key[0]], dtype=np.float64)[key[1]]
        else:
            out[name] = np.asarray(arrays[key], dtype=np.float64)
    return out


def _dims(model: Model, values: Mapping[str, np.ndarray]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, sym in model.symbols.items():
        shape = np.shape(values[name])
        if model.stacked(name):  # N × the sample's shape
            out.setdefault(str(model.samples), int(shape[0]))
            shape = shape[1:]
        for d, size in zip(sym.shape, shape, strict=False):
            if not d.is_Integer:
                out.setdefault(str(d), int(size))
    return out


def check_arrays(model: Model, arrays: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Validate spec ``arrays`` against ``model``: every key present, numeric, finite, and every
    dimension consistent. Raises :class:`SpecError` naming the key (and both shapes)."""
    out: dict[str, np.ndarray] = {}
    for key in model.spec_keys():
        if key not in arrays:
            what = [n for n in model.symbols if model.key(n) in (key,) or
                    (isinstance(model.key(n), tuple) and model.key(n)[0] == key)]
            role = "initial value of learned" if what and what[0] in model.learned_names \
                else "constant"
            raise SpecError(f"missing key {key!r} ({role} {what[0] if what else key} of model "
                            f"{model.name!r})")
        arr = np.asarray(arrays[key])
        if not np.issubdtype(arr.dtype, np.number):
            raise SpecError(f"{key}: expected a numeric array, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise SpecError(f"{key}: contains non-finite values")
        out[key] = arr
    bound: dict[sp.Expr, tuple[int, str, tuple]] = {}
    for name, sym in model.symbols.items():
        key = model.key(name)
        stacked = isinstance(key, tuple)
        arr = out[key[0] if stacked else key]
        if stacked:
            if arr.ndim != 3 or key[1] >= arr.shape[0]:
                raise SpecError(f"{key[0]}: expected a stack of {len(sym.shape)}-d arrays, "
                                f"got shape {arr.shape}")
            arr = arr[key[1]]
        label = key[0] if stacked else key
        if model.stacked(name):  # per-sample: N × the sample's shape, N shared by all of them
            if arr.ndim != 3:
                raise SpecError(f"{label}: expected a stack of samples ({model.samples} x "
                                f"{sym.shape[0]} x {sym.shape[1]}), got shape {arr.shape}")
            n = model.samples
            if n in bound and bound[n][0] != arr.shape[0]:
                raise SpecError(f"{label}: {arr.shape[0]} samples, but {bound[n][1]} has "
                                f"{bound[n][0]} (the leading dimensions of per-sample constants "
                                "must agree)")
            bound.setdefault(n, (arr.shape[0], label, arr.shape))
            arr = arr[0]
        if arr.ndim != 2:
            raise SpecError(f"{label}: expected a 2-d array ({sym.shape[0]} x {sym.shape[1]}), "
                            f"got shape {arr.shape}")
        for d, size in zip(sym.shape, arr.shape, strict=True):
            if d.is_Integer and int(d) != size:
                raise SpecError(f"{label}: shape {arr.shape}, but dimension {d} is fixed")
            if d in bound and bound[d][0] != size:
                other_size, other, other_shape = bound[d]
                raise SpecError(f"{label}: shape {arr.shape} disagrees with {other} "
                                f"{other_shape} on {d} ({size} vs {other_size})")
            bound.setdefault(d, (size, label, arr.shape))
    return out


@cache
def _zero_loss_program(model: Model) -> object:
    from .symbolic import full_flow

    return full_flow(model)


def zero_loss(model: Model, values: Mapping[str, np.ndarray]) -> float:
    """L at every learned matrix 0: the reference level L_ref of README "Conventions"."""
    zero = {k: (np.zeros_like(v) if k in model.learned_names else v) for k, v in values.items()}
    return _zero_loss_program(model).loss_value(zero)  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class Vector(_Spec):
    """Baseline with no product: L = ½‖a − x‖² (+ ½λ‖x‖²); pure exponential decay.

    ``a`` and ``x0`` are stored as ``n x 1`` columns so the vector is one factor like the
    others; the scalar problem is n = 1.
    """

    a: np.ndarray
    x0: np.ndarray
    weight_decay: float = 0.0

    kind: ClassVar[str] = "vector"

    def __post_init__(self) -> None:
        a = _as_matrix("a", np.reshape(self.a, (-1, 1)))
        x0 = _as_matrix("x0", np.reshape(self.x0, (-1, 1)))
        if a.shape != x0.shape:
            raise SpecError(f"x0: shape {x0.shape[:1]} does not match a {a.shape[:1]}")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "x0", x0)
        object.__setattr__(self, "weight_decay", _check_decay(self.weight_decay))

    @property
    def n(self) -> int:
        return self.a.shape[0]

    @property
    def l_ref(self) -> float:
        return 0.5 * float(np.sum(self.a**2))

    def rate_scale(self) -> tuple[float, float]:
        """1 (the flow is dx/dt = a − x)."""
        return 1.0, 1.0

    @classmethod
    def sample(
        cls, n: int, init: float, scale: float = 1.0, weight_decay: float = 0.0, seed: int = 0
    ) -> Vector:
        """Target a ~ N(0, scale²/n) per entry (‖a‖ ≈ scale); init x0 ~ N(0, init²)."""
        n = _check_int("n", n)
        _check_positive("scale", scale)
        init = _check_nonneg("init", init)
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((n, 1)) * scale / np.sqrt(n)
        return cls(a=a, x0=rng.standard_normal((n, 1)) * init, weight_decay=weight_decay)

    @classmethod
    def sample_from(cls, o: SampleOptions) -> Vector:
        """:meth:`sample` from the command line's options."""
        o.only_mse(cls.kind)
        return cls.sample(o.n, init=o.init, scale=o.scale, weight_decay=o.weight_decay,
                          seed=o.seed)

    def describe(self) -> str:
        return f"vector n={self.n} λ={self.weight_decay:g}"


@dataclass(frozen=True, eq=False)
class _FactorPair(_Spec):
    """Shared by the specs fitting C = A Bᵀ (A, B: n x r) with learned X (n x k), ..., Y."""

    @property
    def n(self) -> int:
        return self.A.shape[0]  # type: ignore[attr-defined]

    @property
    def r(self) -> int:
        return self.A.shape[1]  # type: ignore[attr-defined]

    @property
    def k(self) -> int:
        return self.X0.shape[1]  # type: ignore[attr-defined]

    @property
    def target(self) -> np.ndarray:
        """C = A Bᵀ (n x n)."""
        return self.A @ self.B.T  # type: ignore[attr-defined]

    def rate_scale(self) -> tuple[float, float]:
        """(largest, smallest nonzero) singular value of the target C = A Bᵀ."""
        return _scale_of(_product_singular_values(self.A, self.B))  # type: ignore[attr-defined]

    @property
    def l_ref(self) -> float:
        """½‖A Bᵀ‖² = ½ tr(AᵀA BᵀB)."""
        ga, gb = self.A.T @ self.A, self.B.T @ self.B  # type: ignore[attr-defined]
        return 0.5 * float(np.sum(ga * gb))


@dataclass(frozen=True, eq=False)
class Factorization(_FactorPair):
    """Matrix factorization: fit C = A Bᵀ (n x n, rank r) with Z = X Yᵀ (rank k).

    L = ½‖A Bᵀ − X Yᵀ‖² + ½λ(‖X‖² + ‖Y‖²) for ``loss="mse"``; for ``loss="ce"``
    L = KL(softmax(vec C) ‖ softmax(vec Z)) + the same decay (:mod:`dynamics.catalog`).
    """

    A: np.ndarray
    B: np.ndarray
    X0: np.ndarray
    Y0: np.ndarray
    weight_decay: float = 0.0
    loss: str = "mse"

    kind: ClassVar[str] = "factorization"

    def __post_init__(self) -> None:
        _set_factor_pair(self)
        if self.loss not in LOSSES:
            raise SpecError(f"loss: unknown loss {self.loss!r} (expected one of {LOSSES})")

    def _selection(self) -> dict[str, object]:
        return {"loss": self.loss}

    @property
    def l_ref(self) -> float:
        """½‖A Bᵀ‖² for MSE; for cross-entropy the loss of the zero model, KL(p_C ‖ uniform)."""
        if self.loss == "ce":
            c = self.target.ravel()
            logp = c - _logsumexp(c)
            return float(np.sum(np.exp(logp) * (logp + np.log(c.size))))
        return super().l_ref

    @classmethod
    def sample(
        cls,
        n: int,
        rank: int,
        model_rank: int | None = None,
        init: float = 1e-3,
        singular_values: list[float] | None = None,
        scale: float = 1.0,
        weight_decay: float = 0.0,
        loss: str = "mse",
        seed: int = 0,
    ) -> Factorization:
        """Sample a spec from ``seed``.

        Target: with ``singular_values`` (r values), C = U diag(s) Vᵀ with random orthonormal
        U, V and balanced factors A = U diag(√s), B = V diag(√s); otherwise A, B have i.i.d.
        N(0, scale/n) entries (singular values ≈ scale). Init: X0, Y0 i.i.d. N(0, init²),
        n x model_rank (default model_rank = rank).
        """
        _, pair = _sample_pair(n, rank, model_rank, init, singular_values, scale, seed)
        return cls(**pair, weight_decay=weight_decay, loss=loss)

    @classmethod
    def sample_from(cls, o: SampleOptions) -> Factorization:
        """:meth:`sample` from the command line's options."""
        return cls.sample(o.n, o.rank, o.model_rank, init=o.init,
                          singular_values=o.singular_values, scale=o.scale,
                          weight_decay=o.weight_decay, loss=o.loss, seed=o.seed)

    def describe(self) -> str:
        return (
            f"factorization n={self.n} r={self.r} k={self.k} loss={self.loss} "
            f"λ={self.weight_decay:g}"
        )


@dataclass(frozen=True, eq=False)
class AttentionHead(_Spec):
    """Linear attention head (softmax dropped): target M⊗N with M = QKᵀ, N = OVᵀ.

    L = ½‖M⊗N − M̃⊗Ñ‖² + ½λ Σ‖θ‖², with M̃ = Q̃K̃ᵀ, Ñ = ÕṼᵀ learned (d x h′ factors);
    since ‖A⊗B‖ = ‖A‖‖B‖ and ⟨A⊗B, C⊗D⟩ = ⟨A,C⟩⟨B,D⟩,
    L = ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²] (:mod:`dynamics.catalog`).
    """

    Q: np.ndarray
    K: np.ndarray
    O: np.ndarray
    V: np.ndarray
    Q0: np.ndarray
    K0: np.ndarray
    O0: np.ndarray
    V0: np.ndarray
    weight_decay: float = 0.0

    kind: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        targets, inits = ("Q", "K", "O", "V"), ("Q0", "K0", "O0", "V0")
        mats = {k: _as_matrix(k, getattr(self, k)) for k in (*targets, *inits)}
        d, h = mats["Q"].shape
        hm = mats["Q0"].shape[1]
        for key in targets:
            if mats[key].shape != (d, h):
                raise SpecError(f"{key}: shape {mats[key].shape}, expected ({d}, {h})")
        for key in inits:
            if mats[key].shape != (d, hm):
                raise SpecError(f"{key}: shape {mats[key].shape}, expected ({d}, {hm})")
        for key, value in mats.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "weight_decay", _check_decay(self.weight_decay))

    @property
    def d(self) -> int:
        return self.Q.shape[0]

    @property
    def n(self) -> int:
        return self.d

    @property
    def h(self) -> int:
        return self.Q.shape[1]

    @property
    def k(self) -> int:
        return self.Q0.shape[1]

    def rate_scale(self) -> tuple[float, float]:
        """Singular values of each circuit (M = QKᵀ, N = OVᵀ) times the other circuit's norm
        (the circuit's effective target): (largest, smallest nonzero)."""
        m, nn = (_product_singular_values(self.Q, self.K), _product_singular_values(self.O, self.V))
        norms = float(np.linalg.norm(m)), float(np.linalg.norm(nn))
        return _scale_of(np.concatenate([m * norms[1], nn * norms[0]]))

    @property
    def l_ref(self) -> float:
        """½‖M‖²‖N‖²."""
        m = self.Q @ self.K.T
        nn = self.O @ self.V.T
        return 0.5 * float(np.sum(m**2) * np.sum(nn**2))

    @classmethod
    def sample(
        cls,
        d: int,
        rank: int,
        model_rank: int | None = None,
        init: float = 1e-2,
        singular_values: list[float] | None = None,
        scale: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> AttentionHead:
        """Sample a spec from ``seed``: circuits M = QKᵀ and N = OVᵀ (rank h) drawn like a
        factorization target (each with singular values ``singular_values`` or typical scale
        ``scale``); learned factors d x h′ i.i.d. N(0, init²).
        """
        d = _check_int("d", d)
        h = _check_int("rank", rank)
        hm = h if model_rank is None else _check_int("model_rank", model_rank)
        if h > d or hm > d:
            raise SpecError(f"rank: head dims ({h}, {hm}) exceed d = {d}")
        init = _check_nonneg("init", init)
        scale = _check_positive("scale", scale)
        rng = np.random.default_rng(seed)
        q, k = _target_factors(rng, d, h, singular_values, scale)
        o, v = _target_factors(rng, d, h, singular_values, scale)
        inits = [rng.standard_normal((d, hm)) * init for _ in range(4)]
        return cls(q, k, o, v, *inits, weight_decay=weight_decay)

    @classmethod
    def sample_from(cls, o: SampleOptions) -> AttentionHead:
        """:meth:`sample` from the command line's options (n is d, rank the head dim h)."""
        o.only_mse(cls.kind)
        return cls.sample(o.n, o.rank, o.model_rank, init=o.init,
                          singular_values=o.singular_values, scale=o.scale,
                          weight_decay=o.weight_decay, seed=o.seed)

    def describe(self) -> str:
        return f"attention d={self.d} h={self.h} h'={self.k} λ={self.weight_decay:g}"


@dataclass(frozen=True, eq=False)
class Chain(_FactorPair):
    """Depth-D chain: fit C = A Bᵀ (rank r) with X M₁⋯M_{D−2} Yᵀ (X, Y n x k, M_i k x k).

    L = ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² + ½λ(‖X‖² + Σ‖M_i‖² + ‖Y‖²); ``M0`` stacks the middle
    factors' initial values, shape (D−2, k, k) (D = 2, an empty stack, is the factorization).
    """

    A: np.ndarray
    B: np.ndarray
    X0: np.ndarray
    Y0: np.ndarray
    M0: np.ndarray
    weight_decay: float = 0.0

    kind: ClassVar[str] = "chain"

    def __post_init__(self) -> None:
        k = _set_factor_pair(self)
        m0 = np.asarray(self.M0, dtype=np.float64)
        if m0.size == 0:
            m0 = m0.reshape(0, k, k)
        if m0.ndim != 3 or m0.shape[1:] != (k, k):
            raise SpecError(f"M0: shape {m0.shape}, expected (D-2, {k}, {k})")
        if not np.all(np.isfinite(m0)):
            raise SpecError("M0: contains non-finite values")
        object.__setattr__(self, "M0", m0)

    def _selection(self) -> dict[str, object]:
        return {"M0": self.M0}

    @property
    def depth(self) -> int:
        return self.M0.shape[0] + 2

    @classmethod
    def sample(
        cls,
        n: int,
        rank: int,
        model_rank: int | None = None,
        depth: int = 3,
        init: float = 1e-2,
        singular_values: list[float] | None = None,
        scale: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> Chain:
        """Sample a spec from ``seed``: the target as :meth:`Factorization.sample`; X0, Y0
        (n x k) and each M_i (k x k) i.i.d. N(0, init²)."""
        depth = _check_int("depth", depth, low=2)
        rng, pair = _sample_pair(n, rank, model_rank, init, singular_values, scale, seed)
        k = pair["X0"].shape[1]
        m0 = rng.standard_normal((depth - 2, k, k)) * float(init)
        return cls(**pair, M0=m0, weight_decay=weight_decay)

    @classmethod
    def sample_from(cls, o: SampleOptions) -> Chain:
        """:meth:`sample` from the command line's options."""
        o.only_mse(cls.kind)
        return cls.sample(o.n, o.rank, o.model_rank, depth=o.depth, init=o.init,
                          singular_values=o.singular_values, scale=o.scale,
                          weight_decay=o.weight_decay, seed=o.seed)

    def describe(self) -> str:
        return (f"chain D={self.depth} n={self.n} r={self.r} k={self.k} "
                f"λ={self.weight_decay:g}")


@dataclass(frozen=True, eq=False)
class ModelSpec(_Spec):
    """A spec of any registered model (:mod:`dynamics.model`): ``kind`` = the model's name,
    ``data`` = its arrays by spec key (constants, initial values of learned matrices).

    A grouped model's spec (``group_weights`` D) also names the group objective F that is
    trained (``objective``, a :func:`dynamics.groups.parse` label; default ``mean``); its D
    holds the group frequencies diag(p̂_g), so that with D as given the loss is the mean loss.
    """

    name: str
    data: dict[str, np.ndarray] = field(default_factory=dict)
    weight_decay: float = 0.0
    objective: str | None = None

    def __post_init__(self) -> None:
        model = _model_or_spec_error(self.name, self.data)
        unknown = sorted(set(self.data) - set(model.spec_keys()))
        if unknown:
            raise SpecError(f"{unknown[0]}: unexpected key for kind {self.name!r} (expected "
                            f"{', '.join(model.spec_keys())})")
        object.__setattr__(self, "data", check_arrays(model, self.data))
        object.__setattr__(self, "weight_decay", _check_decay(self.weight_decay))
        if model.grouped:
            label = "mean" if self.objective is None else self.objective
            try:
                object.__setattr__(self, "objective", parse_objective(label).label)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
            d = self.values()[model.group_weights.name]
            if not (np.allclose(d, np.diag(np.diag(d)), rtol=0, atol=0)
                    and np.all(np.diag(d) >= 0)):
                raise SpecError(f"{model.group_weights.name}: group weights must be a diagonal "
                                "matrix of frequencies >= 0")
        elif self.objective is not None:
            raise SpecError(f"objective: model {self.name!r} has no groups (group_weights)")

    @property
    def group_objective(self) -> GroupObjective | None:  # type: ignore[override]
        """The trained group objective (grouped models), else None."""
        return None if self.objective is None else parse_objective(self.objective)

    @property
    def frequencies(self) -> np.ndarray:
        """p̂_g = D_gg, the weights of the mean loss over examples (grouped models)."""
        return np.diag(self.values()[self.model.group_weights.name]).copy()

    @property
    def reference_losses(self) -> np.ndarray:
        """ℓ_g of the zero model (every learned matrix 0), per group (loss units)."""
        values = self.values()
        values |= {w: np.zeros_like(values[w]) for w in self.model.learned_names}
        return _zero_loss_program(self.model).group_losses(values)

    def with_objective(self, label: str) -> ModelSpec:
        """The same spec trained with group objective ``label`` (e.g. ``"power(q=1)"``)."""
        return ModelSpec(self.name, self.data, self.weight_decay, label)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.name

    def _selection(self) -> dict[str, object]:
        return dict(self.data)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.data)

    def to_dict(self) -> dict[str, object]:
        out = {"kind": self.name, **self.data, "weight_decay": self.weight_decay}
        return out | ({"objective": self.objective} if self.objective is not None else {})

    def describe(self) -> str:
        base = super().describe()
        return base if self.objective is None else f"{base} objective={self.objective}"


def _model_or_spec_error(kind: str, data: Mapping[str, object]) -> Model:
    try:
        return get_model(kind, data)
    except ModelError as exc:
        raise SpecError(f"kind: {exc}") from None


def sample_model(
    model: Model | str,
    dims: Mapping[str, int],
    init: float = 1e-2,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> ModelSpec:
    """A spec of ``model`` with dimensions ``dims`` (symbol name -> size) from ``seed``.

    Constants: i.i.d. N(0, 1/m) entries, m the product of the sizes of the *large* dimensions
    in the constant's shape (1 if none), so contractions over a large dimension are O(1).
    Learned matrices: i.i.d. N(0, init²) (per-coordinate std ``init``). A grouped model's group
    weights D are the equal frequencies I/G (the mean loss is then the mean over groups).
    Stacked keys are drawn entry by entry in the model's order.
    """
    if isinstance(model, Model):
        if model.name not in known_models():
            register_model(model)  # a Model built in Python: its spec resolves it by name
    else:
        model = get_model(model)
    init = _check_nonneg("init", init)
    sizes: dict[str, int] = {}
    for d in model.dims:
        if str(d) not in dims:
            raise SpecError(f"dims: missing size of {d} (model {model.name!r} has dimensions "
                            f"{', '.join(map(str, model.dims))})")
        sizes[str(d)] = _check_int(f"dims {d}", dims[str(d)])
    extra = sorted(set(dims) - set(sizes))
    if extra:
        raise SpecError(f"dims: model {model.name!r} has no dimension {extra[0]!r}")
    rng = np.random.default_rng(seed)
    arrays: dict[str, list | np.ndarray] = {}
    for sym in (*model.constants, *model.learned):
        shape = tuple(int(d) if d.is_Integer else sizes[str(d)] for d in sym.shape)
        if model.stacked(sym.name):  # N samples, entries N(0, 1/N): the sum is a mean
            shape = (sizes[str(model.samples)], *shape)
        if sym in model.learned:
            value = rng.standard_normal(shape) * init
        elif sym == model.group_weights:  # the frequencies of a grouped model: equal
            value = np.eye(shape[0]) / shape[0]
        else:
            m = int(np.prod([sizes[str(d)] for d in sym.shape if d in model.large] or [1]))
            m *= sizes[str(model.samples)] if model.stacked(sym.name) else 1
            value = rng.standard_normal(shape) / np.sqrt(m)
        key = model.key(sym.name)
        if isinstance(key, tuple):
            arrays.setdefault(key[0], []).append(value)  # type: ignore[union-attr]
        else:
            arrays[key] = value
    data = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    return ModelSpec(model.name, data, weight_decay=weight_decay)


def sample_modes(
    scales: Sequence[float] | np.ndarray,
    frequencies: Sequence[float] | np.ndarray,
    n: int = 20,
    hidden: int = 20,
    init: float = 1e-3,
    examples: int = 256,
    seed: int = 0,
    objective: str = "mean",
) -> ModelSpec:
    """A spec of the capability-modes model (:data:`dynamics.catalog.MODES`) from ``seed``.

    G = len(scales) capabilities: A = [a_g], B = [b_g] (n×G) with orthonormal columns (QR of
    Gaussian matrices), S = diag(s_g). The dataset has N = ``examples`` examples, n_g =
    max(1, round(N p_g)) of them x = b_g (target s_g a_g); D = diag(p̂_g), p̂_g = n_g/Σn, so the
    loss with D as given is the mean loss over the examples. Initial weights X0 = W₂ (n×k),
    Y0 = W₁ᵀ (n×k), k = ``hidden``, i.i.d. N(0, σ²), σ = ``init`` (small: each mode emerges
    abruptly). ``objective`` is the group objective trained (:func:`dynamics.groups.parse`).
    """
    s = np.asarray(scales, dtype=np.float64)
    p = np.asarray(frequencies, dtype=np.float64)
    if s.ndim != 1 or s.size < 1 or p.shape != s.shape:
        raise SpecError(f"scales {s.shape} and frequencies {p.shape} must be equal 1-d arrays")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise SpecError("scales: must be finite numbers > 0")
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise SpecError("frequencies: must be finite numbers > 0")
    n, hidden = _check_int("n", n), _check_int("hidden", hidden)
    examples = _check_int("examples", examples)
    if s.size > n:
        raise SpecError(f"n: {n} dimensions hold at most {n} orthonormal modes, got {s.size}")
    init = _check_nonneg("init", init)
    rng = np.random.default_rng(seed)
    a = _orthonormal(rng, n, s.size)
    b = _orthonormal(rng, n, s.size)
    counts = np.maximum(1, np.round(examples * p / p.sum()))
    data = {"A": a, "B": b, "S": np.diag(s), "D": np.diag(counts / counts.sum()),
            "X0": rng.standard_normal((n, hidden)) * init,
            "Y0": rng.standard_normal((n, hidden)) * init}
    return ModelSpec("modes", data, objective=objective)


Problem = Vector | Factorization | AttentionHead | Chain | ModelSpec
KINDS: dict[str, type[_Spec]] = {
    cls.kind: cls for cls in (Vector, Factorization, AttentionHead, Chain)
}


def _sample_pair(n: int, rank: int, model_rank: int | None, init: float,
                 singular_values: list[float] | None, scale: float, seed: int
                 ) -> tuple[np.random.Generator, dict[str, np.ndarray]]:
    """The generator (for further draws) and A, B (:func:`_target_factors`), X0, Y0 (n x k,
    i.i.d. N(0, init²)) of a spec fitting A Bᵀ, drawn in this order from ``seed``."""
    n = _check_int("n", n)
    rank = _check_int("rank", rank)
    k = rank if model_rank is None else _check_int("model_rank", model_rank)
    if rank > n:
        raise SpecError(f"rank: target rank {rank} exceeds n = {n}")
    if k > n:
        raise SpecError(f"model_rank: model rank {k} exceeds n = {n}")
    init = _check_nonneg("init", init)
    scale = _check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    a, b = _target_factors(rng, n, rank, singular_values, scale)
    x0 = rng.standard_normal((n, k)) * init
    y0 = rng.standard_normal((n, k)) * init
    return rng, {"A": a, "B": b, "X0": x0, "Y0": y0}


def _set_factor_pair(spec: _Spec) -> int:
    """Validate and store a spec's target pair A, B (n x r) and learned pair X0, Y0 (n x k)
    and its weight decay (factorization, chain); returns k."""
    mats = {k: _as_matrix(k, getattr(spec, k)) for k in ("A", "B", "X0", "Y0")}
    n, r = mats["A"].shape
    if mats["B"].shape != (n, r):
        raise SpecError(f"B: shape {mats['B'].shape} does not match A {(n, r)}")
    k = mats["X0"].shape[1]
    for key in ("X0", "Y0"):
        if mats[key].shape != (n, k):
            raise SpecError(f"{key}: shape {mats[key].shape}, expected ({n}, {k})")
    for key, value in mats.items():
        object.__setattr__(spec, key, value)
    object.__setattr__(spec, "weight_decay", _check_decay(spec.weight_decay))
    return k


def _product_singular_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Singular values of a bᵀ (a, b: n x r) without forming the n x n product: with
    a = Q_a R_a, b = Q_b R_b they are those of the r x r matrix R_a R_bᵀ."""
    return np.linalg.svd(np.linalg.qr(a, mode="r") @ np.linalg.qr(b, mode="r").T,
                         compute_uv=False)


def _scale_of(s: np.ndarray) -> tuple[float, float]:
    s = s[s > 1e-12 * s.max()] if s.size and s.max() > 0 else np.ones(1)
    return float(s.max()), float(s.min())


def _check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise SpecError(f"{name}: must be a finite number >= 0, got {value!r}")
    return v


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.sum(np.exp(x - m))))


def save(spec: Problem, path: str | Path) -> Path:
    """Write ``spec`` to a ``.npz`` file (float64; README "Conventions"); exact round trip."""
    path = Path(path)
    extra: dict[str, object] = {"kind": np.array(spec.kind)}
    extra["weight_decay"] = np.array(spec.weight_decay, dtype=np.float64)
    arrays = spec.arrays()
    for key, value in spec._selection().items():  # the model choice, e.g. loss = "ce"
        if key not in arrays:
            extra[key] = np.array(value)
    if isinstance(spec, ModelSpec) and spec.objective is not None:  # a grouped model's F
        extra["objective"] = np.array(spec.objective)
    with open(path, "wb") as fh:  # np.savez would append ".npz" to other suffixes
        np.savez(fh, **arrays, **extra)
    return path


def load(path: str | Path) -> Problem:
    """Read and validate a spec file; raises :class:`SpecError` naming the bad key.

    A built-in kind becomes its class (:data:`KINDS`); any other registered model (a user's
    ``--model FILE.py``) a :class:`ModelSpec`.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SpecError(f"{path}: not a valid .npz spec file ({exc.__class__.__name__})") from None
    if "kind" not in content:
        raise SpecError(f"{path}: missing key 'kind'")
    kind = str(content.pop("kind"))
    kwargs: dict[str, object] = {}
    if "weight_decay" in content:
        wd = content.pop("weight_decay")
        if wd.shape != ():
            raise SpecError("weight_decay: expected a scalar")
        kwargs["weight_decay"] = float(wd)
    cls = KINDS.get(kind)
    if cls is None:
        try:
            model_entry(kind)
        except ModelError as exc:
            raise SpecError(f"kind: {exc}") from None
        if "objective" in content:
            kwargs["objective"] = str(content.pop("objective"))
        return ModelSpec(kind, content, **kwargs)  # type: ignore[arg-type]
    if "loss" in content:
        if cls is not Factorization:
            raise SpecError(f"loss: only factorization specs take a loss, not {kind!r}")
        kwargs["loss"] = str(content.pop("loss"))
    keys = [f.name for f in fields(cls) if f.name not in ("weight_decay", "loss")]
    for key in keys:
        if key not in content:
            raise SpecError(f"{path}: missing key {key!r} for kind {kind!r}")
        arr = np.asarray(content[key])
        if not np.issubdtype(arr.dtype, np.number):
            raise SpecError(f"{key}: expected a numeric array, got dtype {arr.dtype}")
        kwargs[key] = content.pop(key)
    if content:
        raise SpecError(f"{min(content)}: unexpected key for kind {kind!r}")
    return cls(**kwargs)  # type: ignore[arg-type]
