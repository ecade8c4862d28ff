"""Issue 20, the N-law in training: plateau length of online SGD (the batched torch trainer,
K = M = 2, erf, η = 1, init σ = 0.1) against ln N, with **coupled starts**: seed s has the same
teacher-subspace projections w_k·w*_m/√N = σ z_km at every N (z ~ N(0, 1), so R(0) = σz/√N
and δ₀ ∝ N^{-1/2} exactly), the rest of each row i.i.d. N(0, σ²) and fresh per N — every start
is still a draw of the i.i.d. Gaussian init; only the seed-to-seed spread of ln δ₀ cancels from
the per-seed slopes. Prints per-N mean escape times (ε ≤ ½ε* of the plateau) and the mean of
the per-seed fitted slopes against 1/(2λ) of the plateau.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python tests/benchmarks/nsweep_committee_training.py
[SEEDS] [N ...]``."""

import sys
import time

import numpy as np
import torch

from dynamics.models import committee as cm
from validation.committee import train

SIGMA, LR, T_END = 0.1, 1.0, 170.0


def escape_times(n: int, zs: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    spec = cm.sample(2, 2, n, "erf", init=SIGMA, seed=0)
    w0 = np.stack([cm.sample(2, 2, n, "erf", init=SIGMA, seed=1000 + n + 100 * s + seed,
                             z=z).W0 for s, z in enumerate(zs)])
    steps = round(T_END * n / LR)
    run = train(spec, LR, steps, seeds=len(zs), every=max(1, steps // 1000), w0=w0,
                seed=7 + n + seed)
    esc = [cm.Curve(run.t, run.loss[s], run.t[:, None], "sgd").escape_time(level)
           for s in range(len(zs))]
    return np.array([np.nan if e is None else e for e in esc])


def main(seeds: int = 16, ns: tuple[int, ...] = (250, 500, 1000, 2000, 4000)) -> None:
    torch.set_num_threads(1)
    ref = cm.sample(2, 2, 250, "erf", init=SIGMA, seed=0)
    p = cm.plateau(ref, cm.integrate(ref, 300, "online", lr=LR, points=600), lr=LR)
    zs = np.random.default_rng(0).normal(size=(seeds, 2, 2))
    out = []
    for n in ns:
        t0 = time.process_time()
        out.append(escape_times(n, zs, p.level))
        e = out[-1]
        print(f"N={n}: t_esc {np.nanmean(e):.2f} ± {np.nanstd(e, ddof=1) / np.sqrt(seeds):.2f} "
              f"(sd {np.nanstd(e, ddof=1):.1f}, {np.sum(np.isnan(e))} not escaped, "
              f"{time.process_time() - t0:.0f} CPU-s)", flush=True)
    e = np.array(out)
    x = np.log(ns)
    kept = np.flatnonzero(~np.isnan(e).any(0))  # seeds that escaped at every N
    slopes = np.array([np.polyfit(x, e[:, s], 1)[0] for s in kept])
    print(f"per-seed slope {slopes.mean():.2f} ± {slopes.std(ddof=1) / np.sqrt(kept.size):.2f} "
          f"over the {kept.size} of {seeds} seeds that escaped at every N "
          f"(seed-mean fit {np.polyfit(x, e[:, kept].mean(1), 1)[0]:.2f}) against 1/(2λ) = "
          f"{1 / (2 * p.rate):.2f} (λ = {p.rate:.5f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16,
         tuple(int(a) for a in sys.argv[2:]) or (250, 500, 1000, 2000, 4000))
