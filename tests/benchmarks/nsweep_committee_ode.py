"""Issue 20, the N-sweep question, theory isolated from finite-N noise: the online ODE (η = 1,
K = M = 2, erf, init σ = 0.1) started from each seed's own initial order parameters, escape time
(ε ≤ plateau level / 2) against ln N, N = 250…4000; the fitted slope beside 1/(2λ).

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python tests/benchmarks/nsweep_committee_ode.py [SEEDS]``.
Measured 2026-12-05 (64 seeds, 90 s on one core): slope 8.30 (SE ≈ 1.0) against 1/(2λ) = 6.68,
λ = 0.0748; 16 seeds gave 9.33 (SE ≈ 1.7). Not run by pytest (not collected)."""

import sys

import numpy as np

from dynamics.models import committee as cm


def main(seeds: int = 64, lr: float = 1.0,
         ns: tuple[int, ...] = (250, 500, 1000, 2000, 4000)) -> None:
    means, ses = [], []
    for n in ns:
        spec = cm.sample(2, 2, n, "erf", init=0.1, seed=0)
        p = cm.plateau(spec, cm.integrate(spec, 800, "online", lr=lr, points=2000), lr=lr)
        esc = []
        for s in range(seeds):
            own = cm.sample(2, 2, n, "erf", init=0.1, seed=s)
            spx = cm.CommitteeSpec("erf", spec.Wt, spec.a, own.W0, spec.v0)
            esc.append(cm.integrate(spx, 300, "online", lr=lr, points=3000).escape_time(p.level))
        e = np.array(esc, float)
        means.append(e.mean())
        ses.append(e.std(ddof=1) / np.sqrt(seeds))
        print(f"N={n} λ={p.rate:.5f} level={p.level:.6f} t_esc={e.mean():.2f} ± {ses[-1]:.2f}",
              flush=True)
    x = np.log(ns)
    slope = np.polyfit(x, means, 1)[0]
    se = np.sqrt(np.sum(((x - x.mean()) / np.sum((x - x.mean()) ** 2)) ** 2 * np.square(ses)))
    print(f"fitted slope {slope:.2f} ± {se:.2f}  against 1/(2λ) = {1 / (2 * p.rate):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
