"""Batched optimizers: torch.optim's update rules for S independent parameter sets at once.

The parameter is one tensor whose leading axis is the seed. The step size η is a tensor that
broadcasts against it (one η per seed, 0 for a frozen seed), so S seeds and a learning-rate
sweep advance in one in-place tensor operation per formula: no loop over seeds, no host
synchronisation. The rules are torch.optim's, hyper-parameter for hyper-parameter, with
g = ∂L/∂θ and λ the weight decay (a per-seed tensor too, or ``None`` for none):

``sgd`` / ``momentum`` (``torch.optim.SGD``, dampening 0, nesterov False)
    g ← g + λθ;  b ← μb + g  (b = g at the first step);  θ ← θ − ηb.   μ = 0: θ ← θ − ηg.
``adam`` (``torch.optim.Adam``, L2 decay coupled into the gradient)
    g ← g + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
    θ ← θ − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)   at step t = 1, 2, ...
``adamw`` (``torch.optim.AdamW``, decoupled decay)
    θ ← θ(1 − ηλ), then the Adam step with λ = 0.

A step of size η advances continuous time by η (t = η·step, README "Conventions"). The updates
run in place on tensors that do not require gradients (or under ``torch.no_grad()``). Plain SGD is
linear in g, so a caller that can scale the gradient's own computation (the trainer folds −η
and λθ into its last matmul) may hand over u = −η(g + λθ) and save the separate update op.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dynamics.errors import UsageError

from .names import OPTIMIZERS

__all__ = ["OPTIMIZERS", "SGD", "Adam", "make_optimizer"]


class SGD:
    """SGD with heavy-ball momentum μ and coupled L2 decay λ (see module docstring)."""

    def __init__(self, param: Tensor, momentum: float = 0.0, weight_decay: Tensor | None = None):
        self.param = param
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.buffer = torch.zeros_like(param) if momentum else None

    def step(self, grad: Tensor, lr: Tensor) -> None:
        """θ ← θ − η·b with b ← μb + g + λθ (b ← g + λθ when μ = 0); ``lr`` broadcasts to θ."""
        if self.weight_decay is not None:
            grad = grad.addcmul(self.param, self.weight_decay)
        if self.buffer is not None:
            grad = self.buffer.mul_(self.momentum).add_(grad)
        self.param.addcmul_(grad, lr, value=-1)

    @property
    def linear(self) -> bool:
        """Whether a step is θ ← θ + u with u = −η(g + λθ) (no momentum): then the caller may
        compute u itself, folding −η and λθ into the gradient's computation, and :meth:`apply`
        it."""
        return self.buffer is None

    def apply(self, update: Tensor) -> None:
        """θ ← θ + u, for u = −η(g + λθ) computed by the caller (only when :attr:`linear`)."""
        self.param.add_(update)


class Adam:
    """Adam (coupled L2 decay) or AdamW (``decoupled=True``); see module docstring."""

    def __init__(
        self,
        param: Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Tensor | None = None,
        decoupled: bool = False,
    ):
        self.param = param
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled = decoupled
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.t = 0

    def step(self, grad: Tensor, lr: Tensor) -> None:
        """One Adam(W) step at t ← t + 1; ``lr`` broadcasts to θ."""
        beta1, beta2 = self.betas
        self.t += 1
        if self.weight_decay is not None:
            if self.decoupled:
                self.param.mul_(1 - lr * self.weight_decay)
            else:
                grad = grad.addcmul(self.param, self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**self.t)).add_(self.eps)
        self.param.addcmul_(self.exp_avg / denom, lr / (1 - beta1**self.t), value=-1)


def make_optimizer(
    name: str,
    param: Tensor,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Tensor | None = None,
) -> SGD | Adam:
    """The batched optimizer ``name`` (one of :data:`OPTIMIZERS`) updating ``param`` in place."""
    if name in ("sgd", "momentum"):
        return SGD(param, momentum, weight_decay)
    if name in ("adam", "adamw"):
        return Adam(param, betas, eps, weight_decay, decoupled=name == "adamw")
    raise UsageError(f"unknown optimizer {name!r} (expected one of {', '.join(OPTIMIZERS)})")
