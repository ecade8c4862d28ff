"""Benchmark (not collected): the cost of a report claim map run as sweep cells against the
same flows as the report's plain predict job, measured in the same run (a ratio, no wall-clock
assert).

    PYTHONPATH=. OMP_NUM_THREADS=1 python tests/benchmarks/bench_sweep_maps.py

The grid is section 9's full map (weight decay: 4 σ × 7 λ, n = 20, rank 1, flow to t = 400),
each cell once through :func:`figures.reporting.jobs.job_predict` and once through the sweep's
:func:`figures.sweep.run_cell` (``record=True``: the sweep's measurements plus the report's
summary), in one process after both are warmed up (imports), CPU time.
"""

from __future__ import annotations

import time

from figures.reporting.jobs import job_predict
from figures.reporting.sections import weight_decay
from figures.reporting.sections._runs import flow_cell


def main(repeats: int = 2) -> None:
    s = weight_decay.FULL
    specs = [weight_decay._spec(s.n, sigma, lam) for sigma in s.sigmas
             for lam in (0.0, *s.lambdas)]
    cells = [flow_cell(spec, 400.0).jobs[0] for spec in specs]
    job_predict({"spec": specs[0], "method": "flow", "t_max": 400.0})  # warm the imports
    cells[0][0](cells[0][1])
    for _ in range(repeats):
        started = time.process_time()
        for spec in specs:
            job_predict({"spec": spec, "method": "flow", "t_max": 400.0})
        direct = time.process_time() - started
        started = time.process_time()
        for fn, config in cells:
            fn(config)
        swept = time.process_time() - started
        print(f"{len(specs)} cells: job_predict {direct:.2f} s CPU, sweep cells {swept:.2f} s "
              f"CPU, ratio {swept / direct:.3f}")


if __name__ == "__main__":
    main()
