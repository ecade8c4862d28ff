"""The report's training runs (sweep cells, :func:`figures.reporting.sections._runs.train_cell`)
take time from steps via :mod:`dynamics.schedules` (t_k = Σ_{j<k} η_j), not η·k: checked
against the rates of a step schedule written out by hand."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("torch")

from dynamics.schedules import StepLR
from figures.reporting.jobs import make_spec
from figures.sweep import sweep
from validation.training import TrainConfig, train

SPEC = {"kind": "factorization", "n": 4, "rank": 1, "init": 1e-3, "seed": 0}
LR, STEPS, STEP_SIZE, GAMMA = 0.1, 600, 150, 0.5


def test_a_training_cell_times_a_scheduled_run_by_the_summed_rates():
    train_options = {"optimizer": "sgd", "lr": LR, "steps": STEPS, "dtype": "float64",
                     "device": "cpu"}
    options = {k: v for k, v in SPEC.items() if k not in ("kind", "seed")}
    schedule = f"step:step_size={STEP_SIZE},gamma={GAMMA}"
    with ThreadPoolExecutor(1) as pool:
        (row,) = sweep("factorization", [], seeds=[SPEC["seed"]], theories=(), train="sgd",
                       steps=STEPS, record=True, train_record="log", executor=pool,
                       defaults={**options, "lr": LR, "schedule": schedule})
    t_half = row["run"]["crossings"]["0.5"]
    assert row["t_0.5"] == t_half  # the table's column is the summary's
    # Oracle: the rates of torch's StepLR written out, summed in order (t_0 = 0).
    rates = LR * GAMMA ** (np.arange(STEPS) // STEP_SIZE)
    t = np.concatenate([[0.0], np.cumsum(rates)])
    spec = make_spec(SPEC)
    loss = train([spec], TrainConfig(**train_options, schedule=StepLR(
        step_size=STEP_SIZE, gamma=GAMMA))).loss[0]
    k = int(np.flatnonzero(loss <= 0.5 * spec.l_ref)[0])  # first step at or below the level
    assert k > STEP_SIZE  # the crossing is after the first rate drop: the schedule matters
    assert t[k - 1] <= t_half <= t[k]
    assert t_half < LR * (k - 1)  # η·k would put it later
