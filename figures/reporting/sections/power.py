"""Section 14, the power family: F = Σ_g ℓ_g^{q+1}/(q + 1) on the modes tasks, with its law.

For each modes task (``modes``: s_g = 1, p̂_g ∝ 1/g; ``modes-scale``: p̂_g = 1/5, s_g from 2
down to 1; :func:`validation.tasks.make_task`) and each q of a training grid, three
measurements of the same runs (same spec, same seed):

* the law: :func:`dynamics.groups.emergence_law`, each mode decoupled from the others from its
  initial balanced strength w_g(0) (:func:`dynamics.groups.balanced_strengths`), on a dense q
  grid (:func:`figures.reporting.jobs.job_power_law`);
* the theory: the derived flow of the spec under power(q), and the exact GD map of rate η
  (seed 0) (:func:`validation.tasks.predict_task`,
  :func:`~figures.reporting.jobs.job_power_theory`);
* training: full-batch SGD in float64 at the task's default η
  (:func:`~figures.reporting.jobs.job_power_train`).

Per group, t_f is the first t with ℓ_g ≤ f·ℓ_ref,g (ℓ_ref,g = s_g²/2, f ∈ {0.9, 0.5, 0.1},
:data:`figures.reporting.jobs.POWER_FRACTIONS`); t_0.5 is its emergence time. The spread is
t_last/t_first of the t_0.5 over groups and the width the median over groups of
(t_0.1 − t_0.9)/t_0.5; both are read the same way from the law, the theory and training
(time t = η·step, README "Conventions"). q* is the q of the smallest spread predicted by the
law on the dense grid; its cost is measured from training at q* against the mean loss: final
worst-group and mean loss, and the steps until the mean loss stays ≤ :data:`LEVEL` × its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ... import plots
from ...plots import FamilyPanel
from ..blocks import Block, Context, Section, SectionResult, TextBlock, fmt
from ..jobs import job_power_law, job_power_theory, job_power_train

__all__ = ["DEFAULT", "FULL", "QUICK", "SECTION", "Settings", "law_curves"]

TASK_NAMES = ("modes", "modes-scale")
LEVEL = 1e-2  # cost: steps until the mean loss stays ≤ LEVEL × its start
RUN_MARGIN = 1.25  # training runs to this multiple of the law's latest t_0.1 (≥ default steps)
FLOW_MARGIN = 1.25  # the flow runs to this multiple of its seed's latest t_0.1 (law)
GD_MARGIN = 1.2  # the GD map runs to this multiple of its seed's latest t_0.5 (law)
TOLERANCE = 0.03  # the theory's target: emergence times within 3 % of training
FLAT = 1.05  # a law spread curve whose max/min over q is below this is called flat


@dataclass(frozen=True)
class Settings:
    """``qs``: the training grid of q; ``seeds``: 0 … seeds − 1; ``law_step``: spacing of the
    law's dense q grid on [−1, 2] (q* is its argmin); ``gd_map``: run the exact GD map beside
    the flow (seed 0); ``tasks``: the modes tasks."""

    qs: tuple[float, ...]
    seeds: int
    law_step: float
    gd_map: bool = True
    tasks: tuple[str, ...] = TASK_NAMES


FULL = Settings((-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0), 3, 0.05)
QUICK = Settings((-0.5, 0.0, 1.0), 1, 0.1)
DEFAULT = replace(FULL, gd_map=False)
"""The default run: without the exact GD map (equal to float64 SGD up to rounding, the run the
section already trains; ~6 CPU-s per objective against 0.5 for the flow); ``--full`` runs it."""


def _spread(t_half: np.ndarray) -> float:
    """t_last/t_first of the groups' t_0.5 (NaN unless every group emerged)."""
    return float(t_half.max() / t_half.min()) if np.all(np.isfinite(t_half)) else math.nan


