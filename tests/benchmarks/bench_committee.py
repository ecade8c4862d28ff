"""Benchmark: committee machines (issue 20). Not a test; prints ratios measured in this run.

1. The reduced online ODE (K = M = 4, erf, η = 0.5, N = 1000, init 1e-3) integrated to past
   its plateau: wall time and the number of right-hand-side evaluations; beside it the same
   ODE for K = M = 2 (the baseline of the same run).
2. The batched trainer (validation.committee.train, 8 seeds at once) against a per-seed loop
   written here the way one writes it for one seed (nn.Parameter, autograd, torch.optim.SGD,
   fresh x each step), both at N = 1000, K = M = 2, erf: seed-steps per second and their ratio.

    python tests/benchmarks/bench_committee.py [--steps 20000] [--baseline-steps 3000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from dynamics.models import committee as cm
from validation.committee import train


def per_seed_loop(spec: cm.CommitteeSpec, lr: float, steps: int, seed: int) -> float:
    """One seed at a time: autograd + torch.optim.SGD on ½(φ* − φ)², one fresh x per step."""
    gen = torch.Generator().manual_seed(seed)
    n = spec.N
    w = torch.nn.Parameter(torch.tensor(spec.W0, dtype=torch.float32))
    wt = torch.tensor(spec.Wt, dtype=torch.float32)
    a = torch.tensor(spec.a, dtype=torch.float32)
    v = torch.tensor(spec.v0, dtype=torch.float32)
    opt = torch.optim.SGD([w], lr=lr)

    def g(z):
        return torch.erf(z / math.sqrt(2))

    for _ in range(steps):
        x = torch.randn(n, generator=gen)
        loss = 0.5 * (g(wt @ x / math.sqrt(n)) @ a - g(w @ x / math.sqrt(n)) @ v) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--baseline-steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)

    for k in (2, 4):
        spec = cm.sample(k, k, 1000, "erf", 1e-3, 0)
        calls = 0
        model = spec.model

        start = time.perf_counter()
        t_end = 400.0 if k == 2 else 1200.0
        orig = model.online_term

        def counted(*a, orig=orig, **kw):
            nonlocal calls
            calls += 1
            return orig(*a, **kw)

        object.__setattr__(model, "online_term", counted)
        try:
            curve = cm.integrate(spec, t_end, "online", lr=0.5, points=2000)
        finally:
            object.__delattr__(model, "online_term")
        seconds = time.perf_counter() - start
        print(f"online ODE K = M = {k}: t_end {t_end:g}, ε {curve.loss[0]:.3g} -> "
              f"{curve.loss[-1]:.3g}, {calls} RHS calls, {seconds:.2f} s "
              f"({1e3 * seconds / max(calls, 1):.2f} ms per call)")

    spec = cm.sample(2, 2, 1000, "erf", 1e-3, 0)
    start = time.perf_counter()
    train(spec, 0.5, args.steps, seeds=args.seeds)
    batched = args.steps * args.seeds / (time.perf_counter() - start)
    start = time.perf_counter()
    per_seed_loop(spec, 0.5, args.baseline_steps, 0)
    loop = args.baseline_steps / (time.perf_counter() - start)
    print(f"trainer N = 1000, {args.seeds} seeds batched: {batched:.4g} seed-steps/s; per-seed "
          f"loop: {loop:.4g} seed-steps/s; ratio {batched / loop:.3g}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
