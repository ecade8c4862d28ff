"""The ``scurve`` CLI: usage errors are one line on stderr with exit status 2."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "spec.npz"
    assert main(["sample", "factorization", "--n", "30", "--rank", "2", "--init", "1e-3",
                 "--seed", "3", "-o", str(path)]) == 0
    return path


def _json(capsys):
    import json

    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object on stdout
    return json.loads(out[0])


def test_help_lists_every_subcommand():
    out = _run("--help").stdout
    for command in ("sample", "derive", "predict", "train", "compare", "grouped", "report"):
        assert command in out


def test_predict_json_has_crossings_phases_and_seconds(spec_path, capsys):
    assert main(["predict", str(spec_path), "--method", "discrete", "--lr", "0.05",
                 "--json"]) == 0
    out = _json(capsys)
    assert set(out["crossings"]) == {"0.5", "0.1", "0.01"}
    assert out["crossings"]["0.5"] < out["crossings"]["0.1"] < out["crossings"]["0.01"]
    assert out["method"] == "discrete" and out["seconds"] > 0 and "plateaus" in out["phases"]


def test_train_json_equals_the_discrete_prediction(spec_path, capsys):
    """float64 SGD from the spec file reproduces the exact reduced GD map's crossings."""
    assert main(["predict", str(spec_path), "--method", "discrete", "--lr", "0.05",
                 "--json"]) == 0
    theory = _json(capsys)["crossings"]
    assert main(["train", str(spec_path), "--lr", "0.05", "--steps", "600",
                 "--dtype", "float64", "--json"]) == 0
    out = _json(capsys)
    for f in ("0.5", "0.1", "0.01"):
        assert out["crossings"][f] == pytest.approx(theory[f], rel=1e-6)
    assert out["final_loss"] < 1e-3 and out["steps_per_second"] > 0
    assert out["diverged"] == []


def test_train_several_seeds_reports_per_seed(capsys):
    assert main(["train", "--problem", "attention", "--n", "8", "--rank", "1", "--init", "0.3",
                 "--seeds", "3", "--lr", "0.05", "--steps", "50", "--json"]) == 0
    out = _json(capsys)
    assert len(out["crossings"]) == len(out["final_loss"]) == len(out["phases"]) == 3
    assert len(set(out["final_loss"])) == 3  # three different seeds


def test_train_divergence_exits_1_naming_seed_step_and_loss(spec_path):
    out = _run("train", str(spec_path), "--lr", "5", "--steps", "100", "--json")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "diverged" in line and "seed 0" in line and "step" in line and "loss" in line


