"""Problem specs: the constants and initial values of a model (README "Conventions").

One type, :class:`Spec`, for every model: ``kind`` (the registered model's name), ``data`` (its
arrays by spec key: each constant under its symbol's name, each learned matrix's initial value
under its name + ``0``), ``weight_decay`` λ (adds ½λ‖θ‖² to the loss, so the flow gains −λθ),
``options`` (a model family's selection, e.g. the factorization's ``loss``) and, for a grouped
model, the group objective F trained (parsed once and held parsed; its label is for I/O only).

``spec.model`` is the loss, written once (:mod:`dynamics.models`), ``spec.values()`` every
constant and initial learned matrix by symbol name, ``spec.l_ref`` the model's loss at every
learned matrix 0 (README "Conventions"; cached). Data keys, options and dimension sizes read as
attributes (``spec.A``, ``spec.X0``, ``spec.loss``, ``spec.n``, ``spec.r``, ``spec.k``), and a
model module's ``attributes`` hooks add derived ones (the chain's ``depth``, the
factorization's ``target`` C = A Bᵀ).

The built-ins' *builders* keep the old names: ``Factorization.sample(...)`` draws a spec,
``Factorization(A=..., B=..., X0=..., Y0=...)`` builds one from arrays (likewise ``Vector``,
``AttentionHead``, ``Chain``); :func:`sample_model` samples any model from its dimensions,
:func:`sample_modes` the capability modes. Specs are saved to / loaded from ``.npz`` files with
an exact round trip; loading validates every key and raises :class:`SpecError` naming it (and
both shapes when two disagree).

Importing this module imports no SymPy: the model is built on first use.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import registry
from .errors import ModelError, SpecError
from .models.modes import sample_modes

if TYPE_CHECKING:
    from .groups import GroupObjective
    from .model import Model

__all__ = [
    "KINDS",
    "AttentionHead",
    "Builder",
    "Chain",
    "Factorization",
    "ModelSpec",
    "Problem",
    "Spec",
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


def check_decay(value: float) -> float:
    """λ as a float; :class:`SpecError` unless finite and >= 0."""
    lam = float(value)
    if not np.isfinite(lam) or lam < 0:
        raise SpecError(f"weight_decay: must be a finite number >= 0, got {value!r}")
    return lam


def check_positive(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise SpecError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def check_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise SpecError(f"{name}: must be a finite number >= 0, got {value!r}")
    return v


def check_int(name: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise SpecError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def orthonormal(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """n x r matrix with orthonormal columns, Haar-distributed (QR with sign fix)."""
    q, rr = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.sign(np.diag(rr))


def target_factors(rng: np.random.Generator, n: int, r: int,
                   singular_values: list[float] | None, scale: float,
                   count: int = 2) -> list[np.ndarray]:
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
        return [orthonormal(rng, n, r) * root for _ in range(count)]
    std = scale ** (1.0 / count) / np.sqrt(n)
    return [rng.standard_normal((n, r)) * std for _ in range(count)]


def sample_pair(n: int, rank: int, model_rank: int | None, init: float,
                singular_values: list[float] | None, scale: float, seed: int
                ) -> tuple[np.random.Generator, dict[str, np.ndarray]]:
    """The generator (for further draws) and A, B (:func:`target_factors`), X0, Y0 (n x k,
    i.i.d. N(0, init²)) of a spec fitting A Bᵀ, drawn in this order from ``seed``."""
    n = check_int("n", n)
    rank = check_int("rank", rank)
    k = rank if model_rank is None else check_int("model_rank", model_rank)
    if rank > n:
        raise SpecError(f"rank: target rank {rank} exceeds n = {n}")
    if k > n:
        raise SpecError(f"model_rank: model rank {k} exceeds n = {n}")
    init = check_nonneg("init", init)
    scale = check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    a, b = target_factors(rng, n, rank, singular_values, scale)
    x0 = rng.standard_normal((n, k)) * init
    y0 = rng.standard_normal((n, k)) * init
    return rng, {"A": a, "B": b, "X0": x0, "Y0": y0}


def product_singular_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Singular values of a bᵀ (a, b: n x r) without forming the n x n product: with
    a = Q_a R_a, b = Q_b R_b they are those of the r x r matrix R_a R_bᵀ."""
    return np.linalg.svd(np.linalg.qr(a, mode="r") @ np.linalg.qr(b, mode="r").T,
                         compute_uv=False)


