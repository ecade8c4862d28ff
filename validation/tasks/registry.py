"""The task registry and the loss-method factory: :data:`TASKS` (settings per task name),
:func:`make_task`, :func:`make_method` / :func:`task_method` and :func:`make_clusterer`.

Tasks: the modes tasks (:class:`~validation.tasks.spec.SpecTask`, a grouped model's spec;
time t = η·step), multitask sparse parity (:class:`validation.parity.ParityTask`) and the
in-context skills (:class:`validation.skills.SkillsTask`), both tasks of examples timed in
steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamics.groups import objective
from dynamics.models.modes import family
from dynamics.problems import sample_modes
from validation.grouped import (
    ClusterGroupedLoss,
    GradientClusterer,
    LossMethod,
    ObjectiveLoss,
    SVDGroupedLoss,
)
from validation.names import GROUP_METHODS
from validation.parity import ParityTask
from validation.skills import SKILLS_FULL, SKILLS_REDUCED, SkillsTask
from validation.tasks.spec import OBJECTIVES, SpecTask

__all__ = [
    "GRADIENT_METHODS",
    "METHODS",
    "TASKS",
    "Task",
    "make_clusterer",
    "make_method",
    "make_task",
    "task_method",
]

METHODS = GROUP_METHODS
"""Loss methods by name (:data:`validation.names.GROUP_METHODS`). ``mean``, ``power`` (q),
``grouped``, ``root``, ``tilted`` (τ) and ``dro``: :class:`~validation.grouped.ObjectiveLoss`
of :func:`dynamics.groups.objective`; ``cluster``: :class:`~validation.grouped.ClusterGroupedLoss`;
``svd``: :class:`~validation.grouped.SVDGroupedLoss`."""

GRADIENT_METHODS = ("cluster", "svd")
"""The methods that compute per-example gradients during training."""

Task = SpecTask | ParityTask | SkillsTask


@dataclass
class _Setting:
    build: Callable[..., Task]
    steps: int
    lr: float
    optimizer: str
    record: int | Sequence[int] = 1
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    """Task parameters of the reduced configuration (``make_task(name, quick=True)``)."""
    quick_steps: int | None = None
    """Steps of the reduced configuration (None: ``steps``)."""

    def run_steps(self, quick: bool = False) -> int:
        """Default number of steps of the full or the reduced configuration."""
        return self.quick_steps if quick and self.quick_steps else self.steps


def _modes(seed: int = 0, groups: int = 5, alpha: float = 1.0, **kwargs: Any) -> SpecTask:
    return SpecTask("modes", sample_modes(*family(groups, zipf=alpha), seed=seed, **kwargs),
                    seed)


def _modes_scale(seed: int = 0, groups: int = 5, spread: float = 2.0, **kwargs: Any
                 ) -> SpecTask:
    return SpecTask("modes-scale", sample_modes(*family(groups, spread=spread), seed=seed,
                                                **kwargs), seed)


TASKS: dict[str, _Setting] = {
    "modes": _Setting(_modes, steps=4000, lr=0.05, optimizer="sgd"),
    "modes-scale": _Setting(_modes_scale, steps=6000, lr=0.01, optimizer="sgd"),
    "parity": _Setting(
        ParityTask,
        steps=12000,
        lr=1e-3,
        optimizer="adam",
        record=25,
        method_options={"cluster": {"recluster_every": 200}, "svd": {"recompute_every": 200}},
        quick={"bits": 80, "batch_size": 512},
        quick_steps=8000,
    ),
    "skills": _Setting(SkillsTask, **SKILLS_FULL, quick=SKILLS_REDUCED["task"],
                       quick_steps=SKILLS_REDUCED["steps"]),
}
"""Default settings per task name: builder, steps, learning rate, optimizer, record, method
options, and the reduced configuration (``quick``).

