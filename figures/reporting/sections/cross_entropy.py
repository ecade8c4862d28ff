"""Section 8, cross-entropy (claim 9): L = KL(softmax(vec C) ‖ softmax(vec XYᵀ)) trained
(float64 full-batch SGD; no closure and no cheap exact theory) at ranks 2, 10 and n over the
target's entry scale c and init σ (:func:`figures.claims.ce_checks`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...claims import Axis, ClaimMap, ce_checks, cells, judge, legend
from ..blocks import Block, Context, Section, SectionResult, TextBlock
from ._maps import SIGMA_LABEL, count, map_figure
from ._runs import run_row, runs_figure, train_job

__all__ = ["FULL", "QUICK", "SECTION", "Settings"]


@dataclass(frozen=True)
class Settings:
    """The three ranks judged (two plateaus, struggles, full rank: the last is n), target
    entry ``scales`` c, init ``sigmas``, and SGD ``steps`` per run."""

    ranks: tuple[int, int, int]
    scales: tuple[float, ...]
    sigmas: tuple[float, ...]
    steps: int

    @property
    def n(self) -> int:
        return self.ranks[-1]


FULL = Settings((2, 10, 100), (0.5, 1.0, 2.0), (1e-3, 1e-2, 0.1), 8000)
QUICK = Settings((2, 5, 30), (1.0, 2.0), (1e-2, 0.1), 3000)


def lr_of(n: int, c: float) -> float:
    """SGD's η at size n and entry scale c: the softmax spreads over n² entries, so its
    curvature falls like 1/n²: η ∝ n²; a peaked target (entry scale c) raises it again:
    η = (n/30)²/(4 max(c, 1)²), stable at c ≤ 2."""
    return (n / 30) ** 2 / 4 / max(c, 1.0) ** 2


def _spec(n: int, c: float, rank: int, sigma: float) -> dict[str, Any]:
    # target entries of std ≈ c: typical singular value c·n/√r
    return {"kind": "factorization", "n": n, "rank": rank, "init": sigma, "seed": 0,
            "scale": c * n / math.sqrt(rank), "loss": "ce"}


def build(ctx: Context) -> SectionResult:
    s: Settings = ctx.settings
    n, ranks, scales, sigmas = s.n, s.ranks, s.scales, s.sigmas
    keys = [(c, r) for c in scales for r in ranks]
    results = ctx.run([train_job([_spec(n, c, r, sigma) for sigma in sigmas], lr_of(n, c),
                                 s.steps) for c, r in keys])
    got = {(c, r, sigma): (res["runs"][i], i in res["diverged"])
           for (c, r), res in zip(keys, results, strict=True) for i, sigma in enumerate(sigmas)}
    blocks: list[Block] = [TextBlock(
        "L = KL(softmax(vec C) ‖ softmax(vec XYᵀ)). No closure and no cheap exact theory, so "
        f"training: float64 full-batch SGD, {s.steps} steps, η = (n/30)²/(4·max(c, 1)²). Target "
        "entries have std ≈ c (the target softmax is far from uniform for c ≳ 1).")]
    for c in scales:
        blocks.append(runs_figure(
            ctx, f"c{c:g}", f"Cross-entropy, n = {n}, c = {c:g}, σ = {sigmas[-1]:g}",
            [(f"r={r}", got[(c, r, sigmas[-1])][0]) for r in ranks],
            f"Cross-entropy at ranks {', '.join(map(str, ranks))}, n = {n}, entry scale c = "
            f"{c:g}, σ = {sigmas[-1]:g}, η = {lr_of(n, c):.3g}, seed 0; plateaus shaded."))
    x, y = Axis("c", scales, "target entry scale c"), Axis("σ", sigmas, SIGMA_LABEL)
    per = {(sigma, c): ce_checks(got[(c, ranks[0], sigma)][0], got[(c, ranks[1], sigma)][0],
                                 got[(c, n, sigma)][0], got[(c, n, sigma)][1])
           for sigma in sigmas for c in scales}
    maps = []
    for key, rank, test in (("two plateaus", ranks[0], "two plateaus"),
                            ("struggles", ranks[1], "struggles to reach zero loss"),
                            ("unchanged", n, "unchanged (no plateau, as with MSE)")):
        holds, _ = cells(x, y, lambda sigma, c, key=key: (float(per[(sigma, c)][key]), ""))
        maps.append(ClaimMap(f"rank {rank}: {test}", x, y, holds,
                             f"float64 SGD, {s.steps} steps, n = {n}, seed 0",
                             name=f"rank {rank} ({key})"))
    block, thumb = map_figure(ctx, "claim9", maps, "Claim 9: where cross-entropy shows two "
                              "plateaus at rank 2, rank 10 struggling, full rank unchanged",
                              f"Checks: {legend(['two plateaus', 'struggles', 'unchanged'])}.")
    rows = []
    for (c, r, sigma), (run, diverged) in got.items():
        rows.append({**run_row(f"c={c:g}, r={r}, σ={sigma:g}", "training", run),
                     "diverged": diverged})
    blocks.append(ctx.table("table", "Phases per rank, target scale and σ (times in t)", rows))
    final = {r: np.median([got[(c, r, sigma)][0]["final_loss"] / got[(c, r, sigma)][0]["l_ref"]
                           for c in scales for sigma in sigmas]) for r in ranks}
    text = (f"Two plateaus at rank {ranks[0]} at {count(maps[0])}; rank {ranks[1]} struggles "
            f"at {count(maps[1])}; full rank unchanged at {count(maps[2])}. Median final "
            "L/L_ref: " + ", ".join(f"r = {r}: {v:.2g}" for r, v in final.items()) + ".")
    return SectionResult([block, *blocks], [judge(9, maps, text, maps[0].settings, thumb)],
                         {"rows": rows})


SECTION = Section(8, "cross-entropy", "Cross-entropy", build, FULL, QUICK)
