"""Section 10, grouped losses (claims 11 and 12), on the tasks where a capability appears
suddenly: ``parity`` (multitask sparse parity in its abrupt regime) and ``skills`` (in-context
look-up skills of an attention-only transformer), :data:`validation.tasks.TASKS`.

Every loss method of :data:`validation.tasks.METHODS` (power at q = 1, tilted at τ = 1) trains
each task from the same initialisation and batch stream per seed (:func:`job_task`); the
section shows the per-group curves, the emergence metrics over seeds, and the gradient groups
through training — clusters of per-example gradients computed on the side of the mean-loss run
(training unchanged) and the cluster/svd methods' own re-clusterings — against each group's
emergence, with their cost. Claim 11 is also judged on the derived theory of the modes tasks
over frequency × scale spreads (a sweep of the ``modes`` family, cheap). The claims' rules live in
:mod:`figures.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from validation.names import GROUP_METHODS

from ... import plots
from ...claims import (
    ARI_FOUND,
    MIN_SEEDS,
    RELATIONS,
    Axis,
    ClaimMap,
    cells,
    counted_cell,
    gradient_group_checks,
    grid_runs,
    grouped_checks,
    judge,
    plateau_share,
    recovery_counts,
    seed_cell,
    simultaneous,
)
from ...sweep import Axis as GridAxis
from ...sweep import Plan, plan
from ..blocks import Block, Context, Section, SectionResult, TextBlock, fmt
from ..jobs import job_task
from ._maps import count, map_figure

__all__ = ["DEFAULT", "FULL", "FULL_TASKS", "JUDGED", "QUICK", "SECTION", "Settings"]

METHOD_PARAMS: dict[str, dict[str, float]] = {"power": {"q": 1.0}, "tilted": {"tau": 1.0}}
EXCLUDED: dict[str, tuple[str, ...]] = {"skills": ("embed", "unembed")}
"""Parameters left out of the gradient groupings, per task: skills' token embedding and
unembedding rows belong to one skill each (every skill owns its tokens), so their gradients are
orthogonal between skills by construction, like parity's task-code block (kept in parity's
whole model, where it is a small part of the gradient). As Michaud et al.'s QDG does."""
PROBE = "probe (mean loss)"  # clusters of the mean-loss run's gradients, on the side
WHOLE = "probe + token embeddings"  # skills: the probe on every parameter (shown, not judged)
EIGENGAP = "probe, k by eigengap"  # the probe with k chosen by the eigengap (shown, not judged)
EXTRA_PROBES = (WHOLE, EIGENGAP)


@dataclass(frozen=True)
class Settings:
    """``tasks``: task names; ``full_tasks``: their full configurations (else the reduced
    ones, ``make_task(quick=True)``); ``methods``: loss methods (names of
    ``validation.tasks.METHODS``), the ones without per-example gradients at ``seeds``, cluster
    and svd at ``gradient_seeds``; ``steps``: (task, steps) overrides of the tasks' default
    run lengths; ``every``: (task, R), the re-clustering interval of the probe and of the
    gradient methods (steps); ``extra_probes``: more probes of the mean-loss run at the first
    seed, shown and not judged (names of :data:`EXTRA_PROBES`: :data:`WHOLE`, skills' gradients
    with the token embeddings; :data:`EIGENGAP`, k chosen by the eigengap of the affinity);
    claim 11's theory over frequency exponents ``alphas`` × scale spreads ``ratios``."""

    tasks: tuple[str, ...]
    full_tasks: bool
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    gradient_seeds: tuple[int, ...]
    steps: tuple[tuple[str, int], ...]
    every: tuple[tuple[str, int], ...]
    extra_probes: tuple[str, ...]
    alphas: tuple[float, ...]
    ratios: tuple[float, ...]


# the full maps (--full): the reduced configurations, every loss method
FULL = Settings(("parity", "skills"), False, GROUP_METHODS, (0, 1), (0,), (),
                (("parity", 200), ("skills", 100)), (), (0.0, 0.5, 1.0, 2.0),
                (1.0, 1.5, 2.0, 3.0))
