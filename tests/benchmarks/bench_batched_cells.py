"""Benchmark: a batch of the report's training cells (:func:`figures.sweep.run_cells`, what the
SGD/Adam grids of sections n-100, scaling and optimizers now run) against the job it replaced
(one trainer call on the same specs and a summary per spec,
``summarize(traj, t, loss)``), in this process, CPU seconds (``time.process_time``), repeated
and alternated so that a shared machine's load hits both alike; read the ratio.

    python tests/benchmarks/bench_batched_cells.py                      # rank 100, Adam
    python tests/benchmarks/bench_batched_cells.py --optimizer sgd --lr 0.004 --steps 10000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from figures.reporting.jobs import make_spec, summarize
from figures.sweep import Axis, plan, run_cells
from validation.training import TrainConfig, train

SIGMAS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    configs = [config for _, config in plan(
        "factorization", [Axis("init", SIGMAS)], seeds=seeds, theories=(),
        train=args.optimizer, steps=args.steps, record=True, train_record="log",
        defaults={"n": args.n, "rank": args.rank, "lr": args.lr}).jobs]
    specs = [{"kind": "factorization", "n": args.n, "rank": args.rank, "init": s, "seed": k}
             for s in SIGMAS for k in seeds]

    def job() -> None:  # the job the cells replaced (figures.reporting.jobs.job_train)
        result = train([make_spec(s) for s in specs],
                       TrainConfig(optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                                   dtype="float64", device="cpu"))
        [summarize(traj, t, loss) for traj, loss, t in
         zip(result.trajectories, result.loss, result.t, strict=True)]

    def cells() -> None:
        run_cells(configs)

    times: dict[str, list[float]] = {"job": [], "cells": []}
    for _ in range(args.repeats):
        for name, fn in (("job", job), ("cells", cells)):
            started = time.process_time()
            fn()
            times[name].append(time.process_time() - started)
    job_s, cells_s = (float(np.median(times[k])) for k in ("job", "cells"))
    print(f"{len(configs)} cells (n = {args.n}, rank {args.rank}, {args.optimizer} η = "
          f"{args.lr:g}, {args.steps} steps), median of {args.repeats} CPU-s: job {job_s:.2f}, "
          f"batched cells {cells_s:.2f} (ratio {cells_s / job_s:.3f})")
    print(f"  all: job {np.round(times['job'], 2)}, cells {np.round(times['cells'], 2)}")


if __name__ == "__main__":
    main()
