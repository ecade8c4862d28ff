"""The model registry: every model family scurve knows, with its sampler and hooks.

Standard library only, so that the command line (its problem list, ``scurve sample KIND``'s
options, the sweep's axis names) reads it without importing NumPy, SciPy or SymPy. Each model
module (:mod:`dynamics.models`, or a user's ``--model FILE.py``) registers one :class:`Entry`:

* ``build``: a function returning the :class:`dynamics.model.Model` or ``Family`` (called on
  first use, so SymPy is imported only when the loss is needed);
* ``sample``: the sampler, ``sample(**options, seed=...) -> dynamics.problems.Spec``;
* ``options``: the sampler's command-line options as data (:class:`Option`);
* ``hooks``: optional per-model functions of a spec (``rate_scale``, ``describe``,
  ``closed_form`` (the model's closed-form small-init t_f, ``closed_form(spec, f) -> float``
  in t, called by :func:`dynamics.theory.crossing_time`; absent: none), ``defaults`` (the
  model-selection entries of a spec file and their default values, e.g. ``{"loss": "mse"}``),
  ``attributes`` (derived quantities readable as ``spec.NAME``, e.g. the chain's ``depth``),
  ``normalize`` (reshapes of a spec's arrays, e.g. a vector target stored n x 1), ``plot``).

:func:`entry` finds an entry by name, importing the built-in model modules on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_ORDER", "Entry", "Option", "builtin_modules", "entries", "entry", "register",
           "sample"]

#: the order in which the CLI lists the first built-ins; every other module of
#: ``dynamics/models/`` that registers an ``ENTRY`` follows, by name (:func:`builtin_modules`)
BUILTIN_ORDER = ("vector", "factorization", "attention", "chain", "modes", "icl", "committee")

#: an option's value types: how the command line parses it
TYPES = ("int", "posint", "float", "posfloat", "nonneg", "floats", "str", "flag")


@dataclass(frozen=True)
class Option:
    """One sampler option: ``--NAME`` on the command line (underscores as dashes), the keyword
    ``NAME`` of the sampler. ``type`` is one of :data:`TYPES`; ``default`` None with
    ``required`` means the command line must give it."""

    name: str
    type: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"option {self.name}: type {self.type!r} is not one of {TYPES}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Entry:
    """A registered model family (module docstring)."""

    name: str
    build: Callable[[], Any]
    sample: Callable[..., Any] | None = None
    options: tuple[Option, ...] = ()
    hooks: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def hook(self, name: str, default: Any = None) -> Any:
        return self.hooks.get(name, default)

    def defaults(self) -> dict[str, Any]:
        """The sampler's option defaults by keyword."""
        return {o.name: o.default for o in self.options}


_ENTRIES: dict[str, Entry] = {}
_LOADED: list[bool] = []


def register(item: Entry) -> Entry:
    """Make ``item`` known under its name (a later entry of the same name replaces it)."""
    _ENTRIES[item.name] = item
    return item


def builtin_modules() -> tuple[str, ...]:
    """The registration modules of ``dynamics/models/``, found on disk: every module not
    starting with ``_``, a family's light ``NAME_cli`` module in place of ``NAME`` where it has
    one (it registers without importing SymPy); :data:`BUILTIN_ORDER` first. A new built-in is
    one new module that assigns ``ENTRY = register(Entry(...))``: nothing else to edit."""
    import pkgutil

    from . import models

    names = {m.name for m in pkgutil.iter_modules(models.__path__) if not m.name.startswith("_")}
    chosen = {n for n in names if f"{n}_cli" not in names}
    rank = {n: i for i, n in enumerate(BUILTIN_ORDER)}
    return tuple(sorted(chosen, key=lambda n: (rank.get(n.removesuffix("_cli"), len(rank)), n)))


def _load_builtins() -> None:
    if not _LOADED:
        _LOADED.append(True)
        modules = [importlib.import_module(f"dynamics.models.{name}")
                   for name in builtin_modules()]
        first = [m.ENTRY.name for m in modules if hasattr(m, "ENTRY")]
        rest = {n: e for n, e in _ENTRIES.items() if n not in first}
        ordered = {n: _ENTRIES[n] for n in first} | rest  # built-ins first, in module order
        _ENTRIES.clear()
        _ENTRIES.update(ordered)


def entries() -> dict[str, Entry]:
    """Every registered entry by name (built-ins first)."""
    _load_builtins()
    return dict(_ENTRIES)


def builtin_names() -> tuple[str, ...]:
    """The names the built-in modules register."""
    _load_builtins()
    return tuple(n for n in _ENTRIES if (getattr(_ENTRIES[n].build, "__module__", None) or "")
                 .startswith("dynamics.models."))


def entry(name: str) -> Entry | None:
    """The entry of ``name``, or None."""
    _load_builtins()
    return _ENTRIES.get(name)


def sample(name: str, options: Mapping[str, Any], seed: int = 0,
           dims: Mapping[str, int] | None = None) -> Any:
    """The spec ``scurve sample NAME ... --seed SEED`` draws (one implementation for the command
    line and ``scurve sweep``).

    With ``dims`` (symbol name -> size) any registered model is drawn by
    :func:`dynamics.problems.sample_model` from ``options``' ``init`` (default 1e-3) and
    ``weight_decay`` (default 0). Otherwise the model's registered sampler takes ``options``;
    each declared option left out (or None) takes its declared default. Raises
    :class:`dynamics.errors.UsageError` for an unknown model, one without a sampler, an option
    the sampler does not declare, or a required option left out.
    """
    from .errors import UsageError

    item = entry(name)
    if item is None:
        raise UsageError(f"unknown problem {name!r} (known: {', '.join(entries())})")
    if dims is not None:
        from .model import get
        from .problems import sample_model

        init = options.get("init")
        selection = {k: options[k] for k in ("loss", "depth") if options.get(k) is not None}
        return sample_model(get(name, selection or None), dims,
                            init=1e-3 if init is None else init, seed=seed,
                            weight_decay=options.get("weight_decay") or 0.0)
    if item.sample is None:
        raise UsageError(f"model {name!r} has no built-in sampler: give --dims NAME=SIZE,... "
                         "(e.g. --dims n=50,r=2,k=2)")
    declared = {o.name: o for o in item.options}
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise UsageError(f"sample {name}: no option {unknown[0]!r} (options: "
                         f"{', '.join(declared) or 'none'})")
    values = {}
    for o in item.options:
        value = options.get(o.name)
        if value is None and o.required:
            raise UsageError(f"sample {name} needs {o.flag} (or --dims)")
        values[o.name] = o.default if value is None else value
    return item.sample(**values, seed=seed)
