"""The report: every experiment of the project, run (or read from the cache) and shown offline.

``scurve report [--out DIR] [--quick] [--only SECTION]`` builds the sections below. Each one
defines its experiments as jobs (:mod:`figures.sweeps`: cached on disk by configuration, run
on any executor), draws its figures with :mod:`figures.plots`, writes every number it shows
to ``DIR/data/`` (CSV and JSON) and measures the claims of DESIGN §4 it backs
(:mod:`figures.claims`). ``DIR/index.html`` is self-contained: figures are embedded as base64
PNGs, equations typeset by matplotlib, no external CSS or JavaScript.

Theory and experiment share their initialisation: the same spec (same seed) is integrated
(gradient flow, float64) and trained (full-batch SGD, float64, step η, t = η·step) unless a
section says otherwise. All times are continuous time t.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import importlib.util
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import find_peaks
from tqdm import tqdm

from dynamics.problems import KINDS, Problem
from dynamics.trajectory import Trajectory

from . import plots
from .claims import ClaimResult, claims_table, verdict
from .jsonable import jsonable
from .plots import ScalingPanel, ScalingSet, Series
from .sweeps import CacheStats, Job, default_executor, run_jobs

__all__ = [
    "SECTIONS",
    "Section",
    "build_report",
    "job_equations",
    "job_predict",
    "job_task",
    "job_task_theory",
    "job_train",
    "resolve_sections",
    "summarize",
]

FRACTIONS = (0.9, 0.5, 0.1, 0.01)  # crossing times t_f reported for every run
PLOT_SAMPLES = 600  # samples kept per trajectory for figures and data files
MAX_PAIRS = 16  # above r·k target/learned pairs, only max_j |cos| is kept per learned vector
BUMP_PROMINENCE = 0.05  # a bump: a local maximum of an alignment curve this prominent
MAX_TRAIN_STEPS = 200_000
GRADIENT_METHODS = ("cluster", "svd")  # grouped-loss methods that need per-example gradients


# =============================================================================== jobs
# Top-level functions run in worker processes; their results are cached by figures.sweeps.


def make_spec(config: dict[str, Any]) -> Problem:
    """The spec sampled from ``config`` = ``{"kind": ..., **sample arguments}`` (with its seed)."""
    args = dict(config)
    return KINDS[args.pop("kind")].sample(**args)  # type: ignore[attr-defined]


def _thin(traj: Trajectory, count: int = PLOT_SAMPLES) -> Trajectory:
    """At most ~``count`` samples (half linear, half log-spaced in t); big cosines compacted.

    With more than :data:`MAX_PAIRS` target/learned pairs a factor keeps only
    max_j |cos(target j, learned l)| per learned vector (shape (T, 1, k)): what is plotted.
    """
    t = traj.t
    if t.size > count:
        first = t[1] if t[0] == 0 else t[0]
        marks = np.concatenate([np.linspace(t[0], t[-1], count // 2),
                                np.geomspace(max(first, t[-1] * 1e-6), t[-1], count // 2)])
        keep = np.unique(np.concatenate([[0, t.size - 1],
                                         np.searchsorted(t, marks).clip(0, t.size - 1)]))
    else:
        keep = np.arange(t.size)
    cosines = {}
    for name, cos in traj.cosines.items():
        cos = cos[keep]
        if cos.shape[1] * cos.shape[2] > MAX_PAIRS:
            cos = np.max(np.abs(cos), axis=1, keepdims=True)
        cosines[name] = cos
    return Trajectory(t[keep], traj.loss[keep], traj.l_ref, cosines,
                      {name: v[keep] for name, v in traj.norms.items()}, traj.method,
                      None if traj.steps is None else traj.steps[keep])


def _factor_summary(t: np.ndarray, cosines: np.ndarray, norms: np.ndarray) -> dict[str, Any]:
    """Alignment, norm history and bumps of one factor (medians over its learned vectors).

    Alignment of learned vector l: max_j |cos(target j, l)|. ``t_align``: first time the mean
    alignment has covered 90 % of its change. Norm ratios: min/initial and final/min. Bumps:
    local maxima of the alignment curves with prominence >= :data:`BUMP_PROMINENCE`; a bump is
    "in growth" when it lies between the vector's smallest norm and the time its norm has
    covered 90 % of its growth.
    """
    align = np.max(np.abs(cosines), axis=1)
    mean = align.mean(axis=1)
    change = mean[-1] - mean[0]
    reached = np.flatnonzero(mean >= mean[0] + 0.9 * change) if change > 0 else []
    low, low_at, end = norms.min(axis=0), norms.argmin(axis=0), norms[-1]
    tiny = np.finfo(np.float64).tiny
    bumps, in_growth = [], 0
    for l in range(align.shape[1]):
        grown = np.flatnonzero(norms[low_at[l]:, l] >= low[l] + 0.9 * (end[l] - low[l]))
        grow_end = t[low_at[l] + grown[0]] if grown.size else t[-1]
        peaks, _ = find_peaks(align[:, l], prominence=BUMP_PROMINENCE)
        bumps.extend(float(t[i]) for i in peaks)
        in_growth += int(np.sum((t[peaks] >= t[low_at[l]]) & (t[peaks] <= grow_end)))
    return {
        "vectors": int(align.shape[1]),
        "alignment_start": float(mean[0]),
        "alignment_end": float(mean[-1]),
        "t_align": float(t[reached[0]]) if len(reached) else None,
        "norm_start": float(np.median(norms[0])),
        "norm_end": float(np.median(end)),
        "norm_min_ratio": float(np.median(low / np.maximum(norms[0], tiny))),
        "norm_growth": float(np.median(end / np.maximum(low, tiny))),
        "bumps": len(bumps),
        "bumps_in_growth": in_growth,
        "bump_times": sorted(bumps),
    }


def summarize(traj: Trajectory, loss_t: np.ndarray | None = None,
              loss: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the report uses about one run, computed at full resolution.

    Crossing times and phases come from ``(loss_t, loss)`` when given (a training run's
    every-step loss), else from the trajectory. The trajectory itself is kept thinned
    (:func:`_thin`) for the figures.
    """
    from dynamics.phases import analyze, crossing_times

    loss_t = traj.t if loss_t is None else loss_t
    loss = traj.loss if loss is None else loss
    finite = np.isfinite(loss)
    loss_t, loss = loss_t[finite], loss[finite]
    crossings: dict[str, float | None] = {f"{f:g}": None for f in FRACTIONS}
    phases = None
    if loss.size >= 2:
        crossings = {f"{f:g}": v for f, v in
                     crossing_times(loss_t, loss, traj.l_ref, FRACTIONS).items()}
        try:
            phases = analyze(loss_t, loss, traj.l_ref).to_dict()
        except ValueError:  # too few usable samples for the phase analysis
            phases = None
    return {
        "trajectory": _thin(traj),
        "crossings": crossings,
        "phases": phases,
        "factors": {name: _factor_summary(traj.t, traj.cosines[name], traj.norms[name])
                    for name in traj.cosines},
        "l_ref": float(traj.l_ref),
        "loss_start": float(loss[0]) if loss.size else math.nan,
        "final_loss": float(loss[-1]) if loss.size else math.nan,
        "t_end": float(loss_t[-1]) if loss.size else 0.0,
    }


def job_predict(config: dict[str, Any]) -> dict[str, Any]:
    """Integrate the theory: ``{"spec", "method", "lr", "t_max"}`` -> :func:`summarize`."""
    from dynamics.integrate import predict

    started = time.perf_counter()
    traj = predict(make_spec(config["spec"]), method=config.get("method", "flow"),
                   lr=config.get("lr"), t_max=config.get("t_max"))
    return {**summarize(traj), "seconds": time.perf_counter() - started}


def job_train(config: dict[str, Any]) -> dict[str, Any]:
    """Train ``config["spec"]`` for each of ``config["seeds"]`` at once (``TrainConfig`` kwargs
    in ``config["train"]``): ``{"runs": [summarize per seed], "diverged", "seconds"}``."""
    from validation.train import TrainConfig, train

    specs = [make_spec({**config["spec"], "seed": seed}) for seed in config["seeds"]]
    settings = TrainConfig(**config["train"])
    result = train(specs, settings)
    runs = []
    for traj, loss in zip(result.trajectories, result.loss, strict=True):
        lr = float(np.broadcast_to(settings.lr, (len(specs),))[len(runs)])
        runs.append(summarize(traj, lr * np.arange(loss.size), loss))
    return {"runs": runs, "diverged": [list(d) for d in result.diverged],
            "seconds": result.seconds}


