"""Tasks are deterministic and correct; one training loop serves every method."""

import json

import numpy as np
import pytest
import torch

from validation.emergence import group_emergence
from validation.tasks import (
    METHODS,
    TASKS,
    ParityTask,
    compare_methods,
    emergence_table,
    make_method,
    make_task,
    table_markdown,
    train_task,
)


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


def small_parity() -> ParityTask:
    return ParityTask(tasks=3, bits=8, width=16, batch_size=64, eval_per_task=16)


@pytest.mark.parametrize("method", METHODS)
def test_train_task_runs_every_method_deterministically(method):
    task = small_parity()
    runs = [train_task(task, method, steps=30, lr=1e-2, seed=2, record=10, optimizer="adam")
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].group_loss, runs[1].group_loss)
    result = runs[0]
    np.testing.assert_array_equal(result.steps, [0, 10, 20, 30])
    np.testing.assert_allclose(result.time, result.steps)
    assert result.time_unit == "step" and result.group_loss.shape == (4, 3)
    assert result.method == method
    if method in ("cluster", "svd"):
        assert result.ari.size >= 1
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
        make_method("median", small_parity())


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
