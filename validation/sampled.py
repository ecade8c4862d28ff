"""What the tasks of sampled examples share (parity, skills): groups drawn with Zipf
frequencies into fresh training batches, and a fixed evaluation set per group.

A task of examples (the protocol in :mod:`validation.tasks`) that derives from
:class:`SampledTask` defines ``num_groups``, ``alpha``, ``batch_size``, ``reference_loss``,
``examples(labels, generator) -> (inputs, targets)``, ``per_example_loss`` and
``correct(outputs, targets) -> (N,)`` (the fraction of each example that is right), and calls
:meth:`SampledTask.evaluation_set` once; batches, frequencies, the emergence threshold and the
evaluation come from here.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from dynamics.groups import zipf_frequencies

__all__ = ["SampledTask"]


@dataclass
class SampledTask:
    """Groups g = 0..G−1 with frequencies p_g ∝ (g + 1)^−α; fresh batches; a fixed evaluation
    set of the same number of examples per group.

    The fields every such task has (keyword-only, after the task's own): ``seed`` (the
    subsets/evaluation set), ``time_unit`` (``"step"``) and ``gradient_params``, patterns of
    the parameters whose per-example gradients the gradient methods use (None: all)."""

    _: KW_ONLY
    seed: int = 0
    time_unit: str = "step"
    gradient_params: tuple[str, ...] | None = None
    eval_inputs: Tensor = field(init=False, repr=False)
    eval_targets: Tensor = field(init=False, repr=False)
    eval_labels: Tensor = field(init=False, repr=False)

    @property
    def probabilities(self) -> np.ndarray:
        """Group frequencies p_g ∝ g^−α (g from 1)."""
        return zipf_frequencies(self.num_groups, self.alpha)  # type: ignore[attr-defined]

    @property
    def group_names(self) -> list[str]:
        """A display name per group."""
        return [f"task {g + 1}" for g in range(self.num_groups)]

    @property
    def threshold(self) -> np.ndarray:
        """Emergence threshold per group: half its reference loss (the t_0.5 convention)."""
        return self.reference_loss / 2  # type: ignore[attr-defined]

    def evaluation_set(self, per_group: int, generator: torch.Generator) -> None:
        """Draw the fixed evaluation set: ``per_group`` examples of every group, in order."""
        labels = torch.arange(self.num_groups).repeat_interleave(per_group)
        self.eval_inputs, self.eval_targets = self.examples(labels, generator)  # type: ignore
        self.eval_labels = labels

    def batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A fresh batch (inputs, targets, group labels), groups drawn with probabilities p_g."""
        p = torch.as_tensor(self.probabilities)
        size = self.batch_size  # type: ignore[attr-defined]
        labels = torch.multinomial(p, size, replacement=True, generator=generator)
        return *self.examples(labels, generator), labels  # type: ignore[attr-defined]

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Per-group loss (nats) and accuracy (G,) on the fixed evaluation set."""
        outputs = model(self.eval_inputs.to(next(model.parameters()).dtype))
        losses = self.per_example_loss(outputs, self.eval_targets)  # type: ignore[attr-defined]
        correct = self.correct(outputs, self.eval_targets)  # type: ignore[attr-defined]
        shape = (self.num_groups, -1)
        return (losses.double().numpy().reshape(shape).mean(axis=1),
                correct.double().numpy().reshape(shape).mean(axis=1))