def job_task(config: dict[str, Any]) -> dict[str, Any]:
    """One grouped-loss run: ``{"task", "method", "seed", "steps"}`` (task defaults otherwise).

    Returns the per-group loss curves, the emergence summary
    (:func:`validation.emergence.summarize_run`) and the final adjusted Rand index.
    """
    from validation.emergence import summarize_run
    from validation.tasks import TASKS, make_method, make_task, train_task

    setting = TASKS[config["task"]]
    task = make_task(config["task"], config["seed"])
    options = setting.method_options.get(config["method"], {})
    result = train_task(task, make_method(config["method"], task, config["seed"], **options),
                        steps=config.get("steps") or setting.steps, lr=setting.lr,
                        seed=config["seed"], optimizer=setting.optimizer, record=setting.record)
    summary = summarize_run(result.time, result.group_loss, result.threshold)
    summary["ari_final"] = float(result.ari[-1]) if result.ari.size else math.nan
    return {"time": result.time, "time_unit": result.time_unit, "group_loss": result.group_loss,
            "steps": int(result.steps[-1]),
            "reference": np.asarray(task.reference_loss, dtype=float), "summary": summary,
            "seconds": result.wall_seconds}


def job_task_theory(config: dict[str, Any]) -> dict[str, Any] | None:
    """The theory of one grouped-loss run (:func:`validation.tasks.predict_task`): the derived
    per-group flow from the same initial weights, at the run's record steps. Same config as
    :func:`job_task`; None for a task without theory (not a modes task)."""
    from validation.emergence import summarize_run
    from validation.tasks import TASKS, ModesTask, make_task, predict_task

    setting = TASKS[config["task"]]
    task = make_task(config["task"], config["seed"])
    if not isinstance(task, ModesTask):
        return None
    result = predict_task(task, config["method"], steps=config.get("steps") or setting.steps,
                          lr=setting.lr, seed=config["seed"], record=setting.record)
    return {"time": result.time, "group_loss": result.group_loss,
            "reference": np.asarray(task.reference_loss, dtype=float),
            "summary": summarize_run(result.time, result.group_loss, result.threshold),
            "seconds": result.wall_seconds}


def job_equations(config: dict[str, Any]) -> dict[str, Any]:
    """The derived equations (LaTeX) of ``config["derivations"]``: ``[title, call, kwargs]``."""
    from dynamics import symbolic

    return {title: getattr(symbolic, call)(**kwargs).latex()
            for title, call, kwargs in config["derivations"]}


# =============================================================================== blocks


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.4g}"
    return "–" if value is None else str(value)


@dataclass
class FigureBlock:
    """A figure: its PNG (embedded), caption, regenerating command and data file."""

    png: Path
    root: Path
    caption: str
    command: str
    data: Path

    def html(self) -> str:
        encoded = base64.b64encode(self.png.read_bytes()).decode()
        rel_png, rel_data = self.png.relative_to(self.root), self.data.relative_to(self.root)
        return (f'<figure><img alt="{html.escape(self.caption)}" '
                f'src="data:image/png;base64,{encoded}">'
                f"<figcaption>{html.escape(self.caption)}<br>"
                f'<a href="{rel_png}">PNG</a> · <a href="{rel_data}">data (CSV)</a> · '
                f"regenerate: <code>{html.escape(self.command)}</code></figcaption></figure>")


@dataclass
class TableBlock:
    """A table of rows (dicts with the same keys) and its CSV file."""

    title: str
    rows: list[dict[str, Any]]
    root: Path
    data: Path

    def html(self) -> str:
        if not self.rows:
            return ""
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys)
                       + "</tr>" for r in self.rows)
        rel = self.data.relative_to(self.root)
        return (f"<h3>{html.escape(self.title)}</h3><table><tr>{head}</tr>{body}</table>"
                f'<p class="small"><a href="{rel}">data (CSV)</a></p>')


@dataclass
class TextBlock:
    """A paragraph; ``kind`` ``note`` (plain), ``pending`` or ``error`` (highlighted)."""

    text: str
    kind: str = "note"

    def html(self) -> str:
        return f'<p class="{self.kind}">{html.escape(self.text)}</p>'


@dataclass
class EquationBlock:
    """Equations typeset as PNGs (LaTeX source beside each, or alone if mathtext fails)."""

    title: str
    latex: list[str]
    images: list[bytes | None]

    def html(self) -> str:
        items = []
        for source, image in zip(self.latex, self.images, strict=True):
            if image is None:
                items.append(f"<li><pre>{html.escape(source)}</pre></li>")
            else:
                encoded = base64.b64encode(image).decode()
                items.append(f'<li><img class="eq" alt="{html.escape(source)}" '
                             f'src="data:image/png;base64,{encoded}"></li>')
        return f"<h3>{html.escape(self.title)}</h3><ul class='eqs'>{''.join(items)}</ul>"


Block = FigureBlock | TableBlock | TextBlock | EquationBlock


