"""The seeds' claims (DESIGN §4) and their verdicts, computed from the report's data.

Each report section measures the claims it backs and returns a :class:`ClaimResult` per claim:
the numbers behind it, the settings they were measured at, and a verdict from
:func:`verdict` over the checks it ran (thresholds are stated where each check is made, in
:mod:`figures.report`). A claim whose section did not run, or whose data could not be
produced, is reported as ``"not measured"`` with the reason — never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

__all__ = [
    "CLAIMS",
    "NOT_MEASURED",
    "VERDICTS",
    "Claim",
    "ClaimResult",
    "claims_table",
    "verdict",
]

SUPPORTED, NOT_SUPPORTED, MIXED, NOT_MEASURED = (
    "supported", "not supported", "mixed", "not measured")
VERDICTS = (SUPPORTED, NOT_SUPPORTED, MIXED, NOT_MEASURED)


@dataclass(frozen=True)
class Claim:
    """Claim ``number`` of DESIGN §4, its wording, and the report section that measures it."""

    number: int
    text: str
    section: str


@dataclass(frozen=True)
class ClaimResult:
    """A measured claim: ``numbers`` (what was measured), ``settings``, ``verdict``."""

    number: int
    verdict: str
    numbers: str
    settings: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Scalar and vector targets: pure exponential decay, no plateau.", "scalar-vector"),
    Claim(2, "Rank 1: initial exponential decay, plateau, sharp drop, levelling off; inner "
             "products with the truth grow while norms first shrink then grow.", "rank-1"),
    Claim(3, "Low rank: the same.", "low-rank"),
    Claim(4, "n = 100: rank 10 similar with a smeared drop; rank 100 no plateau, exponential "
             "then power law; learned vectors span the truth without aligning.", "n-100"),
    Claim(5, "Lower rank → longer plateau at fixed init.", "scaling"),
    Claim(6, "Attention head (rank 2): plateau, then sudden drop once all four factors align.",
          "attention"),
    Claim(7, "Weight decay extends the exponential phase and shrinks the solution.",
          "weight-decay"),
    Claim(8, "Adam: same phenomenology but rank 100 regains a plateau; more bumps than SGD. "
             "AdamW accelerates rank 1.", "optimizers"),
    Claim(9, "Cross-entropy: two plateaus at rank 2, rank 10 struggles to reach zero loss, "
             "full rank unchanged.", "cross-entropy"),
    Claim(10, "Bumps in inner products appear only for rank > 1 and during growth.",
          "optimizers"),
    Claim(11, "Grouped loss: capabilities emerge at more similar times and more gradually.",
          "grouped"),
    Claim(12, "Gradient clusters find capabilities; large singular vectors of the gradient "
              "matrix correspond to capabilities.", "grouped"),
)


def verdict(checks: Iterable[bool]) -> str:
    """``supported`` if every check holds, ``not supported`` if none does, else ``mixed``."""
    checks = [bool(c) for c in checks]
    if not checks:
        return NOT_MEASURED
    if all(checks):
        return SUPPORTED
    return NOT_SUPPORTED if not any(checks) else MIXED


def claims_table(
    results: Mapping[int, ClaimResult], reasons: Mapping[str, str] | None = None
) -> list[dict[str, object]]:
    """One row per claim of DESIGN §4: number, claim, section, verdict, numbers, settings.

    ``reasons`` maps a section slug to why it produced no result (not run, failed, pending);
    a claim without a result gets verdict ``not measured`` and that reason as its numbers.
    """
    reasons = reasons or {}
    rows = []
    for claim in CLAIMS:
        result = results.get(claim.number)
        if result is None:
            why = reasons.get(claim.section, "section not run")
            result = ClaimResult(claim.number, NOT_MEASURED, why)
        row = {"claim": claim.number, "text": claim.text, "section": claim.section}
        row.update({k: v for k, v in asdict(result).items() if k != "number"})
        rows.append(row)
    return rows
