"""Benchmark: ``scurve sweep`` cells per minute on 1 and 2 local workers, and the sweep
machinery's overhead per cell against calling sample/predict/train directly.

Grid (the issue's): factorization n = 100, r = k = 3, ``--size`` × ``--size`` cells over
init = 1e-3..1e-1 (log) × η = 0.01..0.1, ``--seeds`` seeds, flow + SGD for ``--steps`` steps.
The direct baseline runs the same cells one after another in this process (sample_model,
predict(Flow, t_max = 1.5 η·steps), train with every step recorded) — what a user's loop does.
The sweep trains the init × seed cells of an η as one batch; ``--batch 1`` (one job per cell)
is timed too. Every measurement starts from an empty cache. The machine may be shared: read
the ratios, not the seconds. Run as, e.g.

    python tests/benchmarks/bench_sweep.py                  # the 7 × 7 × 3 grid (long)
    python tests/benchmarks/bench_sweep.py --size 3 --seeds 1 --steps 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from figures.sweep import parse_grid, sweep
from figures.sweeps import default_executor

DIMS = {"n": 100, "r": 3, "k": 3}


def _direct(grid: list[str], seeds: int, steps: int) -> float:
    """Seconds for the same cells by hand: sample, predict flow, train (one process)."""
    import torch

    from dynamics.integrate import predict
    from dynamics.methods import Flow
    from dynamics.problems import sample_model
    from validation.training import TrainConfig, train

    torch.set_num_threads(1)
    started = time.perf_counter()
    for init in parse_grid(grid[0]).values:
        for lr in parse_grid(grid[1]).values:
            for seed in range(seeds):
                spec = sample_model("factorization", DIMS, init=init, seed=seed)
                flow = predict(spec, Flow(), t_max=1.5 * lr * steps)
                result = train(spec, TrainConfig(optimizer="sgd", lr=lr, steps=steps,
                                                 dtype="float64", device="cpu", record="all"))
                flow.phases()
                result.trajectories[0].phases()
    return time.perf_counter() - started


def _swept(grid: list[str], seeds: int, steps: int, workers: int,
           batch: int | None = None) -> float:
    with tempfile.TemporaryDirectory() as cache:
        executor = default_executor(workers)
        try:
            started = time.perf_counter()
            sweep("factorization", grid, dims=DIMS, seeds=seeds, theories=("flow",),
                  train="sgd", steps=steps, executor=executor, cache_dir=cache,
                  batch=batch)
            return time.perf_counter() - started
        finally:
            executor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    grid = [f"init=1e-3..1e-1:{args.size}:log", f"lr=0.01..0.1:{args.size}"]
    cells = args.size * args.size * args.seeds
    direct = _direct(grid, args.seeds, args.steps)
    one = _swept(grid, args.seeds, args.steps, 1)
    two = _swept(grid, args.seeds, args.steps, 2)
    unbatched = _swept(grid, args.seeds, args.steps, 1, batch=1)
    print(f"{args.size}x{args.size} grid x {args.seeds} seeds = {cells} cells, flow + SGD "
          f"{args.steps} steps, factorization n=100 r=k=3")
    for name, seconds in (("direct loop", direct), ("sweep, 1 worker", one),
                          ("sweep, 2 workers", two), ("1 worker, --batch 1", unbatched)):
        print(f"  {name:<18} {seconds:8.1f} s  {60 * cells / seconds:8.1f} cells/min")
    print(f"  overhead per cell (1 worker vs direct): {(one - direct) / cells:+.3f} s "
          f"(ratio {one / direct:.2f}); speed-up 2 vs 1 worker: {one / two:.2f}")
    print(f"  batched training (init × seeds of an η in one job) vs one job per cell, 1 "
          f"worker: {unbatched / one:.2f}x faster")
    print(f"  (one number per cell: {np.round([direct, one, two, unbatched], 1)})")


if __name__ == "__main__":
    main()
