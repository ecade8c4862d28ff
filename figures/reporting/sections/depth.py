"""Section 13, depth: the chain ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² at D = 2, 3, 4.

Three measurements, theory (the derived reduced gradient flow, float64) over training
(full-batch SGD, float64, t = η·step) from the same spec (same seed):

1. curves: D = 2, 3, 4 from one init scale σ (entries of X0, Y0, M_i0 i.i.d. N(0, σ²));
2. the small-init law: t_0.5 against σ on log-log axes, per depth, with the per-seed closed
   form (:func:`dynamics.theory.crossing_time`); the fitted slope of ln t_0.5 against ln σ
   (:func:`figures.claims.fit_slope`) beside the predicted −(D − 2)
   (:func:`dynamics.theory.chain_law_slope`; D = 2 is logarithmic, t_0.5 ≈ (1/s) ln(1/σ) + K,
   slope → 0), and the ratio per halving of σ beside 2^{D−2};
3. the closed form of a balanced aligned start (u̇ = D u^{2−2/D}(s − u),
   :func:`dynamics.theory.chain_loss`) against the flow of the model
   (:func:`figures.reporting.jobs.job_balanced`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import plots
from ...claims import crossing, fit_slope, grid_runs
from ...plots import ScalingPanel, ScalingSet, Series
from ...sweep import Axis as GridAxis
from ...sweep import Plan
from ..blocks import Block, Context, Section, SectionResult, TextBlock
from ..jobs import job_balanced, make_spec
from ._runs import flows, train_cell, trains

__all__ = ["FULL", "QUICK", "SECTION", "Settings"]

DEPTHS = (2, 3, 4)
S = 1.0  # the target's singular value (rank 1)
N = 10  # n: small, so that the init's energy off the target, ~nσ², stays ≪ s
CURVE_SIGMA = 0.08  # a point of every depth's σ grid: its flow is shared with the sweep
CURVE_LR = 0.02
SWEEP_LR = 0.05  # GD ≈ flow in the plateau at any depth; the drop lags by ~η·s/2 in t
SWEEP_MARGIN = 1.25  # training runs to this multiple of the flow's largest t_0.5
MAX_STEPS = 400_000


@dataclass(frozen=True)
class Settings:
    """Per depth, the per-entry init σ of the small-init sweep (factor-2 steps); seeds
    0 … ``seeds`` − 1."""

    sigmas: dict[int, tuple[float, ...]]
    seeds: int


# D = 4 starts higher (t_0.5 ~ 1.5/σ²)
FULL = Settings({2: (0.01, 0.02, 0.04, 0.08), 3: (0.01, 0.02, 0.04, 0.08),
                 4: (0.02, 0.04, 0.08, 0.16)}, 3)
QUICK = Settings({2: (0.04, 0.08), 3: (0.04, 0.08), 4: (0.08, 0.16)}, 1)


MAP_DEFAULTS = {"n": N, "rank": 1, "model_rank": 1, "singular_values": [S]}
"""The sweep's fixed chain options (:func:`_spec`'s, but depth, init and seed)."""


def _spec(depth: int, sigma: float, seed: int) -> dict[str, Any]:
    return {"kind": "chain", "n": N, "rank": 1, "model_rank": 1, "depth": depth,
            "init": sigma, "singular_values": [S], "seed": seed}


def _geomean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(finite)))) if len(finite) == len(values) else math.nan


def _train_cell(spec: dict[str, Any], seeds: list[int], lr: float, t_end: float) -> Plan:
    """SGD training of ``spec`` at ``seeds`` to t = ``t_end`` (at most :data:`MAX_STEPS`
    steps) as sweep cells, the seeds one batch."""
    return train_cell(spec, lr, int(min(MAX_STEPS, math.ceil(t_end / lr))), seeds)


def _curves(ctx: Context) -> tuple[list[Block], dict[str, Any]]:
    """Figure 1: D = 2, 3, 4 from σ = :data:`CURVE_SIGMA`, theory over training."""
    specs = [_spec(depth, CURVE_SIGMA, 0) for depth in DEPTHS]
    theory = flows(ctx, specs, None)
    trained = [runs[0] for runs in trains(ctx, [_train_cell(spec, [0], CURVE_LR, th["t_end"])
                                                for spec, th in zip(specs, theory, strict=True)])]
    blocks: list[Block] = []
    series = []
    for i, (depth, th, tr) in enumerate(zip(DEPTHS, theory, trained, strict=True)):
        series.append(Series(th["trajectory"], f"D = {depth}", True, i, th["phases"]))
        series.append(Series(tr["trajectory"], f"D = {depth}", False, i, tr["phases"]))
    fig = plots.plot_trajectories(series, f"Depth D = 2, 3, 4 from the same init scale "
                                  f"σ = {CURVE_SIGMA:g}", log_time=True)
    caption = (f"Chain X M₁⋯M_(D−2) Yᵀ fitting a rank-1 target (s = {S:g}), n = {N}, k = 1, "
               f"entries of X0, Y0, M_i0 i.i.d. N(0, σ²), σ = {CURVE_SIGMA:g}, seed 0 (X0, Y0 "
               "the same draws at every depth). Theory: the derived reduced gradient flow, "
               "float64 (solid); training: full-batch SGD in float64 (markers), "
               f"η = {CURVE_LR:g}, from the same spec; t = η·step on a log axis. Panels: loss, "
               "alignment and norms of the n-row factors X and Y.")
    blocks.append(ctx.figure(fig, "curves", caption, plots.trajectory_rows(series, True)))
    rows = []
    for depth, th, tr in zip(DEPTHS, theory, trained, strict=True):
        rows.append({"D": depth, "σ": CURVE_SIGMA, "t_0.5 theory": crossing(th),
                     "t_0.5 training": crossing(tr),
                     "final L/L_ref theory": th["final_loss"] / th["l_ref"],
                     "t_0.5 rel. diff": abs(crossing(tr) / crossing(th) - 1)})
    blocks.append(ctx.table("curves-table", "Crossing times of the curves (in t)", rows))
    return blocks, {"curves": rows}


def _sweep(ctx: Context) -> tuple[list[Block], dict[str, Any]]:
    """Figure 2: t_0.5 against σ per depth (log-log), fitted slopes beside −(D − 2)."""
    from dynamics import theory as law

    settings: Settings = ctx.settings
    grid = settings.sigmas
    seeds = list(range(settings.seeds))
    points = [(depth, sigma) for depth in DEPTHS for sigma in grid[depth]]
    # the flows: a sweep of the chain over depth × σ (each depth's own σ) × seeds
    sigma_axis = tuple(sorted({sigma for depth in DEPTHS for sigma in grid[depth]}))
    rows = ctx.sweep("sweep-flows", "chain", [GridAxis("depth", DEPTHS),
                                              GridAxis("init", sigma_axis)],
                     seeds=seeds, theories=["flow"], defaults=MAP_DEFAULTS,
                     where=lambda v, _: v["init"] in grid[v["depth"]])
    runs = grid_runs(rows, ("depth", "init", "seed"))
    flow = {p: [crossing(runs[(*p, seed)]) for seed in seeds] for p in points}
    cells = [_train_cell(_spec(*p, 0), seeds, SWEEP_LR,
                         SWEEP_MARGIN * max(t for t in flow[p] if np.isfinite(t)))
             for p in points]
    trained = {p: [crossing(run) for run in runs]
               for p, runs in zip(points, trains(ctx, cells), strict=True)}
    panels, rows, table = [], [], []
    for depth in DEPTHS:
        sigmas = np.array(grid[depth])
        theory_t = np.array([_geomean(flow[(depth, s)]) for s in sigmas])
        train_t = np.array([_geomean(trained[(depth, s)]) for s in sigmas])
        predicted = law.chain_law_slope(depth)
        closed = {s: [law.crossing_time(make_spec(_spec(depth, s, seed)), 0.5) for seed in seeds]
                  for s in sigmas}
        closed_t = np.array([_geomean(closed[s]) for s in sigmas])
        fit_theory, fit_train = fit_slope(sigmas, theory_t), fit_slope(sigmas, train_t)
        fit_closed = fit_slope(sigmas, closed_t)
        fine = np.geomspace(sigmas[0], sigmas[-1], 40)
        if depth == 2:  # logarithmic: t = t(σ_min) + (1/s) ln(σ_min/σ)
            anchor = theory_t[0] + np.log(sigmas[0] / fine) / S
            anchor_label = "(1/s) ln(1/σ) law (predicted)"
        else:
            anchor = theory_t[0] * (fine / sigmas[0]) ** predicted
            anchor_label = f"slope −{depth - 2} (predicted)"
        label = f"training, fitted slope {fit_train:.3f}"
        lines = ((f"flow, fitted slope {fit_theory:.3f}", sigmas, theory_t),
                 (f"closed form, fitted slope {fit_closed:.3f}", sigmas, closed_t),
                 (anchor_label, fine, anchor))
        ratio_theory, ratio_train = theory_t[1] / theory_t[0], train_t[1] / train_t[0]
        title = (f"D = {depth}: predicted slope −{depth - 2}" if depth > 2 else
                 "D = 2: logarithmic (predicted slope → 0)")
        panels.append(ScalingPanel(title, "σ (per entry of X0, M_i0, Y0)", (ScalingSet(
            label, sigmas, train_t, np.zeros_like(train_t), lines),), log_x=True, log_y=True))
        for i, sigma in enumerate(sigmas):
            rows.append({"D": depth, "σ": float(sigma), "t_0.5 training (geomean)": train_t[i],
                         "t_0.5 flow (geomean)": theory_t[i],
                         "t_0.5 closed form (geomean)": closed_t[i],
                         **{f"flow seed {k}": v for k, v in
                            zip(seeds, flow[(depth, sigma)], strict=True)},
                         **{f"closed form seed {k}": v for k, v in
                            zip(seeds, closed[sigma], strict=True)},
                         **{f"training seed {k}": v for k, v in
                            zip(seeds, trained[(depth, sigma)], strict=True)}})
        table.append({
            "D": depth, "σ range": f"{sigmas[0]:g}–{sigmas[-1]:g}",
            "predicted slope (σ → 0)": predicted,
            "flow: fitted slope": fit_theory, "training: fitted slope": fit_train,
            "closed form: fitted slope": fit_closed,
            "predicted ratio per halving (σ → 0)": 2.0 ** (depth - 2),
            "flow: ratio per halving (smallest σ)": 1 / ratio_theory,
            "training: ratio per halving (smallest σ)": 1 / ratio_train,
            "D = 2: dt/d ln σ flow (predicted −1/s)":
                fit_slope(sigmas, theory_t, log_y=False) if depth == 2 else None,
        })
    fig = plots.plot_scaling(panels, f"Plateau end t_0.5 against the init scale σ (rank 1, "
                                     f"s = {S:g}, n = {N}, k = 1; " + (
                                         f"geometric mean of {len(seeds)} seeds)"
                                         if len(seeds) > 1 else "seed 0)"), columns=3)
    _relabel(fig, len(seeds))
    caption = (f"t_0.5 (first t with L ≤ ½L_ref) against the per-entry init σ of X0, M_i0, Y0 "
               f"on log-log axes, seeds {seeds} (the same draws scaled by σ), rank-1 target "
               f"s = {S:g}, n = {N}, k = 1. Points: full-batch SGD in float64, η = "
               f"{SWEEP_LR:g}, geometric mean over the seeds; solid: the reduced flow of the "
               "same specs; dashed: the closed form of the same seeds (dynamics.theory."
               "crossing_time: for D ≥ 3 the blow-up time of the linear phase ȧ_i = s Π_(j≠i) "
               "a_j from the seed's overlaps plus the saturation constant K_D; at D = 2 the "
               "logistic staircase); dash-dotted: the predicted law through the flow's "
               "smallest-σ point, t ∝ σ^−(D−2) for D ≥ 3 and t = (1/s) ln(1/σ) + K at D = 2 "
               "(dynamics.theory.chain_law). Fitted slopes in the legends; predicted slopes in "
               "the titles. GD lags the flow by ~η·s/2 in the drop, a constant shift in t "
               "(~2 % of t_0.5 at D = 2, less at larger D), which leaves the slopes unchanged.")
    blocks = [ctx.figure(fig, "sigma", caption, rows),
              ctx.table("slopes", "Small-init law: fitted slopes of ln t_0.5 against ln σ and "
                        "ratios per halving of σ, beside the predicted −(D − 2) and 2^(D−2)",
                        table)]
    return blocks, {"sweep": rows, "slopes": table}


def _relabel(fig: Any, seeds: int) -> None:
    """Replace plot_scaling's shared legend (closed form / mean ± sd) by what is drawn here."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    with plots._DRAWING:
        for legend in list(fig.legends):
            legend.remove()
        handles = [
            Line2D([], [], color="k", lw=plots.THEORY_WIDTH, label="reduced flow"),
            Line2D([], [], color="k", lw=plots.THEORY_WIDTH, ls="--",
                   label="closed form, same seeds"),
            Line2D([], [], color="k", lw=plots.THEORY_WIDTH, ls="-.",
                   label="predicted law through the flow's smallest-σ point"),
            Line2D([], [], color="k", ls="none", marker="o", ms=plots.MARKER_SIZE + 1,
                   label="training (SGD, float64)" + (
                       f": geometric mean over {seeds} seeds" if seeds > 1 else ""))]
        fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        for ax in fig.axes:  # times as plain numbers on the log axes (3, 4, 20, 100, ...)
            low, high = ax.get_ylim()
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain if high < 10 * low else NullFormatter())


