"""Benchmark: scurve's prediction (exact reduced GD map) against torch training of separate
rank-one linear-attention heads on in-context regression, the paper's rank-sweep setting
D = 8, N = 31, P = 80 000, H = 9, R = 1 (Zhang et al. 2025). Reports the two times, their
ratio (measured in the same run) and the largest relative difference of the drop times.

    python tests/benchmarks/bench_icl.py [--sequences 80000] [--steps 5000] [--seeds 1]

(at σ = 0.02 and η = 0.1/P the first drops of D = 8 fall at t·P ≈ 30–300: 5000 steps = t·P 500;
the whole staircase takes t·P ≈ 5000, 50 000 steps.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.models.icl import sample_icl
from dynamics.phases import analyze
from validation.training import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--context", type=int, default=31)
    ap.add_argument("--sequences", type=int, default=80_000)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--init", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--eta-p", type=float, default=0.1, help="η·P")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    lr = a.eta_p / a.sequences  # η ∝ 1/P keeps the curve in t·P
    specs = [sample_icl(a.dim, a.context, a.sequences, a.heads, init=a.init, seed=s,
                        separate=True) for s in range(a.seeds)]
    t0 = time.perf_counter()
    preds = [predict(s, Discrete(lr), t_max=lr * a.steps) for s in specs]
    t_pred = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = train(specs, TrainConfig(lr=lr, steps=a.steps, dtype="float32", device=a.device,
                                   record="all"))
    t_train = time.perf_counter() - t0
    worst, compared = 0.0, 0
    for i, s in enumerate(specs):
        want = [d.time for d in analyze(run.t[i], run.loss[i], s.l_ref).drops]
        got = [d.time for d in analyze(preds[i].t, preds[i].loss, s.l_ref).drops]
        print(f"seed {i}: drops predicted {np.round(got, 6)}, trained {np.round(want, 6)}")
        if len(got) == len(want) and got:
            worst = max(worst, float(np.max(np.abs(np.array(got) / np.array(want) - 1))))
            compared += len(got)
    print(f"predict {t_pred:.2f} s, train {t_train:.2f} s ({a.seeds} seeds, {a.steps} steps); "
          f"train/predict = {t_train / t_pred:.2f}; largest drop-time difference "
          f"{f'{worst:.2e} over {compared} drops' if compared else 'n/a (no drop in the run)'}")


if __name__ == "__main__":
    main()
