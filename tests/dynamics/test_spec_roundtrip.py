"""save -> load keeps a grouped spec's objective (stored once, as its parsed label)."""

from __future__ import annotations

import pytest

from dynamics.problems import load, sample_modes, save


@pytest.mark.parametrize("objective", ["mean", "power(q=1)", "dro(step=0.01)"])
def test_grouped_round_trip_keeps_objective(objective, tmp_path) -> None:
    spec = sample_modes([1.0, 2.0], [0.6, 0.4], n=5, hidden=3, examples=16, seed=1,
                        objective=objective)
    back = load(save(spec, tmp_path / "modes.npz"))
    assert back == spec
    assert back.group_objective.label == spec.group_objective.label
