"""Shared by the sections' claim maps: the σ axes, the map figure and its thumbnail, and the
grid of float64 full-batch runs (SGD, Adam, AdamW) that sections n-100, scaling and
optimizers judge their claims on.

Every grid runs through the one grid runner, :func:`figures.sweep.sweep`
(:meth:`figures.reporting.blocks.Context.sweep`): the theory maps as theory cells, the
training grids (:func:`optimizer_runs`, and cross-entropy's) as training cells, whose cells
that differ only in σ and seed train as ONE batch (one batched trainer call per rank, as
before) and are cached one by one; the sections' other training runs (depth's, scaling's,
the overlays) are sweep cells too (:func:`._runs.train_cell`). Each grid writes its table in
the sweep's format (``results.csv``'s) to ``data/``, and :mod:`figures.claims` judges the
rows' run summaries (:func:`figures.claims.grid_runs`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ... import plots
from ...claims import ClaimMap, grid_runs
from ...sweep import Axis as SweepAxis
from ..blocks import Context, FigureBlock

__all__ = ["FULL_GRID", "FULL_SIGMAS", "QUICK_GRID", "QUICK_SIGMAS", "SGD_LR", "SGD_T",
           "SIGMA_LABEL", "MapGrid", "count", "map_figure", "optimizer_runs", "sgd_runs"]

FULL_SIGMAS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)  # per-coordinate init std (randn: 1)
QUICK_SIGMAS = (1e-3, 0.01, 0.1, 0.3, 1.0)
SIGMA_LABEL = "init σ (per coordinate)"

# the grid's SGD runs: float64 full-batch SGD (identical to the exact GD map up to rounding;
# the exact map is ~10x slower at rank 100)
SGD_LR = 0.004  # stable at σ = 1, n = 100 (largest curvature ≈ (√n + √k)²σ² = 400 → η < 0.005)
SGD_T = 40.0


def map_figure(ctx: Context, name: str, maps: Sequence[ClaimMap], title: str,
               caption: str) -> tuple[FigureBlock, str]:
    """The figure of ``maps`` (rows of every cell in its CSV) and its thumbnail's path."""
    block = ctx.figure(plots.plot_maps(maps, title), f"map-{name}",
                       f"{caption} Green: the test holds (at more than half of the seeds); red: "
                       "it fails; shades between: the fraction of seeds; grey: not measured. "
                       "Settings: " + "; ".join(dict.fromkeys(m.settings for m in maps)) + ".",
                       [row for m in maps for row in m.rows()])
    thumb = ctx.out / "figures" / f"{ctx.name(f'map-{name}')}-thumb.png"
    plots.save_thumbnail(plots.plot_maps(maps, thumbnail=True), thumb)
    return block, str(thumb.relative_to(ctx.out))


def count(m: ClaimMap) -> str:
    """"k of m settings": the cells of ``m`` that hold, of those measured."""
    ok, measured = int(m.ok.sum()), int(m.measured.sum())
    return f"{ok} of {measured} settings"


@dataclass(frozen=True)
class MapGrid:
    """The grid of training runs: every rank × σ × seed at n = the largest rank (a rank-n
    target is full rank), Gaussian target (scale 1), model rank = target rank."""

    sigmas: tuple[float, ...]
    ranks: tuple[int, ...]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.ranks[-1]

    def spec(self, rank: int, sigma: float, seed: int) -> dict[str, Any]:
        return {"kind": "factorization", "n": self.n, "rank": rank, "init": sigma, "seed": seed}


FULL_GRID = MapGrid(FULL_SIGMAS, (1, 2, 10, 100), (0, 1, 2))
QUICK_GRID = MapGrid(QUICK_SIGMAS, (1, 2, 5, 30), (0,))

Runs = dict[tuple[int, float, int], dict[str, Any]]
"""Runs keyed (rank, σ, seed): each the run summary of a sweep row
(:func:`figures.reporting.jobs.summarize`) with ``"diverged"`` (bool)."""


def optimizer_runs(ctx: Context, grid: MapGrid, optimizer: str, lr: float, t_max: float,
                   ranks: Sequence[int] | None = None, **options: Any) -> Runs:
    """The grid's runs of ``optimizer`` at rate ``lr`` to t = ``t_max`` (at ``ranks``, default
    all): one sweep (:meth:`Context.sweep`, table ``data/NN-slug-runs-...csv``) of training
    cells rank × σ × seed, float64 full batch on the CPU, order parameters at log-spaced steps;
    the σ × seed cells of a rank train as one batch (:func:`figures.sweep.run_cells`).
    ``options``: sampler options of every cell (``weight_decay``: AdamW's decoupled λ)."""
    axes = [SweepAxis("rank", tuple(ranks or grid.ranks)), SweepAxis("init", grid.sigmas)]
    name = "-".join(["runs", optimizer, f"lr{lr:g}", *(f"{k}{v:g}" for k, v in options.items()),
                     *([f"r{'-'.join(map(str, ranks))}"] if ranks else [])])
    rows = ctx.sweep(name, "factorization", axes, seeds=list(grid.seeds), theories=(),
                     train=optimizer, steps=math.ceil(t_max / lr), train_record="log",
                     defaults={"n": grid.n, "lr": lr, **options})
    return grid_runs(rows, ("rank", "init", "seed"), "train")  # type: ignore[return-value]


def sgd_runs(ctx: Context, grid: MapGrid) -> Runs:
    """The grid's SGD runs (η = :data:`SGD_LR` to t = :data:`SGD_T`)."""
    return optimizer_runs(ctx, grid, "sgd", SGD_LR, SGD_T)
