"""The comparison tables: emergence metrics of several loss methods over seeds
(:func:`compare_methods`) and over tasks (:func:`emergence_table`), with the theory's columns
for the tasks that have derived dynamics. Rows are plain dicts; their markdown is
:func:`figures.task_tables.table_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from validation.emergence import group_emergence, mean_final, plateau_to_drop, summarize_run
from validation.tasks.loop import train_task
from validation.tasks.registry import METHODS, TASKS, make_task, task_method
from validation.tasks.result import TaskResult

__all__ = ["compare_methods", "emergence_table"]


def _summary(result: TaskResult) -> dict[str, float]:
    summary = summarize_run(result.time, result.group_loss, result.threshold, result.group_accuracy)
    summary["wall_s"] = result.wall_seconds
    summary["ari_final"] = float(result.ari[-1]) if result.ari.size else float("nan")
    summary["ari_min"] = float(result.ari.min()) if result.ari.size else float("nan")
    ratios = plateau_to_drop(result.time, result.group_loss)["ratio"]
    finite = ratios[~np.isnan(ratios)]
    summary["plateau_to_drop"] = float(np.median(finite)) if finite.size else float("nan")
    summary["mean_final"] = (float("nan") if result.frequencies is None
                             else mean_final(result.group_loss, result.frequencies))
    return summary


def _aggregate(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds (``<metric>``) and sd, ddof 1 (``<metric>_sd``); NaNs ignored."""
    row: dict[str, float] = {}
    for metric in runs[0]:
        values = np.array([run[metric] for run in runs], dtype=float)
        finite = values[np.isfinite(values)]
        row[metric] = float(finite.mean()) if finite.size else float("nan")
        row[f"{metric}_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return row


def compare_methods(
    task_name: str,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = range(5),
    steps: int | None = None,
    lr: float | None = None,
    progress: bool = False,
    theory: bool = False,
    method_params: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Emergence metrics of each method on task ``task_name`` over ``seeds``: one row each.

    For every seed the task (``make_task(task_name, seed)``) and the training run
    (``train_task(..., seed=seed)``) are built from that seed, with the task's default
    steps, η, optimizer and recording (:data:`TASKS`) unless given; ``method_params`` gives
    a method its parameters (default ``power``: q = 1, ``tilted``: τ = 1). Each row holds
    the method, the number of seeds, the time unit and, for every metric of
    :func:`~validation.emergence.summarize_run` plus ``wall_s``, ``ari_final`` (ARI at the
    last re-clustering), ``ari_min`` (lowest ARI over the run), ``plateau_to_drop`` (median
    over groups) and ``mean_final``, its mean over seeds (``<metric>``) and standard
    deviation (``<metric>_sd``, ddof 1). NaN values (e.g. a spread with fewer than two groups
    emerged) are left out of the mean and sd.

    With ``theory`` (tasks with derived theory, a model's spec:
    :class:`~validation.tasks.spec.SpecTask`) every run is also predicted
    (:func:`~validation.tasks.predict_task`, the flow) and the row gets ``theory_<metric>``
    (mean over seeds) for ``spread``,
    ``width``, ``t_first``, ``t_last`` and ``worst_final``, and ``theory_error``: the largest
    relative difference |t_pred − t_train|/t_train of a group's threshold time, over groups
    and seeds.
    """
    setting = TASKS[task_name]
    steps = steps or setting.steps
    lr = lr or setting.lr
    params = {"power": {"q": 1.0}, "tilted": {"tau": 1.0}, **(method_params or {})}
    rows = []
    for method in methods:
        runs, predicted, errors = [], [], []
        for seed in seeds:
            task = make_task(task_name, seed)
            loss_method = task_method(task, method, seed, **params.get(method, {}))
            result = train_task(
                task, loss_method, steps=steps, lr=lr, seed=seed, optimizer=setting.optimizer,
                record=setting.record, progress=progress,
            )  # fmt: skip
            runs.append(_summary(result))
            if theory and hasattr(task, "predict"):  # a task with derived theory (a spec)
                prediction = task.predict(loss_method, steps, lr)
                predicted.append(_summary(prediction))
                t_pred = group_emergence(prediction.time, prediction.group_loss, task.threshold)
                t_train = group_emergence(result.time, result.group_loss, task.threshold)
                ratio = t_pred["t_threshold"] / t_train["t_threshold"]
                errors.extend(np.abs(ratio[np.isfinite(ratio)] - 1))
        given = params.get(method, {}) if method in ("power", "tilted") else {}
        row: dict[str, Any] = {
            "task": task_name,
            "method": method + (f"({', '.join(f'{k}={v:g}' for k, v in given.items())})"
                                if given else ""),
            "seeds": len(runs),
            "time_unit": task.time_unit,
            "steps": steps,
            "lr": lr,
            **_aggregate(runs),
        }
        if predicted:
            aggregated = _aggregate(predicted)
            for metric in ("spread", "width", "t_first", "t_last", "worst_final"):
                row[f"theory_{metric}"] = aggregated[metric]
            row["theory_error"] = float(max(errors)) if errors else float("nan")
        rows.append(row)
    return rows


def emergence_table(
    task_names: Sequence[str] = ("modes", "modes-scale", "parity"),
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = range(5),
    theory: bool = True,
    progress: bool = False,
    steps: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """:func:`compare_methods` for every task in ``task_names`` (rows concatenated), with the
    theory columns for the modes tasks when ``theory``; ``steps`` overrides the task defaults
    per task name."""
    rows = []
    for name in task_names:
        rows += compare_methods(
            name, methods, seeds, steps=(steps or {}).get(name), progress=progress,
            theory=theory,
        )  # fmt: skip
    return rows