@pytest.mark.parametrize(
    "extra",
    [
        ("--device", "cuda"),
        ("--optimizer", "lbfgs"),
        ("--steps", "0"),
        ("--lr", "0"),
        ("--lr", "-0.1"),
        ("--seeds", "2"),
    ],
)
def test_train_bad_arguments_exit_2(spec_path, extra):
    import torch

    if extra == ("--device", "cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    args = {"--lr": "0.01", "--steps": "5"}
    args.update(dict([extra]))
    flat = [x for kv in args.items() for x in kv]
    out = _run("train", str(spec_path), *flat)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_train_needs_a_spec_or_a_problem():
    out = _run("train", "--lr", "0.1", "--steps", "5")
    assert out.returncode == 2 and "--problem" in out.stderr


def test_compare_json_verdicts(spec_path, capsys):
    assert main(["compare", str(spec_path), "--lr", "0.05", "--json"]) == 0
    out = _json(capsys)
    assert out["verdicts"]["discrete"] == "agrees"
    assert max(out["relative_errors"]["discrete"].values()) < 1e-6
    assert set(out["verdicts"]) == {"discrete", "modified", "flow"}


def test_derive_prints_every_derived_family(capsys):
    assert main(["derive", "factorization"]) == 0
    out = capsys.readouterr().out
    assert "d(A^⊤ X)/dt" in out and "(A^⊤ X)'" in out and "dX/dt" in out
    assert "cross-entropy" in out and "momentum" in out and "modified" in out
    assert "\\frac" not in out  # plain text by default
    assert main(["derive", "attention", "--latex"]) == 0
    assert "\\frac{d(Q^{\\top} Q)}{dt}" in capsys.readouterr().out


def test_derive_rank_1_is_the_scalar_system_of_design(capsys):
    """The factorization's reduced flow at r = k = 1: dP/dt = G_A Q − P V − λP,
    dU/dt = 2PQ − 2UV − 2λU."""
    import sympy as sp

    assert main(["derive", "factorization", "--rank", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("d")]
    rates = {lhs.strip(): sp.sympify(rhs) for lhs, rhs in (line.split("=") for line in lines)}
    # order parameters named by their contraction: G_A = AᵀA, P = AᵀX, Q = BᵀY, U = XᵀX, ...
    g_a, g_b, p, q, u, v, lam = sp.symbols("At_A Bt_B At_X Bt_Y Xt_X Yt_Y λ")
    design = {"dAt_X/dt": g_a * q - p * v - lam * p, "dBt_Y/dt": g_b * p - q * u - lam * q,
              "dXt_X/dt": 2 * p * q - 2 * u * v - 2 * lam * u,
              "dYt_Y/dt": 2 * p * q - 2 * u * v - 2 * lam * v}
    assert set(rates) == set(design)
    for key, expected in design.items():
        assert sp.simplify(rates[key] - expected) == 0, key


def test_grouped_json_has_the_emergence_metrics(capsys):
    assert main(["grouped", "--task", "modes", "--method", "power", "--q", "1", "--seeds", "2",
                 "--steps", "150", "--json"]) == 0
    out = _json(capsys)
    for key in ("emergence_times", "spread", "widths", "plateau_to_drop", "worst_group_final",
                "mean_final", "overhead", "seconds", "ari"):
        assert key in out
    assert out["params"] == {"q": 1.0}
    assert len(out["emergence_times"]) == len(out["overhead"]) == 2
    assert len(out["emergence_times"][0]) == 5  # five capability groups
    assert out["ari"] == [[], []]  # no found groups under an objective


def test_grouped_cluster_json_has_the_ari_over_training(capsys):
    assert main(["grouped", "--task", "parity", "--quick", "--method", "cluster", "--steps",
                 "60", "--json"]) == 0
    out = _json(capsys)
    (ari,) = out["ari"]
    assert ari and all(set(a) == {"t", "ari"} and -1 <= a["ari"] <= 1 for a in ari)
    assert out["gradient_groups"][0]["cost"]["reclusterings"] == len(ari)


def test_grouped_power_without_q_exits_2():
    out = _run("grouped", "--task", "modes", "--method", "power")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "q" in out.stderr


def test_grouped_bad_task_exits_2():
    out = _run("grouped", "--task", "nope")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_train_all_seeds_diverging_still_exits_1():
    out = _run("train", "--problem", "factorization", "--n", "20", "--rank", "3", "--seeds",
               "2", "--lr", "50", "--steps", "50")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("diverged") == 2


# ----------------------------------------------------------------------------- new knobs


def test_train_with_a_schedule_equals_the_discrete_prediction_with_it(spec_path, capsys):
    """``--schedule`` on train and on predict --method discrete: the same rates, the same
    times t_k = Σ_{j<k} η_j, hence the same crossing times."""
    schedule = "cosine:T_max=400,eta_min=0.01"
    assert main(["predict", str(spec_path), "--method", "discrete", "--lr", "0.08",
                 "--schedule", schedule, "--json"]) == 0
    theory = _json(capsys)
    assert theory["options"] == {"lr": 0.08, "momentum": 0.0,
                                 "schedule": "cosine:T_max=400,eta_min=0.01"}
    assert main(["train", str(spec_path), "--lr", "0.08", "--steps", "700", "--schedule",
                 schedule, "--dtype", "float64", "--json"]) == 0
    out = _json(capsys)
    assert out["schedule"] == schedule
    for f in ("0.5", "0.1", "0.01"):
        assert out["crossings"][f] == pytest.approx(theory["crossings"][f], rel=1e-9)
    plain = _run("predict", str(spec_path), "--method", "discrete", "--lr", "0.08", "--json")
    assert json.loads(plain.stdout)["crossings"] != theory["crossings"]  # it did change η


def test_adam_eps_and_betas_reach_the_optimizer(spec_path, capsys):
    from validation.training import TrainConfig, train

    assert main(["train", str(spec_path), "--optimizer", "adam", "--lr", "0.01", "--steps",
                 "40", "--eps", "1e-3", "--betas", "0.8,0.95", "--dtype", "float64",
                 "--json"]) == 0
    out = _json(capsys)
    want = train(load(spec_path), TrainConfig(optimizer="adam", lr=0.01, steps=40, eps=1e-3,
                                              betas=(0.8, 0.95), dtype="float64"))
    assert out["final_loss"] == want.final_loss[0]
    default = train(load(spec_path), TrainConfig(optimizer="adam", lr=0.01, steps=40,
                                                 dtype="float64"))
    assert out["final_loss"] != default.final_loss[0]


def test_compare_with_a_schedule_leaves_out_the_modified_equation(spec_path, capsys):
    assert main(["compare", str(spec_path), "--lr", "0.05", "--schedule",
                 "step:step_size=50,gamma=0.8", "--json"]) == 0
    out = _json(capsys)
    assert set(out["verdicts"]) == {"discrete", "flow"}
    assert out["verdicts"]["discrete"] == "agrees"


def test_sign_flow_takes_eps(spec_path, capsys):
    assert main(["predict", str(spec_path), "--method", "sign", "--eps", "1e-4",
                 "--json"]) == 0
    out = _json(capsys)
    assert out["options"] == {"eps": 1e-4, "decoupled": False}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("predict", "SPEC", "--method", "full", "--lr", "0.1"), "'full' does not take lr"),
        (("predict", "SPEC", "--method", "sign", "--schedule", "exponential:gamma=0.9"),
         "'sign' does not take schedule"),
        (("predict", "SPEC", "--method", "discrete"), "'discrete' needs lr"),
        (("predict", "SPEC", "--method", "discrete", "--lr", "0.1", "--momentum", "1"),
         "momentum must be in [0, 1)"),
        (("predict", "SPEC", "--method", "discrete", "--lr", "0.1", "--schedule", "warm"),
         "unknown schedule 'warm'"),
        (("train", "SPEC", "--lr", "0.1", "--steps", "5", "--schedule", "step:gamma=2"),
         "missing step_size"),
        (("train", "SPEC", "--lr", "0.1", "--steps", "5", "--betas", "0.9"), "B1,B2"),
        (("train", "SPEC", "--lr", "0.1", "--steps", "5", "--betas", "0.9,1"), "[0, 1)"),
        (("compare", "SPEC", "--lr", "0.1", "--eps", "0"), "must be > 0"),
    ],
)
def test_bad_knobs_exit_2_with_one_line(spec_path, args, message):
    out = _run(*(str(spec_path) if a == "SPEC" else a for a in args))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr


def test_predict_a_grouped_spec_under_another_objective(tmp_path, capsys):
    spec = tmp_path / "modes.npz"
    assert main(["sample", "modes", "--dims", "n=12,G=3,k=3", "--init", "0.01", "--seed", "2",
                 "-o", str(spec)]) == 0
    capsys.readouterr()
    assert main(["predict", str(spec), "--objective", "power(q=1)", "--json"]) == 0
    out = _json(capsys)
    assert out["objective"] == "power(q=1)" and len(out["group_crossings_0.5"]) == 3
    assert all(t is not None and t > 0 for t in out["group_crossings_0.5"])
    assert main(["predict", str(spec), "--objective", "median"]) == 2
def test_report_quick_and_full_tasks_exit_2(tmp_path):
    out = _run("report", "--quick", "--full-tasks", "--out", str(tmp_path / "r"))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "--full-tasks" in out.stderr
    assert not (tmp_path / "r").exists()
