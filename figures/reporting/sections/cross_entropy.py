"""Section 8, cross-entropy (claim 9): L = KL(softmax(vec C) ‖ softmax(vec XYᵀ)) trained
(float64 full-batch SGD; no closure and no cheap exact theory) at ranks 2, 10 and n over the
target's entry scale c and init σ (:func:`figures.claims.ce_checks`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...claims import Axis, ClaimMap, ce_checks, cells, grid_runs, judge, legend
from ...sweep import Axis as SweepAxis
from ..blocks import Block, Context, Section, SectionResult, TextBlock
from ._maps import SIGMA_LABEL, count, map_figure
from ._runs import run_row, runs_figure

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


def _scale(n: int, c: float, rank: int) -> float:
    """The target's scale at entry scale c: entries of std ≈ c, typical singular value c·n/√r."""
    return c * n / math.sqrt(rank)


def _runs(ctx: Context, s: Settings) -> dict[tuple[float, int, float], tuple[Any, bool]]:
    """The grid's runs keyed (c, rank, σ): (run summary, diverged). One sweep (table
    ``data/08-cross-entropy-runs.csv``) over rank × target scale × η × σ, of the points
    whose scale and η are those of an entry scale c (``where``); the σ of a (c, rank) train
    as one batch."""
    n, ranks, scales, sigmas = s.n, s.ranks, s.scales, s.sigmas
    points = {(_scale(n, c, r), r): c for c in scales for r in ranks}
    axes = [SweepAxis("rank", ranks), SweepAxis("scale", tuple(sorted({x for x, _ in points}))),
            SweepAxis("lr", tuple(sorted({lr_of(n, c) for c in scales}))),
            SweepAxis("init", sigmas)]
    rows = ctx.sweep("runs", "factorization", axes, seeds=[0], theories=(), train="sgd",
                     steps=s.steps, train_record="log", defaults={"n": n, "loss": "ce"},
                     where=lambda v, _: (v["scale"], v["rank"]) in points
                     and lr_of(n, points[(v["scale"], v["rank"])]) == v["lr"])
    runs = grid_runs(rows, ("scale", "rank", "init"), "train")
    return {(c, r, sigma): (runs[(_scale(n, c, r), r, sigma)],
                            runs[(_scale(n, c, r), r, sigma)]["diverged"])
            for c in scales for r in ranks for sigma in sigmas}


def build(ctx: Context) -> SectionResult:
    s: Settings = ctx.settings
    n, ranks, scales, sigmas = s.n, s.ranks, s.scales, s.sigmas
    got = _runs(ctx, s)
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
