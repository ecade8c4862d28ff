"""The modes tasks on the model path: a grouped model's spec, trained by the batched trainer and
predicted by the derived dynamics of the same spec, under every group objective."""

from __future__ import annotations

import numpy as np
import pytest

from validation.emergence import group_emergence
from validation.tasks import OBJECTIVES, TASKS, SpecTask, make_task, predict_task, train_task


def emergence(result, task: SpecTask) -> np.ndarray:
    return group_emergence(result.time, result.group_loss, task.threshold)["t_threshold"]


def test_modes_tasks_are_specs_that_follow_their_definition():
    a, b, c = make_task("modes", 0), make_task("modes", 0), make_task("modes", 1)
    assert a.spec == b.spec and a.spec != c.spec
    data = a.spec.data
    np.testing.assert_allclose(data["A"].T @ data["A"], np.eye(5), atol=1e-12)
    np.testing.assert_allclose(data["B"].T @ data["B"], np.eye(5), atol=1e-12)
    harmonic = 1 / np.arange(1, 6.0)
    counts = np.round(256 * harmonic / harmonic.sum())  # n_g = round(N p_g) of N = 256
    np.testing.assert_allclose(a.frequencies, counts / counts.sum(), rtol=1e-15)
    np.testing.assert_allclose(a.reference_loss, 0.5)  # s_g = 1
    scale = make_task("modes-scale", 0)
    np.testing.assert_allclose(scale.reference_loss, np.geomspace(2, 1, 5) ** 2 / 2)
    np.testing.assert_allclose(scale.frequencies, 0.2)
    assert scale.name == "modes-scale" and scale.time_unit == "t"


@pytest.mark.parametrize("method", ["mean", "grouped", "root", "dro", "power(q=0.5)",
                                    "tilted(tau=3)"])
def test_float64_training_is_the_exact_gd_map(method):
    task = make_task("modes", 2)
    trained = train_task(task, method, steps=600, lr=0.05, dtype=_f64())
    predicted = predict_task(task, method, 600, 0.05, discrete=True)
    m = min(len(predicted.time), len(trained.time))
    np.testing.assert_array_equal(predicted.steps[:m], trained.steps[:m])
    np.testing.assert_allclose(predicted.group_loss[:m], trained.group_loss[:m], rtol=1e-10,
                               atol=1e-15)


def _f64():
    import torch

    return torch.float64


DEFAULT_POWERS = {("modes", -0.5), ("modes-scale", 1.0)}  # the rest: -m slow (suite time)
POWERS = [pytest.param(name, q, marks=() if (name, q) in DEFAULT_POWERS else pytest.mark.slow)
          for name in ("modes", "modes-scale") for q in (-0.5, 0.0, 0.5, 1.0)]
FLOW_LAG = {("modes", -0.5): 0.035}
"""The flow's lag behind SGD at the default η, ≈ η·λ_g/2 relative, exceeds 3 % in one case:
q = −½ on "modes" (η = 0.05, λ_g = 2s/√(ℓ + ε) ≈ 2.8), measured 3.3 %; the exact GD map
agrees to rounding there as everywhere."""


@pytest.mark.parametrize("name, q", POWERS)
def test_power_family_theory_matches_training_at_the_default_step(name, q):
    """Emergence times of every group under the power family: the exact GD map against float64
    SGD to rounding, and the flow within 3 % at the task's default η (measured ≤ 2.2 %, but
    see :data:`FLOW_LAG`)."""
    setting, task = TASKS[name], make_task(name, 0)
    method = f"power(q={q:g})"
    trained = train_task(task, method, setting.steps, setting.lr, dtype=_f64())
    t_train = emergence(trained, task)
    assert np.isfinite(t_train).all()
    gd = predict_task(task, method, setting.steps, setting.lr, discrete=True)
    assert np.abs(emergence(gd, task) / t_train - 1).max() < 1e-9
    flow = predict_task(task, method, setting.steps, setting.lr)
    assert np.abs(emergence(flow, task) / t_train - 1).max() < FLOW_LAG.get((name, q), 0.03)


@pytest.mark.parametrize("name", ["modes", pytest.param("modes-scale", marks=pytest.mark.slow)])
def test_mean_and_grouped_theory_within_three_percent_at_the_default_step(name):
    setting = TASKS[name]
    for method in ("mean", "grouped", "root", "dro"):
        task = make_task(name, 1)
        trained = train_task(task, method, setting.steps, setting.lr)
        predicted = predict_task(task, method, setting.steps, setting.lr)
        ratio = emergence(predicted, task) / emergence(trained, task)
        assert np.abs(ratio - 1).max() < 0.03, method  # measured ≤ 2.9 % (float32 training)


def test_gradient_methods_need_examples_and_objectives_are_named():
    task = make_task("modes", 0)
    with pytest.raises(ValueError, match="not a group objective"):
        train_task(task, "cluster", 10, 0.05)
    assert set(OBJECTIVES) >= {"mean", "power", "tilted", "dro"}
