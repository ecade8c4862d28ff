"""Tasks with known capabilities, one training loop for every loss method, and the comparison.

* :class:`ModesTask`: a deep linear network y = W₂W₁x fitting y = Cx, C = Σ_g s_g u_g v_gᵀ;
  capability g = singular mode g, its examples are x = v_g. Time in t = η·step.
* :class:`ParityTask`: multitask sparse parity (Michaud et al. 2023). Time in steps.
* :func:`train_task`: trains a task with a method from :mod:`validation.grouped`.
* :func:`predict_task`: the same run predicted by :mod:`dynamics.modes` (modes tasks).
* :func:`compare_methods`: emergence metrics of several methods over seeds;
  :func:`emergence_table` runs it for several tasks (with theory columns for the modes tasks)
  and :func:`table_markdown` formats the rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from dynamics.modes import ROOT_EPS, ModesProblem, predict_groups
from validation.emergence import (
    adjusted_rand,
    emergence_spread,
    group_emergence,
    summarize_run,
)
from validation.grouped import (
    ClusterGroupedLoss,
    GroupDRO,
    GroupedLoss,
    LossMethod,
    MeanLoss,
    PowerGroupedLoss,
    SVDGroupedLoss,
)
from validation.skills import SKILLS_FULL, SkillsTask

__all__ = [
    "METHODS",
    "TASKS",
    "THEORY",
    "ModesTask",
    "ParityMLP",
    "ParityTask",
    "TaskResult",
    "compare_methods",
    "emergence_table",
    "make_method",
    "make_task",
    "predict_task",
    "table_markdown",
    "train_task",
]

METHODS = ("mean", "grouped", "cluster", "svd", "dro", "root")
"""Loss methods by name: :mod:`validation.grouped`'s MeanLoss, GroupedLoss,
ClusterGroupedLoss, SVDGroupedLoss, GroupDRO and PowerGroupedLoss with γ = ½ ("root")."""

THEORY = {
    "mean": "mean",
    "grouped": "grouped",
    "cluster": "grouped",
    "svd": "svd",
    "dro": "dro",
    "root": "root",
}
"""Training method -> the :mod:`dynamics.modes` method that predicts it on a modes task.
``cluster`` is the grouped loss once its clusters are the true modes (ARI 1, measured);
``svd`` is predicted under the approximation of orthogonal per-capability gradients."""


def _power_law(count: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, count + 1, dtype=float) ** -exponent
    return weights / weights.sum()


@dataclass
class ModesTask:
    """Deep linear network y = W₂W₁x (W₁: k×n, W₂: n×k) fitting y = Cx, C = Σ_g s_g u_g v_gᵀ.

    U = [u_g], V = [v_g] are random n×G matrices with orthonormal columns (from ``seed``).
    The dataset is fixed and used as the full batch: N examples, n_g = round(N p_g) (at
    least 1) of them with x = v_g, target Cx = s_g u_g, label g. Initial weights are i.i.d.
    N(0, σ²) (``init_std``), small so that each mode emerges abruptly.

    Loss definitions (the order-parameter ODEs are derived from exactly these):

    * per example: ℓ(x) = ½‖W₂W₁x − Cx‖² (sum over the n outputs, no 1/n);
    * per group:  ℓ_g = (1/n_g) Σ_{x in g} ℓ(x) = ½‖W₂W₁v_g − s_g u_g‖²;
    * mean loss:  L = (1/N) Σ_x ℓ(x) = Σ_g p̂_g ℓ_g, p̂_g = n_g/N (``frequencies``);
    * reference:  ℓ_g at W = 0, s_g²/2 (``reference_loss``).

    Variants: ``"modes"`` (equal s_g, power-law p_g ∝ g^−α) and ``"modes-scale"`` (equal
    p_g, spread s_g); see :func:`make_task`. Under mean-loss gradient flow mode g grows at
    rate 2 p̂_g s_g during its plateau; under the grouped loss at rate 4 ℓ_g s_g ≈ 2 s_g³.
    """

    scales: np.ndarray
    probabilities: np.ndarray
    n: int = 20
    hidden: int = 20
    init_std: float = 1e-3
    num_examples: int = 256
    seed: int = 0
    name: str = "modes"
    time_unit: str = "t"
    gradient_params: tuple[str, ...] | None = None
    """Parameters whose per-example gradients the gradient methods use (None: all)."""
    left: np.ndarray = field(init=False, repr=False)
    right: np.ndarray = field(init=False, repr=False)
    labels: Tensor = field(init=False, repr=False)
    inputs: Tensor = field(init=False, repr=False)
    targets: Tensor = field(init=False, repr=False)
    target_matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scales = np.asarray(self.scales, dtype=float)
        self.probabilities = np.asarray(self.probabilities, dtype=float)
        groups = len(self.scales)
        rng = np.random.default_rng(self.seed)
        u = np.linalg.qr(rng.standard_normal((self.n, groups)))[0]
        v = np.linalg.qr(rng.standard_normal((self.n, groups)))[0]
        self.left, self.right = u, v
        self.target_matrix = u @ np.diag(self.scales) @ v.T
        counts = np.maximum(1, np.round(self.num_examples * self.probabilities)).astype(int)
        self.labels = torch.as_tensor(np.repeat(np.arange(groups), counts))
        self.inputs = torch.as_tensor(v.T[self.labels.numpy()], dtype=torch.float32)
        self.targets = self.inputs @ torch.as_tensor(self.target_matrix.T, dtype=torch.float32)

    @property
    def num_groups(self) -> int:
        return len(self.scales)

    @property
    def frequencies(self) -> np.ndarray:
        """Realised group fractions p̂_g = n_g / N (the weights of the mean loss)."""
        return np.bincount(self.labels.numpy(), minlength=self.num_groups) / len(self.labels)

    @property
    def reference_loss(self) -> np.ndarray:
        """ℓ_g of the zero model, s_g²/2."""
        return self.scales**2 / 2

    @property
    def threshold(self) -> np.ndarray:
        """Emergence threshold per group: half its reference loss (the t_0.5 convention)."""
        return self.reference_loss / 2

    def problem(self, model: nn.Module) -> ModesProblem:
        """The run as a :class:`dynamics.modes.ModesProblem` (float64), from ``model``'s weights:
        X₀ = W₂, Y₀ = W₁ᵀ, targets A = [u_g], B = [v_g], weights p̂_g of the mean loss."""
        w1, w2 = (p.detach().double().cpu().numpy() for p in model.parameters())
        return ModesProblem(self.scales, self.frequencies, self.left, self.right, w2, w1.T)

    def make_model(self, generator: torch.Generator) -> nn.Module:
        """``Sequential(W₁, W₂)`` without biases, entries N(0, σ²) drawn from ``generator``."""
        model = nn.Sequential(
            torch.nn.utils.skip_init(nn.Linear, self.n, self.hidden, bias=False),
            torch.nn.utils.skip_init(nn.Linear, self.hidden, self.n, bias=False),
        )
        for weight in model.parameters():
            nn.init.normal_(weight, std=self.init_std, generator=generator)
        return model

    def batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """The fixed full batch (inputs, targets, labels); ``generator`` is unused."""
        return self.inputs, self.targets, self.labels

    @staticmethod
    def per_example_loss(outputs: Tensor, targets: Tensor) -> Tensor:
        """ℓ = ½‖output − target‖² per row."""
        return 0.5 * ((outputs - targets) ** 2).sum(dim=1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> tuple[np.ndarray, None]:
        """Per-group losses ℓ_g (G,) on the full dataset (no accuracy for regression)."""
        inputs = self.inputs.to(next(model.parameters()).dtype)
        losses = self.per_example_loss(model(inputs), self.targets.to(inputs.dtype))
        sums = np.bincount(self.labels.numpy(), losses.double().numpy(), self.num_groups)
        return sums / np.bincount(self.labels.numpy(), minlength=self.num_groups), None


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
class ParityTask:
    """Multitask sparse parity (Michaud et al. 2023, "The Quantization Model of Neural Scaling").

    An example is x = [one-hot(task i) (T), bits b ∈ {0,1}ⁿ], label y = Σ_{j∈S_i} b_j mod 2
    with S_i a random k-subset of the n bits for task i (from ``seed``). Task i has
    frequency p_i ∝ i^−α. Batches are fresh each step (drawn from the training generator);
    per-group loss and accuracy are measured on a fixed evaluation set of ``eval_per_task``
    examples per task. Model :class:`ParityMLP`, loss cross-entropy (nats); the zero-knowledge
    reference loss is ln 2. Time unit: steps.
    """

    tasks: int = 8
    bits: int = 24
    k: int = 3
    alpha: float = 1.0
    width: int = 128
    batch_size: int = 512
    eval_per_task: int = 256
    seed: int = 0
    name: str = "parity"
    time_unit: str = "step"
    gradient_params: tuple[str, ...] | None = ("code.weight",)
    """Parameters whose per-example gradients the gradient methods use (None: all). The
    default, the task-code columns of the first layer, makes the gradients of different
    tasks orthogonal; the full gradient does not separate the tasks (measured ARI ≈ 0.05)."""
    subsets: Tensor = field(init=False, repr=False)
    eval_inputs: Tensor = field(init=False, repr=False)
    eval_targets: Tensor = field(init=False, repr=False)
    eval_labels: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.subsets = torch.stack(
            [torch.randperm(self.bits, generator=generator)[: self.k] for _ in range(self.tasks)]
        )
        labels = torch.arange(self.tasks).repeat_interleave(self.eval_per_task)
        self.eval_inputs, self.eval_targets = self.examples(labels, generator)
        self.eval_labels = labels

    @property
    def num_groups(self) -> int:
        return self.tasks

    @property
    def probabilities(self) -> np.ndarray:
        """Task frequencies p_i ∝ i^−α."""
        return _power_law(self.tasks, self.alpha)

    @property
    def reference_loss(self) -> np.ndarray:
        """Cross-entropy of a uniform guess, ln 2 per task."""
        return np.full(self.tasks, np.log(2.0))

    @property
    def threshold(self) -> np.ndarray:
        """Emergence threshold per task: half the reference loss, (ln 2)/2."""
        return self.reference_loss / 2

    def examples(self, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Inputs [one-hot(label), bits] and parity targets for the given task labels."""
        bits = torch.randint(0, 2, (len(labels), self.bits), generator=generator)
        targets = bits.gather(1, self.subsets[labels]).sum(dim=1) % 2
        inputs = torch.cat([F.one_hot(labels, self.tasks), bits], dim=1).float()
        return inputs, targets

    def make_model(self, generator: torch.Generator) -> nn.Module:
        return ParityMLP(self.tasks, self.bits, self.width, generator)

    def batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A fresh batch (inputs, targets, task labels), tasks drawn with probabilities p_i."""
        p = torch.as_tensor(self.probabilities)
        labels = torch.multinomial(p, self.batch_size, replacement=True, generator=generator)
        return *self.examples(labels, generator), labels

    @staticmethod
    def per_example_loss(outputs: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy per example, in nats."""
        return F.cross_entropy(outputs, targets, reduction="none")

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Per-task loss and accuracy (T,) on the fixed evaluation set."""
        outputs = model(self.eval_inputs)
        losses = self.per_example_loss(outputs, self.eval_targets).double().numpy()
        correct = (outputs.argmax(dim=1) == self.eval_targets).double().numpy()
        shape = (self.tasks, self.eval_per_task)
        return losses.reshape(shape).mean(axis=1), correct.reshape(shape).mean(axis=1)


Task = ModesTask | ParityTask


@dataclass
class _Setting:
    build: Callable[..., Task]
    steps: int
    lr: float
    optimizer: str
    record: int | Sequence[int] = 1
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def _modes(seed: int = 0, groups: int = 5, alpha: float = 1.0, **kwargs: Any) -> ModesTask:
    return ModesTask(np.ones(groups), _power_law(groups, alpha), seed=seed, **kwargs)


def _modes_scale(
    seed: int = 0, groups: int = 5, smallest: float = 1.0, largest: float = 2.0, **kwargs: Any
) -> ModesTask:
    scales = np.geomspace(largest, smallest, groups)
    return ModesTask(scales, np.full(groups, 1 / groups), seed=seed, name="modes-scale", **kwargs)


TASKS: dict[str, _Setting] = {
    "modes": _Setting(_modes, steps=4000, lr=0.05, optimizer="sgd"),
    "modes-scale": _Setting(_modes_scale, steps=6000, lr=0.01, optimizer="sgd"),
    "parity": _Setting(
        ParityTask,
        steps=6000,
        lr=1e-3,
        optimizer="adam",
        record=25,
        method_options={
            "cluster": {"algorithm": "spectral", "sign_invariant": True, "affinity": "cosine"},
            "svd": {"recompute_every": 10},
        },
    ),
    "skills": _Setting(SkillsTask, **SKILLS_FULL),
}
"""Default settings per task name: builder, steps, learning rate, optimizer, record."""


def make_task(name: str, seed: int = 0, **kwargs: Any) -> Task:
    """Build task ``name`` from ``seed``; ``kwargs`` override its parameters.

    * ``"modes"``: G = 5 modes, s_g = 1, p_g ∝ g^−α (α = 1: p = 0.44 … 0.09), n = k = 20,
      σ = 10⁻³, N = 256; default run 4000 SGD steps at η = 0.05 (t ≤ 200).
    * ``"modes-scale"``: G = 5, p_g = 1/5, s_g geometric from 2 down to 1, otherwise as
      ``"modes"``; default run 6000 SGD steps at η = 0.01 (t ≤ 60).
    * ``"parity"``: :class:`ParityTask` defaults (8 tasks, 24 bits, k = 3, α = 1, width 128,
      batches of 512); default run 6000 Adam steps at η = 10⁻³.
    """
    return TASKS[name].build(seed=seed, **kwargs)


def make_method(name: str, task: Task, seed: int = 0, **options: Any) -> LossMethod:
    """Loss method ``name`` (one of :data:`METHODS`) for ``task``, K = its number of groups.

    Keyword ``options`` go to the method's constructor, over the task's defaults in
    :data:`TASKS` (``method_options``) and its ``gradient_params``.
    """
    k = task.num_groups
    setting = TASKS.get(task.name)
    options = {**(setting.method_options.get(name, {}) if setting else {}), **options}
    if name == "mean":
        return MeanLoss(**options)
    if name == "grouped":
        return GroupedLoss(k, **options)
    if name == "dro":
        return GroupDRO(k, **options)
    if name == "root":
        return PowerGroupedLoss(k, **{"power": 0.5, "eps": ROOT_EPS, **options})
    gradient_options = {"params": task.gradient_params, **options}
    if name == "cluster":
        return ClusterGroupedLoss(k, task.per_example_loss, seed=seed, **gradient_options)
    if name == "svd":
        return SVDGroupedLoss(k, task.per_example_loss, **gradient_options)
    raise ValueError(f"unknown method {name!r}; choose from {METHODS}")


@dataclass
class TaskResult:
    """Per-group curves of one training run (numpy arrays, one row per recorded step).

    ``time`` is t = η·step when ``time_unit == "t"`` (modes) and the step when ``"step"``
    (parity). ``group_loss`` (T, G) is ℓ_g before the update of that step;
    ``group_accuracy`` (T, G) for classification, else None. ``ari`` holds the adjusted
    Rand index of the found groups against the true ones at each re-clustering
    (``ari_steps``), empty for methods without found groups.
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

    def summary(self) -> dict[str, Any]:
        """JSON-ready emergence summary (plain floats and lists; NaN for "never").

        ``emergence_times``: per group, t_half (half of its own drop); ``threshold_times``:
        first ℓ_g ≤ threshold; ``widths``: (t_90 − t_10)/t_half per group; ``spread``:
        max/min of ``emergence_times``; ``worst_group_final``: max_g ℓ_g at the end;
        ``seconds``: wall time; ``ari`` / ``ari_steps``: found groups against the true ones
        at each re-clustering; ``summary``: :func:`~validation.emergence.summarize_run`.
        Times in ``time_unit``.
        """
        per_group = group_emergence(self.time, self.group_loss, self.threshold)
        return {
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "lr": self.lr,
            "time_unit": self.time_unit,
            "steps": int(self.steps[-1]),
            "emergence_times": per_group["t_half"].tolist(),
            "threshold_times": per_group["t_threshold"].tolist(),
            "widths": per_group["width"].tolist(),
            "spread": emergence_spread(per_group["t_half"])["ratio"],
            "worst_group_final": float(self.group_loss[-1].max()),
            "seconds": self.wall_seconds,
            "ari": self.ari.tolist(),
            "ari_steps": self.ari_steps.tolist(),
            "summary": summarize_run(
                self.time, self.group_loss, self.threshold, self.group_accuracy
            ),
        }


