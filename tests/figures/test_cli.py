"""The ``scurve`` CLI: usage errors are one line on stderr with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dynamics.problems import load
from figures.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "figures.cli", *args], capture_output=True, text=True, check=False
    )


def test_help_lists_subcommands():
    out = _run("--help")
    assert out.returncode == 0
    assert "sample" in out.stdout


def test_sample_writes_a_loadable_spec(tmp_path, capsys):
    path = tmp_path / "spec.npz"
    code = main(["sample", "factorization", "--n", "12", "--rank", "2", "--model-rank", "3",
                 "--init", "0.01", "--weight-decay", "0.1", "--seed", "4", "-o", str(path)])
    assert code == 0
    spec = load(path)
    assert (spec.n, spec.r, spec.k, spec.weight_decay) == (12, 2, 3, 0.1)
    assert np.std(spec.X0) < 0.02
    assert "L_ref" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ("sample", "factorization", "--n", "5", "--rank", "9", "--init", "0.01", "-o", "x.npz"),
        ("sample", "factorization", "--n", "-5", "-o", "x.npz"),
        ("sample", "attention", "--n", "5", "--loss", "ce", "-o", "x.npz"),
        ("sample", "factorization", "--n", "5", "--init", "nan", "-o", "x.npz"),
        ("sample", "nonsense", "--n", "5", "-o", "x.npz"),
        ("frobnicate",),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, tmp_path):
    out = subprocess.run([sys.executable, "-m", "figures.cli", *args], capture_output=True,
                         text=True, cwd=tmp_path, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "x.npz").exists()