def _width(times: np.ndarray) -> float:
    """Median over groups of (t_0.1 − t_0.9)/t_0.5 of (G, 3) times (NaN if any is missing)."""
    from validation.emergence import relative_width

    return float(np.median(relative_width(times[:, 0], times[:, 1], times[:, 2])))


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sd (ddof 1; NaN for one value) over seeds."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def _error(theory: np.ndarray, trained: np.ndarray) -> float:
    """max over groups of |t_0.5 theory / t_0.5 training − 1|."""
    return float(np.nanmax(np.abs(theory[:, 1] / trained[:, 1] - 1)))


def law_curves(laws: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The law's spread and width per q (mean over seeds) from the seeds' law results
    (:func:`~figures.reporting.jobs.job_power_law`, times (Q, 3, G))."""
    spread = np.array([[_spread(p[1]) for p in law["power"]] for law in laws]).mean(axis=0)
    width = np.array([[_width(p.T) for p in law["power"]] for law in laws]).mean(axis=0)
    return spread, width


def _grid(s: Settings) -> list[float]:
    dense = np.round(np.arange(-1.0, 2.0 + s.law_step / 2, s.law_step), 6)
    return sorted({float(q) for q in dense} | {float(q) for q in s.qs})


def _label(q: float | None) -> str:
    from dynamics.groups import objective

    return "mean" if q is None else objective("power", q=q).label


def step_lag(name: str, q: float | None, lr: float) -> float:
    """Plateau estimate of the flow's lead over GD in t_0.5, max over groups: a plateau mode's
    balanced overlap grows by 1 + x per step (x = η d_g s_g = η λ_g/2, λ_g from
    :func:`dynamics.groups.escape_rates`) against e^x in the flow, so its escape takes
    ln(1 + x)/x of the steps' time in the flow: a relative lead 1 − ln(1 + x)/x ≈ x/2."""
    from dynamics.groups import escape_rates, parse
    from validation.tasks import make_task

    spec = make_task(name, 0).spec
    x = lr * escape_rates(parse(_label(q)), np.diag(spec.data["S"]), spec.frequencies) / 2
    return float(np.max(1 - np.log1p(x) / x))


def _task_plan(name: str, s: Settings, grid: list[float], laws: list[dict[str, Any]]
               ) -> dict[str, Any]:
    """q*, the objectives trained, the run length and the theory jobs' lengths of one task."""
    from validation.tasks import TASKS

    lr = TASKS[name].lr
    spread, width = law_curves(laws)
    q_star = grid[int(np.argmin(spread))]
    qs = sorted(set(s.qs) | {q_star})
    objectives: list[float | None] = [None, *qs]

    def law_times(law: dict[str, Any], q: float | None) -> np.ndarray:
        return (law["mean"] if q is None else law["power"][grid.index(q)]).T  # (G, 3)

    latest = max(law_times(law, q)[:, 2].max() for law in laws for q in objectives)
    steps = max(TASKS[name].steps, 1000 * math.ceil(RUN_MARGIN * latest / lr / 1000))
    theory = {}
    for q in objectives:
        for k, law in enumerate(laws):
            times = law_times(law, q)
            gd = math.ceil(GD_MARGIN * times[:, 1].max() / lr) if s.gd_map and k == 0 else 0
            theory[(q, k)] = {"flow_steps": min(steps, math.ceil(FLOW_MARGIN * times[:, 2].max()
                                                                 / lr)),
                              "gd_steps": min(steps, gd)}
    return {"lr": lr, "steps": steps, "q_star": q_star, "objectives": objectives,
            "law_spread": spread, "law_width": width, "law_times": law_times, "theory": theory}


def _measure(ctx: Context) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """The law on the dense grid, then training and theory of every task and objective."""
    s: Settings = ctx.settings
    grid = _grid(s)
    seeds = list(range(s.seeds))
    laws = ctx.run([(job_power_law, {"task": name, "seed": k, "qs": grid})
                    for name in s.tasks for k in seeds])
    plans = {name: _task_plan(name, s, grid, laws[i * s.seeds:(i + 1) * s.seeds])
             for i, name in enumerate(s.tasks)}
    for i, name in enumerate(s.tasks):
        plans[name]["laws"] = laws[i * s.seeds:(i + 1) * s.seeds]
    jobs, keys = [], []
    for name, plan in plans.items():
        for q in plan["objectives"]:
            base = {"task": name, "objective": _label(q), "lr": plan["lr"]}
            jobs.append((job_power_train, {**base, "seeds": seeds, "steps": plan["steps"],
                                           "level": LEVEL}))
            keys.append((name, q, None))
            for k in seeds:
                jobs.append((job_power_theory, {**base, "seed": k, **plan["theory"][(q, k)]}))
                keys.append((name, q, k))
    for (name, q, k), result in zip(keys, ctx.run(jobs), strict=True):
        plans[name].setdefault("results", {})[(q, k)] = result
    return grid, plans


def _rows(name: str, plan: dict[str, Any], seeds: int) -> list[dict[str, Any]]:
    """One row per objective of a task: spread and width (law, flow, training ± sd), the
    theory's errors and the cost."""
    rows = []
    for q in plan["objectives"]:
        trained = [r["times"] for r in plan["results"][(q, None)]["runs"]]
        runs = plan["results"][(q, None)]["runs"]
        theory = [plan["results"][(q, k)] for k in range(seeds)]
        law = [plan["law_times"](law, q) for law in plan["laws"]]
        spread, spread_sd = _mean_sd([_spread(t[:, 1]) for t in trained])
        width, width_sd = _mean_sd([_width(t) for t in trained])
        reached = [r["steps_to_level"] for r in runs if r["steps_to_level"] is not None]
        gd = theory[0]["gd"]
        rows.append({
            "task": name, "objective": _label(q), "q": q, "q*": q == plan["q_star"],
            "spread law": float(np.mean([_spread(t[:, 1]) for t in law])),
            "spread flow": float(np.mean([_spread(th["flow"]["times"][:, 1]) for th in theory])),
            "spread training": spread, "spread training sd": spread_sd,
            "width law": float(np.mean([_width(t) for t in law])),
            "width flow": float(np.mean([_width(th["flow"]["times"]) for th in theory])),
            "width training": width, "width training sd": width_sd,
            "error flow": max(_error(th["flow"]["times"], t)
                              for th, t in zip(theory, trained, strict=True)),
            "error GD map (seed 0)": None if gd is None else _error(gd["times"], trained[0]),
            "error law": max(_error(lt, t) for lt, t in zip(law, trained, strict=True)),
            "step lag (plateau estimate)": step_lag(name, q, plan["lr"]),
            "worst-group final": float(np.mean([r["final"].max() for r in runs])),
            "worst-group final sd": _mean_sd([r["final"].max() for r in runs])[1],
            "mean final": float(np.mean([r["mean_final"] for r in runs])),
            "mean start": float(np.mean([r["mean_start"] for r in runs])),
            "steps to level": float(np.mean(reached)) if len(reached) == len(runs) else None,
            "seeds reaching level": len(reached), "seeds": len(runs),
            "run steps": plan["steps"], "lr": plan["lr"],
        })
    return rows


def _figure(ctx: Context, grid: list[float], plans: dict[str, dict[str, Any]],
            rows: dict[str, list[dict[str, Any]]]) -> Block:
    s: Settings = ctx.settings
    panels, data = [], []
    for name, plan in plans.items():
        power = [r for r in rows[name] if r["q"] is not None]
        (mean,) = [r for r in rows[name] if r["q"] is None]
        x = np.array([r["q"] for r in power])
        for metric, curve in (("spread", plan["law_spread"]), ("width", plan["law_width"])):
            reference = mean[f"{metric} training"]
            panels.append(FamilyPanel(
                f"{name}: {metric} (q* = {plan['q_star']:g}; mean loss {reference:.3g})",
                "q  (power family)",
                r"spread $t_{\mathrm{last}}/t_{\mathrm{first}}$ of $t_{0.5}$"
                if metric == "spread" else r"width $(t_{0.1}-t_{0.9})/t_{0.5}$ (median)",
                (np.array(grid), curve),
                ((x, np.array([r[f"{metric} flow"] for r in power]), np.zeros(len(x))),
                 (x, np.array([r[f"{metric} training"] for r in power]),
                  np.array([r[f"{metric} training sd"] for r in power]))),
                reference=reference, mark=plan["q_star"],
                floor=1.0 if metric == "spread" else None))
        data += [{"task": name, "q": q, "source": "law", "spread": sp, "width": w}
                 for q, sp, w in zip(grid, plan["law_spread"], plan["law_width"], strict=True)]
        data += [{"task": name, "objective": r["objective"], "q": r["q"], "source": source,
                  "spread": r[f"spread {source}"], "width": r[f"width {source}"],
                  "spread sd": r.get(f"spread {source} sd"),
                  "width sd": r.get(f"width {source} sd")}
                 for r in rows[name] for source in ("law", "flow", "training")]
    seeds = f"mean ± sd over seeds 0–{s.seeds - 1}" if s.seeds > 1 else "seed 0"
    fig = plots.plot_family(
        panels, "law", ["derived flow", "SGD (float64)" + (" ± sd" if s.seeds > 1 else "")],
        "mean loss (SGD)", "q*: least spread (law)",
        "Power family F = Σ_g ℓ_g^(q+1)/(q+1) on the modes tasks: spread and width of "
        "emergence against q")
    tasks = "; ".join(f"{name}: η = {plan['lr']:g}, {plan['steps']} steps (t ≤ "
                      f"{plan['lr'] * plan['steps']:g})" for name, plan in plans.items())
    caption = (
        "Rows: task (validation.tasks.make_task: modes, s_g = 1 and p̂_g ∝ 1/g; modes-scale, "
        "p̂_g = 1/5 and s_g geometric from 2 to 1; 5 modes, n = k = 20, init σ = 10⁻³). Per "
        "group t_f = first t with ℓ_g ≤ f·ℓ_ref,g (ℓ_ref,g = s_g²/2). Left: the spread "
        "t_last/t_first of the t_0.5 (1: every group at once); right: the median over groups "
        "of (t_0.1 − t_0.9)/t_0.5; log y axes. Line: the law (dynamics.groups.emergence_law, "
        "every mode decoupled, from its initial balanced strength) on a q grid of step "
        f"{s.law_step:g}, mean over the seeds' laws; hollow squares: the derived flow of the "
        f"same specs (mean over seeds); filled circles: full-batch SGD in float64 ({seeds}); "
        f"{tasks}. Dashed: the mean loss Σ p̂_g ℓ_g (SGD, value in the title); dotted: q*, the "
        "law's smallest spread. q < 0 uses ε = 10⁻² (slope (ℓ + ε)^q).")
    return ctx.figure(fig, "spread-width", caption, data)


def _pct(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else (
        f"{100 * value:.2g} %" if value >= 1e-4 else f"{value:.0e}")


def _steps(row: dict[str, Any]) -> str:
    """Steps until the mean loss settles below the level, in words."""
    if row["steps to level"] is not None:
        return f"{row['steps to level']:.0f}"
    return (f"none by step {row['run steps']} ({row['seeds reaching level']} of "
            f"{row['seeds']} seeds settled)")


def _loss(row: dict[str, Any], key: str) -> str:
    """A final loss; below 10⁻¹² × the mean loss's start it is rounding: "0"."""
    value = row[key]
    return "≈ 0" if abs(value) < 1e-12 * row["mean start"] else fmt(value)


def _summary(plans: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]],
             grid: list[float]) -> list[TextBlock]:
    """q* per task and what it costs against the mean loss (from the rows), one paragraph
    per task."""
    parts = []
    for name, plan in plans.items():
        by_q = {r["q"]: r for r in rows[name]}
        star, mean = by_q[plan["q_star"]], by_q[None]
        curve = plan["law_spread"]
        edge = plan["q_star"] in (grid[0], grid[-1])
        flat = float(np.max(curve) / np.min(curve)) < FLAT
        text = (f"{name}: the law's spread is smallest at q* = {plan['q_star']:g} "
                f"({fmt(star['spread law'])}{', at the edge of the range' if edge else ''}; "
                f"mean loss {fmt(mean['spread law'])}")
        if 0.0 in by_q and plan["q_star"] != 0.0:
            text += f", q = 0 {fmt(by_q[0.0]['spread law'])}"
        text += ")."
        if flat:
            text += (f" Over q ∈ [{grid[0]:g}, {grid[-1]:g}] the law's spread only moves "
                     f"between {fmt(np.min(curve))} and {fmt(np.max(curve))}: frequency drops out "
                     "of every unweighted objective, so every q makes emergence about "
                     "simultaneous and q* is barely determined; what is left comes from the "
                     "modes' initial strengths.")
        text += (f" Trained at q* (float64 SGD, η = {plan['lr']:g}, {star['seeds']} seed"
                 f"{'s' if star['seeds'] > 1 else ''}, {plan['steps']} steps): spread "
                 f"{fmt(star['spread training'])} (mean loss {fmt(mean['spread training'])}), "
                 f"final worst-group loss {_loss(star, 'worst-group final')} (mean loss "
                 f"{_loss(mean, 'worst-group final')}), final mean loss "
                 f"{_loss(star, 'mean final')} ({_loss(mean, 'mean final')}); steps until the "
                 f"mean loss settles ≤ {LEVEL:g} × its start: {_steps(star)} (mean loss "
                 f"{_steps(mean)}).")
        cheapest = min((r for r in rows[name] if r["steps to level"] is not None),
                       key=lambda r: r["steps to level"], default=None)
        if cheapest is not None and cheapest["q"] != plan["q_star"]:
            text += (f" The fewest steps to that level: {cheapest['objective']} "
                     f"({cheapest['steps to level']:.0f} steps, spread "
                     f"{fmt(cheapest['spread training'])}).")
        unsettled = [r for r in rows[name] if r["steps to level"] is None]
        if unsettled:
            text += (f" Not settled by step {plan['steps']} (some seed above the level at the "
                     "end): " + ", ".join(f"{r['objective']} (final worst-group loss "
                                          f"{fmt(r['worst-group final'])})" for r in unsettled)
                     + ".")
        parts.append(TextBlock(text))
    return parts


