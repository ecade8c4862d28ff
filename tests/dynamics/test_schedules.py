"""Learning-rate schedules (:mod:`dynamics.schedules`) against torch.optim.lr_scheduler: the
rate of every step, for all four schedules in several settings, is ``get_last_lr()`` after k
``scheduler.step()`` calls (one per ``optimizer.step()``), to 1e-15 relative; the text form of
the CLI; the one-line errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dynamics.schedules import (
    SCHEDULES,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    StepLR,
    schedule_from_text,
    times,
)

SETTINGS = [
    StepLR(step_size=7, gamma=0.9),
    StepLR(step_size=100, gamma=0.5),
    StepLR(step_size=1),
    ExponentialLR(gamma=0.999),
    ExponentialLR(gamma=0.95),
    CosineAnnealingLR(T_max=100),
    CosineAnnealingLR(T_max=300, eta_min=0.01),
    CosineAnnealingLR(T_max=37, eta_min=0.001),  # several periods in 2000 steps
    LinearLR(),
    LinearLR(start_factor=0.01, total_iters=1000),
    LinearLR(start_factor=1.0, end_factor=0.1, total_iters=50),
    LinearLR(start_factor=0.5, end_factor=0.0, total_iters=10),  # ends at η = 0
]


def _torch_rates(schedule, lr: float, steps: int) -> np.ndarray:
    """``get_last_lr()`` of the torch scheduler of the same name and arguments, before each of
    ``steps`` optimizer steps (the scheduler stepped after every optimizer step)."""
    torch = pytest.importorskip("torch")
    from torch.optim import lr_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    options = dict(vars(schedule))
    scheduler = getattr(lr_scheduler, type(schedule).__name__)(optimizer, **options)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
    return np.array(out)


@pytest.mark.parametrize("schedule", SETTINGS, ids=repr)
@pytest.mark.parametrize("lr", [0.1, 3e-4])
def test_rates_are_torchs(schedule, lr):
    steps = 2000
    want = _torch_rates(schedule, lr, steps)
    got = schedule.rates(lr, steps)
    assert got.shape == (steps,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert np.ptp(want) > 0  # the schedule does change η


def test_times_are_the_running_sum_of_the_rates():
    """t_k = Σ_{j<k} η_j; without a schedule t_k = η·k exactly."""
    schedule = CosineAnnealingLR(T_max=20, eta_min=0.01)
    rates = schedule.rates(0.1, 50)
    t = times(0.1, 50, schedule)
    assert t[0] == 0.0 and t.shape == (51,)
    assert t[1:].tolist() == list(np.cumsum(rates))
    assert t[-1] == pytest.approx(sum(rates), rel=1e-14)
    assert times(0.1, 5).tolist() == [0.1 * k for k in range(6)]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("step:step_size=100,gamma=0.5", StepLR(100, 0.5)),
        ("StepLR:step_size=3", StepLR(3)),
        ("exponential:gamma=0.999", ExponentialLR(0.999)),
        ("cosine:T_max=1000,eta_min=1e-4", CosineAnnealingLR(1000, 1e-4)),
        ("linear:start_factor=0.1, total_iters=100", LinearLR(0.1, 1.0, 100)),
        ("linear", LinearLR()),
    ],
)
def test_text_form(text, want):
    assert schedule_from_text(text) == want
    assert schedule_from_text(want.text()) == want


def test_text_round_trips_exactly():
    odd = CosineAnnealingLR(T_max=1234, eta_min=0.1 + 0.2)
    assert odd.text() == "cosine:T_max=1234,eta_min=0.30000000000000004"
    assert schedule_from_text(odd.text()) == odd


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("warmup:total_iters=3", "unknown schedule 'warmup'"),
        ("step:gamma=0.5", "missing step_size"),
        ("step:step_size=1.5", "step_size must be an integer"),
        ("step:step_size=10,beta=2", "KEY one of step_size, gamma"),
        ("step:step_size", "KEY=VALUE"),
        ("exponential:gamma=abc", "gamma must be a number"),
        ("exponential:gamma=0", "gamma must be a finite number > 0"),
        ("cosine:T_max=0", "T_max must be an integer >= 1"),
        ("cosine:T_max=10,eta_min=-1", "eta_min must be a finite number >= 0"),
        ("linear:start_factor=0", "start_factor must be a finite number > 0 and <= 1"),
        ("linear:end_factor=2", "end_factor must be a finite number >= 0 and <= 1"),
    ],
)
def test_bad_text_is_one_line(text, match):
    with pytest.raises(ValueError, match=match) as info:
        schedule_from_text(text)
    assert "\n" not in str(info.value)


def test_every_schedule_has_a_short_name_and_torchs_class_name():
    from dataclasses import fields

    assert set(SCHEDULES) == {"step", "exponential", "cosine", "linear"}
    for name, cls in SCHEDULES.items():
        assert cls.name == name
        assert cls.__name__ in ("StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR")
        assert "name" not in [f.name for f in fields(cls)]
