"""The report's training job measures time with the run's own clock: under a learning-rate
schedule t_k = Σ_{j<k} η_j (dynamics.schedules), not η·k."""

from __future__ import annotations

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.schedules import StepLR
from dynamics.schedules import times as schedule_times
from figures.reporting.jobs import job_train


def test_job_train_crossings_use_the_schedules_clock() -> None:
    """StepLR (η × 0.8 every 5 steps): the job's t_0.5 equals the exact GD map's with the same
    schedule (which runs in t_k = Σ η_j) to rounding; η·k would put it ~35 % later."""
    schedule = StepLR(step_size=5, gamma=0.8)
    spec_config = {"kind": "factorization", "n": 6, "rank": 1, "init": 0.1, "scale": 3.0,
                   "seed": 0}
    out = job_train({"specs": [spec_config],
                     "train": {"lr": 0.2, "steps": 100, "schedule": schedule,
                               "dtype": "float64", "device": "cpu"}})
    from figures.reporting.jobs import make_spec

    theory = predict(make_spec(spec_config), Discrete(0.2, schedule=schedule), t_max=10.0)
    want = theory.crossing_times((0.5,))[0.5]
    got = out["runs"][0]["crossings"]["0.5"]
    assert want is not None and got == pytest.approx(want, rel=1e-9)
    step = int(np.searchsorted(schedule_times(0.2, 100, schedule), want))
    assert 0.2 * step > 1.2 * want  # η·k at that step: far off


def test_job_predict_reads_mechanistic_phases_through_the_models_hook() -> None:
    """A squared-loss factorization gets mechanistic phases (its module registers the mode
    strengths); a chain, an attention head or a factorization with weight decay gets None."""
    from figures.reporting.jobs import job_predict

    base = {"n": 6, "rank": 1, "init": 1e-3, "seed": 0}
    got = job_predict({"spec": {"kind": "factorization", **base}, "method": "flow"})
    assert got["mechanistic"] is not None and got["mechanistic"]["plateaus"]
    for spec in ({"kind": "factorization", **base, "weight_decay": 0.1},
                 {"kind": "attention", "d": 6, "rank": 1, "init": 1e-3, "seed": 0}):
        assert job_predict({"spec": spec, "method": "flow"})["mechanistic"] is None
