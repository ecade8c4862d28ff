"""Claim 8 at rank n judged against the Adam ODE: n = r = k = 100, σ = 1, seed 0, η = 1e-3
(the report's rank-n cell where Adam stalls), the ODE (dynamics.adam, streamed) against
torch.optim.Adam in float64 (tests/dynamics/adam_oracle.py), both to t = 6 (6000 steps).

    python tests/benchmarks/adam_rank_n.py [n] [sigma] [t_max]

Prints L/L_ref of both at t = 0.25 … 6, their crossing times, the ODE's wall time and peak
memory (tracemalloc is not used: it slows the run; ru_maxrss), and torch's moment diagnostics:
the median over coordinates of √v̂/|g| (v lagging: > 1 when v still remembers larger past
gradients) and of the effective per-coordinate step |m̂|/(√v̂ + ε) (1 for a sign step).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dynamics.integrate as integrate
from dynamics.integrate import predict
from dynamics.methods import Adam
from dynamics.phases import crossing_times
from dynamics.problems import Factorization

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dynamics"))
from adam_oracle import torch_adam

MARKS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)


def torch_run(spec, lr: float, t_max: float):
    """torch.optim.Adam's losses at every step to t_max, and its moment diagnostics at MARKS."""
    marks = {round(m / lr) for m in MARKS}
    diag = {}

    def inspect(step, opt, params):
        if step in marks and step > 0:
            g = torch.cat([q.grad.ravel() for q in params.values()]).abs()
            st = [opt.state[q] for q in params.values()]
            mh = torch.cat([s["exp_avg"].ravel() for s in st]) / (1 - 0.9**step)
            vh = torch.cat([s["exp_avg_sq"].ravel() for s in st]) / (1 - 0.999**step)
            diag[step * lr] = (float(torch.median(vh.sqrt() / g)),
                               float(torch.median(mh.abs() / (vh.sqrt() + 1e-8))))

    t, loss = torch_adam(spec, lr, round(t_max / lr), inspect=inspect)
    return t, loss, diag


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    sigma = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    t_max = float(sys.argv[3]) if len(sys.argv) > 3 else 6.0
    lr = 1e-3
    spec = Factorization.sample(n=n, rank=n, init=sigma, seed=0)
    started = time.perf_counter()
    t, loss, diag = torch_run(spec, lr, t_max)
    print(f"torch.optim.Adam float64: {time.perf_counter() - started:.1f} s", flush=True)
    integrate.WALL_LIMIT = 6 * 3600.0
    started = time.perf_counter()
    ode = predict(spec, Adam(lr), t_max=t_max)
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"ODE: {wall:.0f} s, peak RSS {rss:.0f} MB, {ode.t.size} samples, t_end {ode.t[-1]:.4g}")
    print(f"n = r = k = {n}, σ = {sigma:g}, seed 0, η = {lr:g}, L_ref = {spec.l_ref:.4g}")
    print("| t | torch L/L_ref | ODE L/L_ref | median √v̂/|g| | median |m̂|/(√v̂+ε) |")
    for m in MARKS:
        if m > t_max:
            break
        lt = float(np.interp(m, t, loss)) / spec.l_ref
        lo = float(np.exp(np.interp(m, ode.t, np.log(ode.loss)))) / spec.l_ref
        d = diag.get(round(m / lr) * lr, (np.nan, np.nan))
        print(f"| {m:g} | {lt:.4g} | {lo:.4g} | {d[0]:.3g} | {d[1]:.3g} |")
    fr = (0.5, 0.1, 0.01)
    print("torch t_f:", crossing_times(t, loss, spec.l_ref, fr))
    print("ODE   t_f:", ode.crossing_times(fr))


if __name__ == "__main__":
    main()