def _agreement(plans: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]],
               gd_map: bool) -> TextBlock:
    """The theory's emergence times against training, per q, honestly."""
    parts = ["Emergence times t_0.5, theory against float64 SGD at the default η (largest "
             "|t_theory/t_SGD − 1| over groups and seeds)."]
    for name in plans:
        power = [r for r in rows[name] if r["q"] is not None]
        listed = ", ".join(f"q = {r['q']:g} {_pct(r['error flow'])}" for r in power)
        text = f"{name}: derived flow {listed}; the law {_pct(max(r['error law'] for r in power))}"
        text += " at most"
        if gd_map:
            worst = max(r["error GD map (seed 0)"] for r in power)
            text += f"; the GD map of the same η (seed 0) ≤ {_pct(worst)} at every q"
        over = [r for r in power if r["error flow"] > TOLERANCE]
        if over:
            text += (f". The flow misses {TOLERANCE:.0%} at q = "
                     + ", ".join(f"{r['q']:g} ({_pct(r['error flow'])})" for r in over)
                     + ": it omits the discrete step. On its plateau a mode's overlap grows by "
                     "1 + x per step (x = η d_g s_g, d_g = (s_g²/2 + ε)^q, largest for q < 0) "
                     "where the flow gives e^x, so the flow leads by about 1 − ln(1 + x)/x = "
                     + ", ".join(_pct(r["step lag (plateau estimate)"]) for r in over))
            if gd_map:
                text += "; the GD map, the same theory stepped at η, does not"
        parts.append(text + ".")
    if not gd_map:
        parts.append("The exact GD map beside the flow (the theory stepped at η) runs under "
                     "`scurve report --full`.")
    return TextBlock(" ".join(parts))