FULL_TASKS = replace(FULL, full_tasks=True, seeds=(0, 1, 2), gradient_seeds=(0, 1, 2),
                     extra_probes=EXTRA_PROBES)
JUDGED = ("mean", "grouped", "cluster", "svd")
"""The methods the verdicts rest on: claim 11 compares the grouped with the mean loss, claim 12
judges the probe of the mean-loss run and the cluster and svd methods; the others (power, root,
tilted, dro) are shown beside them, not judged."""
# the default report: the judged methods only (the others under --full)
DEFAULT = replace(FULL, methods=tuple(m for m in GROUP_METHODS if m in JUDGED))
QUICK = Settings(("parity", "skills"), False, ("mean", "grouped", "cluster"), (0,), (0,),
                 (("parity", 3000), ("skills", 1200)), (("parity", 250), ("skills", 100)), (),
                 (0.0, 2.0), (1.0, 2.0))

THEORY = {"groups": 5, "seed": 0, "lr": 0.05, "steps": 8000}  # the modes tasks' theory map


def method_label(method: str, params: Mapping[str, float]) -> str:
    """``power (q=1)``, ``tilted (τ=1)``, ``root (ε=0.01)``; the name alone without params."""
    names = {"q": "q", "tau": "τ", "eps": "ε", "step": "c"}
    inner = ", ".join(f"{names.get(k, k)}={v:g}" for k, v in params.items())
    return f"{method} ({inner})" if inner else method


def _probe_options(name: str, task: str) -> dict[str, Any] | None:
    """Clusterer options of the probe ``name`` (:data:`PROBE` or one of :data:`EXTRA_PROBES`)
    on ``task``; None where it does not apply (:data:`WHOLE` on a task without excluded
    parameters)."""
    exclude = list(EXCLUDED.get(task, ()))
    if name == WHOLE:
        return {"exclude": []} if exclude else None
    if name == EIGENGAP:
        return {"exclude": exclude, "num_clusters": None, "k_rule": "eigengap"}
    if name == PROBE:
        return {"exclude": exclude}
    raise ValueError(f"unknown probe {name!r} (one of {', '.join((PROBE, *EXTRA_PROBES))})")


def _config(st: Settings, task: str, method: str, seed: int,
            probe: str | None = None) -> dict[str, Any]:
    every = dict(st.every)[task]
    exclude = list(EXCLUDED.get(task, ()))
    config: dict[str, Any] = {"task": task, "method": method, "seed": seed,
                              "quick": not st.full_tasks, "steps": dict(st.steps).get(task),
                              "params": METHOD_PARAMS.get(method, {})}
    if method == "cluster":
        config["options"] = {"recluster_every": every, "exclude": exclude}
    elif method == "svd":
        config["options"] = {"recompute_every": every, "exclude": exclude}
    if probe is not None:
        config["probe_every"] = every
        config["probe_options"] = _probe_options(probe, task)
    return config


def _k_text(k: Sequence[int], rule: str | None) -> str:
    """The number of clusters of a run's re-clusterings: "5 (given)" or "2–4 (eigengap)"."""
    low, high = min(k), max(k)
    return f"{low if low == high else f'{low}–{high}'} ({rule or 'given'})"


