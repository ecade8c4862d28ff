"""Cold vs warm start of :mod:`dynamics.symbolic` in fresh processes.

Each measurement runs a new Python process with ``SCURVE_CACHE`` pointing at a directory that
is empty (cold: every object is derived by SymPy and compiled) or filled by the previous run
(warm: the generated source is read from disk and executed). Wall times include interpreter
start-up and imports; ``import`` alone is measured as the baseline.

    python tests/benchmarks/bench_symbolic_cache.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, time
start = time.perf_counter()
from dynamics import symbolic as S
from dynamics.catalog import ATTENTION, FACTORIZATION, VECTOR, chain
imported = time.perf_counter()
which = sys.argv[1]
if which == "all":
    models = (VECTOR, FACTORIZATION, ATTENTION, chain(3))
    objs = [S.full_flow(k, modified=m) for k in models for m in (False, True)]
    objs += [S.full_flow("factorization", "ce")]
    objs += [S.reduced_flow(k, m) for k in models for m in (False, True)]
    objs += [S.reduced_gd(k, m) for k in models for m in (False, True)]
    objs += [S.training_program(k) for k in models]
    objs += [S.training_program("factorization", "ce")]
elif which == "one":
    objs = [S.reduced_flow("attention", modified=True)]
else:
    objs = []
done = time.perf_counter()
print(json.dumps({"import": imported - start, "build": done - imported,
                  "derived": sum(o.derived for o in objs), "objects": len(objs)}))
"""


def run(which: str, cache: str) -> dict:
    env = dict(os.environ, SCURVE_CACHE=cache, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    result["wall"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'case':<34}{'wall s':>9}{'import s':>10}{'build s':>9}{'derived':>9}")
    for which in ("none", "one", "all"):
        for rep in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    r = run(which, cache)
                    label = f"{which} objects, {state} cache (#{rep + 1})"
                    print(
                        f"{label:<34}{r['wall']:9.2f}{r['import']:10.2f}{r['build']:9.3f}"
                        f"{r['derived']:>5}/{r['objects']}"
                    )


if __name__ == "__main__":
    main()
