"""Train: the problem in a spec, for real, with PyTorch; many seeds as one batched computation.

:func:`train` trains exactly the problem in a spec, or S specs of identical shapes (S seeds of
one problem definition, or one spec repeated under a per-seed learning rate), with SGD, SGD
with momentum, Adam or AdamW (:mod:`validation.optim`, torch.optim's update rules). All seeds
advance together: every product is one batched matmul over seeds and factors, every update
one in-place tensor operation, and nothing is read back to the host before the run ends (the
progress bar, when shown, reads the loss every 1 % of the steps).

Loss and gradient. Each factor f keeps Z_f = [T_fᵀ; W_fᵀ], its r target and k learned
vectors as rows. One batched matmul gives all order parameters, Mᵀ_f = W_fᵀZ_fᵀ = [P_fᵀ | U_f]
(P = TᵀW, U = WᵀW), and every MSE loss is a function of them (DESIGN §3):

    vector         ½‖a − x‖²        = L_ref − P + ½U
    factorization  ½‖ABᵀ − XYᵀ‖²    = L_ref − ⟨P_X,P_Y⟩ + ½⟨U_X,U_Y⟩
    attention      ½‖M⊗N − M̃⊗Ñ‖²  = L_ref − ⟨P_Q,P_K⟩⟨P_O,P_V⟩ + ½⟨U_Q,U_K⟩⟨U_O,U_V⟩

(⟨·,·⟩ the Frobenius inner product, L_ref = ½‖target‖²). The chain rule through them is one
more batched matmul: (∂L/∂W_f)ᵀ = D_fᵀZ_f with D_f = [∂L/∂P_f; ∂L/∂U_f + ∂L/∂U_fᵀ], so a step
never forms the n x n residual. Coupled weight decay enters D_f too (λW_fᵀ = λ[0 | I]Z_f), and
plain SGD scales D_f by −η, so its whole step is two batched matmuls and ~8 small in-place
ops. Cross-entropy (factorization only): L = KL(p ‖ q) with p = softmax(vec C),
q = softmax(vec Z), Z = XYᵀ; ∂L/∂Z = q − p, ∂L/∂X = (∂L/∂Z)Y, ∂L/∂Y = (∂L/∂Z)ᵀX. The
tests check these analytic gradients against autograd. The loss is the data loss, without
the decay term ½λ‖θ‖² (as in :mod:`dynamics`).

Precision. Training runs in the training dtype: loss, gradient and update. Because the MSE
loss is a difference of order-parameter terms of size ~L_ref, a float32 loss is resolved only
to ~1e-7·L_ref (it may even dip below 0 near convergence); so at every record step the loss
and the order parameters are measured again in float64 from the current parameters
(~1e-16·L_ref), a side measurement that does not change the run. The trajectories hold these
measurements; ``record="all"`` makes every step one. Between record steps the every-step
loss is the training dtype's (enough for crossing times down to f ~ 1e-5).

Time is continuous, t = η·step for each seed (DESIGN §2). The loss is kept at every step
(exact crossing times); the order parameters at :func:`record_steps`. A seed whose loss is
non-finite or above ``DIVERGENCE·L_ref`` stops there (its step size becomes 0); the others
go on, and the result names it with its step and loss.
"""

from __future__ import annotations

import contextlib
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

from .optim import OPTIMIZERS, SGD, Adam, make_optimizer

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
        loss: (S, steps + 1) loss at every step, in float64 at the record steps and in
            the training dtype between them; NaN after a seed's divergence step.
        lr: (S,) step size η of each seed (its sample m is at t = η·m).
        steps: (R,) the record steps.
        order: ``{factor: (P (S, R, r, k), U (S, R, k, k))}``: P = TᵀW, U = WᵀW at the
            record steps, measured in float64.
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
    lr: np.ndarray = field(repr=False)
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
        for traj, loss, lr in zip(self.trajectories, self.loss, self.lr, strict=True):
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