Parity (multitask sparse parity, mean loss, Adam η = 10⁻³, fresh batches) is set where
emergence is abrupt: 5 tasks (p_i ∝ 1/i: 0.44, 0.22, 0.15, 0.11, 0.09), n = 120 bits, k = 3,
width 128, batches of 1024, 12 000 steps, ℓ_g recorded every 25 steps. Measured (seeds 0, 1, 2;
:func:`~validation.emergence.plateau_to_drop`, plateau = time within 10 % of the start, drop =
90 % → 20 % of the start): median plateau/drop 2.73, 1.83, 2.03 (smallest group 1.57, 1.37,
1.33), spread t_last/t_first of the half-drop times 6.19, 5.24, 5.64; final worst-group loss
≤ 0.01 nats; 58–67 s a run on one thread of a shared 2-core machine under load (3.3 ms a step;
~25 s when idle). Reduced configuration (``quick``: n = 80 bits, batches of 512, 8000 steps):
median plateau/drop 1.86, 1.64, 1.27, spread 4.61, 4.20, 4.44, 18–24 s a run. The search,
seed 0 unless said, median plateau/drop: batches of 2048 gave 0.97–1.32 (n = 80, seeds 0–2),
1.16–1.36 (n = 100), 1.21–1.89 (n = 120); width 256: 1.25; η = 5·10⁻⁴: 1.11; k = 4, n = 50:
1.78 (16 000 steps); n = 120 with batches of 1024: 1.83–2.73; n = 80 with batches of 512:
1.27–1.86. A smaller batch lengthens the plateau relative to the drop (the noisier gradient
hides the k-sparse correlation for longer); a larger n lengthens both, the plateau more.
"""


def make_task(name: str, seed: int = 0, quick: bool = False, **kwargs: Any) -> Task:
    """Build task ``name`` from ``seed``; ``kwargs`` override its parameters; ``quick``: the
    reduced configuration of :data:`TASKS` (the same task where it has none).

    * ``"modes"``: G = 5 modes, s_g = 1, p_g ∝ g^−α (α = 1: p = 0.44 … 0.09), n = k = 20,
      σ = 10⁻³, N = 256; default run 4000 SGD steps at η = 0.05 (t ≤ 200).
    * ``"modes-scale"``: G = 5, p_g = 1/5, s_g geometric from 2 down to 1, otherwise as
      ``"modes"``; default run 6000 SGD steps at η = 0.01 (t ≤ 60).
    * ``"parity"``: :class:`ParityTask` defaults (see :data:`TASKS` for the regime and its
      measured plateaus), Adam at η = 10⁻³.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    setting = TASKS[name]
    return setting.build(seed=seed, **{**(setting.quick if quick else {}), **kwargs})


def make_clusterer(task: Task, seed: int = 0, **options: Any) -> GradientClusterer:
    """:class:`~validation.grouped.GradientClusterer` of ``task``'s per-example gradients:
    k = the task's number of groups and its ``gradient_params`` unless ``options`` say
    otherwise (``num_clusters=None`` chooses k by ``k_rule``)."""
    defaults = {"num_clusters": task.num_groups, "params": task.gradient_params, "seed": seed}
    return GradientClusterer(task.per_example_loss, **{**defaults, **options})


def make_method(
    name: str,
    task: Task,
    seed: int = 0,
    q: float | None = None,
    tau: float | None = None,
    eps: float | None = None,
    step: float | None = None,
    **options: Any,
) -> LossMethod:
    """Loss method ``name`` (one of :data:`METHODS`) for ``task``, G = its number of groups.

    ``mean``, ``power`` (``q``), ``grouped``, ``root``, ``tilted`` (``tau``), ``dro``
    (``step``, c per step) take their parameters (and ``eps``) to
    :func:`dynamics.groups.objective`. ``cluster`` applies the grouped loss to the found
    groups, or power ``q`` / tilted ``tau`` when given; its ``options`` are
    ``recluster_every`` and the fields of :class:`~validation.grouped.GradientClusterer`
    (:func:`make_clusterer`). ``svd``: ``recompute_every``, ``params``, ``exclude``,
    ``chunk_size``. Keyword ``options`` go over the task's defaults in :data:`TASKS`
    (``method_options``). One-line ValueError for an unknown name or a misplaced parameter.
    """
    setting = TASKS.get(task.name)
    options = {**(setting.method_options.get(name, {}) if setting else {}), **options}
    if name in OBJECTIVES:
        if options:
            raise ValueError(f"method {name!r} takes no options {', '.join(sorted(options))}")
        return ObjectiveLoss(objective(name, q=q, tau=tau, eps=eps, step=step), task.num_groups)
    if name == "cluster":
        if step is not None or (q is not None and tau is not None):
            raise ValueError("method 'cluster' takes q (power) or tau (tilted), not step")
        inner = "power" if q is not None else "tilted" if tau is not None else "grouped"
        every = options.pop("recluster_every", 50)
        return ClusterGroupedLoss(make_clusterer(task, seed, **options),
                                  objective(inner, q=q, tau=tau, eps=eps), every)
    if name == "svd":
        if any(v is not None for v in (q, tau, eps, step)):
            raise ValueError("method 'svd' takes no q, tau, eps or step")
        options = {"params": task.gradient_params, **options}
        return SVDGroupedLoss(task.num_groups, task.per_example_loss, **options)
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def task_method(task: Task, method: str, seed: int = 0, **params: Any) -> str | LossMethod:
    """What :func:`~validation.tasks.train_task` takes for ``method`` with ``params`` (q, tau,
    eps, step, and options): the task's own ``loss_method`` hook where it has one (a
    :class:`SpecTask`: the objective's label), else :func:`make_method`."""
    own = getattr(task, "loss_method", None)
    if own is not None:
        return own(method, seed, **params)
    return make_method(method, task, seed, **params)
