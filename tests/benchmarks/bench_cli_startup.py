"""Wall time of ``scurve`` commands in fresh processes, as ratios to ``python -c "import numpy"``.

Goals (issue 12, "A CLI that answers at once"): ``scurve --help`` within 2x the time of
importing NumPy on the same machine; ``scurve predict`` of a rank-5 problem on a warm
derivation cache under 1 s of wall time. Each command runs ``--repeat`` times (after one
untimed warm-up run, which also fills the derivation cache); the median is reported.

    python tests/benchmarks/bench_cli_startup.py [--repeat 7]

The ``scurve`` console script next to the interpreter is used when there is one, else
``python -m figures.cli``. What each command imports: ``tests/figures/test_cli_startup.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _scurve() -> list[str]:
    script = Path(sys.executable).with_name("scurve")
    found = script if script.exists() else shutil.which("scurve")
    return [str(found)] if found else [sys.executable, "-m", "figures.cli"]


def _median_seconds(command: list[str], repeat: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm-up (page cache, derivations)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    scurve = _scurve()
    with tempfile.TemporaryDirectory() as tmp:
        spec = str(Path(tmp) / "rank5.npz")
        subprocess.run([*scurve, "sample", "factorization", "--n", "100", "--rank", "5",
                        "--model-rank", "5", "--init", "1e-3", "--seed", "0", "-o", spec],
                       check=True, capture_output=True)
        commands = {
            'python -c "pass"': [sys.executable, "-c", "pass"],
            'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
            "scurve --help": [*scurve, "--help"],
            "scurve predict --help": [*scurve, "predict", "--help"],
            "scurve train --help": [*scurve, "train", "--help"],
            "scurve sample factorization --n 100 --rank 5": [
                *scurve, "sample", "factorization", "--n", "100", "--rank", "5", "-o",
                str(Path(tmp) / "s.npz")],
            "scurve derive factorization (warm cache)": [*scurve, "derive", "factorization"],
            "scurve predict rank5.npz (warm cache)": [*scurve, "predict", spec],
            "scurve predict rank5.npz --method discrete --lr 0.05": [
                *scurve, "predict", spec, "--method", "discrete", "--lr", "0.05"],
        }
        seconds = {name: _median_seconds(cmd, args.repeat) for name, cmd in commands.items()}
    base = seconds['python -c "import numpy"']
    print(f"{' '.join(scurve)}; median of {args.repeat} runs each")
    print(f"{'command':<58}{'seconds':>9}{'/ numpy':>9}")
    for name, value in seconds.items():
        print(f"{name:<58}{value:>9.3f}{value / base:>9.2f}")
    ratio = seconds["scurve --help"] / base
    predict = seconds["scurve predict rank5.npz (warm cache)"]
    print(f"goal scurve --help <= 2x numpy import: {ratio:.2f}x "
          f"({'met' if ratio <= 2 else 'NOT met'}); goal predict < 1 s: {predict:.2f} s "
          f"({'met' if predict < 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
