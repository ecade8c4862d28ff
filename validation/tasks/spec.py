"""The theory bridge: a task that is a grouped model's spec, trained and predicted from the same
arrays.

:class:`SpecTask` carries the task hooks of the protocol (:mod:`validation.tasks`) that a task
of examples does not have: ``loss_method`` (a method is the spec's group objective, given by
its label), ``train_run`` (the batched trainer, :func:`validation.training.train`) and
``predict`` (the derived dynamics, :func:`dynamics.integrate.predict`). Time in t = η·step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dynamics.groups import NAMES, objective
from dynamics.integrate import predict
from dynamics.methods import Discrete, Flow
from dynamics.problems import ModelSpec
from dynamics.schedules import step_times
from validation.tasks.result import TaskResult, clock
from validation.training import TrainConfig, record_steps, train

__all__ = ["OBJECTIVES", "SpecTask", "objective_label"]

OBJECTIVES = NAMES
"""Methods that are a group objective (:data:`dynamics.groups.NAMES`, the one list): on a
:class:`SpecTask` they are trained and predicted on the spec itself; ``cluster`` and ``svd``
find their groups from per-example gradients and need a task of examples (parity)."""


def objective_label(method: str, q: float | None = None, tau: float | None = None,
                    eps: float | None = None, step: float | None = None) -> str:
    """The group objective of ``method`` as a spec label, e.g. ``power(q=1)``."""
    if method not in OBJECTIVES:
        raise ValueError(f"method {method!r} is not a group objective (one of "
                         f"{', '.join(OBJECTIVES)}); cluster and svd need a task of examples")
    return objective(method, q=q, tau=tau, eps=eps, step=step).label


@dataclass(frozen=True)
class SpecTask:
    """A task that is a grouped model's spec (:mod:`dynamics.problems`): its capabilities are
    the model's groups, and theory and training both run on the spec itself — the derived
    dynamics under any group objective (:meth:`predict`) and the batched trainer
    (:meth:`train_run`), from the same arrays. Time in t = η·step.

    The modes tasks (:func:`validation.tasks.make_task`): :data:`dynamics.catalog.MODES`, a
    deep linear network y = W₂W₁x fitting y = Cx, C = Σ_g s_g a_g b_gᵀ, examples x = b_g with
    frequencies p̂_g; per example ℓ(x) = ½‖W₂W₁x − Cx‖² (no 1/n), per group ℓ_g, the mean loss
    Σ_g p̂_g ℓ_g, reference ℓ_g(0) = s_g²/2 (:func:`dynamics.problems.sample_modes`).
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

    def loss_method(self, method: str, seed: int = 0, **params: Any) -> str:
        """The method ``method`` with ``params`` (q, tau, eps, step) as the label of its group
        objective, e.g. ``power(q=1)`` (``seed`` unused: the objective is deterministic)."""
        options = sorted(set(params) - {"q", "tau", "eps", "step"})
        if options:
            raise ValueError(f"method {method!r} on task {self.name!r} takes no "
                             f"{', '.join(options)}")
        return objective_label(method, **params)

    def _spec(self, method: Any) -> ModelSpec:
        if not isinstance(method, str):
            raise TypeError(f"task {self.name!r} is a grouped model's spec: give the method by "
                            "name")
        return self.spec.with_objective(method if "(" in method else objective_label(method))

    def _result(self, spec: ModelSpec, method: str, lr: float, steps: np.ndarray,
                group_loss: np.ndarray, seconds: float, t: np.ndarray | None = None
                ) -> TaskResult:
        return TaskResult(
            task=self.name, method=method, seed=self.seed, lr=lr, time_unit=self.time_unit,
            steps=steps, time=clock(self.time_unit, lr, steps) if t is None else t,
            group_loss=group_loss, group_accuracy=None, threshold=self.threshold,
            ari_steps=np.array([], dtype=int), ari=np.array([]), wall_seconds=seconds,
            frequencies=self.frequencies, params=dict(spec.group_objective.params))

    def train_run(self, method: Any, steps: int, lr: float, seed: int = 0,
                  optimizer: str = "sgd", record: int | Sequence[int] = 1,
                  progress: bool = False, dtype: torch.dtype = torch.float32,
                  probe_every: int | None = None,
                  probe_options: Mapping[str, Any] | None = None,
                  reference_every: int | None = None, reference_steps: int = 2) -> TaskResult:
        """The spec trained by the batched trainer under the objective of ``method`` (a name
        from :data:`OBJECTIVES` or a spec label such as ``power(q=1)``): full batch, the spec's
        own initial weights (``seed`` is the task's). With ``reference_every`` a mean-loss run
        is trained beside it and ``overhead`` = its wall time over the mean's
        (``seconds_per_step`` = wall time / steps). The gradient probe needs examples."""
        if probe_every is not None:
            raise ValueError(f"task {self.name!r}: the gradient probe needs a task of examples")
        spec = self._spec(method)
        config = TrainConfig(optimizer=optimizer, lr=lr, steps=steps, progress=progress,
                             dtype="float64" if dtype == torch.float64 else "float32")
        run = train(spec, config)
        kept = record_steps(steps, record)
        result = self._result(spec, spec.objective, lr, kept, run.group_loss[0][kept],
                              run.seconds)
        if reference_every:
            mean = self.train_run("mean", steps, lr, seed, optimizer, record, dtype=dtype)
            result.seconds_per_step = result.wall_seconds / steps
            result.overhead = result.wall_seconds / mean.wall_seconds
        return result

    def predict(self, method: str, steps: int, lr: float, discrete: bool = False) -> TaskResult:
        """The run ``train_run(method, steps, lr)`` (SGD) predicted by theory.

        The spec's derived dynamics under the objective of ``method`` (:func:`objective_label`):
        the flow (``discrete``: the exact full-batch GD map of rate ``lr``, equal to float64
        SGD to rounding), from the spec's own initial weights, to t = η·``steps``, sampled as
        :func:`dynamics.integrate.predict` samples (dense where the losses move).
        ``wall_seconds`` is the integration time.
        """
        spec = self._spec(method)
        start = time.perf_counter()
        traj = predict(spec, Discrete(lr) if discrete else Flow(lr=lr),
                       t_max=float(step_times(lr, steps)))
        seconds = time.perf_counter() - start
        name = f"{spec.objective} (theory{', GD map' if discrete else ''})"
        return self._result(spec, name, lr, np.rint(traj.t / lr).astype(int), traj.group_loss,
                            seconds, t=traj.t)
