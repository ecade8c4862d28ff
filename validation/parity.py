"""Multitask sparse parity (Michaud et al. 2023): a task of examples whose groups (tasks) each
sit on a plateau and then drop; the regime and its measurements are in
:data:`validation.tasks.TASKS`. Time unit: steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from validation.sampled import SampledTask

__all__ = ["ParityMLP", "ParityTask"]


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
    reference loss is ln 2. Time unit: steps. The defaults are the regime of
    :data:`validation.tasks.TASKS`. ``gradient_params=("code.weight",)``, the task-code
    columns of the first layer, makes the gradients of different tasks orthogonal by
    construction (it finds the tasks trivially); the default (the whole model) does not.
    """

    tasks: int = 5
    bits: int = 120
    k: int = 3
    alpha: float = 1.0
    width: int = 128
    batch_size: int = 1024
    eval_per_task: int = 256
    name: str = "parity"
    subsets: Tensor = field(init=False, repr=False)

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