def _balanced(ctx: Context) -> tuple[list[Block], dict[str, Any]]:
    """Table: the closed form of the balanced aligned start against the model's flow."""
    settings = [{"depth": depth, "n": N, "s": S, "a0": 0.1} for depth in DEPTHS]
    rows = [{"D": c["depth"], "a0": c["a0"], **r} for c, r in
            zip(settings, ctx.run([(job_balanced, c) for c in settings]), strict=True)]
    for row in rows:
        row.pop("seconds")
    return [ctx.table("balanced", "Balanced aligned start (every factor's scalar a0 along the "
                      "target mode): reduced flow of the model against the closed form "
                      "u̇ = D u^(2−2/D)(s − u) (dynamics.theory.chain_loss, chain_crossing)",
                      rows)], {"balanced": rows}


def build(ctx: Context) -> SectionResult:
    """The "Depth" section: curves at D = 2, 3, 4, the small-init law, the balanced check."""
    intro = TextBlock(
        "Depth-D chain L = ½‖A Bᵀ − X M₁⋯M_(D−2) Yᵀ‖² (D = 2 is the factorization). A "
        "balanced aligned mode u = a^D obeys u̇ = D u^(2−2/D)(s − u) (Saxe et al. 2014; Arora et "
        "al. 2018): from a small per-factor start σ its plateau lasts t ≈ σ^−(D−2)/((D − 2)s) "
        "+ K for D ≥ 3 — a power of 1/σ, so each halving of σ multiplies it by 2^(D−2) — and "
        "t ≈ (1/s) ln(1/σ) + K at D = 2 (dynamics.theory.chain_law).")
    blocks: list[Block] = [intro]
    data: dict[str, Any] = {}
    for part in (_curves, _sweep, _balanced):
        more, values = part(ctx)
        blocks.extend(more)
        data.update(values)
    return SectionResult(blocks, [], data)


SECTION = Section(13, "depth", "Depth", build, FULL, QUICK)
