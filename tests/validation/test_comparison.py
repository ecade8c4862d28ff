"""Tests of validation.comparison: training against the theories (issue #4 acceptance).

* float64 SGD from a spec: crossing times equal the ``discrete`` theory to 1e-6 relative on
  fresh specs (factorization r ∈ {1, 3, 10}, attention head; also decay and momentum);
* the verdict logic, on curves with known answers and through :func:`compare`;
* :func:`validation.comparison.sign_limit`, and (slow) Adam at small η against the ``sign``
  flow on t_0.5.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.problems import AttentionHead, Factorization
from dynamics.schedules import LinearLR, times
from dynamics.trajectory import Trajectory
from validation.comparison import (
    FRACTIONS,
    TOLERANCE,
    compare,
    sign_limit,
    theories_for,
    tolerance,
    verdict,
)
from validation.training import TrainConfig, train

# the module (``validation.comparison`` may also name the function, re-exported by the package)
compare_module = importlib.import_module("validation.comparison")

# Fresh specs (seeds used nowhere else), each with a plateau and every level reached within
# t_max: (spec, η, μ, t_max).
FRESH = {
    "rank1": (Factorization.sample(16, 1, init=0.01, seed=4101), 0.1, 0.0, 12.0),
    "rank3": (Factorization.sample(16, 3, init=0.01, seed=4103), 0.05, 0.0, 12.0),
    "rank10": (Factorization.sample(24, 10, init=0.01, seed=4110), 0.05, 0.0, 15.0),
    "attention": (AttentionHead.sample(5, 2, init=0.1, seed=4120), 0.05, 0.0, 55.0),
    "rank3-decay": (Factorization.sample(16, 3, init=0.01, seed=4104, weight_decay=0.05),
                    0.05, 0.0, 12.0),
    "rank3-momentum": (Factorization.sample(16, 3, init=0.01, seed=4105), 0.01, 0.9, 3.0),
    "attention-decay-momentum": (
        AttentionHead.sample(5, 2, init=0.3, seed=4121, weight_decay=0.01), 0.02, 0.5, 21.0),
}


@pytest.mark.parametrize("name", list(FRESH))
def test_float64_sgd_equals_discrete_theory(name):
    spec, lr, momentum, t_max = FRESH[name]
    theory = predict(spec, Discrete(lr, momentum=momentum), t_max=t_max)
    steps = int(theory.steps[-1])
    config = TrainConfig(optimizer="momentum" if momentum else "sgd", lr=lr, momentum=momentum,
                         steps=steps, dtype="float64", device="cpu", record="all")
    result = train(spec, config)
    experiment = result.trajectories[0]
    want, got = theory.crossing_times(), result.crossing_times()[0]
    assert got == experiment.crossing_times()
    for f in FRACTIONS:
        assert want[f] is not None and got[f] is not None, f"t_{f} not reached"
        assert abs(got[f] - want[f]) <= 1e-6 * want[f], (f, got[f], want[f])
    # stronger: the same loss at every step (the map is exact, only rounding differs)
    np.testing.assert_array_equal(theory.steps, np.arange(steps + 1))
    assert np.max(np.abs(result.loss[0] - theory.loss)) <= 1e-9 * spec.l_ref
    assert verdict(experiment, theory, TOLERANCE["discrete"])[0] == "agrees"


def curve(t_end: float, stretch: float = 1.0, method: str = "theory",
          drop_at: float = 5.0) -> Trajectory:
    """A plateau-then-drop curve L = L_ref / (1 + e^{2(t/stretch − drop_at)}), known t_f."""
    t = np.linspace(0.0, t_end, 4001)
    return Trajectory(t, 1.0 / (1.0 + np.exp(2 * (t / stretch - drop_at))), 1.0, method=method)


def test_verdict_logic():
    exp = curve(10.0, method="experiment")
    # a time-stretched copy: every t_f off by exactly the stretch (to interpolation error)
    status, errors, notes = verdict(exp, curve(10.0, 1.003), tol=0.01)
    assert status == "agrees" and notes == []
    assert all(e == pytest.approx(0.003, rel=1e-3) for e in errors.values())
    status, errors, _ = verdict(exp, curve(10.0, 1.05), tol=0.01)
    assert status == "disagrees" and max(errors.values()) == pytest.approx(0.05, rel=1e-3)
    # the theory covers t_0.01 of the experiment (≈ 7.3) but never gets there: disagrees
    flat = Trajectory(exp.t, np.full_like(exp.t, 0.9), 1.0, method="flat")
    status, errors, notes = verdict(exp, flat, tol=0.01)
    assert status == "disagrees" and set(errors.values()) == {None}
    assert len(notes) == 3 and "experiment reaches 0.01·L_ref" in notes[-1]
    # the theory ends before the levels: nothing to compare, not a disagreement
    status, errors, notes = verdict(exp, curve(4.0), tol=0.01)
    assert status == "inconclusive" and notes == [] and set(errors.values()) == {None}
    # the experiment stopped before the later levels: judged on those reached by both
    status, errors, notes = verdict(curve(5.5, method="experiment"), curve(10.0, 1.001), 0.01)
    assert status == "agrees" and errors[0.01] is None and errors[0.5] < 0.01 and notes == []
    # the experiment ran past the theory's t_0.01 without reaching it: disagrees
    stuck = Trajectory(exp.t, np.where(exp.t < 5, exp.loss, 0.05), 1.0, method="experiment")
    status, errors, notes = verdict(stuck, curve(10.0), 0.1)
    assert status == "disagrees" and errors[0.5] < 1e-3 and errors[0.01] is None
    assert notes == ["theory reaches 0.01·L_ref at t = 7.298, experiment has not by its "
                     "end t = 10"]


def test_theories_and_tolerances():
    assert theories_for("sgd") == ("discrete", "modified", "flow")
    assert theories_for("sgd", 0.9) == theories_for("momentum", 0.9) == ("discrete",)
    assert theories_for("adam") == theories_for("adamw") == ("adam", "sign")
    assert theories_for("sgd", loss="ce") == ("flow",)
    assert theories_for("momentum", 0.9, loss="ce") == ()
    assert theories_for("sgd", scheduled=True) == ("discrete", "flow")  # no fixed-η equation
    assert theories_for("adam", scheduled=True) == ("sign",)
    assert tolerance("discrete") == 1e-6 < tolerance("discrete", "float32")
    assert tolerance("flow", "float32") == TOLERANCE["flow"]


def test_compare_sgd_end_to_end():
    spec, lr, _, _ = FRESH["rank1"]
    result = compare(spec, TrainConfig(lr=lr, dtype="float64", device="cpu"))
    assert result.verdicts == {"discrete": "agrees", "modified": "agrees", "flow": "agrees"}
    for f in FRACTIONS:
        assert result.relative_errors["discrete"][f] < 1e-6
        # the orders of the step-size errors: flow O(η) ≳ modified O(η²) ≳ discrete (rounding)
        assert result.relative_errors["flow"][f] > result.relative_errors["modified"][f]
    exp = result.crossings["experiment"]
    assert exp[0.01] is not None and result.experiment.t[-1] >= exp[0.01]  # steps suffice
    assert np.array_equal(result.experiment.steps, np.arange(result.train_result.config.steps
                                                             + 1))
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["verdicts"]["discrete"] == "agrees"
    assert set(summary["crossings"]) == {"experiment", "discrete", "modified", "flow"}
    assert set(summary["crossings"]["flow"]) == {"0.5", "0.1", "0.01"}
    assert summary["tolerances"]["discrete"] == 1e-6
    assert summary["steps"] == result.train_result.config.steps


def test_compare_with_a_schedule():
    """SGD with a warm-up schedule: the exact GD map runs the same schedule (agrees to
    rounding), the flow is the same limit in t = Σ η_k; the steps are chosen in that t."""
    spec, lr, _, _ = FRESH["rank1"]
    warm = LinearLR(start_factor=0.1, total_iters=40)
    result = compare(spec, TrainConfig(lr=lr, schedule=warm, dtype="float64", device="cpu"))
    assert set(result.verdicts) == {"discrete", "flow"}
    assert result.verdicts == {"discrete": "agrees", "flow": "agrees"}
    assert max(result.relative_errors["discrete"].values()) < 1e-6
    steps = result.train_result.config.steps
    clock = times(lr, steps, warm)
    assert np.array_equal(result.experiment.t, clock)
    t_stop = result.theories["discrete"].crossing_times()[0.01]
    # as without a schedule (⌈1.2·t_0.01/η⌉ + 1 steps): one step past the first t_k >= 1.2·t_0.01
    assert clock[-3] < 1.2 * t_stop <= clock[-2]


def test_compare_verdict_follows_the_theory(monkeypatch):
    """A theory off by 20 % (here: the flow, stretched in t) gets 'disagrees'."""
    spec = FRESH["rank3"][0]

    def stretched(spec, method=None, **kwargs):
        traj = predict(spec, method, **kwargs)
        if traj.method == "flow":
            traj.t = traj.t * 1.2
        return traj

    monkeypatch.setattr(compare_module, "predict", stretched)
    result = compare(spec, TrainConfig(lr=0.01, dtype="float64", device="cpu"))
    assert result.verdicts["discrete"] == "agrees"
    assert result.verdicts["flow"] == "disagrees"
    assert min(result.relative_errors["flow"].values()) > 0.15


def test_compare_applies_config_overrides_to_the_theory():
    """weight_decay / loss of the config change the spec trained, and so the theory's."""
    spec, lr, _, _ = FRESH["rank3"]
    config = TrainConfig(lr=lr, weight_decay=0.05, dtype="float64", device="cpu")
    result = compare(spec, config, steps=400)
    assert result.verdicts["discrete"] == "agrees"
    assert max(result.relative_errors["discrete"].values()) < 1e-6


