"""Benchmark: the generated batched trainer (validation.training) against two trainers by hand.

1. The per-seed loop: what a researcher writes for one seed at a time: nn.Parameter X and Y,
   ``torch.optim.SGD``, ``loss.item()`` every step.
2. The batched autograd loop: all seeds in one tensor, ``torch.optim.SGD``, losses kept on the
   device (target: generated ≥ 10x it).
3. The hand-written batched trainer that validation.training was before it ran the programs
   generated from the model's loss (``_Squares`` & co., copied below, clearly marked).

All train the same factorization specs (½‖ABᵀ − XYᵀ‖², n x n target of rank r,
model rank k) with SGD in the same process; the table reports seed-steps per second (one seed
advanced by one step) and the ratios: generated / hand-written batched (target ≥ 1.0),
generated / autograd batched (target ≥ 10) and generated / per-seed loop (target ≥ 25). The per-seed
loop runs fewer steps (``--baseline-steps``) and at most 10 seeds: its rate per seed-step does not
depend on either. Each is timed ``--repeats`` times, alternating, and its best time is kept
(the machine may be shared). One torch thread by default: these per-seed matrices are too
small to gain from more, and a busy machine makes multi-threaded BLAS stall. Run as, e.g.

    python tests/benchmarks/bench_train.py
    python tests/benchmarks/bench_train.py --device cuda --seeds 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from dynamics.problems import Factorization, Problem
from validation import programs
from validation.optim import SGD, Adam, make_optimizer
from validation.training import (
    DIVERGENCE,
    TrainConfig,
    _Objective,
    limit_threads,
    record_steps,
    train,
)


def hand_loop(spec: Factorization, lr: float, steps: int, device: str, dtype: torch.dtype):
    """One seed: nn.Parameters, torch.optim.SGD, loss.item() every step. Returns the losses."""
    c = torch.tensor(spec.target, dtype=dtype, device=device)
    x = torch.nn.Parameter(torch.tensor(spec.X0, dtype=dtype, device=device))
    y = torch.nn.Parameter(torch.tensor(spec.Y0, dtype=dtype, device=device))
    opt = torch.optim.SGD([x, y], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((c - x @ y.T) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def autograd_batched(specs: Sequence[Factorization], lr: float, steps: int, device: str,
                     dtype: torch.dtype) -> tuple[np.ndarray, float]:
    """All seeds in one tensor: nn.Parameters X, Y of shape (S, n, k), torch.optim.SGD on the
    summed loss Σ_s ½‖C_s − X_s Y_sᵀ‖² (its gradient per seed is that seed's own), losses
    recorded into a preallocated (steps, S) tensor (no per-step sync). Returns (loss (S, steps),
    loop seconds)."""
    c = torch.tensor(np.stack([sp.target for sp in specs]), dtype=dtype, device=device)
    x = torch.nn.Parameter(torch.tensor(np.stack([sp.X0 for sp in specs]), dtype=dtype,
                                        device=device))
    y = torch.nn.Parameter(torch.tensor(np.stack([sp.Y0 for sp in specs]), dtype=dtype,
                                        device=device))
    opt = torch.optim.SGD([x, y], lr=lr)
    losses = torch.empty(steps, len(specs), dtype=dtype, device=device)
    start = time.perf_counter()
    for step in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((c - x @ y.transpose(1, 2)) ** 2).sum(dim=(1, 2))
        loss.sum().backward()
        opt.step()
        losses[step] = loss.detach()
    out = losses.T.to(torch.float64).cpu().numpy()
    return out, time.perf_counter() - start


# =====================================================================================
# BASELINE: the hand-written batched trainer, copied verbatim from validation/training.py at
# commit 81063a6 (before the trainer ran the generated programs), so the comparison stays
# reproducible after its deletion. Trimmed to what this benchmark runs: the MSE objective
# (no cross-entropy class), the thread rule imported from validation.training (the same rule,
# fed the old work count), and ``handwritten_train`` below is the old ``train`` up to the
# end of its timed loop (no TrainResult bookkeeping).
# =====================================================================================

F64 = torch.float64

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
        self.objective = _Squares(self.z, self.r, self.l_ref, decay)
        self.exact = self.objective if dtype == F64 else _Squares(self.z64, self.r, self.l_ref,
                                                                   decay)

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


def handwritten_train(specs, config):
    """The old ``train``'s set-up and timed loop: returns (loss (S, steps + 1), loop seconds)."""
    lr_host = np.asarray(config.lr, dtype=np.float64)
    if lr_host.ndim == 0:
        lr_host = np.full(len(specs), float(lr_host))
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    rec = record_steps(config.steps, config.record)
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
        s, f, k, n = batch.w.shape  # the old rule's work count: two batched matmuls a step
        with limit_threads(s * f * k * batch.z.shape[2] * n * 2, device):
            losses, rec_losses, _ = _loop(batch, optimizer, lr, limit, config.steps, rec, False)
        raw = losses.T.to(F64).cpu().numpy()
        seconds = time.perf_counter() - start
        loss = raw.copy()
        loss[:, rec] = rec_losses.T.cpu().numpy()
    return loss, seconds


# ===================================================================== end of the baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--baseline-steps", type=int, default=1000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads for every run (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    parser.add_argument("--optimizer", default="sgd", help="optimizer of the batched runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    specs = [Factorization.sample(args.n, args.rank, init=1e-3, seed=s)
             for s in range(args.seeds)]

    base_seeds = specs[: min(args.seeds, 10)]
    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                         dtype=args.dtype, device=args.device)
    warm = TrainConfig(**{**config.__dict__, "steps": 50})
    hand_loop(base_seeds[0], args.lr, 50, args.device, dtype)  # warm-up
    autograd_batched(specs, args.lr, 50, args.device, dtype)
    train(specs[:1], warm)
    handwritten_train(specs[:1], TrainConfig(**{**warm.__dict__, "device": "cpu"})
                      if args.device == "auto" else warm)
    base_seconds = seconds = wall = old_seconds = auto_seconds = float("inf")
    for _ in range(args.repeats):  # alternate the three; keep each one's best time
        start = time.perf_counter()
        hand = [hand_loop(s, args.lr, args.baseline_steps, args.device, dtype)
                for s in base_seeds]
        base_seconds = min(base_seconds, time.perf_counter() - start)
        old_loss, old = handwritten_train(specs, config)
        old_seconds = min(old_seconds, old)
        auto_loss, auto = autograd_batched(specs, args.lr, args.baseline_steps, args.device,
                                           dtype)
        auto_seconds = min(auto_seconds, auto)
        start = time.perf_counter()
        result = train(specs, config)
        wall = min(wall, time.perf_counter() - start)
        seconds = min(seconds, result.seconds)
    base_rate = len(base_seeds) * args.baseline_steps / base_seconds
    old_rate = args.seeds * args.steps / old_seconds
    auto_rate = args.seeds * args.baseline_steps / auto_seconds
    loop_rate = args.seeds * args.steps / seconds
    wall_rate = args.seeds * args.steps / wall

    rows = [
        ("per-seed loop (hand)", len(base_seeds), args.baseline_steps, base_seconds, base_rate),
        ("autograd batched", args.seeds, args.baseline_steps, auto_seconds, auto_rate),
        ("hand-written batched", args.seeds, args.steps, old_seconds, old_rate),
        ("generated, loop", args.seeds, args.steps, seconds, loop_rate),
        ("generated, wall", args.seeds, args.steps, wall, wall_rate),
    ]
    print(f"factorization n={args.n} r=k={args.rank}, lr={args.lr}, {args.dtype}, "
          f"device={result.device}, torch threads={torch.get_num_threads()}, "
          f"batched optimizer={args.optimizer}")
    print(f"{'method':<22} {'seeds':>6} {'steps':>7} {'seconds':>9} {'seed-steps/s':>13} "
          f"{'ratio':>7}")
    for name, seeds, steps, secs, rate in rows:
        print(f"{name:<22} {seeds:>6} {steps:>7} {secs:>9.3f} {rate:>13.4g} "
              f"{rate / base_rate:>6.1f}x")
    print(f"generated / hand-written batched = {loop_rate / old_rate:.2f}x (target >= 1.0); "
          f"generated / autograd batched = {loop_rate / auto_rate:.1f}x (target >= 10); "
          f"generated / per-seed loop = {loop_rate / base_rate:.1f}x (target >= 25)")
    compile_ms = []
    with torch.inference_mode():
        for reuse in (False, True):  # the step's plan: products planned, or reused by structure
            if not reuse:
                programs._PLANNED.clear()
            start = time.perf_counter()
            _Objective(specs, torch.device(result.device), dtype, scaled=True)
            compile_ms.append(1e3 * (time.perf_counter() - start))
    step_ms = 1e3 * seconds / args.steps
    print(f"compile (the step and its float64 measurement): {compile_ms[0]:.1f} ms planned, "
          f"{compile_ms[1]:.1f} ms with the products reused = {compile_ms[0] / step_ms:.0f} "
          f"and {compile_ms[1] / step_ms:.0f} steps of the loop")
    diff = float(np.nanmax(np.abs(result.loss - old_loss) / old_loss[:, :1]))
    print(f"same curves: max |L_generated − L_hand-written| / L_ref over {args.steps} steps = "
          f"{diff:.2e}")
    if args.optimizer == "sgd":
        n = min(args.baseline_steps, args.steps)
        diff = max(float(np.max(np.abs(result.loss[s, :n] - h[:n]) / h[0]))
                   for s, h in enumerate(hand))
        print(f"same curves: max |L_generated − L_per-seed| / L_ref over {n} steps = {diff:.2e}")
        diff = float(np.max(np.abs(result.loss[:, :n] - auto_loss[:, :n]) / auto_loss[:, :1]))
        print(f"same curves: max |L_generated − L_autograd batched| / L_ref over {n} steps = "
              f"{diff:.2e}")


if __name__ == "__main__":
    main()
