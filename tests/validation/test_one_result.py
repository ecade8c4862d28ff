"""One result type (issue 17, Build 4): trajectories keep their order parameters, training
returns trajectories with an exact crossing record, and one summary serves the CLI, the report
and comparisons. Oracles: numpy GD and numpy overlaps written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.problems import Factorization, load
from dynamics.record import SaveAt
from dynamics.theory import mode_strengths
from dynamics.trajectory import Trajectory
from figures.cli import main
from validation.training import TrainConfig, train


def _numpy_gd(spec: Factorization, lr: float, steps: int) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """Full-batch GD on L = ½‖ABᵀ − XYᵀ‖² in float64: losses at every step and X, Y at the
    end (∂L/∂X = −(ABᵀ − XYᵀ)Y, ∂L/∂Y = −(ABᵀ − XYᵀ)ᵀX)."""
    c = spec.A @ spec.B.T
    x, y = spec.X0.copy(), spec.Y0.copy()
    losses = []
    for k in range(steps + 1):
        residual = c - x @ y.T
        losses.append(0.5 * np.sum(residual**2))
        if k < steps:
            x, y = x + lr * residual @ y, y + lr * residual.T @ x
    return np.array(losses), x, y


def _log_crossing(t: np.ndarray, loss: np.ndarray, level: float) -> float:
    i = int(np.argmax(loss <= level))
    a, b = math.log(loss[i - 1]), math.log(loss[i])
    return float(t[i - 1] + (a - math.log(level)) / (a - b) * (t[i] - t[i - 1]))


def test_trajectory_keeps_order_parameters_and_derives_cosines_from_them():
    rng = np.random.default_rng(0)
    targets, learned = rng.normal(size=(4, 9, 2)), rng.normal(size=(4, 9, 3))  # (T, n, ·)
    p = np.einsum("tnj,tnl->tjl", targets, learned)
    u = np.einsum("tnl,tnm->tlm", learned, learned)
    g = targets[0].T @ targets[0]
    targets[:] = targets[0]  # one constant target
    p = np.einsum("nj,tnl->tjl", targets[0], learned)
    traj = Trajectory.from_order_parameters(np.arange(4.0), np.ones(4), 1.0, {"W": (p, u)},
                                            {"W": g})
    assert traj.order["W"][0] is not None and np.array_equal(traj.order["W"][1], u)
    unit = targets[0] / np.linalg.norm(targets[0], axis=0)
    norms = np.linalg.norm(learned, axis=1)  # (T, k)
    cos = np.einsum("nj,tnl->tjl", unit, learned) / norms[:, None, :]
    np.testing.assert_allclose(traj.cosines["W"], cos, rtol=1e-12)
    np.testing.assert_allclose(traj.norms["W"], norms, rtol=1e-12)
    np.testing.assert_allclose(traj.overlaps("W"), np.einsum("nj,tnl->tjl", unit, learned),
                               rtol=1e-12)
    plot_only = Trajectory(traj.t, traj.loss, 1.0, traj.cosines, traj.norms)
    np.testing.assert_allclose(plot_only.overlaps("W"), traj.overlaps("W"), rtol=1e-12)


def test_mode_strengths_from_order_parameters_match_numpy():
    """z_i = u_iᵀ X Yᵀ v_i for A = U diag √s, B = V diag √s, from an independent numpy GD."""
    spec = Factorization.sample(n=12, rank=2, model_rank=3, init=0.1, seed=4,
                                singular_values=[3.0, 1.0])
    lr, steps = 0.02, 150
    traj = predict(spec, Discrete(lr), SaveAt.every(), t_max=lr * steps)
    _, x, y = _numpy_gd(spec, lr, steps)
    u_ = spec.A / np.linalg.norm(spec.A, axis=0)
    v_ = spec.B / np.linalg.norm(spec.B, axis=0)
    expected = np.einsum("ni,nm,mi->i", u_, x @ y.T, v_)
    np.testing.assert_allclose(mode_strengths(traj)[-1], expected, rtol=1e-10)


def test_training_returns_trajectories_with_the_exact_crossing_record():
    spec = Factorization.sample(n=10, rank=2, init=1e-2, seed=1)
    lr, steps = 0.05, 700
    result = train(spec, TrainConfig(lr=lr, steps=steps, dtype="float64", device="cpu"))
    traj = result.trajectories[0]
    assert traj.t.size < steps / 2 and traj.every_t.size == steps + 1  # log record + every step
    assert traj.time_unit == "t" and traj.steps[-1] == steps
    losses, _, _ = _numpy_gd(spec, lr, steps)
    t = lr * np.arange(steps + 1)
    # the program computes L − L(0) + L_ref: absolute rounding ~1e-15·L_ref near the end
    np.testing.assert_allclose(traj.every_loss, losses, rtol=1e-9, atol=1e-14 * spec.l_ref)
    summary = traj.summary()
    assert summary["crossings"] == summary["phases"]["crossings"]  # one run, one answer
    assert summary["crossings"] == {f"{f:g}": v for f, v in
                                    result.crossing_times()[0].items()}
    for f in (0.5, 0.1):
        level = f * spec.l_ref
        assert summary["crossings"][f"{f:g}"] == pytest.approx(_log_crossing(t, losses, level),
                                                               rel=1e-9)


def test_train_json_reports_one_crossing_time(tmp_path, capsys):
    """The bug: ``scurve train --json`` on a rank-2 spec gave t_0.5 = 6.829249 at the top level
    and 6.828763 in ``phases``; both now come from the every-step record."""
    spec_file = tmp_path / "r2.npz"
    assert main(["sample", "factorization", "--n", "20", "--rank", "2", "--seed", "0",
                 "-o", str(spec_file)]) == 0
    capsys.readouterr()
    lr, steps = 0.01, 2500
    assert main(["train", str(spec_file), "--lr", str(lr), "--steps", str(steps),
                 "--dtype", "float64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["crossings"] == out["phases"]["crossings"]
    spec = load(spec_file)
    losses, _, _ = _numpy_gd(spec, lr, steps)
    t = lr * np.arange(steps + 1)
    assert out["crossings"]["0.5"] == pytest.approx(_log_crossing(t, losses, 0.5 * spec.l_ref),
                                                    rel=1e-9)
    for key in ("l_ref", "initial_loss", "final_loss", "t_end", "time_unit", "method"):
        assert key in out  # the summary schema of Trajectory.summary, as predict's
