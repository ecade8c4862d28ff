"""``scurve sweep committee``: committee specs run through the sweep's cells (registry hook
``sweep``, figures.committee_cli.sweep_cell), and a 2 × 1 grid gives the numbers of the single
``scurve sample`` / ``predict`` / ``train`` runs of each cell (their CSV curves read back here)."""

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dynamics.trajectory import Trajectory
from figures.cli import main
from figures.sweep import SweepError, sweep

N, LR, STEPS = 40, 0.5, 800  # training horizon t = η·steps/N = 10


def _curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["t"]) for r in rows]), np.array([float(r["loss"]) for r in rows]))


def test_committee_sweep_equals_single_runs(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        rows = sweep("committee", ["init=0.3,1.0"], theories=("online",), train="sgd",
                     steps=STEPS, defaults={"n": N, "lr": LR}, executor=pool)
    assert [(r["init"], r["source"]) for r in rows] == [
        (0.3, "online"), (0.3, "train"), (1.0, "online"), (1.0, "train")]
    for init in (0.3, 1.0):
        spec = tmp_path / f"c{init}.npz"
        assert main(["sample", "committee", "--n", str(N), "--init", str(init), "--seed", "0",
                     "-o", str(spec)]) == 0
        ode, run = tmp_path / f"ode{init}.csv", tmp_path / f"train{init}.csv"
        assert main(["predict", str(spec), "--method", "online", "--lr", str(LR), "--t-max",
                     str(1.5 * LR * STEPS / N), "--csv", str(ode)]) == 0
        assert main(["train", str(spec), "--lr", str(LR), "--steps", str(STEPS), "--seeds", "1",
                     "--dtype", "float64", "--csv", str(run)]) == 0
        got = {r["source"]: r for r in rows if r["init"] == init}
        for source, path in (("online", ode), ("train", run)):
            t, loss = _curve(path)
            l_ref = got[source]["l_ref"]
            single = Trajectory(t, loss, l_ref).crossing_times((0.5,))[0.5]
            assert single is not None and got[source]["t_0.5"] == pytest.approx(single,
                                                                                rel=1e-9)
            assert got[source]["final_loss"] == pytest.approx(loss[-1], rel=1e-9)
        assert got["online"]["verdict"]  # judged against training


def test_committee_sweep_refuses_linear_theories() -> None:
    with pytest.raises(SweepError, match="unknown method 'discrete'"):
        sweep("committee", ["init=0.1"], theories=("discrete",), defaults={"n": 10})
    with pytest.raises(SweepError, match="online SGD"):
        sweep("committee", ["init=0.1"], theories=("online",), train="adam", defaults={"n": 10})