def _tables(ctx: Context, rows: dict[str, list[dict[str, Any]]]) -> list[Block]:
    cost, agree = [], []
    for name, task_rows in rows.items():
        for r in task_rows:
            cost.append({
                "task": name, "objective": r["objective"], "q*": r["q*"],
                "spread (SGD)": r["spread training"], "± sd": r["spread training sd"],
                "spread (law)": r["spread law"],
                "width (SGD)": r["width training"],
                "worst-group final ℓ": r["worst-group final"],
                "mean final Σp̂ℓ": r["mean final"],
                f"steps to mean ≤ {LEVEL:g}·start": r["steps to level"],
                "seeds reaching it": f"{r['seeds reaching level']}/{r['seeds']}",
                "run steps": r["run steps"], "η": r["lr"]})
            agree.append({
                "task": name, "objective": r["objective"],
                "max error flow": r["error flow"],
                "max error GD map (seed 0)": r["error GD map (seed 0)"],
                "max error law": r["error law"],
                "flow's lead over GD, plateau estimate 1 − ln(1+x)/x, x = η d_g s_g":
                    r["step lag (plateau estimate)"]})
    return [ctx.table("cost", "q* and what it costs: every trained objective (float64 SGD at "
                      "the task's η, mean over seeds; losses in loss units, ℓ_ref,g = s_g²/2; "
                      "q* marks the law's smallest spread)", cost),
            ctx.table("agreement", "Theory against training: largest |t_0.5 theory / t_0.5 "
                      "SGD − 1| over groups (and seeds)", agree)]


