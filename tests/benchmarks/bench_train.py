"""Benchmark: batched training (validation.train) against the per-seed loop written by hand.

The hand-written loop is what a researcher writes for one seed at a time: nn.Parameter X and
Y, ``torch.optim.SGD``, ``loss.item()`` every step. Both train the same factorization specs
(½‖ABᵀ − XYᵀ‖², n x n target of rank r, model rank k) with SGD in the same process; the table
reports seed-steps per second (one seed advanced by one step) and their ratio. The baseline
runs fewer steps (``--baseline-steps``) and at most 10 seeds: its rate per seed-step does not
depend on either. Each is timed ``--repeats`` times, alternating, and its best time is kept
(the machine may be shared). One torch thread by default: these per-seed matrices are too
small to gain from more, and a busy machine makes multi-threaded BLAS stall. Run as, e.g.

    python tests/benchmarks/bench_train.py
    python tests/benchmarks/bench_train.py --device cuda --seeds 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dynamics.problems import Factorization
from validation.train import TrainConfig, train


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
                        help="torch.set_num_threads for both runs (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    parser.add_argument("--optimizer", default="sgd", help="optimizer of the batched run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    specs = [Factorization.sample(args.n, args.rank, init=1e-3, seed=s)
             for s in range(args.seeds)]

    base_seeds = specs[: min(args.seeds, 10)]
    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                         dtype=args.dtype, device=args.device)
    hand_loop(base_seeds[0], args.lr, 50, args.device, dtype)  # warm-up
    train(specs[:1], TrainConfig(**{**config.__dict__, "steps": 50}))
    base_seconds = seconds = wall = float("inf")
    for _ in range(args.repeats):  # alternate the two; keep each one's best time
        start = time.perf_counter()
        hand = [hand_loop(s, args.lr, args.baseline_steps, args.device, dtype)
                for s in base_seeds]
        base_seconds = min(base_seconds, time.perf_counter() - start)
        start = time.perf_counter()
        result = train(specs, config)
        wall = min(wall, time.perf_counter() - start)
        seconds = min(seconds, result.seconds)
    base_rate = len(base_seeds) * args.baseline_steps / base_seconds
    loop_rate = args.seeds * args.steps / seconds
    wall_rate = args.seeds * args.steps / wall

    rows = [
        ("per-seed loop (hand)", len(base_seeds), args.baseline_steps, base_seconds, base_rate),
        ("batched train, loop", args.seeds, args.steps, seconds, loop_rate),
        ("batched train, wall", args.seeds, args.steps, wall, wall_rate),
    ]
    print(f"factorization n={args.n} r=k={args.rank}, lr={args.lr}, {args.dtype}, "
          f"device={result.device}, torch threads={torch.get_num_threads()}, "
          f"batched optimizer={args.optimizer}")
    print(f"{'method':<22} {'seeds':>6} {'steps':>7} {'seconds':>9} {'seed-steps/s':>13} "
          f"{'ratio':>7}")
    for name, seeds, steps, seconds, rate in rows:
        print(f"{name:<22} {seeds:>6} {steps:>7} {seconds:>9.3f} {rate:>13.4g} "
              f"{rate / base_rate:>6.1f}x")
    if args.optimizer == "sgd":
        n = min(args.baseline_steps, args.steps)
        diff = max(float(np.max(np.abs(result.loss[s, :n] - h[:n]) / h[0]))
                   for s, h in enumerate(hand))
        print(f"same curves: max |L_batched − L_hand| / L_ref over {n} steps = {diff:.2e}")


if __name__ == "__main__":
    main()
