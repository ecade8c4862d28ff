"""Runs shared by the sections: job configs, theory over training from the same spec, and the
rows that describe a run in the sections' tables (times in t, README "Conventions")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ... import plots
from ...claims import crossing
from ...plots import Series
from ...sweep import Plan, plan
from ..blocks import Context, FigureBlock, TableBlock, fmt

__all__ = ["describe", "flow_cell", "flows", "overlay", "overlay_figure", "overlay_table",
           "run_row", "runs_figure", "train_cell", "trains"]

MAX_TRAIN_STEPS = 200_000


def train_cell(spec: dict[str, Any], lr: float, steps: int, seeds: Sequence[int] | None = None,
               optimizer: str = "sgd") -> Plan:
    """The training of spec dict ``spec`` (``{"kind", **sampler options, "seed"}``) at rate
    ``lr`` for ``steps`` steps (t = lr·steps), at ``seeds`` (default: the spec's seed), as
    sweep cells (:func:`figures.sweep.plan`, one per seed): float64, full batch, on the CPU,
    order parameters at log-spaced steps. The cells of one :func:`trains` call that differ
    only in seed and init train as one batch."""
    options = dict(spec)
    kind, seed = options.pop("kind"), options.pop("seed", 0)
    return plan(kind, [], seeds=[seed] if seeds is None else list(seeds), theories=(),
                train=optimizer, steps=steps, record=True, train_record="log",
                defaults=options | {"lr": lr})


def trains(ctx: Context, cells: Sequence[Plan]) -> list[list[dict[str, Any]]]:
    """The run summaries of each training plan (:func:`train_cell`; one per seed, each with
    ``"diverged"``), all run at once in the section's pool (batched by the sweep)."""
    results = ctx.run([job for cell in cells for job in cell.jobs])
    out, at = [], 0
    for cell in cells:
        out.append([row["run"] for row in cell.rows(results[at:at + len(cell.jobs)])])
        at += len(cell.jobs)
    return out


def flow_cell(spec: dict[str, Any], t_max: float | None) -> Plan:
    """The gradient flow of spec dict ``spec`` (``{"kind", **sampler options, "seed"}``) to
    ``t_max`` as one sweep cell (:func:`figures.sweep.plan`): the very cell a claim map's sweep
    over the same settings runs, so a curve and a map cell share one cached job."""
    options = dict(spec)
    kind, seed = options.pop("kind"), options.pop("seed", 0)
    return plan(kind, [], seeds=[seed], theories=["flow"], record=True,
                defaults=options | {"t_max": t_max})


def flows(ctx: Context, specs: Sequence[dict[str, Any]], t_max: float | None
          ) -> list[dict[str, Any]]:
    """The gradient flow (theory, float64) of each spec, to ``t_max`` (None: until it settles):
    one sweep cell each (:func:`flow_cell`), all in one run; the report's run summaries."""
    return _flow_runs(ctx, [flow_cell(spec, t_max) for spec in specs])


def _flow_runs(ctx: Context, cells: Sequence[Plan]) -> list[dict[str, Any]]:
    """The run summary of each one-cell flow plan, all run at once (in the section's pool)."""
    results = ctx.run([job for cell in cells for job in cell.jobs])
    return [cell.rows([result])[0]["run"] for cell, result in zip(cells, results, strict=True)]


def describe(spec: dict[str, Any]) -> str:
    """A spec dict in words: "factorization, n=30, r=1, σ=0.001, sᵢ=1.0, seed=0"."""
    names = {"n": "n", "d": "d", "rank": "r", "model_rank": "k", "init": "σ",
             "singular_values": "s", "scale": "scale", "weight_decay": "λ", "loss": "loss",
             "seed": "seed"}
    parts = [spec["kind"]]
    for key, label in names.items():
        if key in spec:
            value = spec[key]
            if isinstance(value, list):
                value = value[0] if len(set(value)) == 1 else value
                label = f"{label}{'ᵢ' if key == 'singular_values' else ''}"
            parts.append(f"{label}={fmt(value) if isinstance(value, float) else value}")
    return ", ".join(parts)


def run_row(setting: str, source: str, run: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one run shown in the sections' tables (times in t)."""
    ph = run["phases"] or {"plateaus": [], "drops": [], "tail": None}
    first = next(iter(run["factors"].values()), {})
    plateau = ph["plateaus"][0] if ph["plateaus"] else {}
    drop = ph["drops"][0] if ph["drops"] else {}
    return {
        "setting": setting,
        "source": source,
        "t_0.5": crossing(run, 0.5),
        "t_0.1": crossing(run, 0.1),
        "plateaus": len(ph["plateaus"]),
        "plateau_length": plateau.get("length"),
        "drop_width": drop.get("width"),
        "tail": None if ph["tail"] is None else ph["tail"]["kind"],
        "final_L/L_ref": run["final_loss"] / run["l_ref"],
        "alignment_end": first.get("alignment_end"),
        "norm_min/init": first.get("norm_min_ratio"),
        "norm_end/min": first.get("norm_growth"),
        "bumps": sum(f["bumps"] for f in run["factors"].values()),
    }


def runs_figure(ctx: Context, name: str, title: str, runs: Sequence[tuple[str, dict[str, Any]]],
                caption: str, theory: bool = False) -> FigureBlock:
    """The curves of ``runs`` ((label, run summary), a colour each; solid theory lines if
    ``theory``, else training markers) with their phases shaded, t on a log axis."""
    series = [Series(run["trajectory"], label, theory, i, run["phases"])
              for i, (label, run) in enumerate(runs)]
    return ctx.figure(plots.plot_trajectories(series, title, log_time=True), name, caption,
                      plots.trajectory_rows(series, log_time=True))


def overlay(ctx: Context, settings: list[dict[str, Any]]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Theory (flow) and SGD training (float64) of each setting, from the same spec.

    A setting is ``{"name", "spec", "lr", "t_max"}``; training runs until the theory's end
    time (capped at :data:`MAX_TRAIN_STEPS` steps).
    """
    theory = _flow_runs(ctx, [flow_cell(s["spec"], s["t_max"]) for s in settings])
    cells = [train_cell(s["spec"], s["lr"], int(min(MAX_TRAIN_STEPS,
                                                    math.ceil(th["t_end"] / s["lr"]))))
             for s, th in zip(settings, theory, strict=True)]
    return theory, [runs[0] for runs in trains(ctx, cells)]


def overlay_figure(ctx: Context, name: str, title: str, settings: list[dict[str, Any]],
                   theory: list[dict[str, Any]], trained: list[dict[str, Any]],
                   log_time: bool = False) -> FigureBlock:
    """Theory (solid) and training (markers) of each setting in one figure."""
    series = []
    for i, (s, th, tr) in enumerate(zip(settings, theory, trained, strict=True)):
        series.append(Series(th["trajectory"], s["name"], True, i, th["phases"]))
        series.append(Series(tr["trajectory"], s["name"], False, i, tr["phases"]))
    fig = plots.plot_trajectories(series, title, log_time=log_time)
    caption = (f"{title}. Theory: gradient flow (solid); training: full-batch SGD in float64 "
               f"(markers), η = {settings[0]['lr']:g}, from the same initialisation. "
               + "; ".join(f"{s['name']}: {describe(s['spec'])}" for s in settings))
    return ctx.figure(fig, name, caption, plots.trajectory_rows(series))


def overlay_table(ctx: Context, name: str, settings: list[dict[str, Any]],
                  theory: list[dict[str, Any]], trained: list[dict[str, Any]]) -> TableBlock:
    """Crossing times and phases of theory and training per setting, and their difference."""
    rows = []
    for s, th, tr in zip(settings, theory, trained, strict=True):
        rows.append(run_row(s["name"], "theory", th))
        row = run_row(s["name"], "training", tr)
        row["t_0.5 rel. diff"] = abs(row["t_0.5"] - rows[-1]["t_0.5"]) / rows[-1]["t_0.5"]
        rows.append(row)
    return ctx.table(name, "Crossing times and phases (times in t)", rows)
