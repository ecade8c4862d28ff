"""The report's sections in page order (:data:`SECTIONS`); ``--only`` (:func:`resolve_sections`).

One module per section or group of related sections; each defines its settings (a frozen
dataclass, with the full and ``--quick`` values), the configs of its jobs
(:mod:`figures.reporting.jobs`), and a :class:`~figures.reporting.blocks.Section` whose builder
turns the jobs' results into blocks and claims (the claims' rules: :mod:`figures.claims`).
"""

from __future__ import annotations

from ..blocks import Section
from . import (
    attention,
    committee,
    cross_entropy,
    depth,
    equations,
    grouped,
    icl,
    open_questions,
    optimizers,
    power,
    ranks,
    scalar_vector,
    scaling,
    weight_decay,
)

__all__ = ["SECTIONS", "resolve_sections"]

SECTIONS: tuple[Section, ...] = (
    scalar_vector.SECTION,
    *ranks.SECTIONS,
    attention.SECTION,
    scaling.SECTION,
    optimizers.SECTION,
    cross_entropy.SECTION,
    weight_decay.SECTION,
    grouped.SECTION,
    equations.SECTION,
    open_questions.SECTION,
    depth.SECTION,
    power.SECTION,
    committee.SECTION,
    icl.SECTION,
)


def resolve_sections(only: str | None) -> list[Section]:
    """The sections named by ``--only`` (a number or a slug; comma-separated), or all.

    Raises ValueError naming the valid choices for anything else.
    """
    if only is None:
        return list(SECTIONS)
    chosen = []
    for part in (p.strip() for p in only.split(",") if p.strip()):
        match = [s for s in SECTIONS if part in (str(s.number), s.slug)]
        if not match:
            valid = ", ".join(f"{s.number}/{s.slug}" for s in SECTIONS)
            raise ValueError(f"--only: unknown section {part!r} (choose from {valid})")
        chosen.extend(m for m in match if m not in chosen)
    if not chosen:
        raise ValueError("--only: no section given")
    return sorted(chosen, key=lambda s: s.number)
