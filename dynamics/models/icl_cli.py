"""``scurve sample icl`` options (kept apart from :mod:`dynamics.models.icl` so that building
the CLI parser imports no SymPy)."""

from __future__ import annotations


def add_options(parser: object) -> None:
    """The ``scurve sample icl`` options (an ``argparse`` parser or group)."""
    add = parser.add_argument  # type: ignore[attr-defined]
    add("--dim", type=int, default=None, help="icl: input dimension D")
    add("--context", type=int, default=None, help="icl: context pairs N per sequence")
    add("--sequences", type=int, default=None, help="icl: training sequences P")
    add("--heads", type=int, default=1, help="icl: attention heads H (default 1)")
    add("--separate", action="store_true",
        help="icl: separate rank-R keys and queries (--rank R) instead of merged ones")
    add("--eigenvalues", type=str, default=None, metavar="L1,...,LD",
        help="icl: eigenvalues of Λ (default 1..D; normalised to tr Λ = 1)")

