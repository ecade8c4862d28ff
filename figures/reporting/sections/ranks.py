"""Sections 2–4, the factorization ½‖A Bᵀ − X Yᵀ‖² by rank: rank 1 (claim 2), low rank
(claim 3) and n = 100 at rank 10 and 100 (claim 4). Rank 1 and low rank: theory (gradient
flow) over SGD training from the same spec, and a map of the whole S-curve sequence
(:func:`figures.claims.s_curve_checks`) over σ × n or σ × r, one exact flow per cell. n = 100:
the shared grid of SGD runs (:mod:`._maps`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ... import plots
from ...claims import (
    CHECKS,
    Axis,
    ClaimMap,
    ClaimResult,
    cells,
    full_rank_checks,
    grid_runs,
    judge,
    legend,
    more_seeds,
    most_failed,
    rank_10_checks,
    s_curve_checks,
    seed_cell,
)
from ...plots import Series
from ...sweep import Axis as GridAxis
from ..blocks import Block, Context, FigureBlock, Section, SectionResult
from ._maps import (
    FULL_GRID,
    FULL_SIGMAS,
    QUICK_GRID,
    QUICK_SIGMAS,
    SGD_LR,
    SGD_T,
    SIGMA_LABEL,
    MapGrid,
    count,
    map_figure,
    sgd_runs,
)
from ._runs import overlay, overlay_figure, overlay_table, runs_figure

__all__ = ["LOW_RANK", "N_100", "RANK_1", "SECTIONS", "LowRankSettings", "N100Settings",
           "Rank1Settings"]

S_CURVE = ("decay", "plateau", "sharp", "levels", "aligns", "norms")
T_MAX = 200.0
Runs = dict[tuple[Any, float], dict[str, Any]]


def _rank_settings(rank: int, sigmas: Sequence[float], n: int, singular: bool
                   ) -> list[dict[str, Any]]:
    """Curves of rank ``rank`` at each σ (target singular values 1 if ``singular``, else a
    Gaussian target), for :func:`._runs.overlay`."""
    out = []
    for sigma in sigmas:
        spec = {"kind": "factorization", "n": n, "rank": rank, "init": sigma, "seed": 0}
        if singular:
            spec["singular_values"] = [1.0] * rank
        out.append({"name": f"r={rank}, σ={sigma:g}", "lr": 0.01, "t_max": T_MAX, "spec": spec})
    return out


EXTRA_SEEDS = (1, 2)  # seeds added at the cells of an S-curve map beside its boundary


def _s_curve_map(ctx: Context, name: str, sigmas: Sequence[float], y: Axis, y_param: str,
                 defaults: dict[str, Any], settings: str) -> tuple[ClaimMap, Runs]:
    """Map of the whole rank-1 sequence (:func:`figures.claims.s_curve_checks`) over σ × y:
    a sweep of ``factorization`` over ``y_param`` (y's values) × init σ with ``defaults``,
    gradient flow to t = :data:`T_MAX`.

    Every cell runs seed 0; the cells :func:`figures.claims.more_seeds` flags (beside the
    boundary, where one seed's verdict may be noise) add seeds :data:`EXTRA_SEEDS` (a second
    sweep of the same grid, only there), so a cell whose seeds disagree rests on 3. Returns
    the map and the seed-0 runs."""
    x = Axis("σ", tuple(sigmas), SIGMA_LABEL, True)
    grid = [GridAxis(y_param, y.values), GridAxis("init", x.values)]
    options = {"theories": ["flow"], "defaults": defaults | {"t_max": T_MAX}}
    runs = grid_runs(ctx.sweep(f"{name}-sweep", "factorization", grid, seeds=[0], **options),
                     (y_param, "init"))
    checks = {key: [s_curve_checks(run)] for key, run in runs.items()}
    first = ClaimMap("first seed", x, y, cells(x, y, lambda yv, s: seed_cell(checks[(yv, s)]))[0])
    flagged = more_seeds(first)
    if flagged.any():
        extra = ctx.sweep(f"{name}-sweep-seeds", "factorization", grid, seeds=EXTRA_SEEDS,
                          where=lambda v, _: bool(flagged[y.values.index(v[y_param]),
                                                          x.values.index(v["init"])]),
                          **options)
        for (yv, s, _), run in grid_runs(extra, (y_param, "init", "seed")).items():
            checks[(yv, s)].append(s_curve_checks(run))
    holds, notes = cells(x, y, lambda yv, s: seed_cell(checks[(yv, s)]))
    counts = cells(x, y, lambda yv, s: (len(checks[(yv, s)]), ""))[0]
    more = (f"; seeds {', '.join(map(str, (0, *EXTRA_SEEDS)))} at the "
            f"{int(flagged.sum())} cells beside the boundary" if flagged.any() else "")
    return ClaimMap("the whole sequence in one run (decay, plateau, sharp drop, levels off, "
                    "aligns, norms shrink then grow)", x, y, holds, settings + more,
                    notes=notes, counts=counts), runs


def _s_curve_claim(number: int, m: ClaimMap, runs: Runs, thumb: str,
                   energy: bool = False) -> ClaimResult:
    """Claim 2 or 3 from its map: where the sequence holds (with the init energy nσ² of those
    cells if ``energy``: the map's y axis is n) and the checks that fail most often."""
    held = [(yv, s) for (yv, s) in runs if m.ok[m.y.values.index(yv), m.x.values.index(s)]]
    where = [f"σ = {s:g}, {m.y.name} = {m.y.fmt(yv)}" for yv, s in held]
    worst = most_failed([s_curve_checks(run) for run in runs.values()])
    energies = [yv * s**2 for yv, s in held]  # the init's energy per vector, nσ², s = 1 units
    span = (f", i.e. where the init energy nσ² is {min(energies):.2g}–{max(energies):.2g} "
            "(s = 1)" if energy and held else "")
    text = (f"One run shows the whole sequence at {count(m)}"
            + (f" (e.g. {where[len(where) // 2]}){span}" if where else "") + ". "
            + ("Where it fails, most often missing: " + ", ".join(
                f"{CHECKS[k]} ({v} runs)" for k, v in worst) + "." if worst else ""))
    return judge(number, [m], text, m.settings, thumb)


def _s_curve_figure(ctx: Context, number: int, m: ClaimMap, what: str) -> tuple[FigureBlock, str]:
    return map_figure(ctx, f"claim{number}", [m], f"Claim {number}: where {what} shows the "
                      "whole S-curve sequence", "Each cell: one gradient-flow run; letters: "
                      f"the elements that fail ({legend(S_CURVE)}).")


# ------------------------------------------------------------------------------- rank 1


@dataclass(frozen=True)
class Rank1Settings:
    """Curves at ``n`` for each of ``curve_sigmas``; the claim map over ``sigmas`` × ``ns``."""

    n: int
    curve_sigmas: tuple[float, ...]
    sigmas: tuple[float, ...]
    ns: tuple[int, ...]


def _mechanistic_blocks(ctx: Context, settings: list[dict[str, Any]],
                        theory: list[dict[str, Any]]) -> list[Block]:
    """The theory curves shaded with their mechanistic phases, and both phase sets' times."""
    series = [Series(th["trajectory"], f"{s['name']} (mechanism)", True, i, th["mechanistic"])
              for i, (s, th) in enumerate(zip(settings, theory, strict=True))
              if th["mechanistic"] is not None]
    figure = ctx.figure(
        plots.plot_trajectories(series, "Rank 1: mechanistic phases (from the order "
                                "parameters)"), "mechanistic",
        "The theory curves above, shaded with their mechanistic phases "
        "(dynamics.phases.mechanistic_phases: the initial decay ends when the off-target "
        "loss has shrunk below the on-target one; a plateau ends when the mode's strength "
        "w starts to grow, its drop when w nears s), to compare with the shape-based phases "
        "shaded above.", plots.trajectory_rows(series))
    rows = []
    for s, th in zip(settings, theory, strict=True):
        for kind, ph in (("shape", th["phases"]), ("mechanism", th["mechanistic"])):
            ph = ph or {"initial": None, "plateaus": [], "drops": []}
            first = ph["plateaus"][0] if ph["plateaus"] else {}
            rows.append({"setting": s["name"], "phases": kind,
                         "decay end": (ph["initial"] or {}).get("end"),
                         "plateau start": first.get("start"),
                         "plateau end": first.get("end"),
                         "drop": ph["drops"][0]["time"] if ph["drops"] else None})
    return [figure, ctx.table("mechanistic-table", "Shape-based and mechanistic phases of the "
                              "theory curves (times in t)", rows)]


def build_rank_1(ctx: Context) -> SectionResult:
    s: Rank1Settings = ctx.settings
    # n = 100: the init's norm σ√n can be large (initial decay) while its overlap with the
    # target, ~σ, stays small (plateau)
    settings = _rank_settings(1, s.curve_sigmas, s.n, singular=True)
    theory, trained = overlay(ctx, settings)
    blocks: list[Block] = [
        overlay_figure(ctx, "curves", "Rank 1, singular value s = 1, init σ swept",
                       settings, theory, trained)]
    if any(th["mechanistic"] for th in theory):
        blocks.extend(_mechanistic_blocks(ctx, settings, theory))
    blocks.append(overlay_table(ctx, "table", settings, theory, trained))
    m, runs = _s_curve_map(ctx, "map-claim2", s.sigmas, Axis("n", s.ns), "n",
                           {"rank": 1, "singular_values": [1.0]},
                           "gradient flow (exact reduced), rank 1, s = 1, seed 0")
    block, thumb = _s_curve_figure(ctx, 2, m, "rank 1")
    # the boundary in the init's energy per vector (s = 1 units): too little, no initial
    # decay; too much, no plateau
    m.hinge = ("the init energy nσ² (s = 1)", lambda sigma, n: n * sigma**2)
    return SectionResult([block, *blocks], [_s_curve_claim(2, m, runs, thumb, energy=True)],
                         {"map": m.rows()})


RANK_1 = Section(2, "rank-1", "Rank 1", build_rank_1,
                 Rank1Settings(100, (1e-3, 0.03, 0.1, 0.2), FULL_SIGMAS, (10, 30, 100, 300)),
                 Rank1Settings(30, (1e-3, 0.1), QUICK_SIGMAS, (10, 100)))


# ------------------------------------------------------------------------------- low rank


@dataclass(frozen=True)
class LowRankSettings:
    """Curves at ``n`` of each of ``curve_ranks`` at each of ``curve_sigmas``; the claim map
    over ``sigmas`` × ``ranks``."""

    n: int
    sigmas: tuple[float, ...]
    curve_ranks: tuple[int, ...] = (2, 5)
    curve_sigmas: tuple[float, ...] = (1e-3, 0.1)
    ranks: tuple[int, ...] = (2, 3, 5)


def build_low_rank(ctx: Context) -> SectionResult:
    s: LowRankSettings = ctx.settings
    blocks: list[Block] = []
    for rank in s.curve_ranks:
        settings = _rank_settings(rank, s.curve_sigmas, s.n, singular=False)
        theory, trained = overlay(ctx, settings)
        blocks.append(overlay_figure(
            ctx, f"rank{rank}", f"Rank {rank}, Gaussian target (singular values ≈ 1), "
            "init σ swept", settings, theory, trained))
        blocks.append(overlay_table(ctx, f"rank{rank}-table", settings, theory, trained))
    m, runs = _s_curve_map(ctx, "map-claim3", s.sigmas,
                           Axis("r", s.ranks, "rank r (= model rank)"), "rank", {"n": s.n},
                           f"gradient flow (exact reduced), n = {s.n}, Gaussian target "
                           "(scale 1), seed 0")
    block, thumb = _s_curve_figure(ctx, 3, m, "low rank")
    return SectionResult([block, *blocks], [_s_curve_claim(3, m, runs, thumb)],
                         {"map": m.rows()})


LOW_RANK = Section(3, "low-rank", "Low rank (2, 5)", build_low_rank,
                   LowRankSettings(100, FULL_SIGMAS), LowRankSettings(30, QUICK_SIGMAS))


# ------------------------------------------------------------------------------- n = 100


@dataclass(frozen=True)
class N100Settings:
    """The shared run grid (its two largest ranks judged, rank 1 the reference of the
    smeared drop); curves of every rank at each of ``curve_sigmas`` (points of the grid)."""

    grid: MapGrid
    curve_sigmas: tuple[float, ...] = (1e-3, 0.1, 1.0)


def build_n_100(ctx: Context) -> SectionResult:
    s: N100Settings = ctx.settings
    runs = sgd_runs(ctx, s.grid)
    ranks, seeds = s.grid.ranks, s.grid.seeds
    n, mid = ranks[-1], ranks[-2]
    blocks: list[Block] = []
    for sigma in s.curve_sigmas:
        blocks.append(runs_figure(
            ctx, f"sigma{sigma:g}", f"n = {n}: ranks {', '.join(map(str, ranks))}, "
            f"σ = {sigma:g}", [(f"r={r}", runs[(r, sigma, 0)]) for r in ranks],
            f"Float64 full-batch SGD (η = {SGD_LR:g}, equal to the exact GD map up to "
            f"rounding), n = {n}, Gaussian target (scale 1), σ = {sigma:g}, seed 0."))
    x, y = Axis("σ", s.grid.sigmas, SIGMA_LABEL, True), Axis("r", (mid, n), "rank r")

    def cell(r: int, sigma: float) -> tuple[float, str]:
        if r == n:
            return seed_cell([full_rank_checks(runs[(r, sigma, k)]) for k in seeds])
        return seed_cell([rank_10_checks(runs[(r, sigma, k)], runs[(1, sigma, k)])
                          for k in seeds])

    holds, notes = cells(x, y, cell)
    m = ClaimMap(f"r = {mid}: plateau and smeared drop; r = {n}: no plateau, power-law tail, "
                 "spans without aligning", x, y, holds,
                 f"float64 SGD η = {SGD_LR:g} to t = {SGD_T:g}, n = {n}, Gaussian target, "
                 f"seeds {list(seeds)}", len(seeds), notes)
    block, thumb = map_figure(ctx, "claim4", [m], f"Claim 4: where rank {mid} and rank {n} "
                              "behave as claimed", "Letters: the checks that fail at most "
                              "seeds (" + legend(["plateau", "smeared", "power tail",
                                                  "spans"]) + "; at r = n, P = a plateau "
                              "is found).")
    text = (f"Rank {mid} shows a plateau with a smeared drop at {int(m.ok[0].sum())} of "
            f"{len(x.values)} σ; rank {n} has no plateau, a power-law tail and spans the truth "
            f"without aligning at {int(m.ok[1].sum())} of {len(x.values)} σ.")
    return SectionResult([block, *blocks], [judge(4, [m], text, m.settings, thumb)],
                         {"map": m.rows()})


N_100 = Section(4, "n-100", "n = 100: rank 10 and rank 100", build_n_100,
                N100Settings(FULL_GRID), N100Settings(QUICK_GRID))

SECTIONS = (RANK_1, LOW_RANK, N_100)
