"""Tests of validation.compare: training against the theories (issue #4 acceptance).

* float64 SGD from a spec: crossing times equal the ``discrete`` theory to 1e-6 relative on
  fresh specs (factorization r ∈ {1, 3, 10}, attention head; also decay and momentum);
* the verdict logic, on curves with known answers and through :func:`compare`;
* (slow) Adam at small η against the ``sign`` flow on t_0.5: :func:`adam_vs_sign`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.problems import AttentionHead, Factorization
from dynamics.trajectory import Trajectory
from validation import compare as compare_module
from validation.compare import (
    FRACTIONS,
    TOLERANCE,
    compare,
    theories_for,
    tolerance,
    verdict,
)
from validation.train import TrainConfig, train

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
    theory = predict(spec, method="discrete", lr=lr, momentum=momentum, t_max=t_max)
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
    assert theories_for("adam") == theories_for("adamw") == ("sign",)
    assert theories_for("sgd", loss="ce") == ("flow",)
    assert theories_for("momentum", 0.9, loss="ce") == ()
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


def test_compare_verdict_follows_the_theory(monkeypatch):
    """A theory off by 20 % (here: the flow, stretched in t) gets 'disagrees'."""
    spec = FRESH["rank3"][0]

    def stretched(spec, method="flow", **kwargs):
        traj = predict(spec, method=method, **kwargs)
        if method == "flow":
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


def adam_vs_sign(spec, lr: float = 1e-3, optimizer: str = "adam", eps: float = 1e-8,
                 dtype: str = "float64") -> dict[str, float | None]:
    """Adam (or AdamW) at step size η against the sign flow: t_0.5 of each and the error."""
    result = compare(spec, TrainConfig(optimizer=optimizer, lr=lr, eps=eps, dtype=dtype,
                                       device="cpu"))
    t_exp, t_sign = result.crossings["experiment"][0.5], result.crossings["sign"][0.5]
    return {"t_exp": t_exp, "t_sign": t_sign, "error": result.relative_errors["sign"][0.5],
            "steps": result.train_result.config.steps}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "lr"),
    [
        (Factorization.sample(20, 1, init=0.01, seed=4201), 1e-3),
        (Factorization.sample(20, 3, init=0.01, seed=4203), 1e-3),
        (AttentionHead.sample(5, 2, init=0.1, seed=4220), 1e-3),
    ],
    ids=["rank1", "rank3", "attention"],
)
def test_adam_small_lr_follows_sign_flow(spec, lr):
    """Issue #4: the sign flow predicts Adam's t_0.5 at small η within 10 % (target)."""
    out = adam_vs_sign(spec, lr)
    print(f"{spec.describe()}: Adam η = {lr:g}: t_0.5 = {out['t_exp']:.4g}, "
          f"sign flow {out['t_sign']:.4g}, relative error {out['error']:.3g}")
    assert out["error"] is not None and out["error"] <= 0.1
