"""Issue 20, the N-sweep question, theory isolated from finite-N noise: the online ODE (η = 1,
K = M = 2, erf, init σ = 0.1) started from exact draws of a random start's (Q, R) at each N
(``sample_state``: no N-dimensional rows, so N can reach 10⁶), the same teacher projections z
per seed at every N (δ₀ ∝ N^{-1/2} exactly per seed). Escape time (ε ≤ ½ε* of the plateau)
against ln N; per-seed fitted slopes over three ranges, beside 1/(2λ) of the plateau P and of
the coinciding-students point D the path passes first (tests/benchmarks/committee_fixed_points.py).

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python tests/benchmarks/nsweep_committee_ode.py [SEEDS]``.
Measured 2026-12-05 (24 seeds, ≈ 4 min on one loaded core): mean t_esc 81.9, 87.0, 92.1, 97.4,
102.5, 113.1, 123.8, 134.6, 145.6 at N = 250, 500, 1000, 2000, 4000, 16 000, 64 000, 256 000,
1 024 000; slope 7.46 ± 0.04 (N = 250…4000), 7.62 ± 0.03 (1000…64 000), 7.76 ± 0.03
(4000…1 024 000) against 1/(2λ) = 8.45 (P) and 6.68 (D). Before the plateau was located at P,
this script compared with D's 6.68 and reported 8.30 ± 1.0 (64 uncoupled seeds)."""

import sys

import numpy as np

from dynamics.models import committee as cm

NS = (250, 500, 1000, 2000, 4000, 16_000, 64_000, 256_000, 1_024_000)


def main(seeds: int = 24, lr: float = 1.0, sigma: float = 0.1) -> None:
    spec = cm.sample(2, 2, 50, "erf", init=sigma, seed=0)
    p = cm.plateau(spec, lr=lr)
    d = cm.plateau(spec, np.array([0.353] * 3 + [0.414] * 4), lr=lr)
    print(f"plateau P: ε* {p.level:.6f} λ {p.rate:.5f}; coinciding D: ε {d.level:.6f} "
          f"λ {d.rate:.5f}")
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(seeds, 2, 2))
    res = np.full((len(NS), seeds), np.nan)
    for i, n in enumerate(NS):
        for s in range(seeds):
            q, r = cm.sample_state(2, 2, n, sigma, rng, z=zs[s])
            c = cm.integrate(spec, 500, "online", lr=lr, y0=spec.model.pack(q, r, spec.v0),
                             points=2500)
            e = c.escape_time(p.level)
            res[i, s] = np.nan if e is None else e
        print(f"N={n} t_esc {np.nanmean(res[i]):.2f} ± "
              f"{np.nanstd(res[i], ddof=1) / np.sqrt(seeds):.2f}", flush=True)
    x = np.log(NS)
    for a, b in ((0, 5), (2, 7), (4, 9)):
        sl = np.polyfit(x[a:b], res[a:b], 1)[0]
        print(f"N = {NS[a]}…{NS[b - 1]}: slope {sl.mean():.2f} ± "
              f"{sl.std(ddof=1) / np.sqrt(seeds):.2f} against 1/(2λ) = {1 / (2 * p.rate):.2f} "
              f"(plateau), {1 / (2 * d.rate):.2f} (students coincide)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
