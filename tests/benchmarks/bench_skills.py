"""Benchmark: abrupt emergence on the ``skills`` task (validation.skills) under the mean loss.

Trains ``make_task("skills", seed)`` with the shared loop (``validation.tasks.train_task``)
for each seed and reports, per skill g:

* plateau: the step at which ℓ_g first falls below 0.9 ℓ_g(0) (the loss stays within 10 % of
  its start until then);
* drop: the steps from 0.9 ℓ_g(0) to 0.2 ℓ_g(0);
* plateau/drop, the emergence time t_half (half the group's own drop,
  :func:`validation.emergence.group_emergence`) and the spread t_last/t_first;

crossings interpolated between the recorded steps (:func:`validation.emergence.crossing_time`).
The acceptance target is a median plateau/drop ≥ 2. Wall time is the training loop's,
evaluation at the record steps included. Run as

    python tests/benchmarks/bench_skills.py                 # full run, seeds 0 1 2
    python tests/benchmarks/bench_skills.py --reduced       # the default report's run
    python tests/benchmarks/bench_skills.py --method grouped --seeds 0
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from validation.emergence import crossing_time, emergence_spread, group_emergence
from validation.skills import SKILLS_FULL, SKILLS_REDUCED
from validation.tasks import make_task, train_task


def plateau_and_drop(steps: np.ndarray, group_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: first step with ℓ_g ≤ 0.9 ℓ_g(0), and the steps from there to 0.2 ℓ_g(0)."""
    curves = group_loss.T
    plateau = np.array([crossing_time(steps, c, 0.9 * c[0]) for c in curves])
    end = np.array([crossing_time(steps, c, 0.2 * c[0]) for c in curves])
    return plateau, end - plateau


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="mean")
    parser.add_argument("--reduced", action="store_true", help="the default report's run")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object per seed")
    args = parser.parse_args()
    setting = dict(SKILLS_REDUCED if args.reduced else SKILLS_FULL)
    overrides = setting.pop("task", {})
    if args.steps:
        setting["steps"] = args.steps
    ratios = []
    for seed in args.seeds:
        task = make_task("skills", seed, **overrides)
        result = train_task(task, args.method, seed=seed, **setting)
        plateau, drop = plateau_and_drop(result.time, result.group_loss)
        t_half = group_emergence(result.time, result.group_loss, task.threshold)["t_half"]
        ratio = plateau / drop
        ratios.append(ratio)
        row = {
            "seed": seed,
            "method": args.method,
            "steps": int(result.steps[-1]),
            "wall_s": round(result.wall_seconds, 1),
            "plateau": plateau.round(0).tolist(),
            "drop": drop.round(0).tolist(),
            "plateau_to_drop": ratio.round(2).tolist(),
            "emergence_times": t_half.round(0).tolist(),
            "spread": round(emergence_spread(t_half)["ratio"], 2),
            "final_loss": result.group_loss[-1].round(4).tolist(),
            "final_accuracy": result.group_accuracy[-1].round(3).tolist(),
        }
        print(json.dumps(row) if args.json else row, flush=True)
    medians = [np.median(np.where(np.isfinite(r), r, 0.0)) for r in ratios]
    print(f"median plateau/drop per seed (never = 0): {np.round(medians, 2).tolist()}")


if __name__ == "__main__":
    main()
