"""Registration of the in-context regression family (:mod:`dynamics.models.icl`): its sampler's
``scurve sample icl`` options as data, kept apart so that the registry imports no SymPy."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ..registry import Entry, Option, register

__all__ = ["ENTRY", "OPTIONS", "add_options"]

OPTIONS = (
    # plain integers: the sampler checks them (one-line IclError naming the option)
    Option("dim", "int", None, "icl: input dimension D", required=True),
    Option("context", "int", None, "icl: context pairs N per sequence", required=True),
    Option("sequences", "int", None, "icl: training sequences P", required=True),
    Option("heads", "int", 1, "icl: attention heads H (default 1)"),
    Option("separate", "flag", False,
           "icl: separate rank-R keys and queries (--rank R) instead of merged ones"),
    Option("rank", "posint", 1, "icl: rank R of separate keys and queries (default 1)"),
    Option("eigenvalues", "str", None, "icl: eigenvalues of Λ (default 1..D; normalised to "
           "tr Λ = 1)", metavar="L1,...,LD"),
    Option("init", "nonneg", 1e-3, "init std σ per coordinate (default 1e-3)"),
)


def build() -> Any:
    """The icl family (merged, or separate rank-one heads read off ``K0``)."""
    from .icl import FAMILY

    return FAMILY


def sample(seed: int = 0, **options: Any) -> Any:
    """:func:`dynamics.models.icl.sample_from_options` with the declared options."""
    from .icl import sample_from_options

    return sample_from_options(SimpleNamespace(**options), seed)


def add_options(parser: object) -> None:
    """The ``scurve sample icl`` options (an ``argparse`` parser or group); kept for callers
    that build their own parser (the CLI builds it from the registry)."""
    add = parser.add_argument  # type: ignore[attr-defined]
    for o in OPTIONS:
        if o.name in ("init", "rank"):
            continue
        if o.type == "flag":
            add(o.flag, action="store_true", help=o.help)
        else:
            add(o.flag, type=int if o.type == "int" else str, default=o.default,
                help=o.help, metavar=o.metavar)


ENTRY = register(Entry("icl", build, sample, options=OPTIONS,
                       description="merged linear attention on in-context regression"))
