"""Time of the sign flow (Adam's small-step limit) on the spec of its bug report, as a ratio to
the gradient flow of the same spec.

The spec (``scurve sample factorization --n 100 --rank 3 --model-rank 3 --init 1e-3 --seed
1``) made the sign flow run > 5 minutes under ``solve_ivp`` (``dynamics.integrate``, "The sign
flow"); sign descent with a vanishing relative step takes about a second. Correctness of both is
tested in ``tests/dynamics/test_integrate.py``; this script only times them.

    python tests/benchmarks/bench_sign_flow.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from dynamics.integrate import predict
from dynamics.methods import Flow, Method, Sign
from dynamics.problems import Factorization


def _seconds(spec: Factorization, method: Method, repeat: int) -> tuple[float, int]:
    predict(spec, method)  # warm-up: derivations from the cache, code paths loaded
    times, steps = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        traj = predict(spec, method)
        times.append(time.perf_counter() - start)
        steps = traj.t.size
    return statistics.median(times), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec = Factorization.sample(100, 3, model_rank=3, init=1e-3, seed=1)
    sign, kept = _seconds(spec, Sign(), args.repeat)
    flow, _ = _seconds(spec, Flow(), args.repeat)
    print(f"{spec.describe()}; median of {args.repeat}")
    print(f"sign flow (sign descent, {kept} samples kept): {sign:.3f} s")
    print(f"gradient flow (reduced, DOP853):              {flow:.3f} s")
    print(f"sign / flow: {sign / flow:.2f}x  (the sign flow under solve_ivp: > 300 s)")


if __name__ == "__main__":
    main()