def build(ctx: Context) -> SectionResult:
    """The "Power family" section: spread and width against q (law, flow, SGD), q* and its
    cost, and the theory's agreement with training."""
    s: Settings = ctx.settings
    intro = TextBlock(
        "The power family F = Σ_g ℓ_g^(q+1)/(q + 1) (q-FFL, Li et al. 2020): q = 0 the "
        "unweighted mean over groups, q = 1 ½Σℓ_g² (the seed's grouped loss), q = −½ 2Σ√ℓ_g, "
        "q = −1 Σ ln(ℓ_g + ε) (q < 0: ℓ_g + ε, ε = 10⁻²); the mean loss Σ p̂_g ℓ_g is the "
        "reference. A gradient step on F is one on Σ_g d_g ℓ_g with d_g = ∂F/∂ℓ_g = ℓ_g^q, so "
        "an unlearned mode escapes its plateau (ℓ_g ≈ s_g²/2) at rate λ_g = 2 d_g s_g ∝ "
        "s_g^(1+2q), frequency dropping out (the mean loss: λ_g = 2 p̂_g s_g). The law "
        "integrates each mode alone, t_g = ∫ dw / [2 d(ℓ(w)) w (s_g − w)] from its initial "
        "balanced strength w_g(0) = ‖(a_gᵀX₀ + b_gᵀY₀)/2‖² (dynamics.groups.emergence_law): "
        "on modes (s_g = 1) it predicts nearly the same spread for every q; on modes-scale the "
        "rates are equal at q = −½.")
    grid, plans = _measure(ctx)
    rows = {name: _rows(name, plan, s.seeds) for name, plan in plans.items()}
    blocks: list[Block] = [intro, _figure(ctx, grid, plans, rows),
                           *_summary(plans, rows, grid), *_tables(ctx, rows),
                           _agreement(plans, rows, s.gd_map)]
    data = {"q_star": {name: plan["q_star"] for name, plan in plans.items()},
            "law": {name: {"q": grid, "spread": plan["law_spread"], "width": plan["law_width"]}
                    for name, plan in plans.items()},
            "steps": {name: plan["steps"] for name, plan in plans.items()},
            "rows": [r for task_rows in rows.values() for r in task_rows]}
    return SectionResult(blocks, [], data)


SECTION = Section(14, "power-family", "Power family", build, FULL, QUICK,
                  default=DEFAULT)
