"""Time of the Adam ODE prediction (``dynamics.adam``) against training the same run with
torch.optim.Adam (float64, full batch, one CPU thread, the same initial weights, up to the
ODE's t_0.01), both timed in the same run, and the two t_0.5 side by side.

    python tests/benchmarks/bench_adam_ode.py [--lr 1e-3]

Correctness is tested in ``tests/dynamics/test_adam.py``; this script only times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dynamics.integrate import predict
from dynamics.methods import Adam
from dynamics.problems import sample_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dynamics"))
from adam_oracle import torch_adam

from dynamics.phases import crossing_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for n, r in ((100, 10), (1000, 5)):
        spec = sample_model("factorization", {"n": n, "r": r, "k": r}, init=1e-2, seed=0)
        predict(sample_model("factorization", {"n": 4, "r": 1, "k": 1}, seed=0),
                Adam(args.lr))  # warm-up: derivations from the cache
        start = time.perf_counter()
        traj = predict(spec, Adam(args.lr))
        ode = time.perf_counter() - start
        ct = traj.crossing_times()
        steps = int(ct[0.01] / args.lr) + 1
        start = time.perf_counter()
        t, loss = torch_adam(spec, args.lr, steps)
        train = time.perf_counter() - start
        ce = crossing_times(t, loss, spec.l_ref)
        print(f"{spec.describe()}, η = {args.lr:g}: ODE {ode:.2f} s ({traj.state_size} state "
              f"variables), torch.optim.Adam {steps} steps {train:.2f} s; ODE / training = "
              f"{ode / train:.2f}x; t_0.5 {ct[0.5]:.4g} vs {ce[0.5]:.4g}", flush=True)


if __name__ == "__main__":
    main()