def test_compare_float32_uses_its_tolerance():
    spec, lr, _, _ = FRESH["rank1"]
    result = compare(spec, TrainConfig(lr=lr, device="cpu"), steps=200)
    assert result.train_result.dtype == "float32"
    assert result.verdicts["discrete"] == "agrees"
    assert max(result.relative_errors["discrete"].values()) < tolerance("discrete", "float32")


def test_compare_rejects_a_learning_rate_list():
    spec, _, _, _ = FRESH["rank1"]
    with pytest.raises(ValueError, match="lr"):
        compare(spec, TrainConfig(lr=[0.1, 0.2]))


def test_sign_limit_wiring(monkeypatch):
    """sign_limit trains every η at once and judges each against the sign prediction (here a
    stand-in: sign-SGD, i.e. Adam with β = (0, 0), run at the first step size itself)."""
    spec = FRESH["rank1"][0]
    stand_in = train(spec, TrainConfig(optimizer="adam", betas=(0.0, 0.0), lr=1e-3, steps=500,
                                       dtype="float64", device="cpu", record="all"))
    traj = stand_in.trajectories[0]
    traj.method = "sign"
    monkeypatch.setattr(compare_module, "predict", lambda spec, method, **kw: traj)
    out = sign_limit(spec, lrs=(1e-3, 3e-3), betas=(0.0, 0.0), device="cpu")
    same, other = out["runs"]
    assert out["steps"] == int(np.ceil(1.2 * out["sign"][0.01] / 1e-3) + 1)
    assert same["verdict"] == "agrees" and set(same["relative_errors"].values()) == {0.0}
    assert same["crossings"] == stand_in.crossing_times()[0] == out["sign"]
    assert other["lr"] == 3e-3 and all(e > 0 for e in other["relative_errors"].values())
    assert same["window"] == pytest.approx(1e-3 / out["sign"][0.5])
    json.dumps(out, allow_nan=False)