def scale_of(s: np.ndarray) -> tuple[float, float]:
    """(largest, smallest) of the singular values ``s`` above 1e-12 of the largest."""
    s = s[s > 1e-12 * s.max()] if s.size and s.max() > 0 else np.ones(1)
    return float(s.max()), float(s.min())


def _entry(kind: str) -> registry.Entry:
    found = registry.entry(kind)
    if found is None:
        from .model import known

        raise SpecError(f"kind: unknown kind {kind!r} (known models: {', '.join(known())}; "
                        "load your own with --model FILE.py)")
    return found


def _model_or_spec_error(kind: str, data: Mapping[str, object]) -> Model:
    from .model import get as get_model

    try:
        return get_model(kind, data)
    except ModelError as exc:
        raise SpecError(f"kind: {exc}") from None


def _numeric(key: str, value: object) -> np.ndarray:
    """``value`` as a finite float64 array; :class:`SpecError` naming ``key`` otherwise."""
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise SpecError(f"{key}: expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{key}: contains non-finite values")
    return arr


def _equal(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


class Spec:
    """A problem spec of any registered model (module docstring).

    Args:
        kind: the model's registered name.
        data: its arrays by spec key (converted to float64 and validated against the model:
            every key present, finite, every dimension consistent; :class:`SpecError` names
            the key).
        weight_decay: λ >= 0.
        objective: a grouped model's group objective F, a :func:`dynamics.groups.parse` label
            or a parsed :class:`dynamics.groups.GroupObjective` (default ``mean``); parsed
            once here.
        options: a model family's selection entries (e.g. ``{"loss": "ce"}``); the model
            module's ``defaults`` fill the ones left out.
        checked: the arrays come from a built-in sampler (consistent by construction): skip
            the validation, so that sampling builds no SymPy model.
    """

    __slots__ = ("_cache", "_objective", "data", "kind", "options", "weight_decay")

    def __init__(self, kind: str, data: Mapping[str, object] | None = None,
                 weight_decay: float = 0.0, objective: str | GroupObjective | None = None,
                 options: Mapping[str, object] | None = None, *, checked: bool = False) -> None:
        entry = _entry(str(kind))
        hooks = entry.hooks
        data = dict(data or {})
        normalize = hooks.get("normalize")
        if normalize is not None:
            data = normalize(data)
        opts = dict(hooks.get("defaults", {}))
        opts.update({k: v for k, v in (options or {}).items() if v is not None})
        unknown = sorted(set(opts) - set(hooks.get("defaults", {})))
        if unknown:
            raise SpecError(f"{unknown[0]}: model {kind!r} takes no option {unknown[0]!r}")
        if hooks.get("check") is not None:
            hooks["check"](opts)
        set_ = object.__setattr__
        set_(self, "kind", str(kind))
        set_(self, "options", opts)
        set_(self, "weight_decay", check_decay(weight_decay))
        set_(self, "_cache", {})
        if checked:
            arrays = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
        else:
            model = _model_or_spec_error(self.kind, {**data, **opts})
            selects = set(hooks.get("selects", ()))
            unknown = sorted(set(data) - set(model.spec_keys()) - selects)
            if unknown:
                raise SpecError(f"{unknown[0]}: unexpected key for kind {self.kind!r} "
                                f"(expected {', '.join(model.spec_keys())})")
            arrays = check_arrays(model, data)
            for key in selects & set(data):
                arrays[key] = _numeric(key, data[key])
            self._cache["model"] = model
        set_(self, "data", arrays)
        set_(self, "_objective", None)
        self._set_objective(objective)

    def _set_objective(self, objective: object) -> None:
        hooks = self.entry.hooks
        grouped = hooks["grouped"] if "grouped" in hooks else self.model.grouped
        if objective is None and not grouped:
            return
        if not grouped:
            raise SpecError(f"objective: model {self.kind!r} has no groups (group_weights)")
        from .groups import GroupObjective
        from .groups import parse as parse_objective

        if isinstance(objective, GroupObjective):
            parsed = objective
        else:
            try:
                parsed = parse_objective("mean" if objective is None else str(objective))
            except SpecError:
                raise
            except ValueError as exc:
                raise SpecError(str(exc)) from None
        object.__setattr__(self, "_objective", parsed)
        name = self.model.group_weights.name
        d = self.values()[name]
        if not (np.allclose(d, np.diag(np.diag(d)), rtol=0, atol=0)
                and np.all(np.diag(d) >= 0)):
            raise SpecError(f"{name}: group weights must be a diagonal matrix of frequencies "
                            ">= 0")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Spec is immutable (cannot set {name!r})")

    # ------------------------------------------------------------------ the model
    @property
    def entry(self) -> registry.Entry:
        """The registry entry of the spec's model (sampler, options, hooks)."""
        return _entry(self.kind)

    @property
    def model(self) -> Model:
        """The :class:`dynamics.model.Model` whose loss this spec instantiates."""
        model = self._cache.get("model")
        if model is None:
            model = self._cache["model"] = _model_or_spec_error(
                self.kind, {**self.data, **self.options})
        return model

    @property
    def name(self) -> str:
        """The model's name (= ``kind``)."""
        return self.kind

    @property
    def objective(self) -> str | None:
        """The label of the trained group objective (I/O), None for ungrouped models."""
        return None if self._objective is None else self._objective.label

    @property
    def group_objective(self) -> GroupObjective | None:
        """The trained group objective, parsed once (grouped models), else None."""
        return self._objective

    def replace(self, **changes: object) -> Spec:
        """A copy with ``changes``: spec keys (``X0=...``), options (``loss="ce"``),
        ``weight_decay`` or ``objective``; validated like a new spec."""
        data, options = dict(self.data), dict(self.options)
        decay = changes.pop("weight_decay", self.weight_decay)
        objective = changes.pop("objective", self._objective)
        for key, value in changes.items():
            if key in options:
                options[key] = value
            else:
                data[key] = value
        return Spec(self.kind, data, decay, objective, options)  # type: ignore[arg-type]

    def with_objective(self, label: str | GroupObjective) -> Spec:
        """The same spec trained with group objective ``label`` (e.g. ``"power(q=1)"``)."""
        return Spec(self.kind, self.data, self.weight_decay, label, self.options, checked=True)

    # ------------------------------------------------------------------ values
    def arrays(self) -> dict[str, np.ndarray]:
        """The spec file's arrays by key."""
        return dict(self.data)

    def values(self) -> dict[str, np.ndarray]:
        """Every constant and initial learned matrix by symbol name (float64)."""
        values = self._cache.get("values")
        if values is None:
            values = self._cache["values"] = values_of(self.model, self.data)
        return dict(values)

    def factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{learned name: (its target T, its initial value W)}`` for the model's ``targets``
        (x <- a; X <- A, Y <- B; Q <- Q⋆, ...), in the model's order."""
        values = self.values()
        return {w: (values[t], values[w]) for w, t in self.model.targets.items()}

    @property
    def l_ref(self) -> float:
        """Loss of the zero model (every learned matrix 0; README "Conventions"), cached: the
        model module's closed form of it (hook ``zero_loss``, tested against the derived one)
        when it has one, so that it needs no SymPy; else the derived :func:`zero_loss`."""
        if "l_ref" not in self._cache:
            closed = self.entry.hook("zero_loss")
            value = closed(self) if closed is not None else None
            self._cache["l_ref"] = float(value) if value is not None else \
                zero_loss(self.model, self.values())
        return self._cache["l_ref"]

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

    def dims(self) -> dict[str, int]:
        """Size of each dimension symbol by name (``n``, ``r``, ``k``, ...)."""
        if "dims" not in self._cache:
            static = self.entry.hook("dims")
            if static is not None:
                out = {d: int(np.shape(self.data[key])[axis]) for d, (key, axis) in
                       static.items()}
            else:
                out = _dims(self.model, self.values())
            self._cache["dims"] = out
        return dict(self._cache["dims"])

    @property
    def n(self) -> int:
        """Size of the first large dimension (rows of the learned factors)."""
        dims = self.dims()
        if "n" in dims:
            return dims["n"]
        large = self.model.large
        return dims.get(str(large[0]), 0) if large else 0

    def rate_scale(self) -> tuple[float, float]:
        """(largest, smallest) rate scale of the dynamics, in 1/t, for step and end-time
        choices of the integrators: the model's ``rate_scale`` hook, else √(2 L_ref) for both
        (the size of a target whose zero-model loss is L_ref)."""
        hook = self.entry.hook("rate_scale")
        if hook is not None:
            return hook(self)
        s = math.sqrt(2.0 * self.l_ref) if self.l_ref > 0 else 1.0
        return s, s

    def describe(self) -> str:
        """One line: kind, dimensions, λ (and the objective of a grouped model)."""
        hook = self.entry.hook("describe")
        if hook is not None:
            base = hook(self)
        else:
            dims = ", ".join(f"{d}={v}" for d, v in self.dims().items())
            base = f"{self.kind} {dims} λ={self.weight_decay:g}"
        return base if self.objective is None else f"{base} objective={self.objective}"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        data = object.__getattribute__(self, "data")
        if name in data:
            return data[name]
        options = object.__getattribute__(self, "options")
        if name in options:
            return options[name]
        attributes = self.entry.hook("attributes", {})
        if name in attributes:
            return attributes[name](self)
        dims = self.dims()
        if name in dims:
            return dims[name]
        raise AttributeError(f"{self.kind} spec has no attribute {name!r}")

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, **self.data, **self.options,
                                  "weight_decay": self.weight_decay}
        return out | ({"objective": self.objective} if self.objective is not None else {})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Spec({self.describe()})"

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.kind, self.data, self.weight_decay, self.objective,
                           self.options))


