"""What a report job keeps of a wide run: every learned vector judged, at most
``STORED_VECTORS`` of them stored for the figures (which draw their median and band)."""

from __future__ import annotations

import numpy as np

from dynamics.trajectory import Trajectory
from figures.reporting.jobs import STORED_VECTORS, summarize


def _trajectory(k: int, steps: int = 50) -> Trajectory:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 10.0, steps)
    loss = np.exp(-t) + 1e-3
    cosines = {"X": rng.uniform(-1, 1, (steps, 2, k)), "Y": rng.uniform(-1, 1, (steps, 2, k))}
    norms = {"X": rng.uniform(0.5, 2, (steps, k)), "Y": rng.uniform(0.5, 2, (steps, k))}
    return Trajectory(t, loss, 1.0, cosines, norms, "flow")


def test_a_wide_run_is_judged_on_every_vector_and_stores_a_few_evenly_spaced():
    traj = _trajectory(100)
    run = summarize(traj)
    assert run["factors"]["X"]["vectors"] == 100  # judged on all of them
    stored = run["trajectory"]
    kept = np.unique(np.linspace(0, 99, STORED_VECTORS).round().astype(int))
    assert stored.norms["X"].shape == (50, kept.size) and kept.size == STORED_VECTORS
    np.testing.assert_array_equal(stored.norms["Y"], traj.norms["Y"][:, kept].astype(np.float32))
    # 2 targets × 100 vectors is compacted to max_j |cos| per vector (_thin): what is plotted
    np.testing.assert_array_equal(stored.cosines["X"],
                                  np.abs(traj.cosines["X"][:, :, kept]).max(axis=1, keepdims=True)
                                  .astype(np.float32))
    np.testing.assert_array_equal(stored.loss, traj.loss)


def test_a_narrow_run_is_stored_whole():
    traj = _trajectory(3)
    stored = summarize(traj)["trajectory"]
    np.testing.assert_array_equal(stored.norms["X"], traj.norms["X"].astype(np.float32))
    np.testing.assert_array_equal(stored.cosines["Y"], traj.cosines["Y"].astype(np.float32))


def test_stored_curves_are_float32_and_loss_and_time_stay_float64():
    traj = _trajectory(3)
    run = summarize(traj)
    stored = run["trajectory"]
    assert stored.t.dtype == np.float64 and stored.loss.dtype == np.float64  # claims read L(t)
    assert all(v.dtype == np.float32 for v in (*stored.cosines.values(), *stored.norms.values()))
    np.testing.assert_allclose(stored.norms["X"], traj.norms["X"], rtol=1e-7)  # float32: 6e-8


def test_data_files_round_floats_to_seven_digits_and_keep_everything_else(tmp_path):
    import csv

    from figures.reporting.blocks import write_csv

    rows = [{"x": 0.9999994260767537, "y": 1.0, "n": 3, "s": "a", "b": True, "z": np.float64(1e-3),
             "nan": float("nan"), "none": None, "big": 123456789.123}]
    path = write_csv(tmp_path / "rows.csv", rows)
    (row,) = csv.DictReader(path.open())
    assert row == {"x": "0.9999994", "y": "1.0", "n": "3", "s": "a", "b": "True", "z": "0.001",
                   "nan": "nan", "none": "", "big": "123456800.0"}
    assert abs(float(row["x"]) / rows[0]["x"] - 1) < 1e-7  # 7 significant digits
