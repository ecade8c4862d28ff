"""Capability modes: a deep linear network y = XYᵀx fitting y = Cx, C = A S Bᵀ = Σ_g s_g a_g b_gᵀ.

Examples x = b_g (capability g) with frequencies p̂_g = D_gg; the loss ½tr(R D Rᵀ),
R = XYᵀB − AS, is the mean loss Σ_g p̂_g ℓ_g with ℓ_g = ½‖XYᵀb_g − s_g a_g‖² = (∂L/∂D)_gg (a
grouped model: ``group_weights`` D). X is the second layer W₂, Y the first layer's transpose
W₁ᵀ. Spec keys ``A``, ``B`` (n x G, orthonormal columns), ``S``, ``D`` (G x G diagonal),
``X0``, ``Y0`` (n x k); the spec's ``objective`` is the group objective trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..registry import Entry, Option, register

__all__ = ["ENTRY", "build", "family", "sample_modes"]

DESCRIPTION = ("capability modes: ½tr(R D Rᵀ), R = XYᵀB − AS (A, B n x G orthonormal; S, D "
               "diagonal G x G: scales s_g, group weights)")


def build() -> Any:
    """The :class:`dynamics.model.Model` of the modes (module docstring)."""
    from sympy import MatrixSymbol
    from sympy.matrices.expressions import Trace

    from ..model import Model
    from ._terms import G, k, n

    x, y = MatrixSymbol("X", n, k), MatrixSymbol("Y", n, k)
    a, b = MatrixSymbol("A", n, G), MatrixSymbol("B", n, G)
    s, d = MatrixSymbol("S", G, G), MatrixSymbol("D", G, G)
    r = x * y.T * b - a * s
    return Model("modes", Trace(r * d * r.T) / 2, [x, y], [a, b, s, d], [n],
                 targets={"X": "A", "Y": "B"}, group_weights=d, description=DESCRIPTION)


def sample_modes(
    scales: Sequence[float] | Any,
    frequencies: Sequence[float] | Any,
    n: int = 20,
    hidden: int = 20,
    init: float = 1e-3,
    examples: int = 256,
    seed: int = 0,
    objective: str = "mean",
    weight_decay: float = 0.0,
) -> Any:
    """A spec of the capability-modes model from ``seed``.

    G = len(scales) capabilities: A = [a_g], B = [b_g] (n×G) with orthonormal columns (QR of
    Gaussian matrices), S = diag(s_g). The dataset has N = ``examples`` examples, n_g =
    max(1, round(N p_g)) of them x = b_g (target s_g a_g); D = diag(p̂_g), p̂_g = n_g/Σn, so the
    loss with D as given is the mean loss over the examples. Initial weights X0 = W₂ (n×k),
    Y0 = W₁ᵀ (n×k), k = ``hidden``, i.i.d. N(0, σ²), σ = ``init`` (small: each mode emerges
    abruptly). ``objective`` is the group objective trained (:func:`dynamics.groups.parse`).
    """
    import numpy as np

    from ..errors import SpecError
    from ..problems import Spec, check_int, check_nonneg, orthonormal

    s = np.asarray(scales, dtype=np.float64)
    p = np.asarray(frequencies, dtype=np.float64)
    if s.ndim != 1 or s.size < 1 or p.shape != s.shape:
        raise SpecError(f"scales {s.shape} and frequencies {p.shape} must be equal 1-d arrays")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise SpecError("scales: must be finite numbers > 0")
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise SpecError("frequencies: must be finite numbers > 0")
    n, hidden = check_int("n", n), check_int("hidden", hidden)
    examples = check_int("examples", examples)
    if s.size > n:
        raise SpecError(f"n: {n} dimensions hold at most {n} orthonormal modes, got {s.size}")
    init = check_nonneg("init", init)
    rng = np.random.default_rng(seed)
    a = orthonormal(rng, n, s.size)
    b = orthonormal(rng, n, s.size)
    counts = np.maximum(1, np.round(examples * p / p.sum()))
    data = {"A": a, "B": b, "S": np.diag(s), "D": np.diag(counts / counts.sum()),
            "X0": rng.standard_normal((n, hidden)) * init,
            "Y0": rng.standard_normal((n, hidden)) * init}
    return Spec("modes", data, weight_decay=weight_decay, objective=objective)


def _floats(text: str | Sequence[float]) -> list[float]:
    if isinstance(text, str):
        return [float(v) for v in text.split(",") if v.strip()]
    return list(text)


def family(groups: int, spread: float = 1.0, zipf: float = 0.0) -> tuple[Any, Any]:
    """The scales and frequencies of a family of G = ``groups`` modes: s_g geometric from
    ``spread`` (g = 1) down to 1 (g = G), s_g = spread^((G − g)/(G − 1)); p_g ∝ g^−α, α =
    ``zipf`` (:func:`dynamics.groups.zipf_frequencies`); mode 1 the largest and most frequent
    for spread > 1, α > 0."""
    import numpy as np

    from ..groups import zipf_frequencies

    return np.geomspace(spread, 1.0, groups), zipf_frequencies(groups, zipf)


def _sample_cli(scales: Any = None, frequencies: Any = None, groups: int | None = None,
                spread: float | None = None, zipf: float | None = None,
                **options: Any) -> Any:
    """:func:`sample_modes` from the command line: the scales from ``--scales`` or from
    ``--groups`` and ``--spread`` (:func:`family`); the frequencies from ``--frequencies``, from
    ``--zipf`` or equal."""
    from ..errors import UsageError
    from ..groups import zipf_frequencies

    if (scales is None) == (groups is None):
        raise UsageError("sample modes needs --scales S1,... or --groups G (not both)")
    if spread is not None and groups is None:
        raise UsageError("sample modes: --spread needs --groups (with --scales, give the scales)")
    if frequencies is not None and zipf is not None:
        raise UsageError("sample modes: give --frequencies or --zipf, not both")
    s = _floats(scales) if groups is None else family(groups, spread or 1.0)[0]
    if frequencies is not None:
        p = _floats(frequencies)
    else:
        p = zipf_frequencies(len(s), zipf or 0.0)  # equal without --zipf
    return sample_modes(s, p, **options)


ENTRY = register(Entry(
    "modes", build, _sample_cli,
    options=(
        Option("scales", "floats", None, "modes: comma-separated mode scales s_g (or --groups)",
               metavar="S1,..."),
        Option("frequencies", "floats", None,
               "modes: comma-separated example frequencies p_g (default: equal)",
               metavar="P1,..."),
        Option("groups", "posint", None, "modes: G modes with scales from --spread (instead "
               "of --scales)"),
        Option("spread", "posfloat", None, "modes: with --groups, scales s_g geometric from "
               "SPREAD (g = 1) down to 1 (default 1: equal)"),
        Option("zipf", "float", None, "modes: frequencies p_g ∝ g^-ZIPF (default: equal)"),
        Option("n", "posint", 20, "dimension n (default 20)"),
        Option("hidden", "posint", 20, "modes: hidden width k (default 20)"),
        Option("init", "nonneg", 1e-3, "init std σ per coordinate (default 1e-3)"),
        Option("examples", "posint", 256, "modes: examples N (default 256)"),
        Option("objective", "str", "mean", "modes: group objective trained (default mean)"),
        Option("weight_decay", "nonneg", 0.0, "λ (default 0)"),
    ),
    hooks={"grouped": True, "dims": {"n": ("A", 0), "k": ("X0", 1), "G": ("A", 1)}},
    description=DESCRIPTION,
))
