"""Tasks are deterministic and correct; one training loop serves every method."""

import numpy as np
import pytest
import torch

from validation.tasks import (
    METHODS,
    ModesTask,
    ParityTask,
    compare_methods,
    make_method,
    make_task,
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
    rows = compare_methods("modes", ["mean", "grouped"], seeds=[0, 1], steps=900, lr=0.1)
    assert [row["method"] for row in rows] == ["mean", "grouped"]
    for row in rows:
        assert row["seeds"] == 2 and row["time_unit"] == "t"
        assert {"spread", "spread_sd", "width", "worst_final", "wall_s"} <= set(row)
    assert rows[1]["spread"] < rows[0]["spread"]  # equal s_g: grouped loss is simultaneous
    assert make_task("modes", 3).num_groups == 5
