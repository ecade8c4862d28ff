"""Tasks are deterministic and correct; one training loop serves every method."""

import json

import numpy as np
import pytest
import torch

from dynamics.groups import objective
from figures.task_tables import table_markdown
from validation.emergence import plateau_to_drop
from validation.grouped import ObjectiveLoss
from validation.tasks import (
    METHODS,
    TASKS,
    ParityTask,
    compare_methods,
    emergence_table,
    grouped_runs,
    make_method,
    make_task,
    train_task,
)

PARAMS = {"power": {"q": 0.5}, "tilted": {"tau": 2.0}}


class LinearModes:
    """A small regression task of examples, for the shared example-based loop (the package's
    modes tasks are specs): y = W₂W₁x fitting y = Cx, C = Σ_g s_g u_g v_gᵀ, examples x = v_g
    with counts n_g, ℓ = ½‖output − target‖² per example (the task protocol of
    validation.tasks)."""

    name, time_unit, gradient_params = "linear-modes", "t", None

    def __init__(self, seed: int = 0, n: int = 6, hidden: int = 5, std: float = 0.1) -> None:
        self.scales, self.counts = np.array([1.0, 2.0, 1.5]), np.array([10, 6, 4])
        rng = np.random.default_rng(seed)
        u, v = (np.linalg.qr(rng.standard_normal((n, 3)))[0] for _ in range(2))
        self.n, self.hidden, self.std = n, hidden, std
        self.labels = torch.as_tensor(np.repeat(np.arange(3), self.counts))
        self.inputs = torch.as_tensor(v.T[self.labels.numpy()], dtype=torch.float32)
        target = u @ np.diag(self.scales) @ v.T
        self.targets = self.inputs @ torch.as_tensor(target.T, dtype=torch.float32)

    num_groups = 3

    @property
    def frequencies(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    @property
    def reference_loss(self) -> np.ndarray:
        return self.scales**2 / 2

    @property
    def threshold(self) -> np.ndarray:
        return self.reference_loss / 2

    def make_model(self, generator: torch.Generator) -> torch.nn.Module:
        model = torch.nn.Sequential(torch.nn.Linear(self.n, self.hidden, bias=False),
                                    torch.nn.Linear(self.hidden, self.n, bias=False))
        for w in model.parameters():
            torch.nn.init.normal_(w, std=self.std, generator=generator)
        return model

    def batch(self, generator: torch.Generator):
        return self.inputs, self.targets, self.labels

    @staticmethod
    def per_example_loss(outputs, targets):
        return 0.5 * ((outputs - targets) ** 2).sum(dim=1)

    @torch.no_grad()
    def evaluate(self, model):
        x = self.inputs.to(next(model.parameters()).dtype)
        losses = self.per_example_loss(model(x), self.targets.to(x.dtype)).double().numpy()
        return np.bincount(self.labels.numpy(), losses, 3) / self.counts, None


def small_modes(seed: int = 0) -> LinearModes:
    return LinearModes(seed)


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
    runs = [train_task(task, make_method(method, task, 2, **PARAMS.get(method, {})), steps=30,
                       lr=0.1, seed=2, record=10) for _ in range(2)]  # fmt: skip
    np.testing.assert_array_equal(runs[0].group_loss, runs[1].group_loss)
    result = runs[0]
    np.testing.assert_array_equal(result.steps, [0, 10, 20, 30])
    np.testing.assert_allclose(result.time, result.steps * 0.1)
    assert result.time_unit == "t" and result.group_loss.shape == (4, 3)
    assert result.method == method and result.params == objective_params(method)
    np.testing.assert_allclose(result.frequencies, task.frequencies)
    if method in ("cluster", "svd"):
        assert result.ari.size >= 1 and result.ari[0] == pytest.approx(1.0)
    else:
        assert result.ari.size == 0
    summary = result.summary()
    json.dumps(summary)  # JSON-ready
    assert len(summary["emergence_times"]) == 3 and summary["steps"] == 30
    assert summary["worst_group_final"] == pytest.approx(result.group_loss[-1].max())
    assert summary["mean_final"] == pytest.approx(task.frequencies @ result.group_loss[-1])
    assert len(summary["plateau_to_drop"]) == 3 and summary["seconds_per_step"] > 0
    assert [a["t"] for a in summary["ari"]] == pytest.approx(0.1 * result.ari_steps)
    assert ("gradient_groups" in summary) == (method in ("cluster", "svd"))


def objective_params(method: str) -> dict:
    if method in ("cluster", "svd"):
        return {}
    return objective(method, **PARAMS.get(method, {})).params


def test_objective_methods_train_as_their_handwritten_losses():
    """One SGD step of power q = ½ against θ ← θ − η ∇_θ Σ_g ℓ_g^{3/2}/(3/2) by autograd."""
    task = small_modes()
    result = train_task(task, make_method("power", task, q=0.5), steps=1, lr=0.1, seed=4,
                        dtype=torch.float64)
    model = task.make_model(torch.Generator().manual_seed(4)).double()
    x, y, g = task.batch(torch.Generator())
    losses = task.per_example_loss(model(x.double()), y.double())
    ell = torch.stack([losses[g == k].mean() for k in range(3)])
    (ell ** 1.5 / 1.5).sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    np.testing.assert_allclose(result.group_loss[-1], task.evaluate(model)[0], rtol=1e-12)


def test_train_task_on_parity_records_accuracy_in_steps():
    task = ParityTask(tasks=3, bits=8, width=16, batch_size=64, eval_per_task=16)
    result = train_task(task, "cluster", steps=20, lr=1e-2, optimizer="adam", record=[0, 5, 50])
    np.testing.assert_array_equal(result.steps, [0, 5, 20])
    np.testing.assert_array_equal(result.time, [0.0, 5.0, 20.0])
    assert result.time_unit == "step" and result.group_accuracy.shape == (3, 3)
    record = result.clusterings[0]
    assert record["parameters"] == sum(p.numel() for p in task.make_model(
        torch.Generator()).parameters())  # the whole model by default
    # the task-code block alone separates the tasks by construction
    code = ParityTask(tasks=3, bits=8, width=16, batch_size=64, gradient_params=("code.*",))
    assert train_task(code, "cluster", steps=1, lr=1e-2, optimizer="adam").ari[0] == 1.0


def test_side_probe_clusters_without_changing_the_training():
    task = ParityTask(tasks=3, bits=8, width=16, batch_size=96, eval_per_task=16)
    plain = train_task(task, "mean", steps=30, lr=1e-2, optimizer="adam", record=10)
    probed = train_task(task, "mean", steps=30, lr=1e-2, optimizer="adam", record=10,
                        probe_every=10, probe_options={"num_clusters": None, "examples": 48})
    np.testing.assert_array_equal(plain.group_loss, probed.group_loss)
    assert probed.probe and [c["step"] for c in probed.clusterings] == [0, 10, 20]
    assert all(c["examples"] == 48 and 2 <= c["k"] <= 10 for c in probed.clusterings)
    groups = probed.summary()["gradient_groups"]
    assert groups["source"] == "probe" and groups["k_rule"] == "eigengap"
    assert len(groups["recovered_at"]) == 3 and len(groups["relation"]) == 3
    assert groups["cost"]["reclusterings"] == 3 and groups["cost"]["seconds_gradients"] > 0
    assert plain.clusterings == [] and "gradient_groups" not in plain.summary()


def test_make_method_rejects_unknown_names_and_misplaced_parameters():
    task = small_modes()
    with pytest.raises(ValueError, match="unknown method"):
        make_method("median", task)
    with pytest.raises(ValueError, match="needs a finite q"):
        make_method("power", task)
    with pytest.raises(ValueError, match="takes no"):
        make_method("grouped", task, tau=1.0)
    with pytest.raises(ValueError, match="takes no options"):
        make_method("mean", task, recluster_every=3)
    assert make_method("cluster", task, q=2.0).loss.objective.label == "power(q=2)"
    with pytest.raises(ValueError, match="unknown task"):
        make_task("sudoku")


def test_grouped_runs_reports_every_key_per_seed():
    runs = grouped_runs("modes", "tilted", seeds=[0, 1], tau=1.0, steps=40, reference_every=10)
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:
        json.dumps(run)
        assert run["params"] == {"tau": 1.0} and run["overhead"] > 0
        for key in ("emergence_times", "spread", "widths", "plateau_to_drop",
                    "worst_group_final", "mean_final", "ari"):
            assert key in run
    (mean,) = grouped_runs("parity", "mean", seeds=[0], steps=3, quick=True)
    assert mean["overhead"] > 0 and mean["steps"] == 3


def test_reference_timing_leaves_the_training_unchanged():
    task = small_modes()
    plain = train_task(task, "grouped", steps=20, lr=0.1, seed=1)
    timed = train_task(task, "grouped", steps=20, lr=0.1, seed=1, reference_every=5)
    np.testing.assert_array_equal(plain.group_loss, timed.group_loss)
    assert plain.overhead is None and 0 < timed.overhead < np.inf


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


def test_root_method_is_the_root_objective():
    method = make_method("root", small_modes())
    assert isinstance(method, ObjectiveLoss) and method.name == "root"
    assert method.objective == objective("root") and "root" in METHODS


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_default_regime_has_plateaus_longer_than_drops(seed):
    """The TASKS regime under the mean loss: median plateau/drop ≥ 1 (the loss stays within
    10 % of its start at least as long as it then takes from 90 % to 20 %), emergence spread
    t_last/t_first ≥ 3, every task learned."""
    setting = TASKS["parity"]
    task = make_task("parity", seed)
    result = train_task(task, "mean", setting.steps, setting.lr, seed,
                        optimizer=setting.optimizer, record=setting.record)
    ratios = plateau_to_drop(result.time, result.group_loss)["ratio"]
    assert np.isfinite(ratios).all() and np.median(ratios) >= 1.0
    assert result.summary()["spread"] >= 3.0
    start = result.group_loss[result.steps <= 100]
    np.testing.assert_allclose(start, np.log(2), atol=0.03)
