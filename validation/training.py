"""Train: the problem in a spec, for real, with PyTorch; many seeds as one batched computation.

:func:`train` trains exactly the problem in a spec — any model (:mod:`dynamics.model`: the
built-ins, a depth-D chain, a user's ``ModelSpec``) — or S specs of one model and shapes (S
seeds of one problem definition, or one spec repeated under a per-seed learning rate), with
SGD, SGD with momentum, Adam or AdamW (:mod:`validation.optim`, torch.optim's update rules).
All seeds advance together: every product is one batched matmul over seeds, every update one
in-place tensor operation, and nothing is read back to the host before the run ends (the
progress bar, when shown, reads the loss every 1 % of the steps).

Loss and gradient come from the model's loss itself: :func:`dynamics.symbolic.training_program`
derives L − L(0) and g_W = ∂L/∂W + λW with SymPy, batched over seeds (cross-entropy models:
the logits Z, (L, ∂L/∂Z) of the shifted logits, and the chain rule); :mod:`validation.graph`
builds their graph from the SymPy terms and :mod:`validation.programs` compiles it once per
run into one flat step —
constant-only values (λ + 1, C's softmax, ...) computed before the run, every matrix chain and
trace of the program sharing its products, contractions over the large dimension that share an
operand done as one matmul of a panel [T | W], gradient sums as one more — so no gradient is
written by hand anywhere and no model is special-cased by its kind. The compiled step keeps the
learned matrices where its products read them (a row of panels' slots, e.g. X and Y of the
factorization side by side with A and B), in a few tensors (m, S, rows, cols) that the
optimizer updates in one operation each; plain SGD folds −η into the gradient's products, so
its update is θ += u. The loss is the data loss, without the decay term ½λ‖θ‖² (as in
:mod:`dynamics`).

Precision. Training runs in the training dtype: loss, gradient and update. Because the MSE
loss is L_ref plus terms of size ~L_ref that cancel, a float32 loss is resolved only
to ~1e-7·L_ref (it may even dip below 0 near convergence); so at every record step the loss
and the order parameters are measured again in float64 from the current parameters
(~1e-16·L_ref; the loss program alone, compiled for float64), a side measurement that does
not change the run. The trajectories hold these
measurements; ``record="all"`` makes every step one. Between record steps the every-step
loss is the training dtype's (enough for crossing times down to f ~ 1e-5).

Time is continuous, t = η·step for each seed (README "Conventions"); with a learning-rate
schedule (``TrainConfig.schedule``, :mod:`dynamics.schedules`: torch.optim.lr_scheduler's
StepLR, ExponentialLR, CosineAnnealingLR, LinearLR, stepped once per optimizer step) step k has
rate η_k and t_k = Σ_{j<k} η_j, the time of the exact GD map with the same schedule. The loss
is kept at every step (exact crossing times); the order parameters at :func:`record_steps`. A
seed whose loss is non-finite or above ``DIVERGENCE·L_ref`` stops there (its step size becomes
0); the others go on, and the result names it with its step and loss.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch
from torch import Tensor
from tqdm import tqdm

from dynamics.errors import UsageError
from dynamics.groups import ELL, SUM, WEIGHT, GroupObjective
from dynamics.problems import Problem
from dynamics.record import SaveAt, as_saveat
from dynamics.schedules import Schedule, times
from dynamics.trajectory import Trajectory

from . import programs
from .names import OPTIMIZERS
from .optim import SGD, Adam, make_optimizer

__all__ = ["DIVERGENCE", "TrainConfig", "TrainResult", "limit_threads", "record_steps", "train"]

DIVERGENCE = 1e6  # a seed stops once its loss is non-finite or above DIVERGENCE·L_ref
DTYPES = {"float32": torch.float32, "float64": torch.float64}
F64 = torch.float64


@dataclass
class TrainConfig:
    """How to train. Invalid values raise ``ValueError`` with one line naming the field.

    Attributes:
        optimizer: ``sgd``, ``momentum`` (SGD with μ = ``momentum``, 0.9 if left at 0),
            ``adam`` or ``adamw`` (update equations in :mod:`validation.optim`).
        lr: step size η (t = η·step), or one η per spec (a batched η sweep); with a
            ``schedule`` the base rate the schedule starts from (torch's initial ``lr``).
        steps: number of updates; the loss is known at steps 0..steps.
        momentum: heavy-ball μ of SGD (dampening 0, nesterov False).
        betas, eps: Adam's (β₁, β₂) and ε.
        schedule: a learning-rate schedule (:mod:`dynamics.schedules`) giving step k the rate
            η_k (every optimizer); then t_k = Σ_{j<k} η_j. None: the constant η.
        weight_decay: λ (coupled L2 for SGD/Adam, decoupled for AdamW); None: each spec's.
        loss: ``mse`` or ``ce`` (factorization only); None: each spec's.
        dtype: ``float32`` or ``float64`` (parameters, gradients, optimizer state).
        device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``.
        record: the steps whose order parameters (and float64 loss) are measured: a
            :class:`dynamics.record.SaveAt` (``SaveAt.log()``, ``SaveAt.every()``,
            ``SaveAt.at(k)``, ...) or its shorthand ``log`` / ``all`` (:func:`record_steps`).
            The loss is kept at every step whatever it says (the exact crossing record).
        progress: show a tqdm bar (only when stderr is a terminal).
    """

    optimizer: str = "sgd"
    lr: float | Sequence[float] = 0.01
    steps: int = 1000
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Schedule | None = None
    weight_decay: float | None = None
    loss: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    record: str | SaveAt = "log"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer: unknown {self.optimizer!r} "
                             f"(expected one of {', '.join(OPTIMIZERS)})")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise UsageError(f"steps: must be an integer >= 1, got {self.steps!r}")
        self.steps = int(self.steps)
        lrs = np.asarray(self.lr, dtype=np.float64)
        if lrs.ndim > 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
            raise UsageError(f"lr: must be a finite number > 0 or a list of them, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise UsageError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if self.optimizer in ("adam", "adamw") and self.momentum:
            raise UsageError(f"momentum: {self.optimizer} has no momentum (it uses betas)")
        if self.optimizer == "momentum" and not self.momentum:
            self.momentum = 0.9
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UsageError(f"betas: must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise UsageError(f"eps: must be a finite number > 0, got {self.eps!r}")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise UsageError(f"schedule: must be a dynamics.schedules schedule (StepLR, ...), "
                             f"got {self.schedule!r}")
        wd = self.weight_decay
        if wd is not None and not (np.isfinite(wd) and wd >= 0):
            raise UsageError(f"weight_decay: must be a finite number >= 0, got {wd!r}")
        if self.loss not in (None, "mse", "ce"):
            raise UsageError(f"loss: must be 'mse' or 'ce', got {self.loss!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype: must be 'float32' or 'float64', got {self.dtype!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise UsageError(f"device: must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.record, SaveAt) and self.record not in ("log", "all"):
            raise UsageError(f"record: must be 'log', 'all' or a dynamics.record.SaveAt, got "
                             f"{self.record!r}")


@dataclass
class TrainResult:
    """A training run of S seeds (seed = index into the list of specs).

    Attributes:
        trajectories: one :class:`Trajectory` per seed at the record steps (times ``t``),
            ``method`` the optimizer, with its every-step loss as the exact crossing record
            (``every_t``/``every_loss``, up to and including a divergence step) and its group
            losses; a diverged seed's samples end before its divergence step.
        diverged: ``(seed, step, loss)`` of every seed that diverged.
        seconds: wall time of the training loop (device work included).
        steps_per_second: batched steps per second (each advances all S seeds).
        device, dtype: where and in which dtype it ran.
        config: the configuration.
        final_loss: (S,) loss after the last step (a diverged seed's: at its divergence).
        loss: (S, steps + 1) loss at every step, in float64 at the record steps and in
            the training dtype between them; NaN after a seed's divergence step.
        lr: (S,) step size η of each seed (with a schedule: its base rate).
        t: (S, steps + 1) the time of every step: t = η·step, with a schedule
            t_k = Σ_{j<k} η_j.
        steps: (R,) the record steps.
        order: ``{W: (P (S, R, r, k), U (S, R, k, k))}`` for each learned W with a target T
            (the model's ``targets``): P = TᵀW, U = WᵀW at the
            record steps, measured in float64.
        params: ``{W: (S, rows, cols)}`` every learned matrix after the last step (float64).
        messages: one line per diverged seed.
        group_loss: (S, steps + 1, G) every group's loss ℓ_g at every step (grouped models, in
            the training dtype), else None; the trajectories hold it at the record steps.
    """

    trajectories: list[Trajectory]
    diverged: list[tuple[int, int, float]]
    seconds: float
    steps_per_second: float
    device: str
    dtype: str
    config: TrainConfig
    final_loss: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    lr: np.ndarray = field(repr=False)
    t: np.ndarray = field(repr=False)
    steps: np.ndarray = field(repr=False)
    order: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    params: dict[str, np.ndarray] = field(repr=False)
    messages: list[str] = field(default_factory=list)
    group_loss: np.ndarray | None = field(default=None, repr=False)

    def crossing_times(
        self, fractions: tuple[float, ...] = (0.5, 0.1, 0.01)
    ) -> list[dict[float, float | None]]:
        """Per seed, t_f from the every-step loss (exact to the step's interpolation): each
        trajectory's :meth:`Trajectory.crossing_times`."""
        return [traj.crossing_times(fractions) for traj in self.trajectories]


def record_steps(steps: int, record: str | int | Sequence[int] | SaveAt = "log") -> np.ndarray:
    """Steps at which the order parameters are recorded, sorted and unique: the
    :class:`dynamics.record.SaveAt` ``record`` (:meth:`SaveAt.step_indices`) or its shorthand.

    ``log``: every step up to 100, about 200 log-spaced and 200 linearly spaced steps up to
    ``steps`` (always 0 and ``steps``); ``all``: every step 0..steps; an int n: every n-th
    step; a sequence: the listed steps within [0, steps]. Always 0 and ``steps``.
    """
    return as_saveat(record, "log").step_indices(steps)


def _torch_slopes(obj: GroupObjective) -> Callable[[Tensor, Tensor], Tensor]:
    """d = ∂F/∂ℓ of a group objective as torch code: outer′(Σ_g f(ℓ_g, w_g)) · ∂f/∂ℓ(ℓ, w),
    printed from :attr:`dynamics.groups.GroupObjective.expression` (groups on the last axis)."""
    f, outer = obj.expression
    df = sp.lambdify([ELL, WEIGHT], sp.diff(f, ELL), "torch")
    value = sp.lambdify([ELL, WEIGHT], f, "torch")
    dout = sp.lambdify([SUM], sp.diff(outer, SUM), "torch")

    def slopes(ell: Tensor, w: Tensor) -> Tensor:
        inner = torch.as_tensor(df(ell, w), dtype=ell.dtype).expand_as(ell)
        total = torch.as_tensor(value(ell, w), dtype=ell.dtype).expand_as(ell).sum(-1,
                                                                                  keepdim=True)
        return inner * torch.as_tensor(dout(total), dtype=ell.dtype)

    return slopes


class _Groups:
    """A grouped model's group losses every step, and D = diag(∂F/∂ℓ) set for the step.

    ℓ_g = (∂L/∂D)_gg comes from the derived ``groups`` program (compiled like the objective,
    reading the same learned tensors). Under an objective whose slopes vary, D is an input of
    the objective's plan (``d``, (S, G, G)), set before every step to diag(d(ℓ, w)) with w the
    spec's frequencies p̂ (Group DRO: w = softmax(z), z += c·ℓ first, as torch Group DRO does).
    The step's loss is then the mean loss Σ_g p̂_g ℓ_g.
    """

    def __init__(self, specs: Sequence[Problem], shapes: dict, consts: dict[str, Tensor],
                 inputs: dict[str, Tensor], dtype: torch.dtype, d: Tensor | None) -> None:
        model, obj = specs[0].model, specs[0].group_objective
        on = {"dtype": dtype, "device": next(iter(inputs.values())).device}
        self.plan = programs.Plan(*programs.group_losses(model, shapes, consts),
                                  inputs={n: inputs[n] for n in model.learned_names}, dtype=dtype)
        self.freq = torch.tensor(np.array([spec.frequencies for spec in specs]), **on)
        self.d, self.objective, self.dro = d, obj, obj.dro_step
        self.slopes = _torch_slopes(obj) if d is not None else None
        self.z = torch.zeros_like(self.freq) if self.dro is not None else None

    def __call__(self) -> Tensor:
        """ℓ (S, G) at the current parameters; D set for the step that follows."""
        ell = torch.diagonal(self.plan()["E"], dim1=-2, dim2=-1)
        if self.d is not None:
            w = self.freq
            if self.z is not None:
                self.z.add_(self.objective.dro_increment(ell))  # z ← z + c·ℓ
                w = torch.softmax(self.z, dim=-1)
            self.d.copy_(torch.diag_embed(self.slopes(ell, w)))
        return ell

    def mean(self, ell: Tensor) -> Tensor:
        """Σ_g p̂_g ℓ_g, (S, 1, 1)."""
        return (ell * self.freq).sum(-1).view(-1, 1, 1)


class _Objective:
    """S specs of one model on a device: parameters, the compiled objective, the measurements.

    The compiled programs (:class:`validation.programs.Plan`) evaluate the loss and
    g_W = ∂L/∂W + λW (coupled decay) in the training dtype. The plan places the learned
    matrices (``w[name]``, (S, rows, cols)) where its products read them best; ``groups`` are
    the tensors (m, S, rows, cols) that hold them, seed on axis 1, each with its gradient
    buffer in ``grads`` (the same shape, contiguous): the optimizer updates a group in one
    operation and a per-seed step size (1, S, 1, 1) broadcasts over it. The loss is the
    programs' L, plus L_ref = L(0) for the MSE-type models, whose program gives L − L(0) (the
    compiled objective adds it). ``scaled``: the plan writes s·g_W with a per-seed s chosen
    from that step's loss (plain SGD: s = −η, 0 once stopped, so that the update is
    θ += grad). ``measure`` takes the loss and the order parameters P = TᵀW, U = WᵀW of every
    learned matrix with a target in float64 (the loss program alone, compiled for float64, on
    a float64 copy).
    """

    def __init__(self, specs: Sequence[Problem], device: torch.device, dtype: torch.dtype,
                 coupled_decay: bool = True, scaled: bool = False):
        model = specs[0].model
        values = [spec.values() for spec in specs]
        self.names = model.learned_names
        self.shapes = {name: tuple(values[0][name].shape) for name in self.names}
        seeds = len(specs)
        consts = {name: torch.tensor(np.array([v[name] for v in values]), dtype=F64,
                                     device=device) for name in model.constant_names}
        lam = torch.tensor([spec.weight_decay for spec in specs], dtype=F64, device=device) \
            if coupled_decay else None
        self.l_ref = torch.tensor([spec.l_ref for spec in specs], dtype=F64, device=device)
        objective, measured = specs[0].group_objective, consts  # measured: the mean loss's D
        varying: tuple[str, ...] = ()
        if objective is not None:
            name = model.group_weights.name
            if objective.constant_slopes:  # D = diag(d), d fixed (p̂: the mean loss; q = 0: 1)
                d = np.array([objective.slopes(np.zeros_like(p), p) for p in
                              (spec.frequencies for spec in specs)])
                consts = consts | {name: torch.diag_embed(torch.tensor(d, dtype=F64,
                                                                       device=device))}
            else:
                varying = (name,)
        shapes = self.shapes | {name: tuple(values[0][name].shape) for name in varying}
        graph, outputs = programs.objective(model, shapes, consts, lam, offset=self.l_ref,
                                            varying=varying)
        self.scaled = scaled  # one compilation: the plan places W and allocates g_W like W
        self.plan = programs.Plan(graph, outputs, dtype=dtype, scaled=scaled, seeds=seeds,
                                  device=device, own_outputs=True)
        self.learned = [(names, buf, transposed) for (names, _, transposed), buf in
                        zip(self.plan.groups, self.plan.out_groups, strict=True)
                        if names[0] in self.names]
        if any(set(names) - set(self.names) for names, _, _ in self.learned):
            raise RuntimeError("programs: a varying constant shares storage with learned ones")
        self.grads = [buf for _, buf, _ in self.learned]  # each like its group's storage
        self.groups = [t for names, t, _ in self.plan.groups if names[0] in self.names]
        for name in varying:
            self.plan.inputs[name].copy_(consts[name])
        self.w = self.plan.inputs
        for name in self.names:
            self.w[name].copy_(torch.tensor(np.array([v[name] for v in values])))
        self.macs = self.plan.macs
        if dtype == F64:
            self.exact, self.w64 = None, self.w
        else:  # the float64 measurement: the loss program alone, on a float64 copy
            self.exact = programs.Plan(*programs.objective(model, self.shapes, measured, None,
                                                           gradients=False, offset=self.l_ref),
                                       dtype=F64, seeds=seeds, device=device)
            self.w64 = self.exact.inputs
        self.targets = {name: consts[t] for name, t in model.targets.items()}
        self.target_names = dict(model.targets)
        self.products: dict[str, tuple[Tensor | None, Tensor | None]] | None = None
        self.copies: list[tuple[Tensor, Tensor]] | None = None  # float64 copy of w, by group
        self.gram = [{name: v[t].T @ v[t] for name, t in model.targets.items()} for v in values]
        self.grouped = None if objective is None else _Groups(
            specs, self.shapes, consts, self.w, dtype,
            self.plan.inputs[varying[0]] if varying else None)
        self.group_loss: Tensor | None = None  # ℓ (S, G) of the last step (grouped models)

    def step(self, between: Callable | None = None) -> Tensor:
        """Loss (S, 1, 1) at the current parameters and the gradient into ``grads`` (a scaled
        plan: ``between(loss)`` gives the gradient's factor s (S, 1, 1) once L is known).
        Grouped models: :attr:`group_loss` first, D for the step, and the mean loss."""
        if self.grouped is not None:
            self.group_loss = self.grouped()
        loss = self.plan()["L"] if between is None else self.plan(between)["L"]
        return loss if self.grouped is None else self.grouped.mean(self.group_loss)

    def evaluate(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss (S,) and g_W = ∂L/∂W + λW (coupled decay) by name, in the training dtype."""
        loss = self.step().view(-1)
        grads = {}
        for names, g, transposed in self.learned:
            grads |= {name: (g[i].mT if transposed else g[i]).clone()
                      for i, name in enumerate(names)}
        return loss, grads

    def measure(self, loss: Tensor, orders: dict[str, tuple[Tensor, Tensor]], slot: int,
                step_loss: Tensor) -> None:
        """Float64 loss into ``loss`` (S,) and P, U into ``orders[name]`` at ``slot``; the
        float64 run's own ``step_loss`` is that loss already."""
        plan = self.plan if self.exact is None else self.exact
        if self.exact is None:
            loss.copy_(step_loss.view(-1))
        else:
            if self.copies is None:  # a whole group at once where both plans lay it out alike
                self.copies = _copies(self.exact.groups, self.plan.groups, self.names,
                                      self.w64, self.w)
            for target, source in self.copies:
                target.copy_(source)
            loss.copy_(self.exact()["L"].view(-1))
        if self.products is None:  # the loss program's own TᵀW, WᵀW where it computes them
            self.products = {name: (plan.contraction(self.target_names[name], name),
                                    plan.contraction(name, name)) for name in self.targets}
        for name, target in self.targets.items():
            p, u = orders[name]
            w = self.w64[name]
            for out, product, left in ((p[slot], self.products[name][0], target.mT),
                                       (u[slot], self.products[name][1], w.mT)):
                if product is not None:
                    out.copy_(product)
                else:
                    torch.bmm(left, w, out=out)


def _copies(targets: list, sources: list, names: Sequence[str], target_w: dict[str, Tensor],
            source_w: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """(target, source) pairs that copy the learned matrices ``names``: one pair per group of
    ``(names, storage, transposed)`` that both plans hold the same way, else one per matrix."""
    held = {tuple(group[0]): group for group in sources}
    pairs, done = [], set()
    for group, storage, transposed in targets:
        other = held.get(tuple(group))
        if other is not None and other[2] == transposed and other[1].shape == storage.shape:
            pairs.append((storage, other[1]))
            done |= set(group)
    return pairs + [(target_w[n], source_w[n]) for n in names if n not in done]


def _loop(objective: _Objective, optimizers: list[SGD | Adam], lr: Tensor, limit: Tensor,
          steps: int, rec: np.ndarray, progress: bool, rates: Tensor | None = None
          ) -> tuple[Tensor, Tensor, dict, Tensor | None]:
    """The training loop: loss at every step in the training dtype, (S,) lr and limit;
    ``rates`` (steps, S): the rate η_k of every step (a schedule), else η = lr throughout.

    Returns the loss (steps + 1, S), the float64 loss (R, S) and order parameters
    ``{name: (P (R, S, r, k), U (R, S, k, k))}`` at the record steps, and the group losses
    (steps + 1, S, G) of a grouped model (else None).
    """
    on = {"device": lr.device}
    s = len(lr)
    losses = torch.empty(steps + 1, s, dtype=lr.dtype, **on)
    rec_losses = torch.empty(len(rec), s, dtype=F64, **on)
    orders = {name: (torch.empty(len(rec), *t.shape[:1], t.shape[2], objective.shapes[name][1],
                                 dtype=F64, **on),
                     torch.empty(len(rec), s, objective.shapes[name][1],
                                 objective.shapes[name][1], dtype=F64, **on))
              for name, t in objective.targets.items()}
    alive, scale = torch.empty(s, 1, 1, **on, dtype=lr.dtype), \
        torch.empty(s, 1, 1, **on, dtype=lr.dtype)  # reused every step
    limit, per_group = limit.view(-1, 1, 1), scale.view(1, -1, 1, 1)
    pairs = list(zip(optimizers, objective.grads, strict=True))
    slots = {int(step): i for i, step in enumerate(rec)}
    every = max(1, steps // 100)
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    fold = objective.scaled  # plain SGD: the plan writes −η(∂L/∂θ + λθ), 0 once stopped
    step_size = (-lr if fold else lr).view(-1, 1, 1)
    if rates is not None:  # the step's rate goes into step_size before the step (−η folded)
        step_size, rates = step_size.clone(), (-rates if fold else rates).view(steps, -1, 1, 1)
    kept: list[Tensor] = []  # the loss of each step, (S, 1, 1), moved into ``losses`` in chunks
    done = 0
    group_loss = None if objective.grouped is None else \
        torch.empty(steps + 1, s, objective.grouped.freq.shape[1], dtype=lr.dtype, **on)

    def stop(loss: Tensor) -> Tensor:
        torch.le(loss, limit, out=alive)  # 0 once diverged (non-finite or above the limit)
        return torch.mul(step_size, alive, out=scale)  # η (or −η folded); 0 once diverged

    for step in range(steps + 1):
        if rates is not None and step < steps:
            step_size.copy_(rates[step])
        loss = objective.step(stop if fold else None)
        kept.append(loss)
        if group_loss is not None:
            group_loss[step].copy_(objective.group_loss)
        slot = slots.get(step)
        if slot is not None:
            objective.measure(rec_losses[slot], orders, slot, loss)
        if len(kept) == 1024 or step == steps:
            losses[done:done + len(kept)].copy_(torch.stack(kept).view(len(kept), -1))
            done += len(kept)
            kept.clear()
        if step == steps:
            break
        if fold:
            for optimizer, grad in pairs:
                optimizer.apply(grad)  # θ ← θ − η(∂L/∂θ + λθ)
        else:
            stop(loss)
            for optimizer, grad in pairs:
                optimizer.step(grad, per_group)
        if progress and (step + 1) % every == 0:
            bar.update(every)
            bar.set_postfix(loss=f"{loss.nanmean().item():.4g}")
    bar.update(steps - bar.n)
    bar.close()
    return losses, rec_losses, orders, group_loss


def _prepare(specs: Problem | Sequence[Problem], config: TrainConfig) -> list[Problem]:
    """The specs with the config's loss and weight decay applied; one shape for all."""
    specs = [specs] if not isinstance(specs, Sequence) else list(specs)
    if not specs:
        raise UsageError("specs: need at least one problem spec")
    out = []
    for spec in specs:
        takes_loss = "loss" in spec.options  # a family with a loss option (factorization)
        if config.loss == "ce" and not takes_loss:
            raise UsageError(f"loss: cross-entropy needs a factorization spec, not {spec.kind!r}")
        changes: dict[str, object] = {}
        if config.weight_decay is not None:
            changes["weight_decay"] = config.weight_decay
        if config.loss is not None and takes_loss:
            changes["loss"] = config.loss
        out.append(spec.replace(**changes) if changes else spec)
    def signature(spec: Problem) -> tuple:
        obj = spec.group_objective
        return (spec.model, [(k, v.shape) for k, v in spec.values().items()],
                None if obj is None else obj.label)

    first = signature(out[0])
    for i, spec in enumerate(out[1:], 1):
        if signature(spec) != first:
            raise UsageError(f"specs: spec {i} ({spec.describe()}) does not match spec 0 "
                             f"({out[0].describe()}) in kind, loss or shape")
    return out


SMALL_WORK = 2**23  # multiply-adds per step below which a CPU run uses one thread


@contextlib.contextmanager
def limit_threads(work: int, device: torch.device) -> Iterator[None]:
    """One torch CPU thread while a step is small (< SMALL_WORK multiply-adds), then restore.

    A step is a few batched matmuls of ~1e5-1e6 multiply-adds and small ops; splitting them
    over threads gains little, and where the cores are shared, each parallel region can wait
    a whole scheduler tick for a descheduled thread (measured: 10-300x slower on 2 busy
    cores). ``torch.set_num_threads`` is process-wide: the previous value is put back.
    """
    before = torch.get_num_threads()
    small = device.type == "cpu" and work < SMALL_WORK and before > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device: {name!r} requested but CUDA is not available")
    return torch.device(name)


def train(specs: Problem | Sequence[Problem], config: TrainConfig | None = None) -> TrainResult:
    """Train ``specs`` (one spec, or S specs of one shape trained at once) with ``config``.

    Every seed follows θ_{m+1} = θ_m − η_m·(optimizer direction at θ_m)
    (:mod:`validation.optim`; η_m = η, or the config's schedule's) from the spec's initial
    point; sample m is at t = η·m (with a schedule t_m = Σ_{j<m} η_j). Same specs, config,
    device and dtype give bitwise identical results. Raises ``ValueError`` (one line) on an invalid
    configuration, mismatched specs, or an unavailable device.
    """
    config = config or TrainConfig()
    specs = _prepare(specs, config)
    lr_host = np.asarray(config.lr, dtype=np.float64)
    if lr_host.ndim == 0:
        lr_host = np.full(len(specs), float(lr_host))
    elif lr_host.size != len(specs):
        raise UsageError(f"lr: got {lr_host.size} step sizes for {len(specs)} specs")
    device, dtype = _device(config.device), DTYPES[config.dtype]
    rec = record_steps(config.steps, config.record)
    show = config.progress and sys.stderr.isatty()
    decoupled = config.optimizer == "adamw"
    with torch.inference_mode():
        fold = config.optimizer in ("sgd", "momentum") and not config.momentum
        objective = _Objective(specs, device, dtype, coupled_decay=not decoupled, scaled=fold)
        lr = torch.tensor(lr_host, dtype=dtype, device=device)
        rates = None if config.schedule is None else torch.tensor(
            np.stack([config.schedule.rates(r, config.steps) for r in lr_host], axis=1),
            dtype=dtype, device=device)  # (steps, S)
        decay = np.array([spec.weight_decay for spec in specs])
        wd = torch.tensor(decay, dtype=dtype, device=device).view(1, -1, 1, 1) \
            if decoupled and decay.any() else None  # coupled decay is in the gradient
        optimizers = [make_optimizer(config.optimizer, group, config.momentum, config.betas,
                                     config.eps, wd) for group in objective.groups]
        limit = (DIVERGENCE * objective.l_ref).to(dtype)
        start = time.perf_counter()
        with limit_threads(objective.macs, device):
            losses, rec_losses, orders, group_loss = _loop(objective, optimizers, lr, limit,
                                                           config.steps, rec, show, rates)
        raw = losses.T.to(F64).cpu().numpy()  # (S, steps + 1), training dtype
        seconds = time.perf_counter() - start
        loss = raw.copy()
        loss[:, rec] = rec_losses.T.cpu().numpy()  # float64 measurements at the record steps
        order = {name: (p.transpose(0, 1).cpu().numpy(), u.transpose(0, 1).cpu().numpy())
                 for name, (p, u) in orders.items()}  # (S, R, ·, ·)
        final = {name: objective.w[name].to(F64).cpu().numpy() for name in objective.names}
        groups = None if group_loss is None else \
            group_loss.transpose(0, 1).to(F64).cpu().numpy()  # (S, steps + 1, G)
    clock = np.stack([times(r, config.steps, config.schedule) for r in lr_host])
    return _result(specs, config, lr_host, clock, limit.to(F64).cpu().numpy(), rec, loss, raw,
                   order, objective.gram, final, seconds, device, groups)


def _result(specs: list[Problem], config: TrainConfig, lr: np.ndarray, clock: np.ndarray,
            limit: np.ndarray, rec: np.ndarray, loss: np.ndarray, raw: np.ndarray,
            order: dict[str, tuple[np.ndarray, np.ndarray]], gram: list[dict[str, np.ndarray]],
            final: dict[str, np.ndarray], seconds: float, device: torch.device,
            group_loss: np.ndarray | None = None) -> TrainResult:
    """Host-side bookkeeping: divergence (from ``raw``, the loss the loop tested), NaN after
    it, one Trajectory per seed at the times ``clock`` (S, steps + 1)."""
    diverged, messages, trajectories = [], [], []
    final_loss = loss[:, -1].copy()
    for seed, spec in enumerate(specs):
        bad = np.flatnonzero(~(raw[seed] <= limit[seed]))
        end = int(bad[0]) if bad.size else config.steps + 1
        if bad.size:
            value = float(raw[seed, end])
            loss[seed, end] = value
            diverged.append((seed, end, value))
            messages.append(f"seed {seed} diverged at step {end} (t = {clock[seed, end]:.4g}): "
                            f"loss {value:.4g} (limit {DIVERGENCE:g}·L_ref = {limit[seed]:.4g})")
            loss[seed, end + 1:] = np.nan
            final_loss[seed] = value
        # the recorded steps before the divergence: a prefix of the sorted ``rec``, sliced (a
        # view: a boolean mask copied every seed's order parameters, 2.7 GB for the report's
        # rank-100 grid)
        keep = slice(0, int(np.searchsorted(rec, end)))
        mine = {name: (p[seed, keep], u[seed, keep]) for name, (p, u) in order.items()}
        if group_loss is not None:
            group_loss[seed, end + 1:] = np.nan
        finite = np.isfinite(loss[seed])  # the exact crossing record: every step to `end`
        trajectories.append(Trajectory.from_order_parameters(
            clock[seed, rec[keep]], loss[seed, rec[keep]], spec.l_ref, mine, gram[seed],
            method=config.optimizer, steps=rec[keep],
            group_loss=None if group_loss is None else group_loss[seed, rec[keep]],
            every_t=clock[seed, finite], every_loss=loss[seed, finite]))
    if messages:
        warnings.warn("; ".join(messages), RuntimeWarning, stacklevel=3)
    return TrainResult(
        trajectories=trajectories, diverged=diverged, seconds=seconds,
        steps_per_second=config.steps / seconds, device=str(device), dtype=config.dtype,
        config=config, final_loss=final_loss, loss=loss, lr=lr, t=clock, steps=rec, order=order,
        params=final, messages=messages, group_loss=group_loss)
