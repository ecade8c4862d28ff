"""Time vs n of the reduced (order-parameter) flow and the full-parameter flow, side by side.

For each n a factorization spec (target rank r = model rank k = 5, Gaussian target with
singular values ≈ 1, init entries N(0, σ²) with σ = 1e-3, seed 0) is sampled and predicted
with ``Flow()`` (reduced: state P, U of size 2(rk + k²), independent of n) and
``Full()`` (all 2nk parameters) until a full run takes longer than ``--full-limit``
seconds or n exceeds ``--full-max-n`` (default 10 000: the full flow's dense output keeps
several copies of the state per step; measured peak RSS 8.5 GB at n = 30 000, 26 s). Then the
dimension-free check of issue #3: the reduced prediction at n = 100 000 against an
*equivalent* n = 1000 problem — the same Gram matrices of [A X] and [B Y], hence the same
order-parameter state — predicted reduced and full.

    python tests/benchmarks/bench_reduced_vs_full.py [--rank 5] [--full-limit 60]

Times are wall-clock seconds of ``predict`` alone (spec sampling listed apart); BLAS threads as
the environment sets them (``OPENBLAS_NUM_THREADS``; on a shared machine 1 is much faster).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from dynamics.integrate import predict
from dynamics.methods import method_from_name
from dynamics.problems import Factorization

SIZES = (100, 300, 1000, 3000, 10_000, 30_000, 100_000)
FRACTIONS = (0.5, 0.1, 0.01)


def timed(spec: Factorization, method: str) -> tuple[float, dict]:
    start = time.perf_counter()
    traj = predict(spec, method_from_name(method))
    return time.perf_counter() - start, traj.crossing_times()


def relative(a: dict, b: dict) -> float:
    return max(abs(a[f] - b[f]) / b[f] for f in FRACTIONS)


def equivalent(spec: Factorization, n: int, seed: int = 0) -> Factorization:
    """A problem in R^n with the Gram matrices of [A X] and [B Y]: [A X] = QR -> Q'R."""
    rng = np.random.default_rng(seed)

    def embed(target: np.ndarray, learned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, r = np.linalg.qr(np.hstack([target, learned]))
        q, _ = np.linalg.qr(rng.standard_normal((n, r.shape[0])))
        both = q @ r
        return both[:, : target.shape[1]], both[:, target.shape[1] :]

    a, x = embed(spec.A, spec.X0)
    b, y = embed(spec.B, spec.Y0)
    return Factorization(A=a, B=b, X0=x, Y0=y, weight_decay=spec.weight_decay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--init", type=float, default=1e-3)
    parser.add_argument("--full-limit", type=float, default=60.0,
                        help="no full runs at larger n once one took longer (s)")
    parser.add_argument("--full-max-n", type=int, default=10_000)
    args = parser.parse_args()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"factorization r = k = {args.rank}, σ = {args.init:g}; OPENBLAS_NUM_THREADS={threads}")
    print(f"{'n':>8} {'params':>9} {'sample s':>9} {'reduced s':>10} {'full s':>8} "
          f"{'t_0.5':>10} {'|Δt_f|/t_f':>11}")
    full_ok = True
    for n in SIZES:
        start = time.perf_counter()
        spec = Factorization.sample(n, args.rank, init=args.init, seed=0)
        sampled = time.perf_counter() - start
        reduced_s, reduced = timed(spec, "flow")
        full_s, diff = "-", "-"
        if full_ok and n <= args.full_max_n:
            seconds, full = timed(spec, "full")
            full_s, diff = f"{seconds:8.2f}", f"{relative(reduced, full):11.1e}"
            full_ok = seconds <= args.full_limit
        print(f"{n:>8} {2 * n * args.rank:>9} {sampled:9.3f} {reduced_s:10.2f} {full_s:>8} "
              f"{reduced[0.5]:10.6f} {diff:>11}")

    huge = Factorization.sample(100_000, args.rank, init=args.init, seed=1)
    small = equivalent(huge, 1000)
    huge_s, huge_c = timed(huge, "flow")
    small_s, small_c = timed(small, "flow")
    full_s, full_c = timed(small, "full")
    print(f"\nn = 100000 reduced ({huge_s:.2f} s) vs the equivalent n = 1000 problem:")
    for label, seconds, crossings in (("reduced", small_s, small_c), ("full   ", full_s, full_c)):
        print(f"  {label} at n = 1000 ({seconds:.2f} s): "
              f"max |Δt_f|/t_f = {relative(huge_c, crossings):.1e}")
    shown = ", ".join(f"t_{f:g} = {huge_c[f]:.10g}" for f in FRACTIONS)
    print(f"  n = 100000, reduced: {shown}")


if __name__ == "__main__":
    main()
