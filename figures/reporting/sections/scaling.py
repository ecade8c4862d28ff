"""Section 6, the scaling of the plateau (claim 5): the plateau end t_0.5 measured (float64
SGD, several seeds) against init σ, n, rank, λ and η, on the closed forms of
:mod:`dynamics.theory`; claim 5 (lower rank → longer plateau) on the shared run grid."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

import numpy as np

from ... import plots
from ...claims import Axis, ClaimMap, cells, crossing, earlier, judge
from ...plots import ScalingPanel, ScalingSet
from ...sweep import Plan
from ..blocks import Block, Context, Section, SectionResult, fmt
from ..jobs import make_spec
from ._maps import (
    FULL_GRID,
    QUICK_GRID,
    SGD_LR,
    SIGMA_LABEL,
    MapGrid,
    count,
    map_figure,
    sgd_runs,
)
from ._runs import train_cell, trains

__all__ = ["FULL", "QUICK", "SECTION", "Settings"]

LR, SIGMA, EPS = 0.01, 1e-3, 1e-2  # the settings not swept (and s = 1, rank 1, λ = 0)
DECAYS = (0.0, 0.1, 0.2, 0.4)


class Law(Enum):
    """Which closed form a sweep is drawn on (:func:`_closed_forms`)."""

    INIT = auto()
    N_AT_SIGMA = auto()
    N_AT_NORM = auto()
    RANK = auto()
    DECAY = auto()
    STEP = auto()


@dataclass(frozen=True)
class Sweep:
    """One parameter swept: its panel title, x label, closed form, log x axis, and its points
    ``(x, spec, η, s_eff)`` (``s_eff``, the effective singular value, sets the training
    budget only)."""

    title: str
    xlabel: str
    law: Law
    log_x: bool
    points: tuple[tuple[float, dict[str, Any], float, float], ...]


@dataclass(frozen=True)
class Settings:
    """Rank-1 sweeps at ``n`` with ``seeds`` seeds each, over ``inits``, ``ns``, ``ranks`` and
    ``etas``; claim 5 on the shared run ``grid``."""

    n: int
    seeds: int
    inits: tuple[float, ...]
    ns: tuple[int, ...]
    ranks: tuple[int, ...]
    etas: tuple[float, ...]
    grid: MapGrid


FULL = Settings(20, 12, (1e-4, 1e-3, 1e-2, 1e-1), (5, 20, 80, 320), (1, 2, 5, 10),
                (0.01, 0.03, 0.1, 0.3), FULL_GRID)
QUICK = Settings(10, 4, (1e-4, 1e-2, 1e-1), (5, 20, 80), (1, 2, 5), (0.01, 0.1, 0.3), QUICK_GRID)


def _sweeps(s: Settings) -> list[Sweep]:
    base = {"kind": "factorization", "n": s.n, "rank": 1, "init": SIGMA, "singular_values": [1.0]}
    gaussian = {k: v for k, v in base.items() if k != "singular_values"}
    return [
        Sweep("init σ", "σ (per coordinate)", Law.INIT, True,
              tuple((v, {**base, "init": v}, LR, 1.0) for v in s.inits)),
        Sweep(f"n at fixed σ = {SIGMA:g}", "n", Law.N_AT_SIGMA, True,
              tuple((m, {**base, "n": m}, LR, 1.0) for m in s.ns)),
        Sweep(f"n at fixed init norm ε = {EPS:g}", "n", Law.N_AT_NORM, True,
              tuple((m, {**base, "n": m, "init": EPS / math.sqrt(m)}, LR, 1.0) for m in s.ns)),
        Sweep("rank, Gaussian target", "rank r (= model rank)", Law.RANK, False,
              tuple((r, {**gaussian, "rank": r}, LR, 0.3) for r in s.ranks)),
        Sweep("rank, all singular values 1", "rank r (= model rank)", Law.RANK, False,
              tuple((r, {**base, "rank": r, "singular_values": [1.0] * r}, LR, 1.0)
                    for r in s.ranks)),
        Sweep("weight decay λ", "λ", Law.DECAY, False,
              tuple((v, {**base, "weight_decay": v}, LR, 1.0 - v) for v in DECAYS)),
        Sweep("step size η", "η", Law.STEP, True, tuple((v, base, v, 1.0) for v in s.etas)),
    ]


def _cells(sweeps: list[Sweep], seeds: list[int]) -> list[Plan]:
    """The SGD training of every sweep point at ``seeds`` (sweep cells; a point's seeds train
    as one batch; a point that is another sweep's, the same cells, runs once)."""
    cells = []
    for sweep in sweeps:
        for _, spec, eta, s_eff in sweep.points:
            budget = (math.log(2 / spec["init"] ** 2) + 8) / s_eff  # in t
            cells.append(train_cell(spec, eta, math.ceil(budget / eta), seeds))
    return cells


def _gd_rate(s: float, lr: float) -> float:
    """Growth rate per unit t of GD's linear phase: (1 + ηs)^step = e^{s_η t}, s_η = ln(1+ηs)/η."""
    return math.log1p(lr * s) / lr


def _closed_forms(law: Law, xs: np.ndarray, specs: list[list[dict[str, Any]]], n: int
                  ) -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """The closed-form lines of one scaling panel (``dynamics.theory``), s = 1.

    σ, n, λ: the random-init plateau law E[t_½] = (1/2s')[ln(2s'/σ²) + 0.389], s' = s − λ − ν,
    ν = (n − 1)σ²; fixed norm: σ = ε/√n. Rank: the staircase of independent logistic modes
    (:func:`dynamics.theory.crossing_time`) of the very specs trained, averaged over their
    seeds. η: the flow's law (η → 0), and the same with s → s_η = ln(1 + ηs)/η, GD's growth
    rate in its linear phase.
    """
    from dynamics import theory

    fine = np.geomspace(xs.min(), xs.max(), 60) if xs.min() > 0 else np.linspace(
        xs.min(), xs.max(), 60)
    law_label = "plateau law"
    if law is Law.INIT:
        return ((law_label, fine, np.array([theory.plateau_time(1.0, v, n=n) for v in fine])),)
    if law is Law.N_AT_SIGMA:
        return ((law_label, fine, np.array([theory.plateau_time(1.0, SIGMA, n=m)
                                            for m in fine])),)
    if law is Law.N_AT_NORM:
        return (("plateau law at σ = ε/√n", fine,
                 np.array([theory.plateau_time_fixed_norm(1.0, EPS, m) for m in fine])),)
    if law is Law.RANK:
        means = [np.mean([theory.crossing_time(make_spec(spec)) for spec in seeds])
                 for seeds in specs]
        return (("staircase closed form (same seeds)", xs, np.array(means)),)
    if law is Law.DECAY:
        fine = np.linspace(xs.min(), xs.max(), 60)
        return (("plateau law, s′ = s − λ − ν", fine, np.array(
            [theory.plateau_time(1.0, SIGMA, weight_decay=v, n=n) for v in fine])),)
    flow = theory.plateau_time(1.0, SIGMA, n=n)
    return (("flow (η → 0)", fine, np.full(fine.shape, flow)),
            ("law at GD's rate s_η", fine, np.array([flow / _gd_rate(1.0, v) for v in fine])))


def _claim_5(ctx: Context, grid: MapGrid) -> tuple[Block, Any]:
    """Claim 5 on the grid's SGD runs: at each σ, t_0.5 falls (by ≥ 5 %) from each rank to
    the next."""
    runs, ranks, seeds = sgd_runs(ctx, grid), grid.ranks, grid.seeds
    x = Axis("σ", grid.sigmas, SIGMA_LABEL, True)
    steps = list(itertools.pairwise(ranks))
    y = Axis("r → r′", tuple(f"{a}→{b}" for a, b in steps), "rank step r → r′")
    pairs = dict(zip(y.values, steps, strict=True))

    def cell(step: str, sigma: float) -> tuple[float, str]:
        low, high = pairs[step]
        return float(np.mean([earlier(crossing(runs[(high, sigma, k)]),
                                      crossing(runs[(low, sigma, k)])) for k in seeds])), ""

    holds, _ = cells(x, y, cell)
    m = ClaimMap("the lower rank has the longer plateau (t_0.5 ≥ 5 % later)", x, y, holds,
                 f"float64 SGD η = {SGD_LR:g}, n = {grid.n}, Gaussian target, seeds "
                 f"{list(seeds)}", len(seeds))
    block, thumb = map_figure(ctx, "claim5", [m], "Claim 5: where a lower rank means a longer "
                              "plateau", "Cells: fraction of seeds (k/seeds) at which t_0.5 at "
                              "rank r is ≥ 5 % later than at r′.")

    def mean_time(r: int, sigma: float) -> float:
        times = np.array([crossing(runs[(r, sigma, k)]) for k in seeds])
        return float(np.mean(times[np.isfinite(times)])) if np.isfinite(times).any() else math.nan

    t_of = {(r, sigma): mean_time(r, sigma) for r in ranks for sigma in x.values}
    text = (f"Holds at {count(m)}. Mean t_0.5 by rank at σ = 1e-3: " + ", ".join(
        f"r = {r}: {fmt(t_of[(r, 1e-3)])}" for r in ranks) + "; at σ = 1: " + ", ".join(
        f"r = {r}: {fmt(t_of[(r, 1.0)])}" for r in ranks) + " (–: L/L_ref > ½ throughout).")
    return block, judge(5, [m], text, m.settings, thumb)


def build(ctx: Context) -> SectionResult:
    s: Settings = ctx.settings
    seeds = list(range(s.seeds))
    sweeps = _sweeps(s)
    results = iter(trains(ctx, _cells(sweeps, seeds)))
    sets: dict[str, ScalingSet] = {}
    rows = []
    for sweep in sweeps:
        stats = []
        for x, _, _, _ in sweep.points:
            times = np.array([crossing(run) for run in next(results)])
            stats.append((x, np.nanmean(times), np.nanstd(times, ddof=1), np.isnan(times).sum()))
        x, mean, sd, missing = (np.array(v, dtype=float) for v in zip(*stats, strict=True))
        lines = _closed_forms(sweep.law, x, [[{**spec, "seed": k} for k in seeds]
                                             for _, spec, _, _ in sweep.points], s.n)
        for i in range(x.size):
            row = {"sweep": sweep.title, "x": x[i], "t_0.5 mean": mean[i], "t_0.5 sd": sd[i],
                   "seeds": len(seeds), "not reached": int(missing[i])}
            for j, (label, lx, ly) in enumerate(lines):
                value = float(np.interp(np.log(x[i]), np.log(lx), ly) if x[i] > 0 and
                              lx.min() > 0 else np.interp(x[i], lx, ly))
                suffix = "" if j == 0 else f" {j + 1}"
                row.update({f"closed form{suffix}": label, f"value{suffix}": value,
                            f"measured/closed − 1{suffix}": mean[i] / value - 1})
            rows.append(row)
        sets[sweep.title] = ScalingSet("training, mean ± sd", x, mean, sd, lines)

    def panel(sweep: Sweep) -> ScalingPanel:
        return ScalingPanel(sweep.title, sweep.xlabel, (sets[sweep.title],), log_x=sweep.log_x)

    init, n_sigma, n_norm, rank_gauss, rank_equal, decay, step = sweeps
    gauss, equal = sets[rank_gauss.title], sets[rank_equal.title]
    both = (dataclasses.replace(gauss, label="Gaussian target (scale 1)", lines=tuple(
                ("staircase, Gaussian", *line[1:]) for line in gauss.lines)),
            dataclasses.replace(equal, label="all singular values 1", lines=tuple(
                ("staircase, all s = 1", *line[1:]) for line in equal.lines)))
    panels = [panel(init), panel(n_sigma), panel(n_norm),
              ScalingPanel("rank (model rank = target rank)", rank_gauss.xlabel, both,
                           log_x=False), panel(decay), panel(step)]
    fig = plots.plot_scaling(panels, f"Plateau end t_0.5 (rank 1 unless stated, s = 1, "
                                     f"n = {s.n}, σ = {SIGMA:g}, η = {LR:g}; {len(seeds)} seeds)")
    block5, claim5 = _claim_5(ctx, s.grid)
    blocks: list[Block] = [
        block5,
        ctx.figure(fig, "t05", "Measured t_0.5 (float64 full-batch SGD, mean ± sd over "
                   f"{len(seeds)} seeds) against each parameter, on the closed forms of "
                   "dynamics.theory: the random-init plateau law E[t_½] = (1/2s′)[ln(2s′/σ²) + "
                   "0.389] with s′ = s − λ − ν, ν = (n − 1)σ² (σ, n, λ panels; fixed init norm: "
                   "σ = ε/√n); for the ranks, the staircase of independent logistic modes of "
                   "the same seeds' specs; for η, the flow's law (η → 0) and the same law at "
                   "GD's linear-phase growth rate s_η = ln(1 + ηs)/η. Settings not swept: "
                   f"rank 1, s = 1, n = {s.n}, σ = {SIGMA:g}, η = {LR:g}, λ = 0.", rows + [
                       {"sweep": title, "x": float(x), "closed form": label, "value": float(y)}
                       for title, data in sets.items() for label, xs, ys in data.lines
                       for x, y in zip(xs, ys, strict=True)]),
        ctx.table("table", "t_0.5 (in t) per sweep point, measured and closed form", rows)]
    return SectionResult(blocks, [claim5], {"rows": rows})


SECTION = Section(6, "scaling", "Scaling of the plateau", build, FULL, QUICK)
