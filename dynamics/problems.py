"""Problem specs: the toy problems whose learning dynamics scurve derives, predicts and trains.

Every problem is a set of *factors*. A factor pairs a learned ``n x k`` matrix ``W`` (the
columns are the learned vectors) with its target ``n x r`` matrix ``T`` (the columns are the
target directions); the loss depends on the factors only through the products ``T^T T``,
``T^T W`` and ``W^T W`` (DESIGN §3), which is why the reduced dynamics close.

=================  ===================================  ====================================
problem            factors (learned <- target)          loss (½ x sum of squares, DESIGN §2)
=================  ===================================  ====================================
``Vector``         ``x <- a`` (n x 1)                   ½‖a − x‖²
``Factorization``  ``X <- A``, ``Y <- B`` (n x k, n x r)  ½‖A Bᵀ − X Yᵀ‖² (+ cross-entropy)
``AttentionHead``  ``Q0<-Q, K0<-K, O0<-O, V0<-V``       ½‖(QKᵀ)⊗(OVᵀ) − (Q̃K̃ᵀ)⊗(ÕṼᵀ)‖²
=================  ===================================  ====================================

Weight decay λ adds ½λ‖θ‖² to the loss, so the gradient flow gains −λθ. Specs are sampled
from an explicit seed and saved to / loaded from ``.npz`` files (DESIGN §2) with an exact
round trip; loading validates every key and raises :class:`SpecError` naming it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = [
    "AttentionHead",
    "Factorization",
    "Problem",
    "SpecError",
    "Vector",
    "load",
    "save",
]

LOSSES = ("mse", "ce")


class SpecError(ValueError):
    """A problem spec (arguments or ``.npz`` file) is invalid; the message names the key."""


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
    """Shared behaviour: factors, L_ref, equality, npz round trip."""

    kind: ClassVar[str]
    target_keys: ClassVar[tuple[str, ...]]
    init_keys: ClassVar[tuple[str, ...]]

    def factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{factor name: (target T (n x r), initial learned W (n x k))}`` in a fixed order.

        The factor name is the learned parameter's: ``x``; ``X``, ``Y``; ``Q``, ``K``, ``O``,
        ``V`` (the init key without its trailing ``0``).
        """
        return {
            ik.removesuffix("0"): (getattr(self, tk), getattr(self, ik))
            for tk, ik in zip(self.target_keys, self.init_keys, strict=True)
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in (*self.target_keys, *self.init_keys)}

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()  # type: ignore[union-attr]
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]

    @property
    def l_ref(self) -> float:
        """Loss of the zero model, ½‖target‖² (DESIGN §2)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


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
    target_keys: ClassVar[tuple[str, ...]] = ("a",)
    init_keys: ClassVar[tuple[str, ...]] = ("x0",)

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

    def describe(self) -> str:
        return f"vector n={self.n} λ={self.weight_decay:g}"


@dataclass(frozen=True, eq=False)
class Factorization(_Spec):
    """Matrix factorization: fit C = A Bᵀ (n x n, rank r) with Z = X Yᵀ (rank k).

    L = ½‖A Bᵀ − X Yᵀ‖² + ½λ(‖X‖² + ‖Y‖²) for ``loss="mse"``; for ``loss="ce"``
    L = KL(softmax(vec C) ‖ softmax(vec Z)) + the same decay (DESIGN §3).
    """

    A: np.ndarray
    B: np.ndarray
    X0: np.ndarray
    Y0: np.ndarray
    weight_decay: float = 0.0
    loss: str = "mse"

    kind: ClassVar[str] = "factorization"
    target_keys: ClassVar[tuple[str, ...]] = ("A", "B")
    init_keys: ClassVar[tuple[str, ...]] = ("X0", "Y0")

    def __post_init__(self) -> None:
        mats = {k: _as_matrix(k, getattr(self, k)) for k in ("A", "B", "X0", "Y0")}
        n, r = mats["A"].shape
        if mats["B"].shape != (n, r):
            raise SpecError(f"B: shape {mats['B'].shape} does not match A {(n, r)}")
        k = mats["X0"].shape[1]
        for key in ("X0", "Y0"):
            if mats[key].shape != (n, k):
                raise SpecError(f"{key}: shape {mats[key].shape}, expected ({n}, {k})")
        for key, value in mats.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "weight_decay", _check_decay(self.weight_decay))
        if self.loss not in LOSSES:
            raise SpecError(f"loss: unknown loss {self.loss!r} (expected one of {LOSSES})")

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def r(self) -> int:
        return self.A.shape[1]

    @property
    def k(self) -> int:
        return self.X0.shape[1]

    @property
    def target(self) -> np.ndarray:
        """C = A Bᵀ (n x n)."""
        return self.A @ self.B.T

    @property
    def l_ref(self) -> float:
        """½‖A Bᵀ‖² for MSE; for cross-entropy the loss of the zero model, KL(p_C ‖ uniform)."""
        if self.loss == "ce":
            c = self.target.ravel()
            logp = c - _logsumexp(c)
            return float(np.sum(np.exp(logp) * (logp + np.log(c.size))))
        ga, gb = self.A.T @ self.A, self.B.T @ self.B
        return 0.5 * float(np.sum(ga * gb))

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
        return cls(A=a, B=b, X0=x0, Y0=y0, weight_decay=weight_decay, loss=loss)

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
    L = ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²] (DESIGN §3).
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
    target_keys: ClassVar[tuple[str, ...]] = ("Q", "K", "O", "V")
    init_keys: ClassVar[tuple[str, ...]] = ("Q0", "K0", "O0", "V0")

    def __post_init__(self) -> None:
        mats = {k: _as_matrix(k, getattr(self, k)) for k in (*self.target_keys, *self.init_keys)}
        d, h = mats["Q"].shape
        hm = mats["Q0"].shape[1]
        for key in self.target_keys:
            if mats[key].shape != (d, h):
                raise SpecError(f"{key}: shape {mats[key].shape}, expected ({d}, {h})")
        for key in self.init_keys:
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

    def describe(self) -> str:
        return f"attention d={self.d} h={self.h} h'={self.k} λ={self.weight_decay:g}"


Problem = Vector | Factorization | AttentionHead
KINDS: dict[str, type[_Spec]] = {
    cls.kind: cls for cls in (Vector, Factorization, AttentionHead)
}


def _check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise SpecError(f"{name}: must be a finite number >= 0, got {value!r}")
    return v


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.sum(np.exp(x - m))))


def save(spec: Problem, path: str | Path) -> Path:
    """Write ``spec`` to a ``.npz`` file (float64 arrays, DESIGN §2); exact round trip."""
    path = Path(path)
    extra: dict[str, object] = {"kind": np.array(spec.kind)}
    extra["weight_decay"] = np.array(spec.weight_decay, dtype=np.float64)
    if isinstance(spec, Factorization):
        extra["loss"] = np.array(spec.loss)
    with open(path, "wb") as fh:  # np.savez would append ".npz" to other suffixes
        np.savez(fh, **spec.arrays(), **extra)
    return path


def load(path: str | Path) -> Problem:
    """Read and validate a spec file; raises :class:`SpecError` naming the bad key."""
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
    if kind not in KINDS:
        raise SpecError(f"kind: unknown kind {kind!r} (expected one of {sorted(KINDS)})")
    cls = KINDS[kind]
    kwargs: dict[str, object] = {}
    for key in (*cls.target_keys, *cls.init_keys):
        if key not in content:
            raise SpecError(f"{path}: missing key {key!r} for kind {kind!r}")
        kwargs[key] = content.pop(key)
    if "weight_decay" in content:
        wd = content.pop("weight_decay")
        if wd.shape != ():
            raise SpecError("weight_decay: expected a scalar")
        kwargs["weight_decay"] = float(wd)
    if "loss" in content:
        if cls is not Factorization:
            raise SpecError(f"loss: only factorization specs take a loss, not {kind!r}")
        kwargs["loss"] = str(content.pop("loss"))
    if content:
        raise SpecError(f"{min(content)}: unexpected key for kind {kind!r}")
    for key in (*cls.target_keys, *cls.init_keys):
        arr = np.asarray(kwargs[key])
        if not np.issubdtype(arr.dtype, np.number):
            raise SpecError(f"{key}: expected a numeric array, got dtype {arr.dtype}")
    return cls(**kwargs)  # type: ignore[arg-type]

