"""The task loop: :func:`train_task`, one training loop for every loss method on a task of
examples (a task with its own trainer, a model's spec, runs that instead), and
:func:`grouped_runs`, one method over seeds.

Task protocol (what :func:`train_task` and the methods use; :class:`validation.parity.ParityTask`
and :class:`validation.skills.SkillsTask` follow it, through
:class:`validation.sampled.SampledTask`):

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

Optional hooks, for a task that is not a set of examples (:class:`~validation.tasks.spec.SpecTask`):
``loss_method(name, seed, **params)`` (what a method name means on it,
:func:`~validation.tasks.registry.task_method`), ``train_run(method, steps, lr, seed, optimizer,
record, progress, dtype, probe_every, probe_options, reference_every, reference_steps)`` (its own
trainer, :func:`train_task`) and ``predict(method, steps, lr, discrete)`` (its derived theory,
:func:`~validation.tasks.predict_task`).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from validation.emergence import adjusted_rand, group_f1
from validation.grouped import Clustering, LossMethod
from validation.tasks.registry import (
    TASKS,
    Task,
    make_clusterer,
    make_method,
    make_task,
    task_method,
)
from validation.tasks.result import TaskResult, clock
from validation.training import limit_threads, record_steps

__all__ = ["grouped_runs", "train_task"]


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
    own = getattr(task, "train_run", None)  # a task with its own trainer (a model's spec)
    if own is not None:
        return own(method, steps, lr, seed, optimizer, record, progress, dtype, probe_every,
                   probe_options, reference_every, reference_steps)
    generator = torch.Generator().manual_seed(seed)
    model = task.make_model(generator).to(dtype)
    size = task.batch(torch.Generator().manual_seed(0))[0].shape[0]
    work = 3 * size * sum(p.numel() for p in model.parameters())
    with limit_threads(work, torch.device("cpu")):
        return _train(task, model, generator, method, steps, lr, seed, optimizer, record,
                      progress, dtype, probe_every, probe_options, reference_every,
                      reference_steps)


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
    groups_seen = np.zeros(task.num_groups)
    history: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    clusterings: list[dict[str, Any]] = []
    step_seconds = 0.0
    def now(step: int) -> float:
        return float(clock(task.time_unit, lr, np.array(step)))

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
            clusterings.append(_clustering_record(found, groups, step, now(step),
                                                  task.num_groups))
        begin = time.perf_counter()
        info = loss_method.update(model, (inputs, targets), step)
        losses = info.get("losses")  # the update's forward pass on this batch, if it made one
        if losses is None:
            losses = task.per_example_loss(model(inputs), targets)
        loss, _ = loss_method(losses, groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_seconds += time.perf_counter() - begin
        if reference is not None and step % reference_every == 0:
            reference.time(model, inputs, targets, reference_steps)
        if probe is None and "clustering" in info:
            clusterings.append(_clustering_record(info["clustering"], groups, step, now(step),
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
        time=clock(task.time_unit, lr, recorded_steps),
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
    ``reference_every`` steps (:func:`train_task`; a task with its own trainer, a spec, times a
    mean-loss run beside it: :meth:`~validation.tasks.spec.SpecTask.train_run`). The reference
    is the plain mean of the per-example losses, so the ``mean`` method itself shows the
    bookkeeping of :class:`~validation.grouped.ObjectiveLoss` (group means, masks) and the
    timing noise:
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
        out.append(result.summary())
    return out
