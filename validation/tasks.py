"""Tasks with known capabilities, one training loop for every loss method, and the comparison.

* :class:`SpecTask`: a grouped model's spec (the modes tasks: a deep linear network
  y = W₂W₁x fitting y = Cx, C = Σ_g s_g a_g b_gᵀ; capability g = singular mode g, its examples
  x = b_g), trained by the batched trainer and predicted by the derived dynamics of the same
  spec under any group objective. Time in t = η·step.
* :class:`ParityTask`: multitask sparse parity (Michaud et al. 2023), in a regime where each
  task sits on a plateau and then drops (:data:`TASKS`). Time in steps.
* :func:`train_task`: trains a task with a method from :mod:`validation.grouped`, optionally
  clustering per-example gradients on the side (``probe_every``);
  :func:`grouped_runs`: one method over seeds, per-seed summaries with the overhead per step
  relative to the mean loss (timed in the same run).
* :func:`predict_task`: the same run predicted by :func:`dynamics.integrate.predict`.
* :func:`compare_methods`: emergence metrics of several methods over seeds;
  :func:`emergence_table` runs it for several tasks (with theory columns for the modes tasks)
  and :func:`table_markdown` formats the rows.

Task protocol (what :func:`train_task` and the methods use; :class:`ParityTask`
:class:`ParityTask` and ``validation.skills`` follow it):

* ``name`` (str), ``time_unit`` (``"t"``: time t = η·step; ``"step"``: time in steps);
* ``num_groups`` G; ``reference_loss`` (G,) ℓ_g of the know-nothing model;
  ``threshold`` (G,) the loss at which group g counts as emerged;
* ``make_model(generator) -> nn.Module``, initialised from ``generator`` only;
* ``batch(generator) -> (inputs, targets, groups)``: one training batch (``groups`` (N,)
  long, the true group of each example), drawn from ``generator`` only;
* ``per_example_loss(outputs, targets) -> (N,)``;
* ``evaluate(model) -> (group_loss (G,), group_accuracy (G,) or None)``, float64 numpy, on
  a fixed evaluation set;
* ``gradient_params``: ``fnmatch`` patterns of the parameters whose per-example gradients
  the gradient methods use (None: the whole model).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from dynamics.groups import objective, zipf_frequencies
from dynamics.integrate import predict
from dynamics.methods import Discrete, Flow
from dynamics.problems import ModelSpec, sample_modes
from validation.emergence import (
    adjusted_rand,
    emergence_spread,
    group_emergence,
    group_f1,
    mean_final,
    plateau_to_drop,
    recovery_relation,
    recovery_times,
    summarize_run,
)
from validation.grouped import (
    ClusterGroupedLoss,
    Clustering,
    GradientClusterer,
    LossMethod,
    ObjectiveLoss,
    SVDGroupedLoss,
)
from validation.names import GROUP_METHODS
from validation.sampled import SampledTask
from validation.skills import SKILLS_FULL, SKILLS_REDUCED, SkillsTask
from validation.training import TrainConfig, limit_threads, record_steps, train

__all__ = [
    "GRADIENT_METHODS",
    "METHODS",
    "OBJECTIVES",
    "TASKS",
    "ParityMLP",
    "ParityTask",
    "SpecTask",
    "TaskResult",
    "compare_methods",
    "emergence_table",
    "grouped_runs",
    "make_clusterer",
    "make_method",
    "make_task",
    "objective_label",
    "predict_task",
    "table_markdown",
    "train_task",
]

METHODS = GROUP_METHODS
"""Loss methods by name (:data:`validation.names.GROUP_METHODS`). ``mean``, ``power`` (q),
``grouped``, ``root``, ``tilted`` (τ) and ``dro``: :class:`~validation.grouped.ObjectiveLoss`
of :func:`dynamics.groups.objective`; ``cluster``: :class:`~validation.grouped.ClusterGroupedLoss`;
``svd``: :class:`~validation.grouped.SVDGroupedLoss`."""

GRADIENT_METHODS = ("cluster", "svd")
"""The methods that compute per-example gradients during training."""

OBJECTIVES = ("mean", "grouped", "root", "power", "tilted", "dro")
"""Methods that are a group objective (:mod:`dynamics.groups`): on a :class:`SpecTask` they
are trained and predicted on the spec itself; ``cluster`` and ``svd`` find their groups from
per-example gradients and need a task of examples (parity)."""


def objective_label(method: str, q: float | None = None, tau: float | None = None,
                    eps: float | None = None, step: float | None = None) -> str:
    """The group objective of ``method`` as a spec label, e.g. ``power(q=1)``."""
    if method not in OBJECTIVES:
        raise ValueError(f"method {method!r} is not a group objective (one of "
                         f"{', '.join(OBJECTIVES)}); cluster and svd need a task of examples")
    return objective(method, q=q, tau=tau, eps=eps, step=step).label


def spec_of(task: Task) -> ModelSpec | None:
    """The model spec a task is (theory runs on it: :class:`SpecTask`), or None for a task of
    examples (the protocol's optional ``spec`` attribute)."""
    return getattr(task, "spec", None)


def task_method(task: Task, method: str, seed: int = 0, **params: Any) -> str | LossMethod:
    """What :func:`train_task` takes for ``method`` with ``params`` (q, tau, eps, step, and
    options): a :class:`SpecTask` the objective's label, any other task its loss method
    (:func:`make_method`)."""
    if spec_of(task) is not None:
        options = sorted(set(params) - {"q", "tau", "eps", "step"})
        if options:
            raise ValueError(f"method {method!r} on task {task.name!r} takes no "
                             f"{', '.join(options)}")
        return objective_label(method, **params)
    return make_method(method, task, seed, **params)




@dataclass(frozen=True)
class SpecTask:
    """A task that is a grouped model's spec (:mod:`dynamics.problems`): its capabilities are
    the model's groups, and theory and training both run on the spec itself — the derived
    dynamics under any group objective (:func:`dynamics.integrate.predict`) and the batched
    trainer (:func:`validation.training.train`), from the same arrays. Time in t = η·step.

    The modes tasks (:func:`make_task`): :data:`dynamics.catalog.MODES`, a deep linear network
    y = W₂W₁x fitting y = Cx, C = Σ_g s_g a_g b_gᵀ, examples x = b_g with frequencies p̂_g;
    per example ℓ(x) = ½‖W₂W₁x − Cx‖² (no 1/n), per group ℓ_g, the mean loss Σ_g p̂_g ℓ_g,
    reference ℓ_g(0) = s_g²/2 (:func:`dynamics.problems.sample_modes`).
    """

    name: str
    spec: ModelSpec
    seed: int = 0
    time_unit: str = "t"

    @property
    def num_groups(self) -> int:
        return len(self.spec.frequencies)

    @property
    def frequencies(self) -> np.ndarray:
        """p̂_g, the weights of the mean loss."""
        return self.spec.frequencies

    @property
    def reference_loss(self) -> np.ndarray:
        """ℓ_g of the zero model (loss units)."""
        return self.spec.reference_losses

    @property
    def threshold(self) -> np.ndarray:
        """Emergence threshold per group: half its reference loss (the t_0.5 convention)."""
        return self.reference_loss / 2

    @property
    def group_names(self) -> list[str]:
        """A display name per group."""
        return [f"group {g + 1}" for g in range(self.num_groups)]



class ParityMLP(nn.Module):
    """One-hidden-layer ReLU MLP on x = [task code (T), bits (n)] with two logits.

    h = relu(W_c c + W_b b + β), logits = W_o h + β_o. ``code`` (W_c: h×T) and ``bits``
    (W_b: h×n) are the column blocks of one first layer on the concatenated input, kept as
    two parameters so the task-code columns can be chosen for gradient clustering.
    Initialised like ``nn.Linear`` on the full fan-in, U(±1/√fan_in), from ``generator``.
    """

    def __init__(self, tasks: int, bits: int, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.tasks = tasks
        self.code = torch.nn.utils.skip_init(nn.Linear, tasks, width, bias=False)
        self.bits = torch.nn.utils.skip_init(nn.Linear, bits, width)
        self.out = torch.nn.utils.skip_init(nn.Linear, width, 2)
        for parameter, fan_in in [
            (self.code.weight, tasks + bits),
            (self.bits.weight, tasks + bits),
            (self.bits.bias, tasks + bits),
            (self.out.weight, width),
            (self.out.bias, width),
        ]:
            bound = fan_in**-0.5
            nn.init.uniform_(parameter, -bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.relu(self.code(x[:, : self.tasks]) + self.bits(x[:, self.tasks :]))
        return self.out(hidden)



@dataclass
class ParityTask(SampledTask):
    """Multitask sparse parity (Michaud et al. 2023, "The Quantization Model of Neural Scaling").

    An example is x = [one-hot(task i) (T), bits b ∈ {0,1}ⁿ], label y = Σ_{j∈S_i} b_j mod 2
    with S_i a random k-subset of the n bits for task i (from ``seed``). Task i has
    frequency p_i ∝ i^−α. Batches are fresh each step (drawn from the training generator);
    per-group loss and accuracy are measured on a fixed evaluation set of ``eval_per_task``
    examples per task. Model :class:`ParityMLP`, loss cross-entropy (nats); the zero-knowledge
    reference loss is ln 2. Time unit: steps. The defaults are the regime of :data:`TASKS`.
    """

    tasks: int = 5
    bits: int = 120
    k: int = 3
    alpha: float = 1.0
    width: int = 128
    batch_size: int = 1024
    eval_per_task: int = 256
    seed: int = 0
    name: str = "parity"
    time_unit: str = "step"
    gradient_params: tuple[str, ...] | None = None
    """Patterns of the parameters whose per-example gradients the gradient methods use (None:
    the whole model). ``("code.weight",)``, the task-code columns of the first layer, makes
    the gradients of different tasks orthogonal by construction (it finds the tasks
    trivially); the default does not."""
    subsets: Tensor = field(init=False, repr=False)
    eval_inputs: Tensor = field(init=False, repr=False)
    eval_targets: Tensor = field(init=False, repr=False)
    eval_labels: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.subsets = torch.stack(
            [torch.randperm(self.bits, generator=generator)[: self.k] for _ in range(self.tasks)]
        )
        self.evaluation_set(self.eval_per_task, generator)

    @property
    def num_groups(self) -> int:
        return self.tasks

    @property
    def reference_loss(self) -> np.ndarray:
        """Cross-entropy of a uniform guess, ln 2 per task."""
        return np.full(self.tasks, np.log(2.0))

    def examples(self, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Inputs [one-hot(label), bits] and parity targets for the given task labels."""
        bits = torch.randint(0, 2, (len(labels), self.bits), generator=generator)
        targets = bits.gather(1, self.subsets[labels]).sum(dim=1) % 2
        inputs = torch.cat([F.one_hot(labels, self.tasks), bits], dim=1).float()
        return inputs, targets

    def make_model(self, generator: torch.Generator) -> nn.Module:
        return ParityMLP(self.tasks, self.bits, self.width, generator)

    @staticmethod
    def per_example_loss(outputs: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy per example, in nats."""
        return F.cross_entropy(outputs, targets, reduction="none")

    @staticmethod
    def correct(outputs: Tensor, targets: Tensor) -> Tensor:
        """1 where the larger logit is the parity, per example."""
        return (outputs.argmax(dim=1) == targets).double()


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
    return SpecTask("modes", sample_modes(np.ones(groups), zipf_frequencies(groups, alpha),
                                          seed=seed, **kwargs), seed)


def _modes_scale(
    seed: int = 0, groups: int = 5, smallest: float = 1.0, largest: float = 2.0, **kwargs: Any
) -> SpecTask:
    scales = np.geomspace(largest, smallest, groups)
    return SpecTask("modes-scale", sample_modes(scales, np.full(groups, 1 / groups), seed=seed,
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


RECOVERY_RULE = (
    "recovered: from the first re-clustering after which the group's best-matching cluster "
    "has F1 >= 0.8 at every re-clustering; before = while still on its plateau (loss > 0.9 of "
    "its start), at = during its drop (0.9 to 0.2 of its start), after = later"
)


@dataclass
class TaskResult:
    """Per-group curves of one training run (numpy arrays, one row per recorded step).

    ``time`` is t = η·step when ``time_unit == "t"`` (modes) and the step when ``"step"``
    (parity). ``group_loss`` (T, G) is ℓ_g before the update of that step;
    ``group_accuracy`` (T, G) for classification, else None. ``ari`` holds the adjusted
    Rand index of the found groups against the true ones at each re-clustering
    (``ari_steps``), empty for methods without found groups; ``clusterings`` one record per
    re-clustering (of the method, or of the side probe when ``probe``): ``step``, ``t``,
    ``k``, ``k_rule``, ``ari``, ``f1`` (per true group, :func:`~validation.emergence.group_f1`),
    ``examples``, ``parameters``, ``seconds_gradients``, ``seconds_clustering``,
    ``peak_bytes``, ``gradient_bytes``. ``frequencies``: the share of each group among all
    training examples seen (the weights of ``mean_final``). ``seconds_per_step``: the
    method's update, loss, backward and optimizer step, averaged over the run (batch
    drawing, evaluation, the side probe and the reference steps excluded); ``overhead``: that
    over the seconds per step of the mean loss timed in the same run (``reference_every`` of
    :func:`train_task`; None without). ``params``: the method's parameters.
    """

    task: str
    method: str
    seed: int
    lr: float
    time_unit: str
    steps: np.ndarray
    time: np.ndarray
    group_loss: np.ndarray
    group_accuracy: np.ndarray | None
    threshold: np.ndarray
    ari_steps: np.ndarray
    ari: np.ndarray
    wall_seconds: float
    params: dict[str, float] = field(default_factory=dict)
    frequencies: np.ndarray | None = None
    seconds_per_step: float = float("nan")
    clusterings: list[dict[str, Any]] = field(default_factory=list)
    probe: bool = False
    overhead: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready emergence summary (plain floats and lists; NaN for "never").

        ``emergence_times``: per group, t_half (half of its own drop); ``threshold_times``:
        first ℓ_g ≤ threshold; ``widths``: (t_90 − t_10)/t_half per group; ``spread``:
        max/min of ``emergence_times``; ``plateau_to_drop`` (with ``plateau`` and ``drop``):
        :func:`~validation.emergence.plateau_to_drop` per group; ``worst_group_final``:
        max_g ℓ_g at the end; ``mean_final``: Σ_g p_g ℓ_g at the end (p = ``frequencies``);
        ``seconds``: wall time; ``seconds_per_step``, ``overhead``; ``ari``: ``{"t", "ari"}``
        at each re-clustering and ``ari_steps`` their steps; ``gradient_groups`` (runs with
        clusterings): k per re-clustering, F1 per group, when each group is recovered and
        how that relates to its emergence (:data:`RECOVERY_RULE`), and the cost per
        re-clustering; ``summary``: :func:`~validation.emergence.summarize_run`.
        Times in ``time_unit``.
        """
        per_group = group_emergence(self.time, self.group_loss, self.threshold)
        plateau = plateau_to_drop(self.time, self.group_loss)
        out: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "params": dict(self.params),
            "seed": self.seed,
            "lr": self.lr,
            "time_unit": self.time_unit,
            "steps": int(self.steps[-1]),
            "emergence_times": per_group["t_half"].tolist(),
            "threshold_times": per_group["t_threshold"].tolist(),
            "widths": per_group["width"].tolist(),
            "spread": emergence_spread(per_group["t_half"])["ratio"],
            "plateau_to_drop": plateau["ratio"].tolist(),
            "plateau": plateau["plateau"].tolist(),
            "drop": plateau["drop"].tolist(),
            "worst_group_final": float(self.group_loss[-1].max()),
            "mean_final": (float("nan") if self.frequencies is None
                           else mean_final(self.group_loss, self.frequencies)),
            "seconds": self.wall_seconds,
            "seconds_per_step": self.seconds_per_step,
            "overhead": self.overhead,
            "ari": [{"t": float(t), "ari": float(a)} for t, a in zip(
                self._clock(self.ari_steps), self.ari, strict=True)],
            "ari_steps": self.ari_steps.tolist(),
            "summary": summarize_run(
                self.time, self.group_loss, self.threshold, self.group_accuracy
            ),
        }
        if self.clusterings:
            out["gradient_groups"] = self.gradient_groups(per_group["t_half"], plateau)
        return out

    def _clock(self, steps: np.ndarray) -> np.ndarray:
        return steps * self.lr if self.time_unit == "t" else steps.astype(float)

    def gradient_groups(
        self, emergence: np.ndarray, plateau: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """Recovery of the true groups by the clusterings, and their cost (see ``summary``).

        ``recovered_at`` (per group, :func:`~validation.emergence.recovery_times`),
        ``lead`` = emergence time − ``recovered_at`` (> 0: found before it emerged),
        ``relation`` (:func:`~validation.emergence.recovery_relation`); ``cost``: mean
        seconds of the per-example gradients and of the clustering per re-clustering, the
        largest peak memory added (bytes, None if not measured) and gradient matrix size.
        """
        records = self.clusterings
        t = np.array([r["t"] for r in records])
        f1 = np.array([r["f1"] for r in records], dtype=float)
        recovered = recovery_times(t, f1)
        peaks = [r["peak_bytes"] for r in records if r["peak_bytes"] is not None]
        seconds_g = float(np.mean([r["seconds_gradients"] for r in records]))
        seconds_c = float(np.mean([r["seconds_clustering"] for r in records]))
        return {
            "source": "probe" if self.probe else self.method,
            "k": [r["k"] for r in records],
            "k_rule": records[0]["k_rule"],
            "t": t.tolist(),
            "f1": f1.tolist(),
            "recovered_at": recovered.tolist(),
            "lead": (emergence - recovered).tolist(),
            "relation": recovery_relation(recovered, plateau["t_plateau_end"],
                                          plateau["t_drop_end"]),
            "rule": RECOVERY_RULE,
            "cost": {
                "seconds_gradients": seconds_g,
                "seconds_clustering": seconds_c,
                "seconds_per_reclustering": seconds_g + seconds_c,
                "peak_bytes": max(peaks) if peaks else None,
                "gradient_bytes": max(r["gradient_bytes"] for r in records),
                "examples": records[0]["examples"],
                "parameters": records[0]["parameters"],
                "reclusterings": len(records),
            },
        }


def _optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


def _clustering_record(found: Clustering, groups: Tensor, step: int, t: float,
                       num_groups: int) -> dict[str, Any]:
    """One row of :attr:`TaskResult.clusterings` (found labels against the true groups)."""
    true = groups[: len(found.labels)].numpy()
    return {
        "step": step, "t": t, "k": found.k, "k_rule": found.k_rule,
        "ari": adjusted_rand(found.labels, true),
        "f1": group_f1(found.labels, true, num_groups).tolist(),
        "examples": len(found.labels), "parameters": found.parameters,
        "seconds_gradients": found.seconds_gradients,
        "seconds_clustering": found.seconds_clustering,
        "peak_bytes": found.peak_bytes, "gradient_bytes": found.gradient_bytes,
    }  # fmt: skip


def train_task(
    task: Task,
    method: str | LossMethod,
    steps: int,
    lr: float,
    seed: int = 0,
    optimizer: str = "sgd",
    record: int | Sequence[int] = 1,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
    probe_every: int | None = None,
    probe_options: Mapping[str, Any] | None = None,
    reference_every: int | None = None,
    reference_steps: int = 2,
) -> TaskResult:
    """Train ``task`` for ``steps`` steps of ``optimizer`` (``"sgd"``/``"adam"``), rate η = lr.

    ``method`` is a name from :data:`METHODS` or a :class:`~validation.grouped.LossMethod`.
    ``seed`` sets the initialisation and the batch stream (one ``torch.Generator``).
    ``record``: every that many steps (int) or the listed steps (e.g. log-spaced ones from
    :func:`validation.training.record_steps`); steps 0 and ``steps`` are always recorded.
    ``probe_every`` R: every R steps (from step 0) cluster the batch's per-example gradients
    on the side (:func:`make_clusterer` with ``probe_options``) without touching the
    training, which stays identical to the run without probe: the diagnostic of whether
    gradient clusters reveal a group before it emerges. ``reference_every`` R': every R'
    steps, ``reference_steps`` steps of the mean loss on the same batch are timed on a copy
    of the model (its own optimizer of the same kind, weights copied from the run's), so that
    ``overhead`` = seconds per step of the method / of the mean loss is measured under the
    same machine load as the run; the training is unchanged. A tqdm bar is shown only with
    ``progress`` and a terminal on stderr. Torch threads: one while a step is small
    (:func:`validation.training.limit_threads`, work ≈ 3 × examples × parameters).
    """
    if spec_of(task) is not None:
        if probe_every is not None:
            raise ValueError(f"task {task.name!r}: the gradient probe needs a task of examples")
        return _train_spec(task, method, steps, lr, optimizer, record, progress, dtype)
    generator = torch.Generator().manual_seed(seed)
    model = task.make_model(generator).to(dtype)
    size = task.batch(torch.Generator().manual_seed(0))[0].shape[0]
    work = 3 * size * sum(p.numel() for p in model.parameters())
    with limit_threads(work, torch.device("cpu")):
        return _train(task, model, generator, method, steps, lr, seed, optimizer, record,
                      progress, dtype, probe_every, probe_options, reference_every,
                      reference_steps)


def _spec_result(task: SpecTask, spec: ModelSpec, method: str, lr: float, steps: np.ndarray,
                 group_loss: np.ndarray, seconds: float, t: np.ndarray | None = None
                 ) -> TaskResult:
    return TaskResult(
        task=task.name, method=method, seed=task.seed, lr=lr, time_unit=task.time_unit,
        steps=steps, time=steps * lr if t is None else t, group_loss=group_loss,
        group_accuracy=None, threshold=task.threshold, ari_steps=np.array([], dtype=int),
        ari=np.array([]), wall_seconds=seconds, frequencies=task.frequencies,
        params=dict(spec.group_objective.params))


def _train_spec(task: SpecTask, method: str | LossMethod, steps: int, lr: float,
                optimizer: str, record: int | Sequence[int], progress: bool,
                dtype: torch.dtype) -> TaskResult:
    """A :class:`SpecTask` trained by the batched trainer under the objective of ``method``
    (a name from :data:`OBJECTIVES` or a spec label such as ``power(q=1)``)."""
    if not isinstance(method, str):
        raise TypeError(f"task {task.name!r} is a grouped model's spec: give the method by name")
    label = method if "(" in method else objective_label(method)
    spec = task.spec.with_objective(label)
    config = TrainConfig(optimizer=optimizer, lr=lr, steps=steps, progress=progress,
                         dtype="float64" if dtype == torch.float64 else "float32")
    run = train(spec, config)
    kept = record_steps(steps, record)
    return _spec_result(task, spec, spec.objective, lr, kept, run.group_loss[0][kept], run.seconds)


def _train(
    task: Task,
    model: nn.Module,
    generator: torch.Generator,
    method: str | LossMethod,
    steps: int,
    lr: float,
    seed: int,
    optimizer: str,
    record: int | Sequence[int],
    progress: bool,
    dtype: torch.dtype,
    probe_every: int | None,
    probe_options: Mapping[str, Any] | None,
    reference_every: int | None,
    reference_steps: int,
) -> TaskResult:
    loss_method = make_method(method, task, seed) if isinstance(method, str) else method
    probe = make_clusterer(task, seed, **(probe_options or {})) if probe_every else None
    opt = _optimizer(optimizer, model, lr)
    recorded = set(record_steps(steps, record).tolist())
    clock = (lambda s: s * lr) if task.time_unit == "t" else float
    groups_seen = np.zeros(task.num_groups)
    history: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    clusterings: list[dict[str, Any]] = []
    step_seconds = 0.0
    reference = _Reference(model, optimizer, lr, task.per_example_loss) if reference_every else None
    bar = tqdm(range(steps + 1), disable=not (progress and sys.stderr.isatty()), leave=False)
    start = time.perf_counter()
    for step in bar:
        if step in recorded:
            history.append((step, *task.evaluate(model)))
        if step == steps:
            break
        inputs, targets, groups = task.batch(generator)
        inputs = inputs.to(dtype)
        targets = targets.to(dtype) if targets.is_floating_point() else targets
        groups_seen += np.bincount(groups.numpy(), minlength=task.num_groups)
        if probe is not None and step % probe_every == 0:
            found = probe.cluster(model, inputs, targets)
            clusterings.append(_clustering_record(found, groups, step, clock(step),
                                                  task.num_groups))
        begin = time.perf_counter()
        info = loss_method.update(model, (inputs, targets), step)
        loss, _ = loss_method(task.per_example_loss(model(inputs), targets), groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_seconds += time.perf_counter() - begin
        if reference is not None and step % reference_every == 0:
            reference.time(model, inputs, targets, reference_steps)
        if probe is None and "clustering" in info:
            clusterings.append(_clustering_record(info["clustering"], groups, step, clock(step),
                                                  task.num_groups))
    wall = time.perf_counter() - start
    recorded_steps = np.array([h[0] for h in history])
    accuracy = [h[2] for h in history]
    return TaskResult(
        task=task.name,
        method=loss_method.name,
        seed=seed,
        lr=lr,
        time_unit=task.time_unit,
        steps=recorded_steps,
        time=recorded_steps * lr if task.time_unit == "t" else recorded_steps.astype(float),
        group_loss=np.stack([h[1] for h in history]),
        group_accuracy=None if accuracy[0] is None else np.stack(accuracy),
        threshold=task.threshold,
        ari_steps=np.array([c["step"] for c in clusterings], dtype=int),
        ari=np.array([c["ari"] for c in clusterings]),
        wall_seconds=wall,
        params=dict(loss_method.params),
        frequencies=groups_seen / max(groups_seen.sum(), 1),
        seconds_per_step=step_seconds / max(steps, 1),
        clusterings=clusterings,
        probe=probe is not None,
        overhead=None if reference is None else step_seconds / max(steps, 1) / reference.per_step,
    )


class _Reference:
    """Times steps of the mean loss on a copy of the model (see ``reference_every``)."""

    def __init__(self, model: nn.Module, optimizer: str, lr: float, loss: Callable) -> None:
        self.model = copy.deepcopy(model)
        self.optimizer = _optimizer(optimizer, self.model, lr)
        self.loss = loss
        self.seconds = 0.0
        self.steps = 0

    def time(self, model: nn.Module, inputs: Tensor, targets: Tensor, steps: int) -> None:
        self.model.load_state_dict(model.state_dict())
        for _ in range(steps):
            begin = time.perf_counter()
            loss = self.loss(self.model(inputs), targets).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.seconds += time.perf_counter() - begin
            self.steps += 1

    @property
    def per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def grouped_runs(
    task_name: str,
    method: str,
    seeds: Sequence[int] = (0,),
    q: float | None = None,
    tau: float | None = None,
    steps: int | None = None,
    quick: bool = False,
    progress: bool = False,
    lr: float | None = None,
    probe_every: int | None = None,
    probe_options: Mapping[str, Any] | None = None,
    reference_every: int = 50,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train ``method`` on task ``task_name`` (full or ``quick`` configuration) for each seed;
    one :meth:`TaskResult.summary` per seed.

    Task defaults (:data:`TASKS`) for steps, η, optimizer and recording unless given; ``q``,
    ``tau`` and ``options`` go to :func:`make_method`, ``probe_every``/``probe_options`` to
    :func:`train_task` (side clustering of the gradients). ``overhead``: the run's seconds per
    step over those of the mean loss, timed in the same run on a copy of the model every
    ``reference_every`` steps (:func:`train_task`). The reference is the plain mean of the
    per-example losses, so the ``mean`` method itself shows the bookkeeping of
    :class:`~validation.grouped.ObjectiveLoss` (group means, masks) and the timing noise:
    1.09–1.18 measured on parity.
    """
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; choose from {', '.join(TASKS)}")
    setting = TASKS[task_name]
    steps = steps or setting.run_steps(quick)
    lr = lr or setting.lr
    out = []
    for seed in seeds:
        task = make_task(task_name, seed, quick=quick)
        params = {k: v for k, v in (("q", q), ("tau", tau)) if v is not None} | options
        chosen = task_method(task, method, seed, **params)
        result = train_task(task, chosen, steps, lr, seed, setting.optimizer,
                            setting.record, progress, probe_every=probe_every,
                            probe_options=probe_options, reference_every=reference_every)
        if spec_of(task) is not None:  # the batched trainer: time a mean-loss run beside it
            mean = train_task(task, "mean", steps, lr, seed, setting.optimizer, setting.record)
            result.seconds_per_step = result.wall_seconds / steps
            result.overhead = result.wall_seconds / mean.wall_seconds
        out.append(result.summary())
    return out


def predict_task(
    task: SpecTask,
    method: str,
    steps: int,
    lr: float,
    discrete: bool = False,
) -> TaskResult:
    """The run ``train_task(task, method, steps, lr)`` (SGD) predicted by theory.

    The spec's derived dynamics under the objective of ``method`` (:func:`objective_label`):
    the flow (``discrete``: the exact full-batch GD map of rate ``lr``, equal to float64 SGD to
    rounding), from the spec's own initial weights, to t = η·``steps``, sampled as
    :func:`dynamics.integrate.predict` samples (dense where the losses move). ``wall_seconds``
    is the integration time.
    """
    if spec_of(task) is None:
        raise TypeError(f"task {task.name!r} has no derived theory (it is not a model's spec)")
    label = method if "(" in method else objective_label(method)
    spec = task.spec.with_objective(label)
    start = time.perf_counter()
    traj = predict(spec, Discrete(lr) if discrete else Flow(lr=lr), t_max=steps * lr)
    seconds = time.perf_counter() - start
    name = f"{spec.objective} (theory{', GD map' if discrete else ''})"
    return _spec_result(task, spec, name, lr, np.rint(traj.t / lr).astype(int), traj.group_loss,
                        seconds, t=traj.t)



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

    With ``theory`` (tasks that are a model's spec, :class:`SpecTask`) every run is also
    predicted (:func:`predict_task`,
    the flow) and the row gets ``theory_<metric>`` (mean over seeds) for ``spread``,
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
            if theory and spec_of(task) is not None:
                prediction = predict_task(task, loss_method, steps, lr)
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


def _pm(row: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    value, sd = row.get(metric, float("nan")), row.get(f"{metric}_sd", float("nan"))
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}g}"
    return text if sd is None or not np.isfinite(sd) else f"{text} ± {sd:.2g}"


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`compare_methods` / :func:`emergence_table` as a markdown table.

    Columns: task, method, seeds, spread t_last/t_first of the half-drop times (± sd over
    seeds), sd of ln t_half, median width (t_90 − t_10)/t_half of the loss, median width of
    the accuracy rise (classification), fraction emerged, worst-group final loss, wall time
    per run, final ARI of the found groups, and — for the modes tasks — the spread predicted
    by theory and the largest relative error of a predicted emergence time.
    """
    header = (
        "| task | method | seeds | spread t_last/t_first | sd ln t | width (loss) "
        "| width (accuracy) | emerged | worst-group final loss | wall s/run | ARI final "
        "| spread (theory) | max theory error |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in rows:
        theory_spread = row.get("theory_spread", float("nan"))
        error = row.get("theory_error", float("nan"))
        cells = [
            str(row["task"]), str(row["method"]), str(row["seeds"]),
            _pm(row, "spread"), _pm(row, "sd_log_t", 2), _pm(row, "width", 2),
            _pm(row, "acc_width", 2), _pm(row, "emerged", 2), _pm(row, "worst_final"),
            _pm(row, "wall_s", 2), _pm(row, "ari_final", 2),
            f"{theory_spread:.3g}" if np.isfinite(theory_spread) else "–",
            f"{100 * error:.2g} %" if np.isfinite(error) else "–",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