def _rebuild(kind: str, data: dict, weight_decay: float, objective: str | None,
             options: dict) -> Spec:
    return Spec(kind, data, weight_decay, objective, options, checked=True)


ModelSpec = Spec
"""The former name of :class:`Spec` for models outside the built-ins (same type)."""
Problem = Spec
"""The former union of the spec classes (now one type)."""


class Builder:
    """A built-in model's spec builder under its former class name: ``Builder.sample(...)``
    draws a spec (the model module's sampler), ``Builder(**arrays)`` (or positionally, in the
    order of ``fields``) builds one, ``isinstance(spec, Builder)`` tests the spec's kind."""

    def __init__(self, kind: str, fields: tuple[str, ...], options: tuple[str, ...] = (),
                 sample: Callable[..., Spec] | None = None) -> None:
        self.kind = kind
        self.fields = fields
        self.option_names = options
        self._sample = sample

    def sample(self, *args: Any, **kwargs: Any) -> Spec:
        """The model module's sampler (see its docstring)."""
        sampler = self._sample or _entry(self.kind).sample
        return sampler(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Spec:
        names = (*self.fields, "weight_decay", *self.option_names)
        if len(args) > len(names):
            raise SpecError(f"{self.kind}: at most {len(names)} positional arguments")
        given = dict(zip(names, args, strict=False))
        duplicate = sorted(set(given) & set(kwargs))
        if duplicate:
            raise SpecError(f"{self.kind}: {duplicate[0]} given twice")
        given |= kwargs
        options = {k: given.pop(k) for k in self.option_names if k in given}
        decay = given.pop("weight_decay", 0.0)
        return Spec(self.kind, given, decay, options=options)

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, Spec) and obj.kind == self.kind

    def __repr__(self) -> str:
        return f"Builder({self.kind!r})"


