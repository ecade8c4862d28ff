"""``--model FILE.py``: a user's model through sample, derive, predict; its errors in one line."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import dynamics.model
import dynamics.registry
from figures.cli import main


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    """Each test starts from the built-in models only (--model registers in-process)."""
    dynamics.model.known()
    monkeypatch.setattr(dynamics.registry, "_ENTRIES", dict(dynamics.registry._ENTRIES))
    monkeypatch.setattr(dynamics.model, "_BUILT", dict(dynamics.model._BUILT))

MINE = """
import sympy as sp
from dynamics.model import Model

n, r, k = sp.symbols("n r k", integer=True, positive=True)
A, B = sp.MatrixSymbol("A", n, r), sp.MatrixSymbol("B", n, r)
X, Y = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("Y", n, k)
E = A * B.T - X * Y.T
MODEL = Model("mine", loss=sp.Trace(E.T * E) / 2, learned=[X, Y], constants=[A, B], large=[n])
"""

OPEN = """
import sympy as sp
from dynamics.model import Model

n, k = sp.symbols("n k", integer=True, positive=True)
S, T = sp.MatrixSymbol("S", n, n), sp.MatrixSymbol("T", n, k)
W = sp.MatrixSymbol("W", n, k)
D = W - T
MODEL = Model("open", loss=sp.Trace(D.T * S * D) / 2, learned=[W], constants=[S, T], large=[n])
"""


def _file(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_user_model_samples_predicts_and_reports_state_size(tmp_path, capsys):
    model = _file(tmp_path, "mine.py", MINE)
    sizes = []
    for n in (40, 400):
        spec = tmp_path / f"spec{n}.npz"
        assert main(["sample", "--model", str(model), "--dims", f"n={n},r=2,k=3", "--init",
                     "0.1", "--seed", "1", "-o", str(spec)]) == 0
        capsys.readouterr()
        with np.load(spec) as data:
            assert str(data["kind"]) == "mine"
            assert data["A"].shape == (n, 2) and data["X0"].shape == (n, 3)
        assert main(["predict", str(spec), "--model", str(model), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        sizes.append(out["state_size"])
        assert out["crossings"]["0.5"] is not None
    # AᵀX, BᵀY (2x3 each), XᵀX, YᵀY (3x3 each): 30 numbers whatever n
    assert sizes == [30, 30]


def test_user_model_derives(tmp_path, capsys):
    model = _file(tmp_path, "mine.py", MINE)
    assert main(["derive", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "d(A^⊤ X)/dt" in out and "dX/dt" in out


def test_model_that_does_not_close_gets_a_note_and_the_full_flow(tmp_path, capsys):
    model = _file(tmp_path, "open.py", OPEN)
    spec = tmp_path / "open.npz"
    assert main(["sample", "--model", str(model), "--dims", "n=6,k=2", "--init", "0.1",
                 "-o", str(spec)]) == 0
    capsys.readouterr()
    assert main(["predict", str(spec), "--model", str(model), "--json"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "W.T*S" in notes[0], captured.err
    assert json.loads(captured.out)["state_size"] == 12  # the full W, 6 x 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("import sympy as sp\nx = 1/0\n", "line 2"),
        ("import sympy as sp\n", "defines no MODEL"),
        (MINE.replace("sp.Trace(E.T * E) / 2", "E.T * E"), "not a scalar"),
        (MINE.replace("constants=[A, B]", "constants=[A]"), "'B'"),
        (MINE.replace("learned=[X, Y]", "learned=[X, Y, sp.MatrixSymbol('Z', n, k)]"), "'Z'"),
    ],
)
def test_bad_model_files_exit_2_with_one_line(tmp_path, capsys, text, expected):
    model = _file(tmp_path, "bad.py", text)
    code = main(["sample", "--model", str(model), "--dims", "n=5,r=1,k=1", "-o",
                 str(tmp_path / "x.npz")])
    assert code == 2
    line = _one_error_line(capsys)
    assert expected in line and "bad.py" in line
    assert not (tmp_path / "x.npz").exists()


def test_spec_of_unknown_kind_and_bad_shapes_exit_2(tmp_path, capsys):
    model = _file(tmp_path, "mine.py", MINE)
    spec = tmp_path / "spec.npz"
    assert main(["sample", "--model", str(model), "--dims", "n=8,r=1,k=2", "-o",
                 str(spec)]) == 0
    capsys.readouterr()
    del dynamics.registry._ENTRIES["mine"]  # as in a fresh process
    del dynamics.model._BUILT["mine"]
    # without --model the kind is unknown: named, with the known ones
    assert main(["predict", str(spec)]) == 2
    line = _one_error_line(capsys)
    assert "'mine'" in line and "factorization" in line
    with np.load(spec) as data:
        arrays = {k: data[k] for k in data.files}
    bad = dict(arrays, Y0=np.zeros((7, 2)))
    np.savez(tmp_path / "bad.npz", **bad)
    assert main(["predict", str(tmp_path / "bad.npz"), "--model", str(model)]) == 2
    line = _one_error_line(capsys)
    assert "Y0" in line and "(7, 2)" in line and "X0 (8, 2)" in line, line  # both shapes
    missing = {k: v for k, v in arrays.items() if k != "B"}
    np.savez(tmp_path / "missing.npz", **missing)
    assert main(["predict", str(tmp_path / "missing.npz"), "--model", str(model)]) == 2
    assert "'B'" in _one_error_line(capsys)