def _optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op torch threads (None: leave as is), restored afterwards."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _recorded_steps(steps: int, record: int | Sequence[int]) -> set[int]:
    if isinstance(record, int):
        recorded = set(range(0, steps + 1, record))
    else:
        recorded = {int(s) for s in record if 0 <= s <= steps}
    recorded.add(steps)
    return recorded


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
    threads: int | None = 1,
) -> TaskResult:
    """Train ``task`` for ``steps`` steps of ``optimizer`` (``"sgd"``/``"adam"``), rate η = lr.

    ``method`` is a name from :data:`METHODS` or a :class:`~validation.grouped.LossMethod`.
    ``seed`` sets the initialisation and the batch stream (one ``torch.Generator``).
    ``record``: every that many steps (int) or the listed steps (e.g. log-spaced ones from
    :func:`validation.training.record_steps`); the final step is always recorded. A tqdm bar
    is shown only with ``progress`` and a terminal on stderr. Wall time excludes nothing
    but the model's construction (evaluation at the record steps is included). ``threads``:
    torch intra-op threads during the run (default 1: these models are small, and on a busy
    2-core machine two threads made a modes run 40x slower, measured); None leaves it as is.
    """
    with _torch_threads(threads):
        return _train(task, method, steps, lr, seed, optimizer, record, progress, dtype)


