"""A CLI that answers at once: what each command imports, in a fresh interpreter.

``scurve --help``, ``scurve SUBCOMMAND --help``, ``scurve sample ...`` and ``scurve derive ...``
import neither torch nor scikit-learn nor matplotlib (the help screens not even SymPy or SciPy);
``scurve predict`` no torch either. Timing: ``tests/benchmarks/bench_cli_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from figures.cli import PROBLEMS

HEAVY = ("torch", "sklearn", "matplotlib")
SUBCOMMANDS = ("sample", "derive", "predict", "train", "compare", "grouped", "report")

# run the CLI's main() in a fresh interpreter, then report which heavy modules got loaded
DRIVER = """
import json, sys
from figures.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
watch = ("torch", "sklearn", "matplotlib", "sympy", "scipy", "numpy")
print(json.dumps({"code": code, "loaded": [m for m in watch if m in sys.modules]}),
      file=sys.stderr)
"""


def _loaded(*args: str, cwd=None) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True,
                         cwd=cwd, check=False)
    report = json.loads(out.stderr.strip().splitlines()[-1])
    return report["code"], set(report["loaded"])


@pytest.mark.parametrize("command", [(), *((c,) for c in SUBCOMMANDS)],
                         ids=lambda c: " ".join(c) or "scurve")
def test_help_imports_nothing_heavy(command):
    code, loaded = _loaded(*command, "--help")
    assert code == 0
    assert not loaded & {*HEAVY, "sympy", "scipy"}, loaded


def test_sample_derive_and_predict_import_no_torch(tmp_path):
    spec = str(tmp_path / "spec.npz")
    code, loaded = _loaded("sample", "factorization", "--n", "20", "--rank", "5", "--init",
                           "1e-3", "-o", spec)
    assert code == 0 and not loaded & set(HEAVY), loaded
    assert "scipy" not in loaded, loaded  # issue 18 item 4: sampling needs no SciPy
    for _ in range(2):  # the second run certainly from the warm derivation cache
        code, loaded = _loaded("derive", "factorization")
        assert code == 0 and not loaded & set(HEAVY), loaded
    code, loaded = _loaded("predict", spec, "--json")
    assert code == 0 and not loaded & set(HEAVY), loaded


def test_errors_are_one_line_without_loading_torch(tmp_path):
    code, loaded = _loaded("sample", "factorization", "--n", "-3", "-o", "x.npz", cwd=tmp_path)
    assert code == 2 and "torch" not in loaded


def test_name_lists_agree_with_their_modules():
    """The parser's torch-free name lists are the implementations' own."""
    from dynamics.problems import KINDS
    from validation.names import GROUP_METHODS, OPTIMIZERS, TASKS

    assert tuple(KINDS) == PROBLEMS
    pytest.importorskip("torch")
    from validation import optim, tasks

    assert optim.OPTIMIZERS == OPTIMIZERS
    assert tuple(tasks.TASKS) == TASKS
    assert tasks.METHODS == GROUP_METHODS
