"""Registration of the in-context regression family (:mod:`dynamics.models.icl`): its sampler's
``scurve sample icl`` options as data, kept apart so that the registry imports no SymPy."""

from __future__ import annotations

import math
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


def rate_scale(spec: Any) -> tuple[float, float]:
    """(largest, smallest) singular value of B = Σ_p y_p z_p (D×D; ≈ P·N·Λ² for large P), in
    1/t: the rate of the merged model's linear escape, s = ‖Z yᵀ‖ for one head, and the scale of
    every head's rate near the end, for either model (merged ``Z``/``y`` or separate ``Zs``/``ys``).
    The generic √(2 L_ref) is ~10³ too slow here, which made the default end time of a flow ~10⁵×
    the staircase."""
    import numpy as np

    values = spec.data
    if "Zs" in values:
        b = np.einsum("pij,p->ij", np.asarray(values["Zs"]), np.asarray(values["ys"]).ravel())
    else:
        z, y = np.asarray(values["Z"]), np.asarray(values["y"])
        dim = math.isqrt(z.shape[0])
        b = (z @ y.ravel()).reshape(dim, dim)
    sv = np.linalg.svd(b, compute_uv=False)
    top = float(sv[0]) if sv[0] > 0 else 1.0
    return top, max(float(sv[-1]), 1e-6 * top)


ENTRY = register(Entry("icl", build, sample, options=OPTIONS,
                       description="merged linear attention on in-context regression",
                       hooks={"rate_scale": rate_scale}))