def _train(
    task: Task,
    method: str | LossMethod,
    steps: int,
    lr: float,
    seed: int,
    optimizer: str,
    record: int | Sequence[int],
    progress: bool,
    dtype: torch.dtype,
) -> TaskResult:
    generator = torch.Generator().manual_seed(seed)
    model = task.make_model(generator).to(dtype)
    loss_method = make_method(method, task, seed) if isinstance(method, str) else method
    opt = _optimizer(optimizer, model, lr)
    recorded = _recorded_steps(steps, record)
    history: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    ari_steps: list[int] = []
    ari: list[float] = []
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
        info = loss_method.update(model, (inputs, targets), step)
        if info.get("reclustered"):
            ari_steps.append(step)
            ari.append(adjusted_rand(info["labels"], groups.numpy()))
        loss, _ = loss_method(task.per_example_loss(model(inputs), targets), groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
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
        ari_steps=np.array(ari_steps, dtype=int),
        ari=np.array(ari),
        wall_seconds=wall,
    )


def predict_task(
    task: ModesTask,
    method: str,
    steps: int,
    lr: float,
    seed: int = 0,
    record: int | Sequence[int] = 1,
    discrete: bool = False,
    **options: Any,
) -> TaskResult:
    """The run ``train_task(task, method, steps, lr, seed, "sgd", record)`` predicted by theory.

    The initial weights are drawn exactly as :func:`train_task` draws them (same ``seed``);
    :func:`dynamics.modes.predict_groups` then integrates the derived order-parameter flow of
    ``THEORY[method]`` (``discrete``: the exact full-batch GD map of rate ``lr``) and
    samples ℓ_g at the recorded t = η·step. ``options`` go to ``predict_groups`` (``eps``,
    ``dro_step``). ``wall_seconds`` is the integration time; ``ari`` is empty.
    """
    if not isinstance(task, ModesTask):
        raise TypeError("theory exists for the modes tasks only")
    model = task.make_model(torch.Generator().manual_seed(seed))
    recorded = np.array(sorted(_recorded_steps(steps, record)))
    prediction = predict_groups(
        task.problem(model), THEORY[method], recorded * lr, lr=lr, discrete=discrete, **options
    )
    return TaskResult(
        task=task.name,
        method=f"{method} (theory{', GD map' if discrete else ''})",
        seed=seed,
        lr=lr,
        time_unit=task.time_unit,
        steps=recorded,
        time=recorded * lr,
        group_loss=prediction.group_loss,
        group_accuracy=None,
        threshold=task.threshold,
        ari_steps=np.array([], dtype=int),
        ari=np.array([]),
        wall_seconds=prediction.seconds,
    )