# Fresh specs for Adam against the sign flow (t_0.5 of the flow ≈ 0.15-0.2 in t).
ADAM = {
    "rank1": Factorization.sample(20, 1, init=0.01, seed=4201),
    "rank3": Factorization.sample(20, 3, init=0.01, seed=4203),
    "attention": AttentionHead.sample(5, 2, init=0.1, seed=4220),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ADAM))
def test_adam_small_lr_follows_sign_flow(name):
    """Issue #4: how closely the sign flow predicts Adam's t_0.5 at small η (target 10 %).

    Adam reaches the sign flow only once its β₂ window η/(1 − β₂) is short against the
    plateau: Adam is faster while its second moment lags the growing gradient. Measured with
    sign-SGD at η = 1e-5 standing in for the flow, relative error of t_0.5 (rank 1 / rank 3 /
    attention): η = 1e-3: 0.33 / 0.34 / 0.71; 1e-4: 0.49 / 0.42 / 0.93; 1e-5: 0.18 / 0.12 /
    0.19; 3e-6: 0.068 / 0.049 / 0.060 (window/t_0.5 = 0.02 / 0.018 / 0.0085). So the test asks
    for 10 % at the smallest η, and checks the sign integration itself against sign-SGD (Adam
    with β = (0, 0)) at a tiny step.
    """
    spec = ADAM[name]
    out = sign_limit(spec, lrs=(1e-3, 1e-4, 1e-5, 3e-6), device="cpu")
    for run in out["runs"]:
        print(f"{out['problem']}: Adam η = {run['lr']:g} (window/t_0.5 = {run['window']:.3g}): "
              f"t_0.5 = {run['crossings'][0.5]:.4g} vs sign flow {out['sign'][0.5]:.4g}, "
              f"relative error {run['relative_errors'][0.5]:.3g}")
    assert out["runs"][-1]["relative_errors"][0.5] <= 0.1
    sgd = sign_limit(spec, lrs=(1e-5,), betas=(0.0, 0.0), device="cpu")
    assert max(sgd["runs"][0]["relative_errors"].values()) < 0.01


def test_compare_with_steps_ends_theories_at_the_last_step_and_skips_a_failed_one(monkeypatch):
    """With ``steps`` given every theory stops at the training's last time η·steps (none runs
    past it), and a theory whose integration fails (here: the wall limit, set to 0) is skipped
    with a note instead of sinking the comparison."""
    import dynamics.integrate as integrate

    spec, lr, _, _ = FRESH["rank1"]
    result = compare(spec, TrainConfig(lr=lr, dtype="float64", device="cpu"), steps=40)
    for traj in result.theories.values():
        assert traj.t[-1] == pytest.approx(lr * 40, rel=1e-12)
    monkeypatch.setattr(integrate, "WALL_LIMIT", 0.0)
    result = compare(spec, TrainConfig(lr=lr, dtype="float64", device="cpu"), steps=40)
    assert set(result.theories) == {"discrete"}  # the GD map has no wall limit; the ODEs do
    assert any(n.startswith("flow skipped: ") and "still running" in n for n in result.notes)
