"""``predict(spec, Discrete(lr))`` on a grouped spec: this tree against a baseline tree, in one run.

Issue 17 ("work done again and again"): the group objective was stored as a label and re-parsed
by SymPy on every access, once per GD step (70 % of the run). The spec now holds it parsed.
Each tree runs the same snippet in a fresh interpreter (warm-up run first, then the median of
``--repeat`` timed runs inside that interpreter); the ratio baseline / this tree is reported.

    python tests/benchmarks/bench_grouped_predict.py --baseline /work/main [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SNIPPET = """
import json, statistics, time
from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.problems import sample_modes

spec = sample_modes([1.0, 2.0, 4.0], [0.5, 0.3, 0.2], n=20, hidden=10, init=1e-3,
                    objective="power(q=1)", seed=0)
method = Discrete(lr=0.05)
predict(spec, method, t_max=30.0)  # warm-up: derivations, caches
times = []
for _ in range({repeat}):
    start = time.perf_counter()
    traj = predict(spec, method, t_max=30.0)
    times.append(time.perf_counter() - start)
print(json.dumps({{"seconds": statistics.median(times), "steps": len(traj.t),
                   "final_loss": float(traj.loss[-1])}}))
"""


def _run(tree: Path, repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(repeat=repeat)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[2]
    base, new = _run(args.baseline.resolve(), args.repeat), _run(here, args.repeat)
    print(f"baseline {args.baseline}: {base['seconds']:.3f} s ({base['steps']} points, "
          f"final loss {base['final_loss']:.6g})")
    print(f"this tree {here}: {new['seconds']:.3f} s ({new['steps']} points, "
          f"final loss {new['final_loss']:.6g})")
    print(f"speed-up: {base['seconds'] / new['seconds']:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