def _stats(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sd (ddof 1) of the finite values; NaN where there are none (sd: fewer than 2)."""
    x = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    if not x.size:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def _pm(values: Sequence[float | None]) -> str:
    mean, sd = _stats(values)
    if not np.isfinite(mean):
        return "–"
    return fmt(mean) if not np.isfinite(sd) else f"{fmt(mean)} ± {sd:.2g}"


def _median(values: Sequence[float | None]) -> float:
    x = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def _metrics(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The table's numbers of one run (TaskResult.summary)."""
    return {"spread": summary["spread"], "width": summary["summary"]["width"],
            "plateau/drop": _median(summary["plateau_to_drop"]),
            "worst-group final": summary["worst_group_final"],
            "mean final": summary["mean_final"], "overhead": summary["overhead"],
            "emerged": summary["summary"]["emerged"]}


def _windows(summary: Mapping[str, Any]) -> np.ndarray:
    """(G, 2): each group's drop window (t_0.9, t_0.2) of a run starting at t = 0."""
    plateau = np.array(summary["plateau"], dtype=float)
    return np.stack([plateau, plateau + np.array(summary["drop"], dtype=float)], axis=1)


def _theory_plan(st: Settings) -> Plan:
    """Claim 11's theory as a sweep of the ``modes`` family: mean and grouped loss (the
    ``objective`` axis) over frequency exponents α (``zipf``) × scale spreads s₁/s₅
    (``spread``) of :data:`THEORY`'s G modes, the derived flow to t = η·steps."""
    return plan("modes", [GridAxis("zipf", st.alphas), GridAxis("spread", st.ratios),
                          GridAxis("objective", ("mean", "grouped"))],
                seeds=[THEORY["seed"]], theories=["flow"], record=True,
                defaults={"groups": THEORY["groups"], "lr": THEORY["lr"],
                          "t_max": THEORY["lr"] * THEORY["steps"]})


def _theory_map(st: Settings, rows: Sequence[Mapping[str, Any]]) -> ClaimMap:
    """Claim 11 on the derived flow (the rows of :func:`_theory_plan`'s sweep)."""
    runs = grid_runs(rows, ("zipf", "spread", "objective"))
    grid = {}
    for a in st.alphas:
        for r in st.ratios:
            mean, grouped = (runs[(a, r, o)]["emergence"] for o in ("mean", "grouped"))
            # modes that already emerge together under the mean loss (spread < 1.05) leave
            # nothing to equalise: not applicable
            grid[(a, r)] = None if simultaneous(mean) else grouped_checks(mean, grouped)

    def cell(a: float, r: float) -> tuple[float, str]:
        checks = grid[(a, r)]
        return (math.nan, "same t") if checks is None else seed_cell([checks])

    xa = Axis("s₁/s₅", st.ratios, "scale spread s_max/s_min")
    ya = Axis("α", st.alphas, "frequency exponent α (p_g ∝ g^−α)")
    holds, notes = cells(xa, ya, cell)
    return ClaimMap("theory (modes tasks): grouped loss emerges closer in time and more "
                    "gradually than the mean loss", xa, ya, holds,
                    f"derived flow of a {THEORY['groups']}-mode task, σ = 1e-3, seed "
                    f"{THEORY['seed']}, t ≤ {THEORY['lr'] * THEORY['steps']:g}", 1, notes,
                    "theory")


def build(ctx: Context) -> SectionResult:
    from validation.emergence import RECOVERY_F1
    from validation.tasks import GRADIENT_METHODS, TASKS

    st: Settings = ctx.settings
    gradient = [m for m in st.methods if m in GRADIENT_METHODS]
    cheap = [m for m in st.methods if m not in GRADIENT_METHODS]
    # the longest jobs first, so that the pool's workers finish together
    keys: list[tuple[str, str, int]] = []  # (task, method or extra probe, seed)
    configs: list[dict[str, Any]] = []
    for task in st.tasks:
        for method in gradient:
            for seed in st.gradient_seeds:
                keys.append((task, method, seed))
                configs.append(_config(st, task, method, seed))
    for task in st.tasks:
        for method in cheap:
            for seed in st.seeds:
                keys.append((task, method, seed))
                configs.append(_config(st, task, method, seed,
                                       probe=PROBE if method == "mean" else None))
        for name in st.extra_probes:
            if "mean" in cheap and _probe_options(name, task) is not None:
                keys.append((task, name, st.seeds[0]))
                configs.append(_config(st, task, "mean", st.seeds[0], probe=name))
    theory = _theory_plan(st)
    results = ctx.run([(job_task, c) for c in configs] + theory.jobs)  # one pool, all at once
    runs = dict(zip(keys, results[:len(configs)], strict=True))
    map_t = _theory_map(st, ctx.table_of("claim11-theory", theory, results[len(configs):]))

    def seeds_of(method: str) -> tuple[int, ...]:
        return st.gradient_seeds if method in GRADIENT_METHODS else st.seeds

    def label(method: str) -> str:
        task = st.tasks[0]
        return method_label(method, runs[(task, method, seeds_of(method)[0])]["summary"]
                            ["params"])

    blocks: list[Block] = [TextBlock(_settings_text(st, TASKS, gradient, cheap))]
    # ------------------------------------------------------------- per-group loss curves
    for task in st.tasks:
        panels, marks, rows = [], [], []
        for method in st.methods:
            seed = seeds_of(method)[0]
            run = runs[(task, method, seed)]
            values = run["group_loss"] / run["reference"]
            panels.append((f"{label(method)}, seed {seed}", run["time"], values))
            marks.append(np.array(run["summary"]["emergence_times"], dtype=float))
            rows += [{"method": label(method), "seed": seed, run["time_unit"]: t,
                      **{name: v for name, v in zip(run["groups"], vals, strict=True)}}
                     for t, vals in zip(run["time"], values, strict=True)]
        first = runs[(task, "mean", st.seeds[0])]
        names = [f"{n} (p = {p:.2f})" for n, p in zip(first["groups"], first["probabilities"],
                                                       strict=True)]
        fig = plots.plot_groups(panels, names, time_label=first["time_unit"],
                                title=f"{task}: loss of each group under each loss method",
                                marks=marks)
        blocks.append(ctx.figure(fig, f"{task}-groups", (
            f"Task {task}: the loss ℓ_g of each group g (nats, relative to the know-nothing "
            f"loss ℓ_ref,g = {fmt(float(first['reference'][0]))}), one panel per loss method, "
            "every method from the same initialisation and batch stream; triangles: each "
            "group's emergence time (half of its own drop). p: the group's share of the "
            "training examples."), rows))
    # ------------------------------------------------------------------- metrics table
    table, per_seed = [], []
    for task in st.tasks:
        for method in st.methods:
            seeds = seeds_of(method)
            numbers = [_metrics(runs[(task, method, k)]["summary"]) for k in seeds]
            per_seed += [{"task": task, "method": label(method), "seed": k, **n}
                         for k, n in zip(seeds, numbers, strict=True)]
            table.append({"task": task, "method": label(method), "seeds": len(seeds),
                          **{key: _pm([n[key] for n in numbers]) for key in numbers[0]}})
    blocks.append(ctx.table("metrics", "Emergence per method (mean ± sd over seeds): spread "
                            "= t_last/t_first of the groups' emergence times; width = median "
                            "over groups of (t_90 − t_10)/t_half; plateau/drop = median over "
                            "groups of (time within 10 % of the start)/(time from 90 % to 20 % "
                            "of the start); final losses in nats (mean: weighted by the groups' "
                            "shares); overhead = seconds per step over the mean loss's, timed "
                            "in the same run; emerged = share of groups below half their "
                            "reference loss", table))
    # ------------------------------------------------------------- gradient groups
    sources = [(PROBE, "mean", st.seeds)] + [(m, m, st.gradient_seeds) for m in gradient]
    recovery_rows, cost_rows = [], []
    judged: dict[tuple[str, str], list[dict[str, bool]]] = {}
    for task in st.tasks:
        panels_r = []
        entries = [(name, (task, method, k), k == seeds[0])
                   for name, method, seeds in sources for k in seeds]
        extra = [name for name in st.extra_probes if (task, name, st.seeds[0]) in runs]
        entries += [(name, (task, name, st.seeds[0]), True) for name in extra]
        for name, key, shown in entries:
            summary = runs[key]["summary"]
            groups = summary["gradient_groups"]
            ari = [a["ari"] for a in summary["ari"]]
            windows = _windows(summary)
            share = plateau_share(groups["t"], np.array(groups["f1"]), windows[:, 0],
                                  RECOVERY_F1)
            if name not in EXTRA_PROBES:
                judged.setdefault((task, name), []).append(
                    gradient_group_checks(ari, groups["relation"]))
            recovery_rows.append({
                "task": task, "source": name, "seed": key[2],
                "k": _k_text(groups["k"], groups["k_rule"]),
                **recovery_counts(groups["relation"]),
                "per group": ", ".join(groups["relation"]),
                "recovered at": ", ".join(fmt(v) for v in groups["recovered_at"]),
                "emergence": ", ".join(fmt(v) for v in summary["emergence_times"]),
                "share F1 ≥ 0.8 on the plateau": ", ".join(fmt(v) for v in share),
                "median ARI": _median(ari), "first ARI": ari[0] if ari else None,
                "last ARI": ari[-1] if ari else None})
            if shown:
                panels_r.append(plots.RecoveryPanel(
                    f"{name}, seed {key[2]}", np.array(groups["t"]), np.array(ari),
                    np.array(groups["f1"]), np.array(summary["emergence_times"]), windows))
        costed = sources + [(name, name, st.seeds[:1]) for name in extra]
        for name, method, seeds in costed:
            costs = [runs[(task, method, k)]["summary"]["gradient_groups"]["cost"]
                     for k in seeds]
            overheads = [runs[(task, method, k)]["summary"]["overhead"] for k in seeds]
            peaks = [c["peak_bytes"] for c in costs if c["peak_bytes"] is not None]
            cost_rows.append({
                "task": task, "source": name, "runs": len(seeds),
                "examples × parameters": f"{costs[0]['examples']} × {costs[0]['parameters']}",
                "s per re-clustering": _stats([c["seconds_per_reclustering"] for c in costs])[0],
                "s gradients": _stats([c["seconds_gradients"] for c in costs])[0],
                "s clustering": _stats([c["seconds_clustering"] for c in costs])[0],
                "peak MB": max(peaks) / 1e6 if peaks else None,
                "gradient matrix MB": costs[0]["gradient_bytes"] / 1e6,
                "re-clusterings per run": costs[0]["reclusterings"],
                "run overhead (× mean-loss step)": (None if method in ("mean", *EXTRA_PROBES)
                                                    else _stats(overheads)[0])})
        first = runs[(task, "mean", st.seeds[0])]
        fig = plots.plot_recovery(panels_r, first["groups"], ari_level=0.5,
                                  f1_level=RECOVERY_F1, time_label=first["time_unit"],
                                  title=f"{task}: do gradient groups find the groups, and "
                                        "when?")
        rows = [{"source": p.title, first["time_unit"]: t, "ARI": a,
                 **{f"F1 {n}": f for n, f in zip(first["groups"], f1s, strict=True)}}
                for p in panels_r for t, a, f1s in zip(p.t, p.ari, p.f1, strict=True)]
        blocks.append(ctx.figure(fig, f"{task}-ari", (
            f"Task {task}: adjusted Rand index (ARI) of the gradient groups against the true "
            "groups at every re-clustering (black), and each true group's F1 with its "
            "best-matching cluster (colours); above, each group's drop (its loss from 0.9 to "
            "0.2 of its start) as a bar and its emergence time as a dot, in the same run. A "
            f"group is recovered from the re-clustering after which its F1 stays ≥ "
            f"{RECOVERY_F1:g}; recovered left of its bar = before it emerges. Gradients of the "
            + ("whole model but the token embedding and unembedding (which belong to one group "
               "each; the skills still differ in their input tokens, so their gradients can "
               "differ from step 0 on)" if task in EXCLUDED else "whole model")
            + f", {dict(st.every)[task]} steps apart."), rows))
    blocks.append(ctx.table("recovery", "When each group becomes recoverable relative to "
                            "its own emergence: before (still on its plateau, ℓ_g > 0.9 "
                            "ℓ_g(0)), at (during its drop, to 0.2 ℓ_g(0)), after, never "
                            f"(recovered: F1 ≥ {RECOVERY_F1:g} at every later re-clustering)",
                            recovery_rows))
    blocks.append(ctx.table("cost", "Cost of the gradient groups per re-clustering (per-example "
                            "gradients of the batch, affinity and spectral clustering or SVD; "
                            "peak: resident memory the re-clustering added)", cost_rows))
    # ------------------------------------------------------------------- claim 11
    training = {task: [(grouped_checks(_emergence(runs[(task, "mean", k)]),
                                       _emergence(runs[(task, "grouped", k)])))
                       for k in st.seeds] for task in st.tasks}
    extra = _extra_seeds(st, training)  # where the seeds disagree: up to MIN_SEEDS of them
    if extra:
        added = ctx.run([(job_task, _config(st, task, method, k)) for task, k in extra
                         for method in ("mean", "grouped")])
        for i, (task, _) in enumerate(extra):
            training[task].append(grouped_checks(_emergence(added[2 * i]),
                                                 _emergence(added[2 * i + 1])))
    xt = Axis("task", st.tasks, "task")
    yt = Axis("check", ("closer", "wider"), "grouped vs mean loss")
    holds_r, notes_r = cells(xt, yt, lambda check, task: seed_cell(
        [{check: c[check]} for c in training[task]]))
    counts_r = cells(xt, yt, lambda check, task: (len(training[task]), ""))[0]
    more = "".join(f"; {task}: seeds {', '.join(str(k) for t, k in extra if t == task)} added "
                   "(its seeds disagreed)" for task in dict.fromkeys(t for t, _ in extra))
    map_r = ClaimMap("training (abrupt tasks): grouped vs mean loss (closer: smaller spread; "
                     "wider: larger median width)", xt, yt, holds_r,
                     _short_settings(st) + more, len(st.seeds), notes_r, "training",
                     counts=counts_r)
    others = [m for m in st.methods if m not in ("mean", "grouped")]
    maps11 = [map_t, map_r]
    if others:
        yo = Axis("method", tuple(label(m) for m in others), "other objective vs mean loss")
        by_label = {label(m): m for m in others}

        def other_cell(name: str, task: str) -> tuple[float, str]:
            method = by_label[name]
            return counted_cell([grouped_checks(_emergence(runs[(task, "mean", k)]),
                                                _emergence(runs[(task, method, k)]))
                                 for k in seeds_of(method) if k in st.seeds])

        holds_o, notes_o = cells(xt, yo, other_cell)
        maps11.append(ClaimMap("other methods vs mean loss, both checks (shown, not judged)",
                               xt, yo, holds_o, _short_settings(st), 1, notes_o, "others",
                               reference=True))
    block11, thumb11 = map_figure(ctx, "claim11", maps11, "Claim 11: where the grouped loss "
                                  "makes emergence more similar and gradual",
                                  "Letters: failed checks (C = closer, W = wider); hatched: "
                                  "shown for comparison, not judged.")
    def change(task: str, method_from: str, method_to: str, key: str) -> str:
        def values(method: str) -> list[float]:
            return [_emergence(runs[(task, method, k)])[key] for k in st.seeds]

        return f"{_pm(values(method_from))} → {_pm(values(method_to))}"

    text11 = (f"Theory (modes tasks): holds at {count(map_t)} of the frequency × scale grid "
              "(a frequency spread drops out of the grouped loss, a scale spread enters it "
              "cubed). Training, mean → grouped loss (mean ± sd over seeds): " + "; ".join(
                  f"{task} spread {change(task, 'mean', 'grouped', 'spread')}, width "
                  f"{change(task, 'mean', 'grouped', 'width')}" for task in st.tasks) + ".")
    claims = [judge(11, [map_t, map_r], text11, map_r.settings, thumb11)]
    # ------------------------------------------------------------------- claim 12
    x12 = Axis("task", st.tasks, "task")
    names12 = tuple(name for name, _, _ in sources)
    y12 = Axis("source", names12, "gradient groups of")
    maps12 = []
    for check, test in (("found", "found groups match the true ones (median ARI ≥ 0.5)"),
                        ("early", "most groups recovered before they emerge")):
        holds, notes = cells(x12, y12, lambda name, task, c=check: counted_cell(
            [{c: v[c]} for v in judged.get((task, name), [])]))
        maps12.append(ClaimMap(test, x12, y12, holds, _short_settings(st, gradient=True), 1,
                               notes, check))
    block12, thumb12 = map_figure(ctx, "claim12", maps12, "Claim 12: do clusters and singular "
                                  "vectors of per-example gradients find the groups?",
                                  "Cells: seeds at which the test holds. Probe: spectral "
                                  "clustering of the mean-loss run's per-example gradients "
                                  "(QDG affinity 1 − arccos|cos|/π, k = the number of groups), "
                                  "training unchanged; cluster: the same clustering inside "
                                  "the cluster method's run; svd: each example's largest "
                                  "squared component on the top-k right singular vectors of "
                                  "the svd method's run.")
    claims.append(judge(12, maps12, _text12(st, recovery_rows, cost_rows, list(names12)),
                        _short_settings(st, gradient=True), thumb12))
    blocks[1:1] = [block11, block12]
    return SectionResult(blocks, claims, {"metrics": table, "per_seed": per_seed,
                                          "recovery": recovery_rows, "cost": cost_rows})


def _extra_seeds(st: Settings, training: Mapping[str, Sequence[Mapping[str, bool]]]
                 ) -> list[tuple[str, int]]:
    """(task, seed) pairs to add to claim 11's training map: a task whose seeds disagree on a
    check (one holds, another fails) gets the next seeds until it rests on
    :data:`figures.claims.MIN_SEEDS`; a task whose seeds agree gets none."""
    out = []
    for task, checks in training.items():
        disagree = any(len({c[key] for c in checks}) > 1 for key in checks[0]) if checks else False
        if disagree and len(checks) < MIN_SEEDS:
            start = max(st.seeds) + 1
            out += [(task, k) for k in range(start, start + MIN_SEEDS - len(checks))]
    return out


def _emergence(run: Mapping[str, Any]) -> dict[str, float]:
    """The spread, median width and share of groups emerged of a run, as
    :func:`figures.claims.grouped_checks` reads them."""
    inner = run["summary"]["summary"]
    return {"spread": run["summary"]["spread"], "width": inner["width"],
            "emerged": inner["emerged"]}


def _short_settings(st: Settings, gradient: bool = False) -> str:
    config = "full" if st.full_tasks else "reduced"
    seeds = f"seeds {list(st.seeds)}"
    if gradient:
        seeds += f" (cluster, svd: {list(st.gradient_seeds)})"
    return f"{', '.join(st.tasks)}, {config} configurations, {seeds}"


def _settings_text(st: Settings, tasks: Mapping[str, Any], gradient: Sequence[str],
                   cheap: Sequence[str]) -> str:
    steps = dict(st.steps)
    parts = []
    for task in st.tasks:
        setting = tasks[task]
        overrides = ", ".join(f"{k} = {v}" for k, v in setting.quick.items())
        config = ("full configuration" if st.full_tasks
                  else f"reduced configuration ({overrides})")
        length = steps.get(task) or setting.run_steps(not st.full_tasks)
        parts.append(f"{task}: {config}, {length} {setting.optimizer} steps at η = "
                     f"{setting.lr:g}")
    return (
        "The two tasks where a capability appears suddenly under the mean loss — " +
        "; ".join(parts) + f". Methods {', '.join(cheap)} at seeds {list(st.seeds)}"
        + (f"; {', '.join(gradient)} (per-example gradients: see the cost table) at seeds "
           f"{list(st.gradient_seeds)}" if gradient else "")
        + ", each seed fixing the initialisation and the batch stream of every method. "
        "Power at q = 1 is Σ_g ℓ_g²/2, the grouped loss Σ_g ℓ_g² halved: Adam's update is "
        "invariant to that factor up to its ε, so the two runs differ by rounding alone, which "
        "the plateaus amplify — their difference shows how much of an emergence time is noise. "
        "Gradient groups: the mean-loss run clusters the per-example gradients of "
        "its batch every " + ", ".join(f"{R} steps ({task})" for task, R in st.every)
        + " on the side (training unchanged); cluster and svd re-cluster as often. "
        + ("The default report runs the reduced configurations; `scurve report --full-tasks` "
           "runs the full ones at 3 seeds every method, with two more probes (skills' token "
           "embeddings included; k by the eigengap) — about 1½ hours on 2 cores, estimated "
           "from the runs' times."
           if not st.full_tasks else "Full task configurations (`--full-tasks`).")
        + ("" if set(GROUP_METHODS) <= set(st.methods) else
           f" This run trains the methods the verdicts rest on ({', '.join(st.methods)}); "
           "`scurve report --full` adds " + ", ".join(m for m in GROUP_METHODS
                                                     if m not in st.methods)
           + ", shown beside them and not judged."))


def _text12(st: Settings, recovery: Sequence[Mapping[str, Any]],
            cost: Sequence[Mapping[str, Any]], sources: Sequence[str]) -> str:
    """Claim 12 in words: how many groups each source recovers before they emerge (per
    task, over seeds), its median ARI, and the cost per re-clustering."""
    def rows(task: str, name: str) -> list[Mapping[str, Any]]:
        return [r for r in recovery if r["task"] == task and r["source"] == name]

    early = {task: sum(r["before"] for name in sources for r in rows(task, name))
             for task in st.tasks}
    lead = ("No gradient grouping recovers a group before it emerges, on either task"
            if not any(early.values()) else "Groups recovered before they emerge: " + ", ".join(
                f"{task} {n}" for task, n in early.items()))
    parts = [lead]
    for task in st.tasks:
        found = []
        for name in sources:
            runs = rows(task, name)
            groups = sum(r[relation] for r in runs for relation in RELATIONS)
            found.append(f"{name} {sum(r['before'] for r in runs)}/{groups} before, median ARI "
                         + "/".join(f"{r['median ARI']:.2f}" for r in runs))
        first = rows(task, sources[0])
        found.append("first ARI (step 0) " + "/".join(f"{r['first ARI']:.2f}" for r in first))
        if any(r["first ARI"] >= ARI_FOUND for r in first):
            found.append("already separable at step 0, before anything is learned: these "
                         "gradients tell the groups' inputs apart, which is not evidence of "
                         "a capability")
        for name in EXTRA_PROBES:
            for r in rows(task, name):
                total = sum(r[relation] for relation in RELATIONS)
                found.append(f"{name}: k {r['k']}, {r['before']}/{total} before, first ARI "
                             f"{r['first ARI']:.2f}, median {r['median ARI']:.2f}")
        price = next(r for r in cost if r["task"] == task and r["source"] == PROBE)
        methods = [r for r in cost if r["task"] == task
                   and r["source"] not in (PROBE, *EXTRA_PROBES)]
        found.append(f"cost {fmt(price['s per re-clustering'])} s and {fmt(price['peak MB'])} "
                     f"MB per re-clustering of {price['examples × parameters']} gradients"
                     + "".join(f", {r['source']} {r['run overhead (× mean-loss step)']:.1f}× a "
                               "mean-loss step" for r in methods))
        parts.append(f"{task} (seeds in order): " + "; ".join(found))
    return ". ".join(parts) + "."


SECTION = Section(10, "grouped", "Grouped losses", build, FULL, QUICK, FULL_TASKS, DEFAULT)
