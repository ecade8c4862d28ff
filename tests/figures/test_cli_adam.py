"""``scurve predict --method adam`` and ``scurve compare --optimizer adam|adamw``."""

from __future__ import annotations

import json

import pytest

from dynamics.methods import Adam
from dynamics.problems import sample_model, save
from figures.cli import main


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "spec.npz"
    save(sample_model("factorization", {"n": 10, "r": 1, "k": 1}, init=1e-2, seed=1), path)
    return path


def test_predict_adam_json_reports_the_full_state(spec_path, capsys):
    assert main(["predict", str(spec_path), "--method", "adam", "--lr", "1e-3",
                 "--betas", "0.9,0.99", "--weight-decay", "0.01", "--decoupled", "--t-max", "0.5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state_size"] == 3 * 2 * 10  # θ, m, v of X and Y
    assert out["options"] == {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8,
                              "weight_decay": 0.01, "decoupled": True, "exact_steps": 10,
                              "half_step": True}
    assert 0 < out["crossings"]["0.5"] < out["crossings"]["0.1"]


def test_predict_adam_start_options_reach_the_method(spec_path, capsys):
    """--exact-steps K and --no-half-step are the method's exact_steps and half_step (the same
    crossings as the API with them; they differ from the defaults')."""
    from dynamics.integrate import predict
    from dynamics.problems import load

    assert main(["predict", str(spec_path), "--method", "adam", "--lr", "1e-2",
                 "--exact-steps", "0", "--no-half-step", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["options"]["exact_steps"], out["options"]["half_step"]) == (0, False)
    api = predict(load(spec_path), Adam(1e-2, exact_steps=0, half_step=False)).crossing_times()
    assert out["crossings"]["0.5"] == api[0.5]
    assert api[0.5] != predict(load(spec_path), Adam(1e-2)).crossing_times()[0.5]


@pytest.mark.parametrize("args, words", [
    (["--lr", "0"], "--lr"), (["--lr", "-1e-3"], "--lr"),
    (["--lr", "1e-3", "--betas", "1,0.999"], "beta"),
    (["--lr", "1e-3", "--betas", "0.9,-0.1"], "beta"),
    (["--lr", "1e-3", "--eps", "0"], "--eps"),
    (["--lr", "1e-3", "--weight-decay", "-0.1"], "--weight-decay"),
    ([], "needs lr"),
    (["--lr", "1e-3", "--exact-steps", "-1"], "--exact-steps"),
    (["--lr", "1e-3", "--exact-steps", "2.5"], "--exact-steps"),
])
def test_predict_adam_bad_input_is_one_line_exit_2(spec_path, capsys, args, words):
    try:
        code = main(["predict", str(spec_path), "--method", "adam", *args])
    except SystemExit as exc:  # argparse's own (one-line) errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_predict_adam_blow_up_names_t(tmp_path, capsys):
    path = tmp_path / "huge.npz"
    save(sample_model("factorization", {"n": 5, "r": 1, "k": 1}, init=1e200, seed=0), path)
    assert main(["predict", str(path), "--method", "adam", "--lr", "1e-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not finite at t = 0" in err


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("adamw", marks=pytest.mark.slow)])
def test_compare_lists_the_adam_ode_and_the_sign_flow(spec_path, capsys, optimizer):
    assert main(["compare", str(spec_path), "--optimizer", optimizer, "--lr", "1e-3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["verdicts"]) == {"adam", "sign"}
    assert out["tolerances"]["adam"] == 0.03
    assert out["verdicts"]["adam"] == "agrees", out["relative_errors"]
    # the ODE is closer to Adam at η = 1e-3 than its η → 0 limit
    assert (out["relative_errors"]["adam"]["0.5"] < out["relative_errors"]["sign"]["0.5"])