class _Squares:
    """The MSE objective of S specs, from the order parameters Mᵀ = [Pᵀ | U] of every factor.

    The factors pair into circuits (X with Y; Q with K and O with V; the vector's x with the
    constant 1) and L = L_ref − Π_c⟨P_c,P′_c⟩ + ½Π_c⟨U_c,U′_c⟩, so a factor whose partner is f′
    has Dᵀ = [(∂L/∂P)ᵀ | ∂L/∂U + ∂L/∂Uᵀ] = [−a P_f′ᵀ | b U_f′], where a and b are the products
    of the other circuits' ⟨P,P′⟩ and ⟨U,U′⟩ (1 with a single circuit). The coupled weight decay
    λW = [0 | λI]·Z joins Dᵀ as λ·[0 | I], and a scale s (the step −η of plain SGD) joins it
    too, so that one batched matmul (s·Dᵀ)·Z gives s·(∂L/∂W + λW)ᵀ. All in the dtype of ``z``.
    """

    def __init__(self, z: Tensor, r: int, l_ref: Tensor, decay: Tensor | None):
        self.z, self.r = z, r
        s, self.n_factors, rk, _ = z.shape
        k = rk - r
        on = {"dtype": z.dtype, "device": z.device}
        self.w = z[:, :, r:]
        self.z3, self.w3 = z.flatten(0, 1), z.flatten(0, 1)[:, r:]  # (S·F, ·, n) views
        self.l_ref = l_ref.to(**on)
        self.m = torch.empty(s, self.n_factors, k, rk, **on)  # Mᵀ of the last loss()
        self.d = torch.empty_like(self.m)
        self.g = torch.empty_like(self.w)
        self.sign = torch.tensor([-1.0] * r + [1.0] * k, **on)  # P columns −, U columns +
        # L − L_ref = Σ over one factor of each circuit pair: Mᵀ_f ⊙ Mᵀ_f′ ⊙ (sign · [1 | ½])
        self.weight = (self.sign * torch.tensor([1.0] * r + [0.5] * k, **on)).repeat(k)
        self.pair = torch.empty(s, k * rk, **on)
        self.coef = torch.empty(s, 1, rk, **on)
        eye = torch.cat([torch.zeros(k, r, **on), torch.eye(k, **on)], 1)  # [0 | I]
        self.decay = None if decay is None else decay.to(**on).view(-1, 1, 1) * eye  # (S, k, J)
        self.scaled_decay = None if decay is None else torch.empty_like(self.decay)
        self.ones = torch.ones(s, k, rk, **on)  # the vector's constant partner
        # views made once (a step is a few small ops; making views costs as much as they do)
        self.z3t, self.g3, self.d3 = self.z3.mT, self.g.flatten(0, 1), self.d.flatten(0, 1)
        self.d_f = self.d.unbind(1)
        self.buffer = self.m
        self.views = self._views(self.m)

    def _views(self, m: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """Of Mᵀ (S, F, k, r + k): flattened (S·F, k, r + k); each factor's partner's Mᵀ."""
        partner = [m[:, 1], m[:, 0]] if self.n_factors == 2 else [self.ones]
        return m.flatten(0, 1), partner, self.pair.view_as(m[:, 0])

    def loss(self, out: Tensor, order: Tensor | None = None) -> Tensor:
        """L (S,) into ``out``; Mᵀ (S, F, k, r + k) into ``order`` (else a buffer)."""
        self.m = m = self.buffer if order is None else order
        m3, self.partner, pair = self.views if order is None else self._views(m)
        torch.bmm(self.w3, self.z3t, out=m3)
        if self.n_factors == 1:
            return torch.addmv(self.l_ref, m.flatten(1), self.weight, out=out)
        if self.n_factors == 2:  # pair = Mᵀ_Y ⊙ Mᵀ_X
            torch.mul(self.partner[0], self.partner[1], out=pair)
            return torch.addmv(self.l_ref, self.pair, self.weight, out=out)
        products = m[:, 0::2] * m[:, 1::2]  # (S, 2, k, r + k): circuits (Q, K) and (O, V)
        self.overlap = products[..., : self.r].sum((-2, -1))  # ⟨P_Q,P_K⟩, ⟨P_O,P_V⟩
        self.norm = products[..., self.r :].sum((-2, -1))  # ⟨U_Q,U_K⟩, ⟨U_O,U_V⟩
        loss = self.l_ref - self.overlap.prod(1) + 0.5 * self.norm.prod(1)
        return out.copy_(loss)

    def gradient(self, scale: Tensor | None = None) -> Tensor:
        """s·(∂L/∂W + λW) like ``w`` (S, F, k, n) at the point of the last :meth:`loss`.

        ``scale``: s (S,) per seed, or None for s = 1.
        """
        m, d = self.m, self.d
        coef, decay = self.sign, self.decay
        if scale is not None:
            coef = torch.mul(self.sign, scale.view(-1, 1, 1), out=self.coef)
            if decay is not None:
                decay = torch.mul(decay, scale.view(-1, 1, 1), out=self.scaled_decay)
        if self.n_factors == 4:  # (Q, K, O, V): partner (K, Q, V, O), other circuit's terms
            other = [1, 1, 0, 0]
            coef = coef.view(-1, 1, 1, coef.shape[-1]) * torch.where(
                self.sign < 0, self.overlap[:, other, None, None], self.norm[:, other, None, None])
            partner = m.unflatten(1, (2, 2)).flip(2).flatten(1, 2)
            d = partner * coef if decay is None else torch.addcmul(decay[:, None], partner, coef)
        else:
            # D_f = partner ⊙ coef (+ decay)
            for p, d_f in zip(self.partner, self.d_f, strict=True):
                if decay is None:
                    torch.mul(p, coef, out=d_f)
                else:
                    torch.addcmul(decay, p, coef, out=d_f)
        torch.bmm(d.flatten(0, 1) if d is not self.d else self.d3, self.z3, out=self.g3)
        return self.g


class _CrossEntropy:
    """The cross-entropy objective (factorization): L = KL(p ‖ q), p = softmax(vec ABᵀ),
    q = softmax(vec XYᵀ); ∂L/∂Z = q − p, ∂L/∂X = (∂L/∂Z)Y, ∂L/∂Y = (∂L/∂Z)ᵀX; + λW coupled."""

    def __init__(self, z: Tensor, r: int, decay: Tensor | None):
        self.z, self.r = z, r
        self.w = z[:, :, r:]
        self.z3, self.w3 = z.flatten(0, 1), z.flatten(0, 1)[:, r:]
        t = z[:, :, :r].to(F64)
        self.log_p = torch.log_softmax((t[:, 0].mT @ t[:, 1]).flatten(1), 1).to(z.dtype)
        self.p = self.log_p.exp()
        self.decay = None if decay is None else decay.to(z.dtype).view(-1, 1, 1, 1)

    def loss(self, out: Tensor, order: Tensor | None = None) -> Tensor:
        """L (S,) into ``out``; Mᵀ = [Pᵀ | U] (S, F, k, r + k) into ``order`` if given."""
        log_q = torch.log_softmax((self.w[:, 0].mT @ self.w[:, 1]).flatten(1), 1)
        self.dz = (log_q.exp() - self.p).view(-1, self.w.shape[-1], self.w.shape[-1])
        if order is not None:
            torch.bmm(self.w3, self.z3.mT, out=order.view(-1, *order.shape[2:]))
        return torch.sum(self.p * (self.log_p - log_q), 1, out=out)

    def gradient(self, scale: Tensor | None = None) -> Tensor:
        """s·(∂L/∂W + λW) like ``w`` at the point of the last :meth:`loss` (s = 1 if None)."""
        g = torch.stack((self.w[:, 1] @ self.dz.mT, self.w[:, 0] @ self.dz), 1)
        if self.decay is not None:
            g.addcmul_(self.w, self.decay)
        return g if scale is None else g.mul_(scale.view(-1, 1, 1, 1))


class _Batch:
    """S specs of one shape on a device, as Z = [Tᵀ; Wᵀ] per factor: (S, F, r + k, n).

    The parameters ``w`` (S, F, k, n), the learned vectors as rows, are a view of ``z`` that
    the optimizer updates in place. ``objective`` evaluates loss and gradient in the training
    dtype; ``exact`` measures loss and order parameters in float64 (the same object when
    training in float64; otherwise it works on ``z64``, exact targets and a float64 copy of
    ``w`` made by :meth:`measure`).
    """

    def __init__(self, specs: Sequence[Problem], device: torch.device, dtype: torch.dtype,
                 coupled_decay: bool = True):
        factors = [list(spec.factors().values()) for spec in specs]
        self.z64 = torch.tensor(np.array([[np.concatenate(f, 1).T for f in fs] for fs in factors]),
                                dtype=F64, device=device)
        self.z = self.z64.to(dtype)  # the same tensor when dtype is float64
        self.r = factors[0][0][0].shape[1]
        self.w = self.z[:, :, self.r :]
        self.l_ref = torch.tensor([spec.l_ref for spec in specs], dtype=F64, device=device)
        lam = np.array([spec.weight_decay for spec in specs])
        decay = torch.tensor(lam, dtype=F64, device=device) if coupled_decay and lam.any() \
            else None
        self.cross_entropy = getattr(specs[0], "loss", "mse") == "ce"

        def objective(z: Tensor) -> _Squares | _CrossEntropy:
            if self.cross_entropy:
                return _CrossEntropy(z, self.r, decay)
            return _Squares(z, self.r, self.l_ref, decay)

        self.objective = objective(self.z)
        self.exact = self.objective if dtype == F64 else objective(self.z64)

    def evaluate(self) -> tuple[Tensor, Tensor, Tensor]:
        """Loss (S,), Mᵀ = [Pᵀ | U] (S, F, k, r + k) and ∂L/∂W + λW (coupled decay) like
        ``w``, in the training dtype, at the current point."""
        on = {"dtype": self.z.dtype, "device": self.z.device}
        loss, order = torch.empty(len(self.z), **on), torch.empty(*self.w.shape[:3],
                                                                    self.z.shape[2], **on)
        self.objective.loss(loss, order)
        return loss, order, self.objective.gradient()

    def measure(self, loss: Tensor, order: Tensor) -> None:
        """Loss (S,) and Mᵀ (S, F, k, r + k) in float64 at the current point, into the args."""
        if self.exact is not self.objective:
            self.exact.w.copy_(self.w)
        self.exact.loss(loss, order)


def _loop(batch: _Batch, optimizer: SGD | Adam, lr: Tensor, limit: Tensor, steps: int,
          rec: np.ndarray, progress: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The training loop: loss at every step in the training dtype, (S,) lr and limit.

    Returns the loss (steps + 1, S), and the float64 loss (R, S) and Mᵀ (R, S, F, k, r + k)
    at the record steps. Plain SGD folds −η into the gradient's last matmul (one update op).
    """
    objective, exact, on = batch.objective, batch.exact, {"device": lr.device}
    losses = torch.empty(steps + 1, len(lr), dtype=lr.dtype, **on)
    rec_losses = torch.empty(len(rec), len(lr), dtype=F64, **on)
    orders = torch.empty(len(rec), *batch.w.shape[:3], batch.z.shape[2], dtype=F64, **on)
    alive, scale = torch.empty_like(lr), torch.empty_like(lr)  # reused every step
    slots = {int(step): i for i, step in enumerate(rec)}
    fold = isinstance(optimizer, SGD) and optimizer.linear
    step_size = -lr if fold else lr
    every = max(1, steps // 100)
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    for step in range(steps + 1):
        slot = slots.get(step)
        if slot is not None and exact is objective:  # float64: the step's own evaluation
            loss = objective.loss(losses[step], orders[slot])
            rec_losses[slot] = loss
        else:
            loss = objective.loss(losses[step])
            if slot is not None:
                batch.measure(rec_losses[slot], orders[slot])
        if step == steps:
            break
        torch.le(loss, limit, out=alive)  # 0 once diverged (non-finite or above the limit)
        torch.mul(step_size, alive, out=scale)  # η, or −η when folded; 0 once diverged
        if fold:
            optimizer.apply(objective.gradient(scale))  # θ ← θ − η(∂L/∂θ + λθ)
        else:
            optimizer.step(objective.gradient(), scale.view(-1, 1, 1, 1))
        if progress and (step + 1) % every == 0:
            bar.update(every)
            bar.set_postfix(loss=f"{losses[step].nanmean().item():.4g}")
    bar.update(steps - bar.n)
    bar.close()
    return losses, rec_losses, orders


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


SMALL_WORK = 2**23  # multiply-adds per step below which a CPU run uses one thread


@contextlib.contextmanager
def _threads(batch: _Batch, device: torch.device):
    """One torch CPU thread while a step is small (< SMALL_WORK multiply-adds), then restore.

    A step is a few batched matmuls of ~1e5-1e6 multiply-adds and small ops; splitting them
    over threads gains little, and where the cores are shared, each parallel region can wait
    a whole scheduler tick for a descheduled thread (measured: 10-300x slower on 2 busy
    cores). ``torch.set_num_threads`` is process-wide: the previous value is put back.
    """
    s, f, k, n = batch.w.shape
    work = s * f * k * batch.z.shape[2] * n * 2
    if batch.cross_entropy:
        work += s * n * n * k * 3
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
    lr_host = np.asarray(config.lr, dtype=np.float64)
    if lr_host.ndim == 0:
        lr_host = np.full(len(specs), float(lr_host))
    elif lr_host.size != len(specs):
        raise ValueError(f"lr: got {lr_host.size} step sizes for {len(specs)} specs")
    device, dtype = _device(config.device), DTYPES[config.dtype]
    rec = record_steps(config.steps, config.record)
    show = config.progress and sys.stderr.isatty()
    decoupled = config.optimizer == "adamw"
    with torch.inference_mode():
        batch = _Batch(specs, device, dtype, coupled_decay=not decoupled)
        lr = torch.tensor(lr_host, dtype=dtype, device=device)
        decay = np.array([spec.weight_decay for spec in specs])
        wd = torch.tensor(decay, dtype=dtype, device=device).view(-1, 1, 1, 1) \
            if decoupled and decay.any() else None  # coupled decay is in the gradient
        optimizer = make_optimizer(config.optimizer, batch.w, config.momentum, config.betas,
                                   config.eps, wd)
        limit = (DIVERGENCE * batch.l_ref).to(dtype)
        start = time.perf_counter()
        with _threads(batch, device):
            losses, rec_losses, ms = _loop(batch, optimizer, lr, limit, config.steps, rec, show)
        raw = losses.T.to(F64).cpu().numpy()  # (S, steps + 1), training dtype
        seconds = time.perf_counter() - start
        loss = raw.copy()
        loss[:, rec] = rec_losses.T.cpu().numpy()  # float64 measurements at the record steps
        ms = ms.transpose(0, 1).cpu().numpy()  # (S, R, F, k, r + k) = [Pᵀ | U]
        final = batch.w.mT.to(F64).cpu().numpy()  # (S, F, n, k)
    r = batch.r
    return _result(specs, config, lr_host, limit.to(F64).cpu().numpy(), rec, loss, raw,
                   ms[..., :r].swapaxes(-1, -2), ms[..., r:], final, seconds, device)


def _result(specs: list[Problem], config: TrainConfig, lr: np.ndarray, limit: np.ndarray,
            rec: np.ndarray, loss: np.ndarray, raw: np.ndarray, ps: np.ndarray,
            us: np.ndarray, final: np.ndarray, seconds: float,
            device: torch.device) -> TrainResult:
    """Host-side bookkeeping: divergence (from ``raw``, the loss the loop tested), NaN after
    it, one Trajectory per seed."""
    names = list(specs[0].factors())
    diverged, messages, trajectories = [], [], []
    final_loss = loss[:, -1].copy()
    for seed, spec in enumerate(specs):
        bad = np.flatnonzero(~(raw[seed] <= limit[seed]))
        end = int(bad[0]) if bad.size else config.steps + 1
        if bad.size:
            value = float(raw[seed, end])
            loss[seed, end] = value
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
        config=config, final_loss=final_loss, loss=loss, lr=lr, steps=rec,
        order={name: (ps[:, :, f], us[:, :, f]) for f, name in enumerate(names)},
        params={name: final[:, f] for f, name in enumerate(names)}, messages=messages)