@dataclass
class SectionResult:
    """What a section shows (``blocks``), the claims it measured, and its data (JSON)."""

    blocks: list[Block] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a section needs: output folder, budget, executor, cache, progress bar."""

    out: Path
    quick: bool
    executor: Executor
    cache_dir: Path
    stats: CacheStats
    section: Section | None = None
    bar: tqdm | None = None

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full

    def run(self, jobs: Sequence[Job]) -> list[Any]:
        """Results of the jobs (cached), counted on the section's progress bar."""
        return run_jobs(jobs, self.executor, self.cache_dir, self.bar, self.stats)

    @property
    def command(self) -> str:
        quick = " --quick" if self.quick else ""
        cache = "" if self.cache_dir == self.out / "cache" else f" --cache {self.cache_dir}"
        return f"scurve report --only {self.section.slug} --out {self.out}{quick}{cache}"

    def _name(self, name: str) -> str:
        return f"{self.section.number:02d}-{self.section.slug}-{name}"

    def figure(self, fig: Any, name: str, caption: str,
               rows: list[dict[str, Any]]) -> FigureBlock:
        """Save ``fig`` (PNG) and the numbers it shows (``rows``, CSV)."""
        png = plots.save_png(fig, self.out / "figures" / f"{self._name(name)}.png")
        data = _write_csv(self.out / "data" / f"{self._name(name)}.csv", rows)
        return FigureBlock(png, self.out, caption, self.command, data)

    def table(self, name: str, title: str, rows: list[dict[str, Any]]) -> TableBlock:
        data = _write_csv(self.out / "data" / f"{self._name(name)}.csv", rows)
        return TableBlock(title, rows, self.out, data)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _missing(*modules: str) -> list[str]:
    """The modules of ``modules`` that do not exist (yet)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


# =============================================================================== helpers


def _describe(spec: dict[str, Any]) -> str:
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
            parts.append(f"{label}={_fmt(value) if isinstance(value, float) else value}")
    return ", ".join(parts)


def _time(run: dict[str, Any], f: float = 0.5) -> float:
    value = run["crossings"].get(f"{f:g}")
    return math.nan if value is None else float(value)


def _run_row(setting: str, source: str, run: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one run shown in the sections' tables (times in t)."""
    ph = run["phases"] or {"plateaus": [], "drops": [], "tail": None}
    first = next(iter(run["factors"].values()), {})
    plateau = ph["plateaus"][0] if ph["plateaus"] else {}
    drop = ph["drops"][0] if ph["drops"] else {}
    return {
        "setting": setting,
        "source": source,
        "t_0.5": _time(run, 0.5),
        "t_0.1": _time(run, 0.1),
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


def _overlay(ctx: Context, settings: list[dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None], list[Block]]:
    """Theory (flow) and SGD training (float64) of each setting, from the same spec.

    A setting is ``{"name", "spec", "lr", "t_max"}``; training runs until the theory's end
    time (capped at :data:`MAX_TRAIN_STEPS` steps). Without :mod:`validation.train` the
    training runs are None and a pending note says so.
    """
    theory = ctx.run([(job_predict, {"spec": s["spec"], "method": "flow", "t_max": s["t_max"]})
                      for s in settings])
    if _missing("validation.train"):
        return theory, [None] * len(settings), [
            TextBlock("pending: needs validation.train (training runs over the theory)",
                      "pending")]
    jobs = []
    for s, th in zip(settings, theory, strict=True):
        steps = int(min(MAX_TRAIN_STEPS, math.ceil(th["t_end"] / s["lr"])))
        jobs.append((job_train, {"spec": s["spec"], "seeds": [s["spec"]["seed"]],
                                 "train": {"optimizer": "sgd", "lr": s["lr"], "steps": steps,
                                           "dtype": "float64", "device": "cpu"}}))
    return theory, [r["runs"][0] for r in ctx.run(jobs)], []


def _overlay_figure(ctx: Context, name: str, title: str, settings: list[dict[str, Any]],
                    theory: list[dict[str, Any]], trained: list[dict[str, Any] | None],
                    log_time: bool = False) -> FigureBlock:
    series = []
    for i, (s, th, tr) in enumerate(zip(settings, theory, trained, strict=True)):
        series.append(Series(th["trajectory"], s["name"], True, i, th["phases"]))
        if tr is not None:
            series.append(Series(tr["trajectory"], s["name"], False, i, tr["phases"]))
    fig = plots.plot_trajectories(series, title, log_time=log_time)
    caption = (f"{title}. Theory: gradient flow (solid); training: full-batch SGD in float64 "
               f"(markers), η = {settings[0]['lr']:g}, from the same initialisation. "
               + "; ".join(f"{s['name']}: {_describe(s['spec'])}" for s in settings))
    return ctx.figure(fig, name, caption, plots.trajectory_rows(series))


def _overlay_table(ctx: Context, name: str, settings: list[dict[str, Any]],
                   theory: list[dict[str, Any]], trained: list[dict[str, Any] | None]
                   ) -> TableBlock:
    rows = []
    for s, th, tr in zip(settings, theory, trained, strict=True):
        rows.append(_run_row(s["name"], "theory", th))
        if tr is not None:
            row = _run_row(s["name"], "training", tr)
            row["t_0.5 rel. diff"] = abs(row["t_0.5"] - rows[-1]["t_0.5"]) / rows[-1]["t_0.5"]
            rows.append(row)
    return ctx.table(name, "Crossing times and phases (times in t)", rows)


def _measured(theory: dict[str, Any], trained: dict[str, Any] | None) -> dict[str, Any]:
    """The run the claims are judged on: the training run, or the theory without one."""
    return theory if trained is None else trained


def _s_curve_checks(run: dict[str, Any]) -> dict[str, bool]:
    """Claim 2's phenomenology on one run, every factor; thresholds stated in the keys."""
    ph = run["phases"] or {"plateaus": [], "drops": []}
    plateaus, drops = ph["plateaus"], ph["drops"]
    factors = run["factors"].values()
    return {
        "initial decay (loss ≥ 10 % down before the plateau)":
            bool(plateaus) and plateaus[0]["level"] <= 0.9 * run["loss_start"],
        "plateau": bool(plateaus),
        "sharp drop (90→10 % width ≤ ½ its time)":
            bool(drops) and drops[0]["width"] <= 0.5 * drops[0]["time"],
        "levels off (final L ≤ 0.01 L_ref)": run["final_loss"] <= 0.01 * run["l_ref"],
        "alignment grows (by ≥ 0.3)":
            all(f["alignment_end"] - f["alignment_start"] >= 0.3 for f in factors),
        "norms shrink (min ≤ 0.9·init) then grow (end ≥ 2·min)":
            all(f["norm_min_ratio"] <= 0.9 and f["norm_growth"] >= 2 for f in factors),
    }


def _phenomenology_claim(number: int, settings: list[dict[str, Any]],
                         runs: list[dict[str, Any]], source: str) -> ClaimResult:
    """Claims 2 and 3 from the checks of :func:`_s_curve_checks` on every setting.

    One check per element of the claim — it holds at some setting of the sweep — and one for
    the whole sequence in a single run. Supported: the whole sequence occurs; mixed: its
    elements occur, but at different settings (e.g. the initial decay needs a large init, the
    sharp drop a small one); not supported: none occurs.
    """
    table = [_s_curve_checks(run) for run in runs]
    names = list(table[0])
    where = {k: [s["name"] for s, checks in zip(settings, table, strict=True) if checks[k]]
             for k in names}
    complete = [s["name"] for s, checks in zip(settings, table, strict=True)
                if all(checks.values())]
    parts = [f"{k}: {', '.join(where[k]) or 'at no setting'}" for k in names]
    parts.append(f"whole sequence in one run: {', '.join(complete) or 'at no setting'}")
    spec = settings[0]["spec"]
    sigmas = sorted({s["spec"]["init"] for s in settings})
    ranks = sorted({s["spec"]["rank"] for s in settings})
    return ClaimResult(number, verdict([*(bool(where[k]) for k in names), bool(complete)]),
                       "; ".join(parts),
                       f"{source}; n={spec['n']}, r ∈ {ranks}, σ ∈ {sigmas}, "
                       f"η={settings[0]['lr']:g}")


# =============================================================================== sections


def _section_scalar_vector(ctx: Context) -> SectionResult:
    settings = [
        {"name": f"n={n}, σ={sigma:g}", "lr": 0.01, "t_max": 10.0,
         "spec": {"kind": "vector", "n": n, "init": sigma, "seed": 0}}
        for n in (1, ctx.pick(100, 20)) for sigma in (0.01, 1.0)
    ]
    theory, trained, notes = _overlay(ctx, settings)
    blocks: list[Block] = [*notes, _overlay_figure(
        ctx, "curves", "Scalar (n = 1) and vector targets", settings, theory, trained,
        log_time=False)]
    blocks.append(_overlay_table(ctx, "table", settings, theory, trained))
    fits, plateaus = [], []
    for th, tr in zip(theory, trained, strict=True):
        for run in (th, tr):
            if run is None:
                continue
            traj = run["trajectory"]
            keep = traj.loss > 1e-12 * traj.l_ref
            slope, intercept = np.polyfit(traj.t[keep], np.log(traj.loss[keep]), 1)
            resid = np.log(traj.loss[keep]) - (slope * traj.t[keep] + intercept)
            total = np.log(traj.loss[keep]) - np.log(traj.loss[keep]).mean()
            fits.append((-slope, 1 - np.sum(resid**2) / np.sum(total**2)))
            plateaus.append(len((run["phases"] or {"plateaus": []})["plateaus"]))
    rates, r2 = np.array(fits).T
    # exponential: ln L linear in t with R² ≥ 0.999; no plateau found by the phase analysis
    checks = [r >= 0.999 and p == 0 for r, p in zip(r2, plateaus, strict=True)]
    claim = ClaimResult(
        1, verdict(checks),
        f"rate of ln L: {rates.min():.4g}–{rates.max():.4g} /t (flow: 2(1+λ) = 2); "
        f"1 − R² of the exponential fit ≤ {1 - r2.min():.2g}; plateaus found: {sum(plateaus)} in "
        f"{len(plateaus)} curves", "theory and training; " +
        "; ".join(s["name"] for s in settings))
    return SectionResult(blocks, [claim], {"rates": rates, "r2": r2, "plateaus": plateaus})


def _rank_settings(ctx: Context, rank: int, sigmas: Sequence[float], n: int,
                   singular: bool, t_max: float = 200.0) -> list[dict[str, Any]]:
    out = []
    for sigma in sigmas:
        spec = {"kind": "factorization", "n": n, "rank": rank, "init": sigma, "seed": 0}
        if singular:
            spec["singular_values"] = [1.0] * rank
        out.append({"name": f"r={rank}, σ={sigma:g}", "lr": 0.01, "t_max": t_max, "spec": spec})
    return out


def _section_rank_1(ctx: Context) -> SectionResult:
    # n = 100: the init's norm σ√n can be large (initial decay) while its overlap with the
    # target, ~σ, stays small (plateau)
    settings = _rank_settings(ctx, 1, ctx.pick((1e-3, 0.03, 0.1, 0.2), (1e-3, 0.1)),
                              ctx.pick(100, 30), singular=True)
    theory, trained, notes = _overlay(ctx, settings)
    runs = [_measured(th, tr) for th, tr in zip(theory, trained, strict=True)]
    blocks: list[Block] = [*notes,
        _overlay_figure(ctx, "curves", "Rank 1, singular value s = 1, init σ swept",
                        settings, theory, trained),
        _overlay_table(ctx, "table", settings, theory, trained)]
    source = "training" if trained[0] is not None else "theory"
    claim = _phenomenology_claim(2, settings, runs, source)
    return SectionResult(blocks, [claim], {"checks": [_s_curve_checks(r) for r in runs]})


def _section_low_rank(ctx: Context) -> SectionResult:
    n = ctx.pick(100, 30)
    blocks: list[Block] = []
    all_settings, all_runs = [], []
    for rank in (2, 5):
        settings = _rank_settings(ctx, rank, ctx.pick((1e-3, 0.03, 0.1), (1e-3, 0.1)), n,
                                  singular=False)
        theory, trained, notes = _overlay(ctx, settings)
        blocks.extend(notes)
        blocks.append(_overlay_figure(
            ctx, f"rank{rank}", f"Rank {rank}, Gaussian target (singular values ≈ 1), "
            "init σ swept", settings, theory, trained))
        blocks.append(_overlay_table(ctx, f"rank{rank}-table", settings, theory, trained))
        all_settings += settings
        all_runs += [_measured(th, tr) for th, tr in zip(theory, trained, strict=True)]
    source = "training" if not _missing("validation.train") else "theory"
    claim = _phenomenology_claim(3, all_settings, all_runs, source)
    return SectionResult(blocks, [claim], {"checks": [_s_curve_checks(r) for r in all_runs]})


def _section_n_100(ctx: Context) -> SectionResult:
    n = ctx.pick(100, 30)
    ranks = (1, 10, n) if not ctx.quick else (1, 5, n)
    blocks: list[Block] = []
    checks: dict[str, bool] = {}
    parts = []
    source = "theory"

    def smear(run: dict[str, Any]) -> float:  # relative duration of the fall 90 % -> 10 %
        return (_time(run, 0.1) - _time(run, 0.9)) / _time(run, 0.5)

    for sigma in ctx.pick((1e-3, 0.1), (1e-3,)):
        settings = []
        for rank in ranks:
            spec = {"kind": "factorization", "n": n, "rank": rank, "init": sigma, "seed": 0}
            settings.append({"name": f"r={rank}", "lr": 0.02, "spec": spec,
                             "t_max": 30.0 if rank == n else 200.0})
        theory, trained, notes = _overlay(ctx, settings)
        source = "training" if trained[0] is not None else "theory"
        one, mid, full = (_measured(th, tr) for th, tr in zip(theory, trained, strict=True))
        blocks.extend(notes)
        blocks.append(_overlay_figure(
            ctx, f"sigma{sigma:g}", f"n = {n}: ranks {', '.join(map(str, ranks))}, "
            f"σ = {sigma:g}", settings, theory, trained, log_time=True))
        blocks.append(_overlay_table(ctx, f"sigma{sigma:g}-table", settings, theory, trained))
        ph_mid = mid["phases"] or {"plateaus": []}
        ph_full = full["phases"] or {"plateaus": [], "tail": None, "initial": None}
        tail = ph_full["tail"] or {}
        align_full = float(np.mean([f["alignment_end"] for f in full["factors"].values()]))
        at = f"σ={sigma:g}: "
        checks.update({
            f"{at}r={ranks[1]} has a plateau": bool(ph_mid["plateaus"]),
            f"{at}r={ranks[1]} drop smeared (relative 90→10 % duration ≥ 1.5× rank 1's)":
                smear(mid) >= 1.5 * smear(one),
            f"{at}r={n} has no plateau": not ph_full["plateaus"],
            f"{at}r={n} exponential then power-law tail":
                ph_full["initial"] is not None and tail.get("kind") == "power",
            f"{at}r={n} spans the truth (final L ≤ 0.01 L_ref) without aligning "
            "(mean alignment ≤ 0.9)": full["final_loss"] <= 0.01 * full["l_ref"]
            and align_full <= 0.9,
        })
        parts.append(f"{at}smear r=1 {smear(one):.3g}, r={ranks[1]} {smear(mid):.3g}; "
                     f"plateaus r={ranks[1]} {len(ph_mid['plateaus'])}, r={n} "
                     f"{len(ph_full['plateaus'])}; tail r={n} {tail.get('kind')} (exponent "
                     f"{_fmt(tail.get('exponent'))}); final L/L_ref r={n} "
                     f"{full['final_loss'] / full['l_ref']:.3g}; mean alignment r={n} "
                     f"{align_full:.3g}")
    failed = [k for k, ok in checks.items() if not ok]
    claim = ClaimResult(4, verdict(checks.values()),
                        "; ".join(parts) + ". Fails: " + ("; ".join(failed) or "none"),
                        f"{source}; n={n}, η=0.02")
    return SectionResult(blocks, [claim], {"checks": checks})


def _section_attention(ctx: Context) -> SectionResult:
    d = ctx.pick(10, 6)
    settings = [
        {"name": f"σ={sigma:g}", "lr": 0.01, "t_max": 2000.0,
         "spec": {"kind": "attention", "d": d, "rank": 2, "init": sigma, "seed": 0}}
        for sigma in ctx.pick((0.05, 0.1, 0.2), (0.1, 0.2))
    ]
    theory, trained, notes = _overlay(ctx, settings)
    runs = [_measured(th, tr) for th, tr in zip(theory, trained, strict=True)]
    blocks: list[Block] = [*notes,
        _overlay_figure(ctx, "curves", f"Attention head d = {d}, rank h = h′ = 2, init σ swept",
                        settings, theory, trained),
        _overlay_table(ctx, "table", settings, theory, trained)]
    passed, parts = [], []
    for s, run in zip(settings, runs, strict=True):
        aligned = [f["t_align"] for f in run["factors"].values()]
        last = max((a for a in aligned if a is not None), default=math.nan)
        ratio = last / _time(run)
        has_plateau = bool((run["phases"] or {"plateaus": []})["plateaus"])
        # the drop comes once the last of the four factors has aligned: within ±25 % of t_0.5
        passed.append(has_plateau and 0.75 <= ratio <= 1.25)
        parts.append(f"{s['name']}: plateau {'yes' if has_plateau else 'no'}, last factor "
                     f"aligned at {ratio:.3g}·t_0.5")
    source = "training" if trained[0] is not None else "theory"
    claim = ClaimResult(6, verdict(passed), "; ".join(parts),
                        f"{source}; d={d}, h=2; alignment time = 90 % of the factor's change")
    return SectionResult(blocks, [claim], {"passed": passed})


def _section_weight_decay(ctx: Context) -> SectionResult:
    n = ctx.pick(20, 10)
    lambdas = ctx.pick((0.0, 0.1, 0.3, 0.5), (0.0, 0.3))
    settings = [
        {"name": f"λ={lam:g}", "lr": 0.01, "t_max": 15.0,
         "spec": {"kind": "factorization", "n": n, "rank": 1, "init": 0.05,
                  "singular_values": [1.0], "weight_decay": lam, "seed": 0}}
        for lam in lambdas
    ]
    theory, trained, notes = _overlay(ctx, settings)
    runs = [_measured(th, tr) for th, tr in zip(theory, trained, strict=True)]
    blocks: list[Block] = [*notes,
        _overlay_figure(ctx, "curves", "Weight decay λ, rank 1, s = 1, σ = 0.05",
                        settings, theory, trained),
        _overlay_table(ctx, "table", settings, theory, trained)]
    rows = []
    for lam, run in zip(lambdas, runs, strict=True):
        ph = run["phases"] or {"initial": None, "plateaus": []}
        initial = ph["initial"]
        norm2 = np.mean([f["norm_end"] ** 2 for f in run["factors"].values()])
        rows.append({"λ": lam, "t_0.5": _time(run),
                     "exponential phase end": None if initial is None else initial["end"],
                     "first plateau end": ph["plateaus"][0]["end"] if ph["plateaus"] else None,
                     "‖x‖² final": norm2, "s − λ (theory)": 1.0 - lam})
    blocks.append(ctx.table("solution", "Solution size and phase lengths against λ", rows))
    ends = [r["first plateau end"] for r in rows]
    sizes = [r["‖x‖² final"] for r in rows]
    checks = {
        "plateau ends later as λ grows": all(e is not None for e in ends)
        and bool(np.all(np.diff(ends) > 0)),
        "‖x‖² shrinks as λ grows": bool(np.all(np.diff(sizes) < 0)),
        "‖x‖² = s − λ within 5 %": all(abs(r["‖x‖² final"] / r["s − λ (theory)"] - 1) <= 0.05
                                       for r in rows),
    }
    claim = ClaimResult(
        7, verdict(checks.values()),
        "; ".join(f"λ={r['λ']:g}: plateau end {_fmt(r['first plateau end'])}, ‖x‖² "
                  f"{r['‖x‖² final']:.3g}" for r in rows)
        + ". Fails: " + ("none" if all(checks.values())
                         else "; ".join(k for k, ok in checks.items() if not ok)),
        "training" if trained[0] is not None else "theory")
    return SectionResult(blocks, [claim], {"rows": rows, "checks": checks})


def _gd_rate(s: float, lr: float) -> float:
    """Growth rate per unit t of GD's linear phase: (1 + ηs)^step = e^{s_η t}, s_η = ln(1+ηs)/η."""
    return math.log1p(lr * s) / lr


def _scaling_theory(title: str, xs: np.ndarray, specs: list[list[dict[str, Any]]], n: int,
                    sigma: float, eps: float) -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
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
    law = "plateau law"
    if title.startswith("init"):
        return ((law, fine, np.array([theory.plateau_time(1.0, v, n=n) for v in fine])),)
    if title.startswith("n at fixed σ"):
        return ((law, fine, np.array([theory.plateau_time(1.0, sigma, n=m) for m in fine])),)
    if title.startswith("n at fixed init"):
        return (("plateau law at σ = ε/√n", fine,
                 np.array([theory.plateau_time_fixed_norm(1.0, eps, m) for m in fine])),)
    if title.startswith("rank"):
        means = [np.mean([theory.crossing_time(make_spec(spec)) for spec in seeds])
                 for seeds in specs]
        return (("staircase closed form (same seeds)", xs, np.array(means)),)
    if title.startswith("weight"):
        fine = np.linspace(xs.min(), xs.max(), 60)
        return (("plateau law, s′ = s − λ − ν", fine, np.array(
            [theory.plateau_time(1.0, sigma, weight_decay=v, n=n) for v in fine])),)
    if title.startswith("step"):
        flow = theory.plateau_time(1.0, sigma, n=n)
        return (("flow (η → 0)", fine, np.full(fine.shape, flow)),
                ("law at GD's rate s_η", fine,
                 np.array([flow / _gd_rate(1.0, v) for v in fine])))
    return ()


def _section_scaling(ctx: Context) -> SectionResult:
    n, lr, sigma, eps = ctx.pick(20, 10), 0.01, 1e-3, 1e-2
    seeds = list(range(ctx.pick(12, 4)))
    base = {"kind": "factorization", "n": n, "rank": 1, "init": sigma, "singular_values": [1.0]}
    ns = ctx.pick((5, 20, 80, 320), (5, 20, 80))
    ranks = ctx.pick((1, 2, 5, 10), (1, 2, 5))
    # (panel, x label, [(x, spec, η, s_eff)]): s_eff sets the training budget only
    sweeps = [
        ("init σ", "σ (per coordinate)",
         [(v, {**base, "init": v}, lr, 1.0) for v in ctx.pick((1e-4, 1e-3, 1e-2, 1e-1),
                                                               (1e-4, 1e-2, 1e-1))]),
        (f"n at fixed σ = {sigma:g}", "n", [(m, {**base, "n": m}, lr, 1.0) for m in ns]),
        (f"n at fixed init norm ε = {eps:g}", "n",
         [(m, {**base, "n": m, "init": eps / math.sqrt(m)}, lr, 1.0) for m in ns]),
        ("rank, Gaussian target", "rank r (= model rank)",
         [(r, {**{k: v for k, v in base.items() if k != "singular_values"}, "rank": r},
           lr, 0.3) for r in ranks]),
        ("rank, all singular values 1", "rank r (= model rank)",
         [(r, {**base, "rank": r, "singular_values": [1.0] * r}, lr, 1.0) for r in ranks]),
        ("weight decay λ", "λ", [(v, {**base, "weight_decay": v}, lr, 1.0 - v)
                                 for v in (0.0, 0.1, 0.2, 0.4)]),
        ("step size η", "η", [(v, base, v, 1.0) for v in ctx.pick((0.01, 0.03, 0.1, 0.3),
                                                                   (0.01, 0.1, 0.3))]),
    ]
    jobs = []
    for _, _, points in sweeps:
        for _, spec, eta, s_eff in points:
            budget = (math.log(2 / spec["init"] ** 2) + 8) / s_eff  # in t
            jobs.append((job_train, {"spec": spec, "seeds": seeds, "train": {
                "optimizer": "sgd", "lr": eta, "steps": math.ceil(budget / eta),
                "dtype": "float64", "device": "cpu"}}))
    results = iter(ctx.run(jobs))
    sets: dict[str, ScalingSet] = {}
    rows = []
    for title, _, points in sweeps:
        stats = []
        for x, _, _, _ in points:
            times = np.array([_time(run) for run in next(results)["runs"]])
            stats.append((x, np.nanmean(times), np.nanstd(times, ddof=1), np.isnan(times).sum()))
        x, mean, sd, missing = (np.array(v, dtype=float) for v in zip(*stats, strict=True))
        lines = _scaling_theory(title, x, [[{**spec, "seed": seed} for seed in seeds]
                                           for _, spec, _, _ in points], n, sigma, eps)
        for i in range(x.size):
            row = {"sweep": title, "x": x[i], "t_0.5 mean": mean[i], "t_0.5 sd": sd[i],
                   "seeds": len(seeds), "not reached": int(missing[i])}
            for j, (label, lx, ly) in enumerate(lines):
                value = float(np.interp(np.log(x[i]), np.log(lx), ly) if x[i] > 0 and
                              lx.min() > 0 else np.interp(x[i], lx, ly))
                suffix = "" if j == 0 else f" {j + 1}"
                row.update({f"closed form{suffix}": label, f"value{suffix}": value,
                            f"measured/closed − 1{suffix}": mean[i] / value - 1})
            rows.append(row)
        sets[title] = ScalingSet("training, mean ± sd", x, mean, sd, lines)
    titles = [t for t, _, _ in sweeps]
    xlabels = dict((t, x) for t, x, _ in sweeps)
    rank_gauss, rank_equal = titles[3], titles[4]
    panels = []
    for title in titles:
        if title == rank_equal:
            continue
        if title == rank_gauss:
            gauss, equal = sets[rank_gauss], sets[rank_equal]
            both = (dataclasses.replace(gauss, label="Gaussian target (scale 1)", lines=tuple(
                        ("staircase, Gaussian", *line[1:]) for line in gauss.lines)),
                    dataclasses.replace(equal, label="all singular values 1", lines=tuple(
                        ("staircase, all s = 1", *line[1:]) for line in equal.lines)))
            panels.append(ScalingPanel("rank (model rank = target rank)", xlabels[title],
                                       both, log_x=False))
            continue
        panels.append(ScalingPanel(title, xlabels[title], (sets[title],),
                                   log_x=title.startswith(("init", "n ", "step"))))
    fig = plots.plot_scaling(panels, f"Plateau end t_0.5 (rank 1 unless stated, s = 1, "
                                     f"n = {n}, σ = {sigma:g}, η = {lr:g}; {len(seeds)} seeds)")
    blocks: list[Block] = [
        ctx.figure(fig, "t05", "Measured t_0.5 (float64 full-batch SGD, mean ± sd over "
                   f"{len(seeds)} seeds) against each parameter, on the closed forms of "
                   "dynamics.theory: the random-init plateau law E[t_½] = (1/2s′)[ln(2s′/σ²) + "
                   "0.389] with s′ = s − λ − ν, ν = (n − 1)σ² (σ, n, λ panels; fixed init norm: "
                   "σ = ε/√n); for the ranks, the staircase of independent logistic modes of "
                   "the same seeds' specs; for η, the flow's law (η → 0) and the same law at "
                   "GD's linear-phase growth rate s_η = ln(1 + ηs)/η. Settings not swept: "
                   f"rank 1, s = 1, n = {n}, σ = {sigma:g}, η = {lr:g}, λ = 0.", rows + [
                       {"sweep": title, "x": float(x), "closed form": label, "value": float(y)}
                       for title, data in sets.items() for label, xs, ys in data.lines
                       for x, y in zip(xs, ys, strict=True)]),
        ctx.table("table", "t_0.5 (in t) per sweep point, measured and closed form", rows)]
    gauss_t = sets[rank_gauss].mean
    equal_t = sets[rank_equal].mean
    # lower rank → longer plateau: t_0.5 falls (by > 5 %) at every step up in rank, judged
    # for both targets (a Gaussian target's top singular value grows with its rank)
    checks = [*(np.diff(gauss_t) / gauss_t[:-1] < -0.05),
              *(np.diff(equal_t) / equal_t[:-1] < -0.05)]
    claim = ClaimResult(
        5, verdict(checks),
        "t_0.5 by rank, Gaussian target: " + ", ".join(
            f"r={r}: {g:.3g}" for r, g in zip(ranks, gauss_t, strict=True))
        + "; all singular values 1: " + ", ".join(
            f"r={r}: {e:.3g}" for r, e in zip(ranks, equal_t, strict=True))
        + ". Check: t_0.5 falls by > 5 % at every step up in rank, for each target; the "
        "staircase closed form predicts " + ", ".join(
            f"{v:.3g}" for v in sets[rank_gauss].lines[0][2]) + " and " + ", ".join(
            f"{v:.3g}" for v in sets[rank_equal].lines[0][2]) + " respectively",
        f"training; n={n}, σ={sigma:g}, η={lr:g}, {len(seeds)} seeds")
    return SectionResult(blocks, [claim], {"rows": rows})


def _train_config(spec: dict[str, Any], optimizer: str, lr: float, steps: int,
                  **options: Any) -> dict[str, Any]:
    return {"spec": spec, "seeds": [spec["seed"]],
            "train": {"optimizer": optimizer, "lr": lr, "steps": steps, "dtype": "float64",
                      "device": "cpu", **options}}


OPTIMIZERS = {  # name: (optimizer, η, options); Adam's t = η·step runs ~20x slower than SGD's
    "SGD": ("sgd", 0.02, {}),
    "Adam": ("adam", 1e-3, {}),
    "AdamW": ("adamw", 1e-3, {"weight_decay": 0.1}),
}


def _section_optimizers(ctx: Context) -> SectionResult:
    n = ctx.pick(100, 30)
    ranks = (1, 2, 10, n) if not ctx.quick else (1, 2, n)
    sigmas = ctx.pick((1e-3, 0.1), (1e-3,))
    t_max = {"SGD": 60.0, "Adam": 6.0, "AdamW": 6.0}
    configs = []
    for sigma in sigmas:
        for rank in ranks:
            spec = {"kind": "factorization", "n": n, "rank": rank, "init": sigma, "seed": 0}
            for name, (optimizer, lr, options) in OPTIMIZERS.items():
                configs.append(((sigma, rank, name), _train_config(
                    spec, optimizer, lr, round(t_max[name] / lr), **options)))
    # SGD's theory: the gradient flow from the same spec (the same jobs as section 4's)
    flow_jobs = [(job_predict, {"spec": {"kind": "factorization", "n": n, "rank": rank,
                                         "init": sigma, "seed": 0},
                                "method": "flow", "t_max": 30.0 if rank == n else 200.0})
                 for sigma in sigmas for rank in ranks]
    results = ctx.run([(job_train, c) for _, c in configs] + flow_jobs)
    results, flows = results[:len(configs)], results[len(configs):]
    got = {key: r["runs"][0] for (key, _), r in zip(configs, results, strict=True)}
    flow = dict(zip([(sigma, rank) for sigma in sigmas for rank in ranks], flows, strict=True))
    blocks: list[Block] = [TextBlock(
        "Float64, full batch; time t = η·step with each optimizer's own η, on a log axis. "
        "Theory (solid): the gradient flow from the same initialisation, SGD's small-step "
        "limit; Adam's is the sign flow (scurve predict --method sign), not drawn here. "
        f"Bumps: local maxima of an alignment curve with prominence ≥ {BUMP_PROMINENCE}.")]
    rows = []
    for sigma in sigmas:
        for rank in ranks:
            runs = {name: got[(sigma, rank, name)] for name in OPTIMIZERS}
            theory = flow[(sigma, rank)]
            series = [Series(theory["trajectory"], f"SGD (η={OPTIMIZERS['SGD'][1]:g})", True, 0,
                             theory["phases"])]
            series += [Series(run["trajectory"], f"{name} (η={OPTIMIZERS[name][1]:g})", False,
                              i, run["phases"]) for i, (name, run) in enumerate(runs.items())]
            fig = plots.plot_trajectories(series, f"n = {n}, rank {rank}, σ = {sigma:g}",
                                          log_time=True)
            blocks.append(ctx.figure(
                fig, f"sigma{sigma:g}-rank{rank}", f"SGD, Adam and AdamW (λ = 0.1, decoupled) "
                f"at rank {rank}, n = {n}, σ = {sigma:g}: training (markers) and the gradient "
                "flow from the same initialisation (solid, SGD's theory); plateaus shaded "
                "(SGD: of the flow; Adam, AdamW: of the training curves).",
                plots.trajectory_rows(series, log_time=True)))
            for name, run in runs.items():
                row = {"σ": sigma, **_run_row(f"r={rank}", name, run)}
                row["bumps per vector"] = row["bumps"] / sum(
                    f["vectors"] for f in run["factors"].values())
                row["bumps in growth"] = sum(f["bumps_in_growth"]
                                             for f in run["factors"].values())
                rows.append(row)
    blocks.append(ctx.table("table", "Phases and bumps per optimizer, rank and σ (times in t)",
                            rows))
    table = {(r["σ"], r["setting"], r["source"]): r for r in rows}

    def get(sigma: float, rank: int, name: str, key: str) -> Any:
        return table[(sigma, f"r={rank}", name)][key]

    checks8: dict[str, bool] = {}
    checks10: dict[str, bool] = {}
    parts8, parts10 = [], []
    for sigma in sigmas:
        at = f"σ={sigma:g}: "
        more = [get(sigma, r, "Adam", "bumps per vector") > get(sigma, r, "SGD",
                                                                 "bumps per vector")
                for r in ranks[1:]]
        t_adam, t_adamw = get(sigma, 1, "Adam", "t_0.5"), get(sigma, 1, "AdamW", "t_0.5")
        checks8.update({
            f"{at}Adam: plateau and drop at rank 2": get(sigma, 2, "Adam", "plateaus") >= 1,
            f"{at}Adam regains a plateau at rank {n} where SGD has none":
                get(sigma, n, "Adam", "plateaus") >= 1 and get(sigma, n, "SGD", "plateaus") == 0,
            f"{at}Adam has more bumps per learned vector than SGD at most ranks > 1":
                sum(more) > len(more) / 2,
            f"{at}AdamW reaches t_0.5 earlier than Adam at rank 1 (by ≥ 5 %)":
                t_adamw <= 0.95 * t_adam,
        })
        parts8.append(at + "plateaus SGD/Adam " + ", ".join(
            f"r={r} {get(sigma, r, 'SGD', 'plateaus')}/{get(sigma, r, 'Adam', 'plateaus')}"
            for r in ranks) + "; bumps per vector SGD/Adam " + ", ".join(
            f"r={r} {get(sigma, r, 'SGD', 'bumps per vector'):.2g}/"
            f"{get(sigma, r, 'Adam', 'bumps per vector'):.2g}" for r in ranks)
            + f"; t_0.5 rank 1 Adam {t_adam:.4g}, AdamW {t_adamw:.4g}")
        for name in OPTIMIZERS:
            total = {r: get(sigma, r, name, "bumps") for r in ranks}
            growth = sum(get(sigma, r, name, "bumps in growth") for r in ranks)
            checks10.update({
                f"{at}{name}: no bumps at rank 1": total[1] == 0,
                f"{at}{name}: bumps at rank > 1": sum(total.values()) > total[1],
                f"{at}{name}: ≥ 80 % of bumps during growth":
                    growth >= 0.8 * sum(total.values()),
            })
            parts10.append(f"{at}{name} " + ", ".join(f"r={r} {v}" for r, v in total.items())
                           + f" ({growth} during growth)")

    def numbers(parts: list[str], checks: dict[str, bool]) -> str:
        failed = [k for k, ok in checks.items() if not ok]
        return "; ".join(parts) + ". Fails: " + ("; ".join(failed) or "none")

    settings = f"training; n={n}; SGD η=0.02, Adam/AdamW η=1e-3 (AdamW λ=0.1)"
    return SectionResult(blocks, [
        ClaimResult(8, verdict(checks8.values()), numbers(parts8, checks8), settings),
        ClaimResult(10, verdict(checks10.values()), numbers(parts10, checks10), settings)],
        {"rows": rows, "checks_8": checks8, "checks_10": checks10})


def _section_cross_entropy(ctx: Context) -> SectionResult:
    n = ctx.pick(100, 30)
    ranks = (2, 10, n) if not ctx.quick else (2, 5, n)
    entry_scales = ctx.pick((0.5, 1.0), (1.0,))
    # the softmax spreads over n² entries, so its curvature falls like 1/n²: η ∝ n², and a
    # quarter of (n/30)², at which rank 2 with c = 1 still trains stably (at (n/30)² it
    # oscillates: edge of stability, not the flow)
    lr = (n / 30) ** 2 / 4
    steps = ctx.pick(16000, 8000)
    configs = []
    for c in entry_scales:
        for rank in ranks:
            # target entries of std ≈ c: typical singular value c·n/√r
            spec = {"kind": "factorization", "n": n, "rank": rank, "init": 1e-2, "seed": 0,
                    "scale": c * n / math.sqrt(rank), "loss": "ce"}
            configs.append((c, rank, _train_config(spec, "sgd", lr, steps)))
    # theory: the full-parameter gradient flow (no closure); at full rank it is too stiff for
    # this report's budget (minutes per run at n = 100), so it is drawn below full rank only
    flow_jobs = [(job_predict, {"spec": cfg["spec"], "method": "flow", "t_max": lr * steps})
                 for _, rank, cfg in configs if rank != n]
    results = ctx.run([(job_train, cfg) for _, _, cfg in configs] + flow_jobs)
    flows = iter(results[len(configs):])
    theories = [next(flows) if rank != n else None for _, rank, _ in configs]
    blocks: list[Block] = [TextBlock(
        "L = KL(softmax(vec C) ‖ softmax(vec XYᵀ)). No closure: the theory (solid) is the "
        "full-parameter gradient flow from the same initialisation, drawn for ranks below n "
        f"(at rank n it is too stiff for this report's budget); training (markers) is float64 "
        f"full-batch SGD, η = {lr:.3g}. Target entries have std ≈ c (softmax far from uniform "
        "for c ≳ 1).")]
    rows, got = [], {}
    for c in entry_scales:
        series = []
        for i, (cc, rank, _) in enumerate(configs):
            if cc != c:
                continue
            theory = theories[i]
            result = results[i]
            run = result["runs"][0]
            got[(c, rank)] = (run, bool(result["diverged"]))
            color = len({s.color for s in series})
            if theory is not None:
                series.append(Series(theory["trajectory"], f"r={rank}", True, color,
                                     theory["phases"]))
                rows.append({**_run_row(f"c={c:g}, r={rank}", "theory", theory),
                             "diverged": None})
            series.append(Series(run["trajectory"], f"r={rank}", False, color, run["phases"]))
            rows.append({**_run_row(f"c={c:g}, r={rank}", "training", run),
                         "diverged": bool(result["diverged"])})
        fig = plots.plot_trajectories(series, f"Cross-entropy, n = {n}, entry scale c = {c:g}",
                                      log_time=True)
        blocks.append(ctx.figure(fig, f"c{c:g}", f"Cross-entropy at ranks "
                                 f"{', '.join(map(str, ranks))}, n = {n}, c = {c:g}, "
                                 f"σ = 1e-2, η = {lr:.3g}: full-parameter flow (solid, ranks "
                                 f"< {n}) and SGD training (markers) from the same "
                                 "initialisation; plateaus shaded (of the flow where drawn, "
                                 "else of the training curve).",
                                 plots.trajectory_rows(series, log_time=True)))
    blocks.append(ctx.table("table", "Phases per rank and target scale (times in t)", rows))
    passed, parts = [], []
    for c in entry_scales:
        low, mid, full = (got[(c, r)] for r in ranks)
        n_low = len((low[0]["phases"] or {"plateaus": []})["plateaus"])
        n_full = len((full[0]["phases"] or {"plateaus": []})["plateaus"])
        final_mid = mid[0]["final_loss"] / mid[0]["l_ref"]
        final_low = low[0]["final_loss"] / low[0]["l_ref"]
        checks = [n_low >= 2,  # two plateaus at rank 2
                  final_mid >= 0.01 and final_mid > 10 * final_low,  # rank 10 struggles
                  n_full == 0 and not full[1]]  # full rank: no plateau, as with MSE
        passed.extend(checks)
        parts.append(f"c={c:g}: plateaus r={ranks[0]}: {n_low}, r={n}: {n_full}; final L/L_ref "
                     f"r={ranks[0]}: {final_low:.3g}, r={ranks[1]}: {final_mid:.3g}")
    claim = ClaimResult(9, verdict(passed), "; ".join(parts),
                        f"training; n={n}, σ=1e-2, η={lr:.3g}, {steps} steps")
    return SectionResult(blocks, [claim], {"rows": rows})


def _equation_image(latex: str) -> bytes | None:
    try:
        return plots.render_equation(latex)
    except (ValueError, RuntimeError):  # a construct mathtext cannot typeset: show the source
        return None


def _section_equations(ctx: Context) -> SectionResult:
    derivations = [
        ["Vector: full gradient flow", "full_flow", {"kind": "vector"}],
        ["Factorization: full gradient flow", "full_flow", {"kind": "factorization"}],
        ["Factorization: reduced flow (order parameters)", "reduced_flow",
         {"kind": "factorization"}],
        ["Factorization: modified equation of GD (step η)", "full_flow",
         {"kind": "factorization", "modified": True}],
        ["Factorization: exact reduced GD map", "reduced_gd", {"kind": "factorization"}],
        ["Factorization: exact reduced GD map with momentum μ", "reduced_gd",
         {"kind": "factorization", "momentum": True}],
        ["Factorization, cross-entropy: full gradient flow", "full_flow",
         {"kind": "factorization", "loss": "ce"}],
        ["Attention head: full gradient flow", "full_flow", {"kind": "attention"}],
        ["Attention head: reduced flow", "reduced_flow", {"kind": "attention"}],
    ]
    (equations,) = ctx.run([(job_equations, {"derivations": derivations})])
    blocks: list[Block] = [TextBlock(
        "Derived with SymPy from the loss (dynamics.symbolic); the reduced equations are "
        "in the order parameters P = TᵀW, U = WᵀW and G = TᵀT; a primed symbol is its value "
        "after one step.")]
    for title, latex in equations.items():
        blocks.append(EquationBlock(title, latex, [_equation_image(s) for s in latex]))
    path = ctx.out / "data" / f"{ctx._name('equations')}.json"
    path.write_text(json.dumps(equations, indent=1, ensure_ascii=False))
    return SectionResult(blocks, [], {"equations": equations})


def _theory_available() -> bool:
    """Whether :mod:`validation.tasks` can predict a run from :mod:`dynamics.modes`."""
    import validation.tasks as tasks

    return hasattr(tasks, "predict_task") and hasattr(tasks, "THEORY")


def _section_grouped(ctx: Context) -> SectionResult:
    from validation.tasks import METHODS, TASKS

    tasks = tuple(TASKS)
    cheap = ctx.pick(tuple(m for m in METHODS if m not in GRADIENT_METHODS), ("mean", "grouped"))
    seeds = ctx.pick((0, 1, 2), (0,))
    configs = [{"task": task, "method": method, "seed": seed,
                "steps": ctx.pick(None, min(TASKS[task].steps // 4, 1000))}
               for task in tasks for method in cheap for seed in seeds]
    # per-example gradients every step: ~0.04 s a step on the modes tasks, ~0.3 s on parity
    gradient_steps = ctx.pick({"modes": 1000, "modes-scale": 1000}, {"modes": 150})
    gradient_steps = {task: steps for task, steps in gradient_steps.items() if task in TASKS}
    configs += [{"task": task, "method": method, "seed": 0, "steps": steps}
                for task, steps in gradient_steps.items() for method in GRADIENT_METHODS]
    # theory of the runs drawn (seed 0), where the task has one (dynamics.modes)
    theory_configs = []
    if _theory_available():
        from validation.tasks import THEORY

        theory_configs = [c for c in configs if c["seed"] == seeds[0] and c["method"] in THEORY]
    results = ctx.run([(job_task, c) for c in configs]
                      + [(job_task_theory, c) for c in theory_configs])
    theory = {(c["task"], c["method"]): r for c, r in
              zip(theory_configs, results[len(configs):], strict=True) if r is not None}
    results = results[:len(configs)]
    blocks: list[Block] = [TextBlock(
        f"Methods {', '.join(cheap)}: task defaults (validation.tasks.TASKS), seeds "
        f"{list(seeds)}. Methods {', '.join(GRADIENT_METHODS)} compute per-example gradients "
        "at every step, so they run on " + ", ".join(
            f"{task} for {steps} steps" for task, steps in gradient_steps.items())
        + ", seed 0 only (parity: ~0.3 s a step, beyond this report's budget). "
        + ("Theory (modes tasks, thick translucent lines): the derived per-capability flow of "
           "dynamics.modes from the same initial weights (validation.tasks.predict_task; "
           "cluster is predicted as the grouped loss with the true groups, svd under the "
           "approximation of orthogonal per-capability gradients)." if theory else
           "Theory of the per-capability curves: pending (needs dynamics.modes and "
           "validation.tasks.predict_task)."))]
    table = []
    by_task: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config, result in zip(configs, results, strict=True):
        by_task.setdefault(config["task"], {}).setdefault(config["method"], []).append(result)
    for task, per_method in by_task.items():
        panels, curves = [], []
        for method, runs in per_method.items():
            first = runs[0]
            panels.append((method, first["time"], first["group_loss"] / first["reference"]))
            predicted = theory.get((task, method))
            curves.append(None if predicted is None else
                          (predicted["time"], predicted["group_loss"] / predicted["reference"]))
            row: dict[str, Any] = {"task": task, "method": method, "source": "training",
                                   "seeds": len(runs), "steps": first["steps"]}
            for metric in runs[0]["summary"]:
                values = np.array([r["summary"][metric] for r in runs], dtype=float)
                row[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else None
            table.append(row)
            if predicted is not None:
                table.append({"task": task, "method": method, "source": "theory", "seeds": 1,
                              "steps": first["steps"], **{
                                  k: (float(v) if np.isfinite(v) else None)
                                  for k, v in predicted["summary"].items()}})
        unit = per_method["mean"][0]["time_unit"]
        groups = per_method["mean"][0]["group_loss"].shape[1]
        fig = plots.plot_groups(panels, [f"capability {g}" for g in range(groups)],
                                time_label=plots.TIME_LABEL if unit == "t" else "step",
                                title=f"Task {task}: per-capability loss, seed {seeds[0]}",
                                theory=curves)
        rows = [{"method": m, "source": "training", "t": t,
                 **{f"group {g}": v for g, v in enumerate(vals)}}
                for m, ts, values in panels for t, vals in zip(ts, values, strict=True)]
        rows += [{"method": m, "source": "theory", "t": t,
                  **{f"group {g}": v for g, v in enumerate(vals)}}
                 for (m, _, _), th in zip(panels, curves, strict=True) if th is not None
                 for t, vals in zip(th[0], th[1], strict=True)]
        blocks.append(ctx.figure(fig, task, f"Task {task}: loss ℓ_g of each capability g, "
                                 "relative to the zero-knowledge loss ℓ_ref,g (s_g²/2 for the "
                                 f"modes tasks, ln 2 for parity), per loss method (seed "
                                 f"{seeds[0]})" + ("; theory thick and translucent, training "
                                                   "thin with markers." if any(
                                                       c is not None for c in curves) else "."),
                                 rows))
    blocks.append(ctx.table("metrics", "Emergence metrics (training: mean over seeds; theory: "
                            "seed 0. spread = t_last/t_first of the half-drop times, width = "
                            "median (t_90 − t_10)/t_half, ari_final = adjusted Rand index of "
                            "the found groups)", table))
    lookup = {(r["task"], r["method"]): r for r in table if r["source"] == "training"}
    parts, passed = [], []
    for task in tasks:
        mean, grouped = lookup[(task, "mean")], lookup[(task, "grouped")]
        closer = (grouped["spread"] or math.inf) < (mean["spread"] or math.inf)
        wider = (grouped["width"] or 0) > (mean["width"] or 0)
        passed.append(closer and wider)
        parts.append(f"{task}: spread {_fmt(mean['spread'])} → {_fmt(grouped['spread'])}, "
                     f"width {_fmt(mean['width'])} → {_fmt(grouped['width'])}")
    claims = [ClaimResult(11, verdict(passed), "; ".join(parts),
                          f"mean loss → grouped loss; seeds {list(seeds)}")]
    found = [(task, m) for task in tasks for m in ("cluster", "svd") if (task, m) in lookup]
    if found:
        aris = {key: lookup[key]["ari_final"] for key in found}
        # the found groups match the capabilities when ARI ≥ 0.5
        claims.append(ClaimResult(
            12, verdict((a or 0) >= 0.5 for a in aris.values()),
            "; ".join(f"{t}/{m}: ARI {_fmt(a)}" for (t, m), a in aris.items()),
            "final adjusted Rand index at the last re-clustering; seed 0; steps " + ", ".join(
                f"{task} {steps}" for task, steps in gradient_steps.items())))
    return SectionResult(blocks, claims, {"metrics": table})


# =============================================================================== registry


@dataclass(frozen=True)
class Section:
    """A report section: number, slug (for ``--only``), title, builder, required modules."""

    number: int
    slug: str
    title: str
    build: Callable[[Context], SectionResult]
    needs: tuple[str, ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section(1, "scalar-vector", "Scalar and vector targets", _section_scalar_vector),
    Section(2, "rank-1", "Rank 1", _section_rank_1),
    Section(3, "low-rank", "Low rank (2, 5)", _section_low_rank),
    Section(4, "n-100", "n = 100: rank 10 and rank 100", _section_n_100),
    Section(5, "attention", "Attention head, rank 2", _section_attention),
    Section(6, "scaling", "Scaling of the plateau", _section_scaling,
            ("validation.train", "dynamics.theory")),
    Section(7, "optimizers", "SGD, Adam and AdamW", _section_optimizers, ("validation.train",)),
    Section(8, "cross-entropy", "Cross-entropy", _section_cross_entropy, ("validation.train",)),
    Section(9, "weight-decay", "Weight decay", _section_weight_decay),
    Section(10, "grouped", "Grouped losses", _section_grouped,
            ("validation.tasks", "validation.emergence")),
    Section(11, "equations", "The derived equations", _section_equations, ("dynamics.symbolic",)),
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


# =============================================================================== the page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1500px;
margin:0 auto;padding:1em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;
padding:.25em .5em;text-align:left;vertical-align:top} th{background:#f3f3f3}
figure{margin:1em 0} figure img{max-width:100%} figcaption{font-size:.85em;color:#444}
code{background:#f4f4f4;padding:0 .3em} .small{font-size:.8em}
.pending{background:#fff6d6;padding:.4em .7em;border-left:4px solid #e0b000}
.error{background:#fde2e2;padding:.4em .7em;border-left:4px solid #c00}
.supported{color:#176a1a;font-weight:600} .mixed{color:#a06000;font-weight:600}
.not-supported{color:#b00;font-weight:600} .not-measured{color:#777}
ul.eqs{list-style:none;padding-left:0} img.eq{max-width:100%;margin:.2em 0}
nav a{margin-right:1em}
"""


def _claims_html(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{r['claim']}</td><td>{html.escape(r['text'])}</td>"
        f"<td><a href='#{r['section']}'>{html.escape(r['section'])}</a></td>"
        f"<td class='{r['verdict'].replace(' ', '-')}'>{html.escape(r['verdict'])}</td>"
        f"<td>{html.escape(r['numbers'])}</td><td>{html.escape(r['settings'])}</td></tr>"
        for r in rows)
    return ("<table><tr><th>#</th><th>claim (DESIGN §4)</th><th>section</th><th>verdict</th>"
            f"<th>measured</th><th>settings</th></tr>{body}</table>"
            "<p class='small'><a href='data/claims.csv'>claims (CSV)</a> · "
            "<a href='data/claims.json'>claims (JSON)</a> · "
            "<a href='data/run.json'>run (JSON)</a></p>")


def _stem(section: Section) -> str:
    return f"{section.number:02d}-{section.slug}"


def _save_section(out: Path, section: Section, result: SectionResult, quick: bool,
                  seconds: float, command: str) -> None:
    """Write the section's HTML fragment (``sections/``) and its claims and data (``data/``).

    The page is assembled from the fragments on disk, so ``--only`` refreshes its sections
    and keeps the others from earlier runs.
    """
    reasons = "; ".join(b.text for b in result.blocks if isinstance(b, TextBlock)
                        and b.kind in ("pending", "error")) or "no measurement"
    stamp = time.strftime("%Y-%m-%d %H:%M")
    fragment = "\n".join([
        f"<h2 id='{section.slug}'>{section.number}. {html.escape(section.title)}</h2>",
        *(block.html() for block in result.blocks),
        f"<p class='small'>Built {stamp} by a {'quick' if quick else 'full'} run in "
        f"{seconds:.1f} s; regenerate this section: <code>{html.escape(command)}</code></p>"])
    (out / "sections").mkdir(exist_ok=True)
    (out / "sections" / f"{_stem(section)}.html").write_text(fragment, encoding="utf-8")
    record = {"quick": quick, "built": stamp, "seconds": seconds, "reasons": reasons,
              "claims": [c.__dict__ for c in result.claims], **result.data}
    (out / "data" / f"{_stem(section)}.json").write_text(
        json.dumps(jsonable(record), indent=1, ensure_ascii=False))


def _assemble(out: Path, footer: str) -> list[dict[str, Any]]:
    """Write ``out/index.html`` from the section fragments on disk; returns the claims rows."""
    parts, results, reasons = [], {}, {}
    for section in SECTIONS:
        fragment = out / "sections" / f"{_stem(section)}.html"
        meta = out / "data" / f"{_stem(section)}.json"
        if fragment.is_file() and meta.is_file():
            record = json.loads(meta.read_text())
            parts.append(fragment.read_text(encoding="utf-8"))
            results.update({c["number"]: ClaimResult(**c) for c in record["claims"]})
            reasons[section.slug] = record["reasons"]
        else:
            reasons[section.slug] = "section not built yet"
            parts.append(f"<h2 id='{section.slug}'>{section.number}. "
                         f"{html.escape(section.title)}</h2><p class='pending'>Not built yet: "
                         f"<code>scurve report --only {section.slug} --out {out}</code></p>")
    claims = claims_table(results, reasons)
    _write_csv(out / "data" / "claims.csv", claims)
    (out / "data" / "claims.json").write_text(json.dumps(claims, indent=1, ensure_ascii=False))
    nav = "".join(f"<a href='#{s.slug}'>{s.number}. {html.escape(s.title)}</a>"
                  for s in SECTIONS)
    page = "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>scurve report</title><style>{CSS}</style></head><body>"
        "<h1>scurve report</h1><p>Step-wise learning in solvable toy models: theory "
        "(float64 integration of the derived dynamics) against real training from the same "
        "initialisation. Time is continuous, t = η·step.</p>"
        f"<nav>{nav}</nav><h2 id='claims'>Claims</h2>{_claims_html(claims)}",
        *parts,
        f"<hr><p class='small'>{html.escape(footer)}</p></body></html>"])
    (out / "index.html").write_text(page, encoding="utf-8")
    return claims


def _run_section(ctx: Context) -> tuple[str | None, float]:
    """Build and save ``ctx.section``: (error or None, seconds). A failure or a missing
    module becomes a note in the section; the other sections go on."""
    started = time.perf_counter()
    error = None
    try:
        missing = _missing(*ctx.section.needs)
        if missing:
            result = SectionResult([TextBlock(f"pending: needs {', '.join(missing)}",
                                              "pending")])
        else:
            result = ctx.section.build(ctx)
    except Exception as exc:  # reported in its section and by the command's exit status
        error = f"{type(exc).__name__}: {exc}"
        result = SectionResult([TextBlock(f"error: {error}", "error")])
    finally:
        ctx.bar.close()
    seconds = time.perf_counter() - started
    _save_section(ctx.out, ctx.section, result, ctx.quick, seconds, ctx.command)
    return error, seconds


def build_report(
    out: str | Path,
    quick: bool = False,
    only: str | None = None,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the sections (all, or ``only``) and write ``out/index.html`` and ``out/data/``.

    The page holds every section built so far in ``out`` (sections not run now keep their
    last build); the claims table is computed from the sections' saved data.

    Args:
        out: output folder.
        quick: small problems and few seeds (a smoke run, at most ~2 minutes on 2 cores).
        only: section number or slug (comma-separated for several); None: all.
        executor: where the jobs run (default: a local process pool).
        cache_dir: result cache (default ``out/cache``).

    Returns:
        The run record written to ``out/data/run.json``: seconds (total and per section),
        cache hits and misses, errors.
    """
    started = time.perf_counter()
    chosen = resolve_sections(only)
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    stats = CacheStats()
    own = executor is None
    base = Context(out, quick, executor or default_executor(), Path(cache_dir or out / "cache"),
                   stats)
    errors: dict[str, str] = {}
    timing: dict[str, float] = {}
    try:  # sections run concurrently: one waits on its jobs while another draws
        with ThreadPoolExecutor(len(chosen), thread_name_prefix="section") as threads:
            futures = {
                section.slug: threads.submit(_run_section, dataclasses.replace(
                    base, section=section, bar=tqdm(total=0, position=i, dynamic_ncols=True,
                                                    desc=f"{section.number:>2}. {section.slug}")))
                for i, section in enumerate(chosen)}
            for slug, future in futures.items():
                error, timing[slug] = future.result()
                if error is not None:
                    errors[slug] = error
    finally:
        if own:
            base.executor.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - started
    record = {"seconds": seconds, "quick": quick, "section_seconds": timing,
              "cache": stats.to_dict(), "errors": errors}
    (out / "data" / "run.json").write_text(json.dumps(record, indent=1))
    _assemble(out, f"Last run ({'quick' if quick else 'full'}, sections "
                   f"{', '.join(s.slug for s in chosen)}): {seconds:.1f} s wall time; "
                   f"{stats.misses} jobs computed, {stats.hits} read from the cache.")
    return record
