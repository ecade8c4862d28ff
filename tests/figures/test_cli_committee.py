"""scurve sample/predict/train on committee specs; bad input is one line with exit status 2."""

import csv
import json

import numpy as np
import pytest

from figures.cli import main


def _sample(tmp_path, *extra):
    path = tmp_path / "c.npz"
    code = main(["sample", "committee", "--students", "2", "--teachers", "2", "--n", "300",
                 "--init", "1e-3", "--seed", "0", "-o", str(path), *extra])
    assert code == 0
    return path


def test_sample_predict_json_and_csv(tmp_path, capsys):
    path = _sample(tmp_path)
    capsys.readouterr()
    assert main(["predict", str(path), "--json", "--csv", str(tmp_path / "p.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    # T = I, a = 1, erf: L_ref = ½·2·(2/π)·arcsin(1/2) = 1/3
    assert out["l_ref"] == pytest.approx(1 / 3, rel=1e-12)
    assert out["state_size"] == 7
    assert out["initial_loss"] == pytest.approx(out["l_ref"], rel=1e-3)  # tiny student
    # the symmetric K = M = 2 erf fixed point: Q = 1/3, R = 1/√6
    np.testing.assert_allclose(out["plateau"]["fixed_point"]["R"], 1 / np.sqrt(6), atol=1e-5)
    assert out["plateau"]["lambda"] > 0
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "loss"] and float(rows[1][1]) == pytest.approx(out["initial_loss"])


def test_train_csv_long_format(tmp_path, capsys):
    path = _sample(tmp_path)
    assert main(["train", str(path), "--lr", "0.5", "--steps", "300", "--seeds", "2",
                 "--csv", str(tmp_path / "t.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(out["final_loss"]) == 2
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["seed", "step", "t", "loss"]
    last = [r for r in rows[1:] if r[0] == "1"][-1]
    assert int(last[1]) == 300 and float(last[2]) == pytest.approx(0.5 * 300 / 300)


@pytest.mark.parametrize("args, match", [
    (["--activation", "softsign"], "unknown activation"),
    (["--students", "0"], "K >= 1"),
    (["--noise", "-1"], "noise"),
])
def test_bad_sample_options(tmp_path, capsys, args, match):
    code = main(["sample", "committee", "--n", "20", "-o", str(tmp_path / "x.npz"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and match in err


def test_bad_spec_shapes(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, kind="committee", activation="erf", Wt=np.ones((2, 10)), a=np.ones(2),
             W0=np.ones((2, 9)), v0=np.ones(2))
    code = main(["predict", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'W0' (2, 9)" in err and "'Wt' (2, 10)" in err


@pytest.mark.slow
def test_quadrature_activation_flow_predicts(tmp_path, capsys):
    """tanh (no closed-form I2): the flow by quadrature and Price's theorem; its initial ε is
    ε of the spec's order parameters (that function is checked against Monte-Carlo in
    tests/dynamics/test_committee_epsilon_mc.py). Slow: the plateau search runs the
    quadrature flow (about 50 ms a step)."""
    from dynamics.models import committee as cm

    path = _sample(tmp_path, "--activation", "tanh")
    capsys.readouterr()
    code = main(["predict", str(path), "--t-max", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    spec = cm.load(path)
    q, r, t = spec.order_parameters()
    assert code == 0
    assert out["initial_loss"] == pytest.approx(cm.epsilon("tanh", q, r, t, spec.v0, spec.a),
                                                rel=1e-12)
    assert out["final_loss"] < out["initial_loss"]


def test_generic_predict_reports_initial_loss_and_csv(tmp_path, capsys):
    spec = tmp_path / "f.npz"
    assert main(["sample", "factorization", "--n", "6", "--rank", "1", "-o", str(spec)]) == 0
    capsys.readouterr()
    assert main(["predict", str(spec), "--json", "--csv", str(tmp_path / "f.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    with open(tmp_path / "f.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["t", "loss"]
    assert float(rows[1][1]) == pytest.approx(out["initial_loss"], rel=1e-12)


def test_generic_train_csv(tmp_path, capsys):
    spec = tmp_path / "f.npz"
    assert main(["sample", "factorization", "--n", "5", "--rank", "1", "--init", "0.1",
                 "-o", str(spec)]) == 0
    assert main(["train", str(spec), "--lr", "0.1", "--steps", "50", "--csv",
                 str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["seed", "step", "t", "loss"]
    steps = [int(r[1]) for r in rows[1:]]
    assert steps[0] == 0 and steps[-1] == 50
    assert float(rows[-1][2]) == pytest.approx(0.1 * 50)
