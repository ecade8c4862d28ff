"""Tasks with known capabilities, one training loop for every loss method, and the comparison.

* :mod:`~validation.tasks.registry`: :data:`TASKS` (settings per task name), :func:`make_task`,
  the loss-method factory :func:`make_method` / :func:`task_method`, :func:`make_clusterer`.
* :mod:`~validation.tasks.loop`: :func:`train_task`, one loop for every method on a task of
  examples, optionally clustering per-example gradients on the side (``probe_every``);
  :func:`grouped_runs`: one method over seeds (the task protocol is documented there).
* :mod:`~validation.tasks.spec`: the theory bridge, :class:`SpecTask` (a grouped model's spec,
  trained by the batched trainer and predicted by its derived dynamics; time t = η·step) and
  :func:`predict_task`.
* :mod:`~validation.tasks.tables`: :func:`compare_methods` and :func:`emergence_table`, the
  emergence metrics of several methods over seeds (markdown: :mod:`figures.task_tables`).
* :mod:`~validation.tasks.result`: :class:`TaskResult`, one run's per-group curves.

The tasks of examples: :class:`validation.parity.ParityTask` (multitask sparse parity, time in
steps) and :class:`validation.skills.SkillsTask`.
"""

from __future__ import annotations

from validation.parity import ParityMLP, ParityTask
from validation.tasks.loop import grouped_runs, train_task
from validation.tasks.registry import (
    GRADIENT_METHODS,
    METHODS,
    TASKS,
    Task,
    make_clusterer,
    make_method,
    make_task,
    task_method,
)
from validation.tasks.result import RECOVERY_RULE, TaskResult
from validation.tasks.spec import OBJECTIVES, SpecTask, objective_label
from validation.tasks.tables import compare_methods, emergence_table

__all__ = [
    "GRADIENT_METHODS",
    "METHODS",
    "OBJECTIVES",
    "RECOVERY_RULE",
    "TASKS",
    "ParityMLP",
    "ParityTask",
    "SpecTask",
    "Task",
    "TaskResult",
    "compare_methods",
    "emergence_table",
    "grouped_runs",
    "make_clusterer",
    "make_method",
    "make_task",
    "objective_label",
    "predict_task",
    "task_method",
    "train_task",
]


def predict_task(task: Task, method: str, steps: int, lr: float,
                 discrete: bool = False) -> TaskResult:
    """The run ``train_task(task, method, steps, lr)`` predicted by theory: the task's
    ``predict`` hook (:meth:`SpecTask.predict`: the derived flow, or with ``discrete`` the
    exact GD map, to t = η·``steps``). TypeError for a task without derived theory."""
    own = getattr(task, "predict", None)
    if own is None:
        raise TypeError(f"task {task.name!r} has no derived theory (it is not a model's spec)")
    return own(method, steps, lr, discrete)
