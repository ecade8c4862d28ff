"""Section 12, two open questions of the post, as far as the toy models allow: an S-curve
without several components (one mode from a small start), and several components without an
S-curve (modes started balanced and aligned at a fraction of their targets). Gradient flow
(exact), seed 0; phases shape-based (:func:`figures.claims.s_curve_checks`)."""

from __future__ import annotations

from dataclasses import dataclass

from ...claims import s_curve_checks
from ...sweeps import Job
from ..blocks import Block, Context, Section, SectionResult, TextBlock
from ..jobs import job_predict, job_predict_aligned
from ._runs import runs_figure

__all__ = ["FULL", "QUICK", "SECTION", "Settings"]

S5 = [1.0, 0.7, 0.5, 0.35, 0.25]  # the rank-5 target's singular values
FRACTIONS = (1e-3, 0.1, 0.5)  # aligned starts: each mode at w₀ = f·s


@dataclass(frozen=True)
class Settings:
    """``n`` of the factorizations."""

    n: int


FULL = Settings(100)
QUICK = Settings(30)


def _jobs(n: int) -> tuple[list[tuple[str, Job]], list[tuple[str, Job]]]:
    """(label, job) of the single-component runs, and of the five-component ones."""
    single = [
        ("rank 1, σ = 1e-3", (job_predict, {"spec": {
            "kind": "factorization", "n": n, "rank": 1, "init": 1e-3, "singular_values": [1.0],
            "seed": 0}, "method": "flow", "t_max": 200.0})),
        ("attention, rank 1, σ = 0.1", (job_predict, {"spec": {
            "kind": "attention", "n": 10, "rank": 1, "init": 0.1, "seed": 0},
            "method": "flow", "t_max": None})),
    ]
    multi: list[tuple[str, Job]] = [(f"aligned start, w₀ = {f:g}·s", (job_predict_aligned, {
        "spec": {"kind": "factorization", "n": n, "rank": 5, "singular_values": S5, "seed": 0},
        "fraction": f, "t_max": 60.0})) for f in FRACTIONS]
    multi.append(("random start, σ = 1e-3", (job_predict, {"spec": {
        "kind": "factorization", "n": n, "rank": 5, "init": 1e-3, "singular_values": S5,
        "seed": 0}, "method": "flow", "t_max": 60.0})))
    return single, multi


def _answer(label: str, checks: dict[str, bool]) -> str:
    return (f"{label}: {'a' if checks['plateau'] else 'no'} plateau"
            + (f", {'sharp' if checks['sharp'] else 'smeared'} drop" if checks["plateau"] else ""))


def build(ctx: Context) -> SectionResult:
    n = ctx.settings.n
    single, multi = _jobs(n)
    results = ctx.run([job for _, job in single + multi])
    blocks: list[Block] = []
    checks: dict[str, dict[str, bool]] = {}  # per run: s_curve_checks
    for name, group, title, caption in (
            ("single", list(zip(single, results[:len(single)], strict=True)),
             "An S-curve without several components",
             f"One component only: rank 1 (n = {n}, s = 1) from a small random start, and an "
             "attention head with rank-1 circuits (d = 10): a plateau, then a sharp drop. "
             "Gradient flow (exact), seed 0."),
            ("multi", list(zip(multi, results[len(single):], strict=True)),
             "Five components without an S-curve",
             f"Rank 5 (n = {n}, s = 1, 0.7, 0.5, 0.35, 0.25): from a balanced start aligned "
             "with the target at w₀ = f·s per mode, and from a small random start. Gradient "
             "flow (exact), seed 0.")):
        blocks.append(runs_figure(ctx, name, title, [(label, run) for (label, _), run in group],
                                  caption, theory=True))
        checks.update({label: s_curve_checks(run) for (label, _), run in group})
    answers = [_answer(label, c) for label, c in checks.items()]
    blocks.insert(0, TextBlock(
        "The post's open questions, as far as these toy models allow. (1) Is there an S-curve "
        "that is not a multi-component task? Yes: a single mode from a small start already "
        "plateaus then drops (the plateau is the time its overlap with the target takes to "
        "grow from ~σ²). (2) Is there a low-rank multi-component task without an "
        "S-curve? Yes: start the modes balanced and aligned at a sizeable fraction of their "
        "targets, and no plateau is left. Measured (shape-based phases): "
        + "; ".join(answers) + "."))
    return SectionResult(blocks, [], {"answers": answers, "checks": checks})


SECTION = Section(12, "open-questions", "Two open questions", build, FULL, QUICK)
