"""Models: a loss written once, from which scurve derives, predicts and trains.

The user's side of it is in README "Your own model".

A :class:`Model` is a scalar SymPy expression over ``MatrixSymbol``s together with the
matrices that are learned, the ones that are fixed (targets, data), and the dimension symbols
that may be huge::

    import sympy as sp
    from dynamics.model import Model

    n, r, k = sp.symbols("n r k", integer=True, positive=True)
    A, B = sp.MatrixSymbol("A", n, r), sp.MatrixSymbol("B", n, r)
    X, Y = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("Y", n, k)
    E = A * B.T - X * Y.T
    MODEL = Model("mine", loss=sp.Trace(E.T * E) / 2, learned=[X, Y], constants=[A, B],
                  large=[n])

From it :mod:`dynamics.symbolic` derives the full gradient flow, the modified equation and the
exact GD step; the reduced (order-parameter) versions when they close in the contractions over
the ``large`` dimensions; and the batched torch program the trainer runs. A spec file for the
model (:mod:`dynamics.problems`) holds ``kind`` = the model's name, every constant under its
symbol's name and the initial value of every learned matrix under its name + ``0`` (``keys``
renames them; a key ``(name, i)`` is entry i of a stacked array). Weight decay λ adds
½λ Σ_W ‖W‖² over the learned matrices (the spec's ``weight_decay``).

Cross-entropy. With ``logits=(Z, C)`` (two matrix expressions of one shape, Z depending on the
learned matrices, C on the constants only) the loss is L = KL(softmax(vec C) ‖ softmax(vec Z));
``loss`` must then be left ``None``. SymPy differentiates it in two steps (its matrix calculus
cannot differentiate softmax; :mod:`dynamics.symbolic`).

Grouped models. With ``group_weights=D`` (a G×G constant the loss is linear in) the loss is
a weighted sum over capability groups, L = Σ_g D_gg ℓ_g, and ℓ_g = (∂L/∂D)_gg is derived from
it. A *group objective* F(ℓ_1, …, ℓ_G) (:mod:`dynamics.groups`: mean, power q, tilted τ, DRO)
then has ∇F = Σ_g (∂F/∂ℓ_g) ∇ℓ_g = ∇L at D = diag(∂F/∂ℓ): the dynamics of every group objective
are those of the one derived loss, with D set from the current ℓ at each evaluation. A spec's
D is the frequency weights diag(p̂_g) of the mean loss over examples.

Per-sample forms. With ``residual=r``, ``per_sample=[X, ...]`` and ``samples=N`` the loss is
L = ½ Σ_{n<N} r_n², r_n the scalar ``r`` at the n-th sample of every per-sample constant (a spec
stores each as an N × rows × cols array; their leading dimensions must agree). r must be affine
in the per-sample constants, r_n = Σ_k tr(X_{k,n}ᵀ F_k(θ)) with F_k = ∂r/∂X_k free of them
(e.g. matrix sensing, r = tr(Xᵀ W₀W₁) − tr(y)). With z_n = [vec X_{k,n}]_k and f = [vec F_k]_k,
L = ½ fᵀ S f through the sufficient statistic S = Σ_n z_n z_nᵀ, and ∇_θ L = ∇_θ Σ_k tr(R_kᵀ F_k)
at fixed R = S f: the reduced state is the learned matrices, its size independent of N
(:mod:`dynamics.persample`).

Model files. :func:`load_file` imports a user's Python file and registers its ``MODEL``; a file
may instead register a :class:`dynamics.registry.Entry` for it (its sampler with its command-line
options and hooks, as the built-in modules of :mod:`dynamics.models` do; README "Add a model").
Every error (the file fails to import, has no ``MODEL``, the model is malformed) is a
:class:`ModelError` with one line saying what and where.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp
from sympy.matrices.expressions import MatrixExpr, MatrixSymbol

__all__ = [
    "Family",
    "Model",
    "ModelError",
    "get",
    "known",
    "load_file",
    "register",
]

Key = str | tuple[str, int]
#: a spec file's entries that are not the model's arrays
RESERVED_KEYS = frozenset({"kind", "weight_decay", "loss", "objective"})


from .errors import ModelError  # noqa: E402  (re-exported: dynamics.model.ModelError)


def _symbols_of(expr: sp.Basic) -> set[MatrixSymbol]:
    return {s for s in expr.atoms(MatrixSymbol)}


@dataclass(frozen=True, eq=False)
class Model:
    """A loss over matrix symbols (module docstring).

    Args:
        name: the spec ``kind``.
        loss: scalar SymPy expression (traces, products, transposes, sums, scalar powers and
            products of traces) of ``learned`` and ``constants``; ``None`` with ``logits``.
        learned: the trained matrices. One whose shape holds no ``large`` symbol is *small*:
            it is its own state in the reduced dynamics.
        constants: every fixed matrix (targets, data).
        large: the dimension symbols that may be huge (contracted away by the reduction).
        keys: spec key of a symbol, by symbol name (default: a constant's own name, a learned
            matrix's name + ``"0"``); ``(key, i)`` is entry i of a stacked array.
        targets: ``{learned name: constant name}``: the target whose columns the learned
            matrix's columns are compared with (cosines and norms in trajectories; optional).
        logits: ``(Z, C)`` for the cross-entropy loss KL(softmax(vec C) ‖ softmax(vec Z)).
        latex: LaTeX names of symbols, by symbol name (default: the name).
        description: one line for ``--help`` and listings.
        group_weights: a square constant D (G×G) that the loss is *linear* in, whose diagonal
            weighs G capability groups: L = Σ_g D_gg ℓ_g. The per-group losses are then derived,
            not written: ℓ_g = (∂L/∂D)_gg (module docstring, "Grouped models").
        residual, per_sample, samples: a per-sample model (module docstring, "Per-sample
            forms"): L = ½ Σ_n r_n², r_n = ``residual`` with each ``per_sample`` constant X
            replaced by its sample X_n; ``samples`` (N) is the stacked leading dimension of the
            per-sample constants in the spec (N × X's shape). ``loss`` is then left ``None``.
    """

    name: str
    loss: sp.Expr | None
    learned: Sequence[MatrixSymbol]
    constants: Sequence[MatrixSymbol]
    large: Sequence[sp.Symbol]
    keys: Mapping[str, Key] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    logits: tuple[MatrixExpr, MatrixExpr] | None = None
    latex: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    group_weights: MatrixSymbol | None = None
    residual: sp.Expr | None = None
    per_sample: Sequence[MatrixSymbol] = ()
    samples: sp.Symbol | None = None

    def __post_init__(self) -> None:
        fix = object.__setattr__
        fix(self, "per_sample", tuple(self.per_sample))
        if self.residual is not None and self.loss is None:
            fix(self, "loss", self.residual**2 / 2)  # one sample's loss (display); L sums it
        fix(self, "learned", tuple(self.learned))
        fix(self, "constants", tuple(self.constants))
        fix(self, "large", tuple(self.large))
        fix(self, "keys", dict(self.keys))
        fix(self, "targets", dict(self.targets))
        fix(self, "latex", dict(self.latex))
        self._check()

    # ------------------------------------------------------------------ validation

    def _check(self) -> None:
        where = f"model {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ModelError(f"model name must be an identifier-like string, got {self.name!r}")
        for role, mats in (("learned", self.learned), ("constants", self.constants)):
            for m in mats:
                if not isinstance(m, MatrixSymbol):
                    raise ModelError(f"{where}: {role} entry {m!r} is not a sympy MatrixSymbol")
        if not self.learned:
            raise ModelError(f"{where}: needs at least one learned matrix")
        names = [m.name for m in (*self.learned, *self.constants)]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ModelError(f"{where}: symbol {dup[0]!r} declared twice")
        self._check_keys(where)
        for s in self.large:
            if not isinstance(s, sp.Symbol):
                raise ModelError(f"{where}: large entry {s!r} is not a sympy Symbol")
        declared = set(self.learned) | set(self.constants)
        if self.logits is not None:
            if self.loss is not None:
                raise ModelError(f"{where}: give either loss or logits, not both")
            z, c = self.logits
            if not (getattr(z, "is_Matrix", False) and getattr(c, "is_Matrix", False)):
                raise ModelError(f"{where}: logits must be two matrix expressions (Z, C)")
            if z.shape != c.shape:
                raise ModelError(f"{where}: logits Z {z.shape} and C {c.shape} differ in shape")
            if _symbols_of(c) & set(self.learned):
                raise ModelError(f"{where}: target logits C must not depend on learned matrices")
            exprs = [z, c]
        else:
            if not isinstance(self.loss, sp.Basic):
                raise ModelError(f"{where}: loss must be a sympy expression, got "
                                 f"{type(self.loss).__name__}")
            if getattr(self.loss, "is_Matrix", False):
                shape = self.loss.shape
                raise ModelError(f"{where}: loss is a {shape[0]}x{shape[1]} matrix, not a scalar "
                                 "(wrap it in sp.Trace)")
            exprs = [self.loss]
        used = set().union(*(_symbols_of(e) for e in exprs))
        undeclared = sorted(m.name for m in used - declared)
        if undeclared:
            raise ModelError(f"{where}: loss mentions {undeclared[0]!r}, declared neither "
                             "learned nor constant")
        for m in self.learned:
            if m not in used:
                raise ModelError(f"{where}: the loss does not depend on learned matrix {m.name!r}")
        sizes = sorted(str(s) for e in exprs for s in e.free_symbols if s in self.dims)
        if sizes:  # the derived programs take matrices and λ, η, μ, never the sizes
            raise ModelError(f"{where}: loss uses dimension {sizes[0]!r} as a number; the sizes "
                             "are not inputs of the derived dynamics (scale the data instead, "
                             "e.g. X/sqrt(N) for a mean over N samples)")
        stray = sorted(str(s) for e in exprs for s in e.free_symbols
                       if not isinstance(s, MatrixSymbol) and s not in self.dims)
        if stray:
            raise ModelError(f"{where}: loss mentions scalar symbol {stray[0]!r}; scalars must be "
                             "numbers (put parameters in a 1x1 constant)")
        for m in (*self.learned, *self.constants):
            for d in m.shape:
                if not (d.is_Integer or isinstance(d, sp.Symbol)):
                    raise ModelError(f"{where}: dimension {d} of {m.name} must be a symbol or "
                                     "an integer")
        for name, target in self.targets.items():
            if name not in self.learned_names or target not in self.constant_names:
                raise ModelError(f"{where}: targets maps {name!r} -> {target!r}, not a learned "
                                 "matrix and a constant")
        self._check_per_sample(where)
        d = self.group_weights
        if d is not None:
            if d not in self.constants:
                raise ModelError(f"{where}: group_weights {getattr(d, 'name', d)!r} must be one "
                                 "of the constants")
            if d.shape[0] != d.shape[1]:
                raise ModelError(f"{where}: group_weights {d.name} must be square (G x G), got "
                                 f"{d.shape[0]} x {d.shape[1]}")
            if self.cross_entropy():
                raise ModelError(f"{where}: group_weights need a loss, not logits")

    def _check_keys(self, where: str) -> None:
        """Two symbols must not share a spec key (learned ``W1`` has key ``W10``: a constant
        ``W10`` would collide), unless both are entries of one stacked key; and no key may be
        one of the spec file's own entries (kind, weight_decay, loss, objective)."""
        owner: dict[str, tuple[str, Key]] = {}
        for m in (*self.learned, *self.constants):
            key = self.key(m.name)
            base = key[0] if isinstance(key, tuple) else key
            if base in RESERVED_KEYS:
                raise ModelError(f"{where}: spec key {base!r} of {m.name} is reserved for the "
                                 "spec file's own entries")
            if base in owner:
                other, other_key = owner[base]
                if not (isinstance(key, tuple) and isinstance(other_key, tuple)
                        and key[1] != other_key[1]):
                    raise ModelError(f"{where}: {m.name} and {other} both have spec key "
                                     f"{base!r}; rename one (or set keys=...)")
            owner[base] = (m.name, key)

    def _check_per_sample(self, where: str) -> None:
        given = (self.residual is not None, bool(self.per_sample), self.samples is not None)
        if not any(given):
            return
        if not all(given):
            raise ModelError(f"{where}: a per-sample model needs residual, per_sample and "
                             "samples together")
        if not isinstance(self.samples, sp.Symbol):
            raise ModelError(f"{where}: samples {self.samples!r} is not a sympy Symbol")
        for x in self.per_sample:
            if x not in self.constants:
                raise ModelError(f"{where}: per_sample entry {getattr(x, 'name', x)!r} is not "
                                 "one of the constants")
        if getattr(self.residual, "is_Matrix", False):
            raise ModelError(f"{where}: residual must be a scalar (wrap it in sp.Trace)")
        if self.cross_entropy() or self.grouped:
            raise ModelError(f"{where}: a per-sample model has the squared loss, ungrouped")
        if any(self.samples in m.shape for m in (*self.learned, *self.constants)):
            raise ModelError(f"{where}: samples {self.samples} is the stacked leading dimension "
                             "of the per-sample constants, not a dimension of a matrix")

    # ------------------------------------------------------------------ properties

    @property
    def learned_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.learned)

    @property
    def constant_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.constants)

    @property
    def symbols(self) -> dict[str, MatrixSymbol]:
        """Every matrix symbol by name, learned first."""
        return {m.name: m for m in (*self.learned, *self.constants)}

    @property
    def dims(self) -> tuple[sp.Symbol, ...]:
        """The dimension symbols of every matrix, in order of appearance."""
        out: list[sp.Symbol] = []
        for m in (*self.learned, *self.constants):
            out += [d for d in m.shape if isinstance(d, sp.Symbol) and d not in out]
        if self.samples is not None:
            out.append(self.samples)
        return tuple(out)

    def stacked(self, name: str) -> bool:
        """Whether constant ``name`` is per-sample: its spec value is ``samples`` × its shape."""
        return any(x.name == name for x in self.per_sample)

    def is_small(self, m: MatrixSymbol) -> bool:
        """A matrix whose shape holds no large dimension (its own reduced state)."""
        return not any(d in self.large for d in m.shape)

    def key(self, name: str) -> Key:
        """Spec key of symbol ``name`` (module docstring)."""
        if name in self.keys:
            return self.keys[name]
        return name + "0" if name in self.learned_names else name

    def spec_keys(self) -> list[str]:
        """Every spec key the model needs (stacked keys once), constants first."""
        out: list[str] = []
        for m in (*self.constants, *self.learned):
            key = self.key(m.name)
            key = key[0] if isinstance(key, tuple) else key
            if key not in out:
                out.append(key)
        return out

    def cross_entropy(self) -> bool:
        return self.logits is not None

    @property
    def grouped(self) -> bool:
        """Whether the loss weighs capability groups (``group_weights``)."""
        return self.group_weights is not None

    def __repr__(self) -> str:
        return f"Model({self.name!r}, learned={list(self.learned_names)}, " \
               f"constants={list(self.constant_names)}, large={list(self.large)})"


@dataclass(frozen=True)
class Family:
    """Several models under one spec ``kind``; ``select(spec entries)`` picks one.

    E.g. the depth-D chain (D read off the stacked middle factors ``M0``, or an option
    ``depth``) or the factorization's MSE and cross-entropy losses (the spec's ``loss``).
    ``variants``: ``(label, selection)`` pairs that ``scurve derive`` shows by default.
    """

    name: str
    select: Callable[[Mapping[str, object]], Model]
    variants: tuple[tuple[str, Mapping[str, object]], ...] = ()
    description: str = ""


#: built models and families by name (each registry entry's ``build`` runs once)
_BUILT: dict[str, Model | Family] = {}


def register(model: Model | Family) -> Model | Family:
    """Make ``model`` known under its name (a later model of the same name replaces it): a
    :class:`dynamics.registry.Entry` without a sampler (``scurve sample --dims`` draws it)."""
    from . import registry

    registry.register(registry.Entry(model.name, lambda: model, description=model.description))
    _BUILT[model.name] = model
    return model


def known() -> list[str]:
    """Names of every known model (built-ins first)."""
    from . import registry

    return list(registry.entries())


def entry(kind: str) -> Model | Family:
    """The registered model or family of ``kind`` (no selection), built on first use."""
    from . import registry

    found = registry.entry(kind)
    if found is None:
        raise ModelError(f"unknown kind {kind!r} (known models: {', '.join(known())}; load "
                         "your own with --model FILE.py)")
    built = _BUILT.get(kind)
    if built is None:
        built = _BUILT[kind] = found.build()
    return built


def get(kind: str, spec: Mapping[str, object] | None = None) -> Model:
    """The model of spec ``kind``; a family picks its member from the spec's arrays/options."""
    model = entry(kind)
    if isinstance(model, Family):
        return model.select(spec or {})
    return model


def _builtins() -> frozenset[str]:
    """The built-in models' names."""
    from . import registry

    return frozenset(registry.builtin_names())


def load_file(path: str | Path) -> Model:
    """Import ``path`` and register its ``MODEL``; raises :class:`ModelError` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    name = f"_scurve_model_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"{path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    except Exception as exc:  # the user's code: report where it failed, in one line
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = f" (line {frames[-1].lineno})" if frames else ""
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"{path}{line}: import failed: {type(exc).__name__}: {message}") from None
    model = getattr(module, "MODEL", None)
    if model is None:
        raise ModelError(f"{path}: defines no MODEL (expected MODEL = Model(...))")
    if not isinstance(model, Model):
        raise ModelError(f"{path}: MODEL is a {type(model).__name__}, not a dynamics.model.Model")
    if model.name in _builtins():
        raise ModelError(f"{path}: model name {model.name!r} is a built-in model's; choose "
                         "another name")
    from . import registry

    own = registry.entry(model.name)
    if own is not None and getattr(own.build, "__module__", None) == name:
        _BUILT[model.name] = model  # the file registered its entry (sampler, options, hooks)
    else:
        register(model)
    return model