def _attention_sample(d: int, *args: Any, **kwargs: Any) -> Spec:
    from .models.attention import sample

    return sample(d, *args, **kwargs)


Vector = Builder("vector", ("a", "x0"))
Factorization = Builder("factorization", ("A", "B", "X0", "Y0"), ("loss",))
AttentionHead = Builder("attention", ("Q", "K", "O", "V", "Q0", "K0", "O0", "V0"),
                        sample=_attention_sample)
Chain = Builder("chain", ("A", "B", "X0", "Y0", "M0"))

#: every registered kind with a sampler: name -> builder (``KINDS[kind].sample(...)``), in the
#: registry's order (the four former spec classes under their names)
KINDS: dict[str, Builder] = {
    name: next((b for b in (Vector, Factorization, AttentionHead, Chain) if b.kind == name),
               None) or Builder(name, ())
    for name, e in registry.entries().items() if e.sample is not None}


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
        out[key] = _numeric(key, arrays[key])
    bound: dict[object, tuple[int, str, tuple]] = {}
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


def sample_model(
    model: Model | str,
    dims: Mapping[str, int],
    init: float = 1e-2,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> Spec:
    """A spec of ``model`` with dimensions ``dims`` (symbol name -> size) from ``seed``.

    Constants: i.i.d. N(0, 1/m) entries, m the product of the sizes of the *large* dimensions
    in the constant's shape (1 if none), so contractions over a large dimension are O(1).
    Learned matrices: i.i.d. N(0, init²) (per-coordinate std ``init``). A grouped model's group
    weights D are the equal frequencies I/G (the mean loss is then the mean over groups).
    Stacked keys are drawn entry by entry in the model's order.
    """
    from .model import Model, get, known, register

    if isinstance(model, Model):
        if model.name not in known():
            register(model)  # a Model built in Python: its spec resolves it by name
    else:
        try:
            model = get(model)
        except ModelError as exc:
            raise SpecError(f"kind: {exc}") from None
    init = check_nonneg("init", init)
    sizes: dict[str, int] = {}
    for d in model.dims:
        if str(d) not in dims:
            raise SpecError(f"dims: missing size of {d} (model {model.name!r} has dimensions "
                            f"{', '.join(map(str, model.dims))})")
        sizes[str(d)] = check_int(f"dims {d}", dims[str(d)])
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
    return Spec(model.name, data, weight_decay=weight_decay)


def save(spec: Spec, path: str | Path) -> Path:
    """Write ``spec`` to a ``.npz`` file (float64; README "Conventions"); exact round trip:
    its arrays, ``kind``, ``weight_decay``, its options (e.g. ``loss``) and a grouped model's
    ``objective`` label."""
    path = Path(path)
    extra: dict[str, object] = {"kind": np.array(spec.kind),
                                "weight_decay": np.array(spec.weight_decay, dtype=np.float64)}
    extra |= {key: np.array(value) for key, value in spec.options.items()}
    if spec.objective is not None:
        extra["objective"] = np.array(spec.objective)
    with open(path, "wb") as fh:  # np.savez would append ".npz" to other suffixes
        np.savez(fh, **spec.data, **extra)
    return path


def load(path: str | Path) -> Spec:
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
    entry = _entry(kind)
    if entry.hook("load") is not None:  # a family with its own spec type (committee)
        return entry.hook("load")(content)
    decay = 0.0
    if "weight_decay" in content:
        wd = content.pop("weight_decay")
        if wd.shape != ():
            raise SpecError("weight_decay: expected a scalar")
        decay = float(wd)
    objective = str(content.pop("objective")) if "objective" in content else None
    options = {}
    for key in ("loss",):  # the spec file's reserved option entries (dynamics.model)
        if key in content:
            if key not in entry.hook("defaults", {}):
                raise SpecError(f"{key}: only {_takers(key)} specs take a {key}, not {kind!r}")
            options[key] = str(content.pop(key))
    for key, value in content.items():
        if not np.issubdtype(np.asarray(value).dtype, np.number):
            raise SpecError(f"{key}: expected a numeric array, got dtype {value.dtype}")
    return Spec(kind, content, decay, objective, options)


def kind_of(path: str | Path) -> str | None:
    """The ``kind`` entry of a spec file, or None when it has none or is not a spec file
    (the loader then reports it)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["kind"]) if "kind" in data.files else None
    except Exception:  # not a spec file: load() names the problem
        return None


def _takers(option: str) -> str:
    return "/".join(n for n, e in registry.entries().items() if option in e.hook("defaults", {}))
