"""Train: the problem in a spec, for real, with PyTorch; many seeds as one batched computation.

:func:`train` trains exactly the problem in a spec, or S specs of identical shapes (S seeds of
one problem definition, or one spec repeated under a per-seed learning rate), with SGD, SGD
with momentum, Adam or AdamW (:mod:`validation.optim`, torch.optim's update rules). The
learned factors of all seeds are one tensor ``w`` of shape [S, F, n, k] (the spec's F factors,
n x k each): every product is a batched matmul, every update one in-place tensor operation,
and nothing is read back to the host before the run ends (except for the progress bar).

Loss and gradient. Every MSE problem's loss is a function of the order parameters
P_f = T_fᵀW_f, U_f = W_fᵀW_f and the zero model's loss L_ref (DESIGN §3):

    vector         ½‖a − x‖²        = L_ref − P + ½U
    factorization  ½‖ABᵀ − XYᵀ‖²    = L_ref − ⟨P_X,P_Y⟩ + ½⟨U_X,U_Y⟩
    attention      ½‖M⊗N − M̃⊗Ñ‖²  = L_ref − ⟨P_Q,P_K⟩⟨P_O,P_V⟩ + ½⟨U_Q,U_K⟩⟨U_O,U_V⟩

(⟨·,·⟩ the Frobenius inner product), so the gradient is the chain rule through them,
∂L/∂W_f = T_f ∂L/∂P_f + W_f (∂L/∂U_f + ∂L/∂U_fᵀ): four small batched matmuls a step, never the
n x n residual. Cross-entropy (factorization only): L = KL(softmax(vec C) ‖ softmax(vec Z)),
Z = XYᵀ, with ∂L/∂Z = softmax(vec Z) − softmax(vec C), ∂L/∂X = (∂L/∂Z)Y, ∂L/∂Y = (∂L/∂Z)ᵀX.
These analytic gradients are checked against autograd in the tests. The loss and the order
parameters are evaluated in float64 from the current parameters whatever the training dtype
(a float32 run's loss is resolved to ~1e-16·L_ref instead of drowning in cancellation at
~1e-7·L_ref); the gradient and all optimizer arithmetic run in the training dtype. The loss
is the data loss, without the decay term ½λ‖θ‖² (as in :mod:`dynamics`).

Time is continuous, t = η·step for each seed (DESIGN §2). The loss is kept at every step
(exact crossing times); the order parameters at :func:`record_steps`. A seed whose loss is
non-finite or above ``DIVERGENCE·L_ref`` stops there (its step size becomes 0); the others
go on, and the result names it with its step and loss.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from dynamics.problems import Factorization, Problem
from dynamics.trajectory import Trajectory

from .optim import OPTIMIZERS, make_optimizer

__all__ = ["DIVERGENCE", "TrainConfig", "TrainResult", "record_steps", "train"]

DIVERGENCE = 1e6  # a seed stops once its loss is non-finite or above DIVERGENCE·L_ref
DTYPES = {"float32": torch.float32, "float64": torch.float64}
F64 = torch.float64


@dataclass
class TrainConfig:
    """How to train. Invalid values raise ``ValueError`` with one line naming the field.

    Attributes:
        optimizer: ``sgd``, ``momentum`` (SGD with μ = ``momentum``, 0.9 if left at 0),
            ``adam`` or ``adamw`` (update equations in :mod:`validation.optim`).
        lr: step size η (t = η·step), or one η per spec (a batched η sweep).
        steps: number of updates; the loss is known at steps 0..steps.
        momentum: heavy-ball μ of SGD (dampening 0, nesterov False).
        betas, eps: Adam's (β₁, β₂) and ε.
        weight_decay: λ (coupled L2 for SGD/Adam, decoupled for AdamW); None: each spec's.
        loss: ``mse`` or ``ce`` (factorization only); None: each spec's.
        dtype: ``float32`` or ``float64`` (parameters, gradients, optimizer state).
        device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``.
        record: ``log`` (order parameters at :func:`record_steps`) or ``all`` (every step).
        progress: show a tqdm bar (only when stderr is a terminal).
    """

    optimizer: str = "sgd"
    lr: float | Sequence[float] = 0.01
    steps: int = 1000
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float | None = None
    loss: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    record: str = "log"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown {self.optimizer!r} "
                             f"(expected one of {', '.join(OPTIMIZERS)})")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps: must be an integer >= 1, got {self.steps!r}")
        self.steps = int(self.steps)
        lrs = np.asarray(self.lr, dtype=np.float64)
        if lrs.ndim > 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
            raise ValueError(f"lr: must be a finite number > 0 or a list of them, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if self.optimizer in ("adam", "adamw") and self.momentum:
            raise ValueError(f"momentum: {self.optimizer} has no momentum (it uses betas)")
        if self.optimizer == "momentum" and not self.momentum:
            self.momentum = 0.9
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps: must be a finite number > 0, got {self.eps!r}")
        wd = self.weight_decay
        if wd is not None and not (np.isfinite(wd) and wd >= 0):
            raise ValueError(f"weight_decay: must be a finite number >= 0, got {wd!r}")
        if self.loss not in (None, "mse", "ce"):
            raise ValueError(f"loss: must be 'mse' or 'ce', got {self.loss!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: must be 'float32' or 'float64', got {self.dtype!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device: must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.record not in ("log", "all"):
            raise ValueError(f"record: must be 'log' or 'all', got {self.record!r}")


@dataclass
class TrainResult:
    """A training run of S seeds (seed = index into the list of specs).

    Attributes:
        trajectories: one :class:`Trajectory` per seed at the record steps, t = η·step,
            ``method`` the optimizer; a diverged seed's ends before its divergence step.
        diverged: ``(seed, step, loss)`` of every seed that diverged.
        seconds: wall time of the training loop (device work included).
        steps_per_second: batched steps per second (each advances all S seeds).
        device, dtype: where and in which dtype it ran.
        config: the configuration.
        final_loss: (S,) loss after the last step (a diverged seed's: at its divergence).
        loss: (S, steps + 1) loss at every step; NaN after a seed's divergence step.
        steps: (R,) the record steps.
        order: ``{factor: (P (S, R, r, k), U (S, R, k, k))}`` recorded order parameters
            P = TᵀW, U = WᵀW (float64).
        params: ``{factor: (S, n, k)}`` parameters after the last step (float64).
        messages: one line per diverged seed.
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
    steps: np.ndarray = field(repr=False)
    order: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    params: dict[str, np.ndarray] = field(repr=False)
    messages: list[str] = field(default_factory=list)

    def crossing_times(
        self, fractions: tuple[float, ...] = (0.5, 0.1, 0.01)
    ) -> list[dict[float, float | None]]:
        """Per seed, t_f from the every-step loss (exact to the step's interpolation)."""
        from dynamics.phases import crossing_times

        out = []
        for traj, loss in zip(self.trajectories, self.loss, strict=True):
            lr = traj.t[1] / traj.steps[1] if traj.t.size > 1 else 0.0
            keep = np.isfinite(loss)
            out.append(crossing_times(lr * np.flatnonzero(keep), loss[keep], traj.l_ref,
                                      fractions))
        return out


def record_steps(steps: int, record: str = "log") -> np.ndarray:
    """Steps at which the order parameters are recorded, sorted and unique.

    ``log``: every step up to 100, about 200 log-spaced and 200 linearly spaced steps up to
    ``steps`` (always 0 and ``steps``); ``all``: every step 0..steps.
    """
    if record == "all":
        return np.arange(steps + 1)
    early = np.arange(min(steps, 100) + 1)
    log = np.rint(np.geomspace(1, steps, 200))
    linear = np.rint(np.linspace(0, steps, 201))
    return np.unique(np.concatenate([early, log, linear, [steps]]).astype(np.int64))


def _inner(a: Tensor, b: Tensor) -> Tensor:
    """Frobenius inner product over the last two axes."""
    return (a * b).sum((-2, -1))


def _vector(p: Tensor, u: Tensor, l_ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """L = ½‖a − x‖² = L_ref − P + ½U;  ∂L/∂P = −1,  ∂L/∂U + ∂L/∂Uᵀ = 1."""
    loss = l_ref - p.flatten(1).sum(1) + 0.5 * u.flatten(1).sum(1)
    return loss, -torch.ones_like(p), torch.ones_like(u)


def _factorization(p: Tensor, u: Tensor, l_ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """L = ½‖ABᵀ − XYᵀ‖² = L_ref − ⟨P_X,P_Y⟩ + ½⟨U_X,U_Y⟩.

    ∂L/∂P_X = −P_Y and ∂L/∂U_X + ∂L/∂U_Xᵀ = U_Y (likewise with X and Y swapped).
    """
    loss = l_ref - _inner(p[:, 0], p[:, 1]) + 0.5 * _inner(u[:, 0], u[:, 1])
    return loss, -p.flip(1), u.flip(1)


def _attention(p: Tensor, u: Tensor, l_ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """L = ½‖M⊗N − M̃⊗Ñ‖² = L_ref − ⟨M,M̃⟩⟨N,Ñ⟩ + ½‖M̃‖²‖Ñ‖².

    With ⟨M,M̃⟩ = ⟨P_Q,P_K⟩, ‖M̃‖² = ⟨U_Q,U_K⟩, ⟨N,Ñ⟩ = ⟨P_O,P_V⟩, ‖Ñ‖² = ⟨U_O,U_V⟩:
    ∂L/∂P_Q = −⟨N,Ñ⟩P_K and ∂L/∂U_Q + ∂L/∂U_Qᵀ = ‖Ñ‖²U_K (likewise for K, O, V).
    """
    overlap = _inner(p[:, 0::2], p[:, 1::2])  # (S, 2): ⟨M,M̃⟩, ⟨N,Ñ⟩
    norm = _inner(u[:, 0::2], u[:, 1::2])  # (S, 2): ‖M̃‖², ‖Ñ‖²
    loss = l_ref - overlap.prod(1) + 0.5 * norm.prod(1)
    other, partner = [1, 1, 0, 0], [1, 0, 3, 2]  # per factor Q, K, O, V
    return (loss, -overlap[:, other, None, None] * p[:, partner],
            norm[:, other, None, None] * u[:, partner])


MSE = {"vector": _vector, "factorization": _factorization, "attention": _attention}


class _Batch:
    """S specs of one shape on a device: targets T (S, F, n, r), parameters w (S, F, n, k)."""

    def __init__(self, specs: Sequence[Problem], device: torch.device, dtype: torch.dtype):
        factors = [list(spec.factors().values()) for spec in specs]
        self.t64 = torch.tensor(np.array([[t for t, _ in fs] for fs in factors]), dtype=F64,
                                device=device)
        self.t = self.t64.to(dtype)
        self.w = torch.tensor(np.array([[w for _, w in fs] for fs in factors]), dtype=dtype,
                              device=device)
        self.l_ref = torch.tensor([spec.l_ref for spec in specs], dtype=F64, device=device)
        self.mse = MSE[specs[0].kind] if getattr(specs[0], "loss", "mse") == "mse" else None
        if self.mse is None:  # cross-entropy: log softmax(vec C), C = ABᵀ
            self.log_p = torch.log_softmax((self.t64[:, 0] @ self.t64[:, 1].mT).flatten(1), 1)
            self.p = self.log_p.exp()

    def evaluate(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Loss (S,) and P, U (float64), ∂L/∂w (S, F, n, k) in the training dtype."""
        w64 = self.w.to(F64)
        p, u = self.t64.mT @ w64, w64.mT @ w64
        if self.mse is None:
            loss, grad = self._cross_entropy(w64)
        else:
            loss, dp, du = self.mse(p, u, self.l_ref)
            grad = self.t @ dp.to(self.w.dtype) + self.w @ du.to(self.w.dtype)
        return loss, grad, p, u

    def _cross_entropy(self, w64: Tensor) -> tuple[Tensor, Tensor]:
        """KL(softmax(vec C) ‖ softmax(vec Z)), Z = XYᵀ, and its gradient (X, Y)."""
        log_q = torch.log_softmax((w64[:, 0] @ w64[:, 1].mT).flatten(1), 1)
        loss = (self.p * (self.log_p - log_q)).sum(1)
        dz = (log_q.exp() - self.p).view(-1, self.w.shape[2], self.w.shape[2]).to(self.w.dtype)
        x, y = self.w[:, 0], self.w[:, 1]
        return loss, torch.stack((dz @ y, dz.mT @ x), 1)


def _loop(batch: _Batch, optimizer, lr: Tensor, limit: Tensor, steps: int,
          rec: np.ndarray, progress: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The training loop. Returns the loss (steps + 1, S) and P, U at the record steps."""
    (n_seeds, n_factors, _, k), r = batch.w.shape, batch.t.shape[-1]
    on_device = {"dtype": F64, "device": batch.w.device}
    losses = torch.empty(steps + 1, n_seeds, **on_device)
    ps = torch.empty(len(rec), n_seeds, n_factors, r, k, **on_device)
    us = torch.empty(len(rec), n_seeds, n_factors, k, k, **on_device)
    slot = {int(step): i for i, step in enumerate(rec)}
    every = max(1, steps // 100)
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    for step in range(steps + 1):
        loss, grad, p, u = batch.evaluate()
        losses[step] = loss
        if step in slot:
            ps[slot[step]], us[slot[step]] = p, u
        if step == steps:
            break
        optimizer.step(grad, lr * (loss <= limit).view(-1, 1, 1, 1))  # diverged: η = 0
        if progress and (step + 1) % every == 0:
            bar.update(every)
            bar.set_postfix(loss=f"{losses[step].nanmean().item():.4g}")
    bar.close()
    return losses, ps, us


def _prepare(specs: Problem | Sequence[Problem], config: TrainConfig) -> list[Problem]:
    """The specs with the config's loss and weight decay applied; one shape for all."""
    specs = [specs] if not isinstance(specs, Sequence) else list(specs)
    if not specs:
        raise ValueError("specs: need at least one problem spec")
    out = []
    for spec in specs:
        if config.loss == "ce" and not isinstance(spec, Factorization):
            raise ValueError(f"loss: cross-entropy needs a factorization spec, not {spec.kind!r}")
        changes: dict[str, object] = {}
        if config.weight_decay is not None:
            changes["weight_decay"] = config.weight_decay
        if config.loss is not None and isinstance(spec, Factorization):
            changes["loss"] = config.loss
        out.append(dataclasses.replace(spec, **changes) if changes else spec)
    shape = [(s.kind, getattr(s, "loss", "mse"), [w.shape + t.shape for t, w in
              s.factors().values()]) for s in out]
    if any(sh != shape[0] for sh in shape):
        bad = next(i for i, sh in enumerate(shape) if sh != shape[0])
        raise ValueError(f"specs: spec {bad} ({out[bad].describe()}) does not match spec 0 "
                         f"({out[0].describe()}) in kind, loss or shape")
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return torch.device(name)


def train(specs: Problem | Sequence[Problem], config: TrainConfig | None = None) -> TrainResult:
    """Train ``specs`` (one spec, or S specs of one shape trained at once) with ``config``.

    Every seed follows θ_{m+1} = θ_m − η·(optimizer direction at θ_m) (:mod:`validation.optim`)
    from the spec's initial point; sample m is at t = η·m. Same specs, config, device and
    dtype give bitwise identical results. Raises ``ValueError`` (one line) on an invalid
    configuration, mismatched specs, or an unavailable device.
    """
    config = config or TrainConfig()
    specs = _prepare(specs, config)
    lr_host = np.broadcast_to(np.asarray(config.lr, dtype=np.float64), (len(specs),)) \
        if np.ndim(config.lr) == 0 or len(config.lr) == len(specs) else None
    if lr_host is None:
        raise ValueError(f"lr: got {len(config.lr)} step sizes for {len(specs)} specs")
    device, dtype = _device(config.device), DTYPES[config.dtype]
    rec = record_steps(config.steps, config.record)
    show = config.progress and sys.stderr.isatty()
    with torch.inference_mode():
        batch = _Batch(specs, device, dtype)
        lr = torch.tensor(lr_host, dtype=dtype, device=device).view(-1, 1, 1, 1)
        decay = np.array([spec.weight_decay for spec in specs])
        wd = torch.tensor(decay, dtype=dtype, device=device).view(-1, 1, 1, 1) \
            if decay.any() else None
        optimizer = make_optimizer(config.optimizer, batch.w, config.momentum, config.betas,
                                   config.eps, wd)
        start = time.perf_counter()
        losses, ps, us = _loop(batch, optimizer, lr, DIVERGENCE * batch.l_ref, config.steps,
                               rec, show)
        loss = losses.T.cpu().numpy()
        seconds = time.perf_counter() - start
        ps = ps.transpose(0, 1).cpu().numpy()
        us = us.transpose(0, 1).cpu().numpy()
        final = batch.w.to(F64).cpu().numpy()
    return _result(specs, config, lr_host, rec, loss, ps, us, final, seconds, device)


def _result(specs: list[Problem], config: TrainConfig, lr: np.ndarray, rec: np.ndarray,
            loss: np.ndarray, ps: np.ndarray, us: np.ndarray, final: np.ndarray,
            seconds: float, device: torch.device) -> TrainResult:
    """Host-side bookkeeping: divergence, NaN after it, one Trajectory per seed."""
    limit = DIVERGENCE * np.array([spec.l_ref for spec in specs])
    names = list(specs[0].factors())
    diverged, messages, trajectories = [], [], []
    final_loss = loss[:, -1].copy()
    for seed, spec in enumerate(specs):
        bad = np.flatnonzero(~(loss[seed] <= limit[seed]))
        end = int(bad[0]) if bad.size else config.steps + 1
        if bad.size:
            value = float(loss[seed, end])
            diverged.append((seed, end, value))
            messages.append(f"seed {seed} diverged at step {end} (t = {end * lr[seed]:.4g}): "
                            f"loss {value:.4g} (limit {DIVERGENCE:g}·L_ref = {limit[seed]:.4g})")
            loss[seed, end + 1:] = np.nan
            final_loss[seed] = value
        keep = rec < end
        order = {name: (ps[seed, keep, f], us[seed, keep, f]) for f, name in enumerate(names)}
        gram = {name: t.T @ t for name, (t, _) in spec.factors().items()}
        trajectories.append(Trajectory.from_order_parameters(
            lr[seed] * rec[keep], loss[seed, rec[keep]], spec.l_ref, order, gram,
            method=config.optimizer, steps=rec[keep]))
    if messages:
        warnings.warn("; ".join(messages), RuntimeWarning, stacklevel=3)
    return TrainResult(
        trajectories=trajectories, diverged=diverged, seconds=seconds,
        steps_per_second=config.steps / seconds, device=str(device), dtype=config.dtype,
        config=config, final_loss=final_loss, loss=loss, steps=rec,
        order={name: (ps[:, :, f], us[:, :, f]) for f, name in enumerate(names)},
        params={name: final[:, f] for f, name in enumerate(names)}, messages=messages)