def _summary(result: TaskResult) -> dict[str, float]:
    summary = summarize_run(result.time, result.group_loss, result.threshold, result.group_accuracy)
    summary["wall_s"] = result.wall_seconds
    summary["ari_final"] = float(result.ari[-1]) if result.ari.size else float("nan")
    summary["ari_min"] = float(result.ari.min()) if result.ari.size else float("nan")
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
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Emergence metrics of each method on task ``task_name`` over ``seeds``: one row each.

    For every seed the task (``make_task(task_name, seed)``) and the training run
    (``train_task(..., seed=seed)``) are built from that seed, with the task's default
    steps, η, optimizer and recording (:data:`TASKS`) unless given. Each row holds the
    method, the number of seeds, the time unit and, for every metric of
    :func:`~validation.emergence.summarize_run` plus ``wall_s``, ``ari_final`` (ARI at the
    last re-clustering) and ``ari_min`` (lowest ARI over the run), its mean over seeds
    (``<metric>``) and standard deviation (``<metric>_sd``, ddof 1). NaN values (e.g. a
    spread with fewer than two groups emerged) are left out of the mean and sd.

    With ``theory`` (modes tasks only) every run is also predicted (:func:`predict_task`,
    the flow) and the row gets ``theory_<metric>`` (mean over seeds) for ``spread``,
    ``width``, ``t_first``, ``t_last`` and ``worst_final``, and ``theory_error``: the largest
    relative difference |t_pred − t_train|/t_train of a group's threshold time, over groups
    and seeds.
    """
    setting = TASKS[task_name]
    steps = steps or setting.steps
    lr = lr or setting.lr
    rows = []
    for method in methods:
        runs, predicted, errors = [], [], []
        for seed in seeds:
            task = make_task(task_name, seed)
            result = train_task(
                task, method, steps=steps, lr=lr, seed=seed, optimizer=setting.optimizer,
                record=setting.record, progress=progress, threads=threads,
            )  # fmt: skip
            runs.append(_summary(result))
            if theory:
                with _torch_threads(threads):
                    prediction = predict_task(task, method, steps, lr, seed, setting.record)
                predicted.append(_summary(prediction))
                t_pred = group_emergence(prediction.time, prediction.group_loss, task.threshold)
                t_train = group_emergence(result.time, result.group_loss, task.threshold)
                ratio = t_pred["t_threshold"] / t_train["t_threshold"]
                errors.extend(np.abs(ratio[np.isfinite(ratio)] - 1))
        row: dict[str, Any] = {
            "task": task_name,
            "method": method,
            "seeds": len(runs),
            "time_unit": task.time_unit,
            "steps": steps,
            "lr": lr,
            **_aggregate(runs),
        }
        if theory:
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
            theory=theory and name.startswith("modes"),
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
