"""Tasks are deterministic and correct; one training loop serves every method."""

import json

import numpy as np
import pytest
import torch

from validation.emergence import group_emergence
from validation.grouped import PowerGroupedLoss
from validation.tasks import (
    METHODS,
    TASKS,
    ModesTask,
    ParityTask,
    compare_methods,
    emergence_table,
    make_method,
    make_task,
    predict_task,
    table_markdown,
    train_task,
)


def small_modes(seed: int = 0) -> ModesTask:
    return ModesTask(
        np.array([1.0, 2.0, 1.5]),
        np.array([0.5, 0.3, 0.2]),
        n=6,
        hidden=5,
        init_std=0.1,
        num_examples=20,
        seed=seed,
    )


def test_modes_task_is_deterministic_and_follows_its_definition():
    a, b, c = small_modes(0), small_modes(0), small_modes(1)
    torch.testing.assert_close(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)
    np.testing.assert_allclose(a.frequencies, [0.5, 0.3, 0.2])
    np.testing.assert_allclose(a.target_matrix, a.left @ np.diag(a.scales) @ a.right.T)
    np.testing.assert_allclose(a.left.T @ a.left, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(a.reference_loss, a.scales**2 / 2)
    model_1 = a.make_model(torch.Generator().manual_seed(3))
    model_2 = a.make_model(torch.Generator().manual_seed(3))
    for p, q in zip(model_1.parameters(), model_2.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    # ℓ_g = ½‖W₂W₁v_g − s_g u_g‖² and the mean loss Σ_g p̂_g ℓ_g
    w1, w2 = (p.detach().double().numpy() for p in model_1.parameters())
    residual = w2 @ w1 @ a.right - a.left * a.scales
    expected = 0.5 * (residual**2).sum(axis=0)
    group_loss, accuracy = a.evaluate(model_1)
    np.testing.assert_allclose(group_loss, expected, rtol=1e-5)
    assert accuracy is None
    x, y, _ = a.batch(torch.Generator())
    mean_loss = a.per_example_loss(model_1(x), y).mean().item()
    assert mean_loss == pytest.approx(float(a.frequencies @ expected), rel=1e-5)


def test_parity_task_is_deterministic_and_labels_are_parities():
    task, again = ParityTask(tasks=4, bits=10, eval_per_task=8), ParityTask(tasks=4, bits=10)
    torch.testing.assert_close(task.subsets, again.subsets)
    assert not torch.equal(task.subsets, ParityTask(tasks=4, bits=10, seed=1).subsets)
    batches = [task.batch(torch.Generator().manual_seed(5)) for _ in range(2)]
    for u, v in zip(*batches, strict=True):
        torch.testing.assert_close(u, v)
    inputs, targets, labels = batches[0]
    assert inputs.shape == (task.batch_size, 4 + 10)
    for x, y, g in zip(inputs.long().tolist(), targets.tolist(), labels.tolist(), strict=True):
        assert x[:4] == [int(i == g) for i in range(4)]
        bits = x[4:]
        assert y == sum(bits[j] for j in task.subsets[g].tolist()) % 2
    harmonic = 1 / np.arange(1, 5.0)
    np.testing.assert_allclose(task.probabilities, harmonic / harmonic.sum())


@pytest.mark.parametrize("method", METHODS)
def test_train_task_runs_every_method_deterministically(method):
    task = small_modes()
    runs = [train_task(task, method, steps=30, lr=0.1, seed=2, record=10) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].group_loss, runs[1].group_loss)
    result = runs[0]
    np.testing.assert_array_equal(result.steps, [0, 10, 20, 30])
    np.testing.assert_allclose(result.time, result.steps * 0.1)
    assert result.time_unit == "t" and result.group_loss.shape == (4, 3)
    assert result.method == method
    if method in ("cluster", "svd"):
        assert result.ari.size >= 1 and result.ari[0] == pytest.approx(1.0)
    else:
        assert result.ari.size == 0
    summary = result.summary()
    json.dumps(summary)  # JSON-ready
    assert len(summary["emergence_times"]) == 3 and summary["steps"] == 30
    assert summary["worst_group_final"] == pytest.approx(result.group_loss[-1].max())
    assert len(summary["ari"]) == result.ari.size


def test_train_task_on_parity_records_accuracy_in_steps():
    task = ParityTask(tasks=3, bits=8, width=16, batch_size=64, eval_per_task=16)
    result = train_task(task, "cluster", steps=20, lr=1e-2, optimizer="adam", record=[0, 5, 50])
    np.testing.assert_array_equal(result.steps, [0, 5, 20])
    np.testing.assert_array_equal(result.time, [0.0, 5.0, 20.0])
    assert result.time_unit == "step" and result.group_accuracy.shape == (3, 3)
    assert result.ari[0] == pytest.approx(1.0)  # task-code gradients separate the tasks


def test_make_method_rejects_unknown_names():
    with pytest.raises(ValueError):
        make_method("median", small_modes())


def test_compare_methods_gives_one_row_per_method():
    rows = compare_methods(
        "modes", ["mean", "grouped"], seeds=[0, 1], steps=900, lr=0.1, theory=True
    )
    assert [row["method"] for row in rows] == ["mean", "grouped"]
    for row in rows:
        assert row["seeds"] == 2 and row["time_unit"] == "t"
        assert {"spread", "spread_sd", "width", "worst_final", "wall_s"} <= set(row)
        assert row["theory_error"] < 0.05  # t = η·step: theory and training on one clock
    assert rows[1]["spread"] < rows[0]["spread"]  # equal s_g: grouped loss is simultaneous
    assert make_task("modes", 3).num_groups == 5
    table = table_markdown(rows)
    assert table.count("\n") == 3 and "| modes | grouped | 2 |" in table


def test_emergence_table_concatenates_tasks_and_adds_theory_to_modes_only():
    rows = emergence_table(
        ["modes", "parity"], ["mean"], seeds=[0], steps={"modes": 50, "parity": 20}
    )
    assert [(r["task"], r["steps"]) for r in rows] == [("modes", 50), ("parity", 20)]
    assert "theory_spread" in rows[0] and "theory_spread" not in rows[1]
    assert "acc_width" in rows[1]


def test_root_method_is_the_power_one_half_group_loss():
    method = make_method("root", small_modes())
    assert isinstance(method, PowerGroupedLoss) and method.name == "root"
    assert method.power == 0.5 and "root" in METHODS


# ------------------------------------------------------------------ theory against training

# Small η: the flow is the η → 0 limit of GD; its lag is ≈ η·λ/2 relative (λ the plateau rate).
ACCEPTANCE = [
    ("modes", "mean", 0.01, 8000),
    ("modes", "grouped", 0.01, 1200),
    ("modes-scale", "mean", 0.005, 7000),
    ("modes-scale", "grouped", 0.005, 2000),
]


def emergence(result, task):
    per_group = group_emergence(result.time, result.group_loss, task.threshold)
    return per_group["t_threshold"], per_group["t_half"]


@pytest.mark.parametrize("name, method, lr, steps", ACCEPTANCE)
def test_predicted_emergence_time_of_every_group_matches_training(name, method, lr, steps):
    """Issue #5 acceptance: every group's emergence time, flow vs full-batch GD, within 5 %.

    Both runs start from the same weights (same seed) and are sampled at every step,
    t = η·step; emergence = ℓ_g ≤ ℓ_ref,g/2 and the half of the group's own drop.
    """
    task = make_task(name, seed=0)
    trained = train_task(task, method, steps=steps, lr=lr, seed=0)
    predicted = predict_task(task, method, steps=steps, lr=lr, seed=0)
    np.testing.assert_array_equal(predicted.time, trained.time)
    for theory, measured in zip(emergence(predicted, task), emergence(trained, task), strict=True):
        assert np.isfinite(measured).all()
        np.testing.assert_allclose(theory, measured, rtol=0.05)
        assert np.abs(theory / measured - 1).max() < 0.015  # measured: ≤ 1.4 %


@pytest.mark.parametrize("name", ["modes", "modes-scale"])
def test_exact_gd_map_predicts_training_at_the_default_step(name):
    setting, task = TASKS[name], make_task(name, seed=1)
    steps = 1500
    trained = train_task(task, "grouped", steps=steps, lr=setting.lr, seed=1)
    predicted = predict_task(task, "grouped", steps, setting.lr, seed=1, discrete=True)
    np.testing.assert_allclose(predicted.group_loss, trained.group_loss, rtol=2e-3, atol=1e-7)
    for theory, measured in zip(emergence(predicted, task), emergence(trained, task), strict=True):
        np.testing.assert_allclose(theory, measured, rtol=1e-4)


SLOW_THEORY = [
    *[(name, method, range(5)) for name in ("modes", "modes-scale")
      for method in ("mean", "grouped", "root", "dro")],
    ("modes", "cluster", [0]),
    ("modes", "svd", [0]),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name, method, seeds", SLOW_THEORY)
def test_theory_predicts_every_seed_and_method_at_the_default_step(name, method, seeds):
    """Flow at the task's default η against training: within 5 % (the flow's lag, ≈ η·λ/2,
    is at most ~3 % here), and the exact GD map within 0.1 %. ``cluster`` is predicted by the
    grouped loss (its clusters are the true modes: ARI 1); ``svd`` by the orthogonal-gradient
    approximation Σ_g p̂_g ℓ_g², checked to 1 % on "modes" (distinct p̂_g, so distinct σ_g).
    On "modes-scale" (equal p̂_g) the σ_g are degenerate, the SVD directions mix the modes
    (ARI 0.6-0.8) and the approximation is off by up to 35 % (measured): not asserted."""
    setting = TASKS[name]
    for seed in seeds:
        task = make_task(name, seed)
        trained = train_task(task, method, steps=setting.steps, lr=setting.lr, seed=seed)
        if method == "cluster":
            assert trained.ari.min() == 1.0
        flow = predict_task(task, method, setting.steps, setting.lr, seed)
        gd = predict_task(task, method, setting.steps, setting.lr, seed, discrete=True)
        t_train = emergence(trained, task)[0]
        np.testing.assert_allclose(emergence(flow, task)[0], t_train, rtol=0.05)
        exact = 0.01 if method == "svd" else 1e-3
        np.testing.assert_allclose(emergence(gd, task)[0], t_train, rtol=exact)


@pytest.mark.slow
def test_parity_default_shows_per_task_emergence_within_minutes():
    setting = TASKS["parity"]
    task = make_task("parity", 0)
    result = train_task(
        task, "mean", setting.steps, setting.lr, optimizer=setting.optimizer, record=setting.record
    )
    assert result.wall_seconds < 180
    per_group = group_emergence(result.time, result.group_loss, task.threshold)
    assert np.isfinite(per_group["t_threshold"]).all()  # every task emerges
    # tasks emerge one after another (frequency order), each after a plateau at ln 2
    assert per_group["t_half"].max() / per_group["t_half"].min() > 4
    start = result.group_loss[result.steps <= 100]
    np.testing.assert_allclose(start, np.log(2), atol=0.03)


@pytest.mark.slow
def test_parity_cluster_grouping_finds_the_tasks_over_training():
    """Claim 12 on parity: ARI ≥ 0.8 at every re-clustering (task-code gradients)."""
    setting = TASKS["parity"]
    task = make_task("parity", 0)
    result = train_task(
        task, "cluster", 3000, setting.lr, optimizer=setting.optimizer, record=setting.record
    )
    assert result.ari.size == 60 and result.ari.min() >= 0.8
