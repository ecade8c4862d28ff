"""One record object and one stop object (issue 17, Build 3): ``SaveAt`` and ``Stop`` used by
``predict``, training's record steps and the report's thinning; oracles are closed forms and
numpy written here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dynamics.errors import UsageError
from dynamics.integrate import predict
from dynamics.methods import Discrete, Flow
from dynamics.problems import Vector
from dynamics.record import SaveAt, Stop, as_saveat


def _log_crossing(t: np.ndarray, loss: np.ndarray, level: float) -> float:
    """Oracle: first t with L ≤ level, linear in ln L between the bracketing samples."""
    i = int(np.argmax(loss <= level))
    a, b = math.log(loss[i - 1]), math.log(loss[i])
    return float(t[i - 1] + (a - math.log(level)) / (a - b) * (t[i] - t[i - 1]))


# ----------------------------------------------------------------------------- SaveAt schemes


def test_step_indices_of_each_mode():
    assert SaveAt.every().step_indices(5).tolist() == [0, 1, 2, 3, 4, 5]
    assert SaveAt.at(3).step_indices(10).tolist() == [0, 3, 6, 9, 10]
    assert SaveAt.at([50, 5, 2, 5]).step_indices(10).tolist() == [0, 2, 5, 10]
    assert SaveAt.log().step_indices(50).tolist() == list(range(51))  # all early steps
    log = SaveAt.log().step_indices(100_000)
    assert log[0] == 0 and log[-1] == 100_000 and np.all(np.diff(log) > 0)
    assert set(range(101)) <= set(log.tolist())  # every step up to 100
    assert 400 <= log.size <= 700  # 101 early + 200 log + 201 linear, overlaps merged
    grid = SaveAt.grid(11).step_indices(100)
    assert grid.tolist() == list(range(0, 101, 10))


def test_legacy_record_names_map_onto_saveat():
    assert as_saveat("all", "log") == SaveAt.every()
    assert as_saveat(None, "log") == SaveAt.log()
    assert as_saveat(7, "log") == SaveAt.at(7)
    with pytest.raises(UsageError, match="record"):
        as_saveat("sometimes", "log")
    with pytest.raises(UsageError, match="ratio"):
        SaveAt.log(ratio=1.0)
    with pytest.raises(UsageError, match="t_max"):
        Stop(t_max=-1.0)
    with pytest.raises(UsageError, match="loss"):
        Stop(loss=float("nan"))


def test_times_and_thin_are_half_linear_half_log():
    t = SaveAt.grid(100).times(10.0, first=1e-3)
    assert t[0] == 0 and t[-1] == pytest.approx(10.0) and np.all(np.diff(t) > 0)
    linear = np.linspace(0, 10, 50)
    log = np.geomspace(1e-3, 10, 50)
    np.testing.assert_allclose(np.unique(np.concatenate([[0], linear, log])), t, rtol=1e-15)
    curve = np.linspace(0, 5, 10_001)
    keep = SaveAt.grid(200).thin(curve)
    assert keep[0] == 0 and keep[-1] == curve.size - 1 and keep.size <= 202
    # log-spaced marks: dense early (linear marks alone would put 1 sample below 1 % of t_end)
    assert np.sum(curve[keep] < 1e-2 * curve[-1]) >= 30
    assert SaveAt.grid(200).thin(curve[:150]).tolist() == list(range(150))


@pytest.mark.parametrize("saveat", [SaveAt.log(), SaveAt.at(97), SaveAt.grid(30)])
def test_recorder_keeps_every_crossing_exactly(saveat):
    """Streamed through any record, the kept samples give the crossing times of every step."""
    steps = np.arange(5000)
    t = 0.01 * steps
    loss = 1.0 / (1.0 + np.exp(2 * (t - 20))) + 1e-4 * np.exp(-t)  # an S-curve, L_ref ≈ 1
    rec = saveat.recorder(1.0)
    for k in steps:
        rec.add(int(k), float(t[k]), float(loss[k]), {})
    rec.finish()
    kept_t, kept = np.array(rec.t), np.array(rec.loss)
    assert kept.size < steps.size / 4 and rec.steps[0] == 0 and rec.steps[-1] == 4999
    for f in (0.5, 0.1, 0.01):
        assert _log_crossing(kept_t, kept, f) == _log_crossing(t, loss, f)


# ----------------------------------------------------------------------------- predict


def _vector() -> Vector:
    return Vector.sample(6, init=1e-2, seed=3)


def test_stop_at_a_loss_level_ends_gd_at_the_first_step_below():
    """Vector GD: x_k − a = (1 − η)^k (x_0 − a), so L_k = L_0 (1 − η)^{2k}: the first step
    below 0.1·L_ref is k* = ⌊ln(0.1 L_ref/L_0) / (2 ln(1 − η))⌋ + 1."""
    spec, lr = _vector(), 0.05
    traj = predict(spec, Discrete(lr), SaveAt.every(), Stop(loss=0.1))
    a, x0 = spec.a[:, 0], spec.x0[:, 0]
    l0 = 0.5 * float(np.sum((a - x0) ** 2))
    k_star = math.floor(math.log(0.1 * spec.l_ref / l0) / (2 * math.log(1 - lr))) + 1
    assert traj.steps[-1] == k_star
    assert traj.t[-1] == pytest.approx(lr * k_star, rel=1e-15)
    np.testing.assert_allclose(traj.loss, l0 * (1 - lr) ** (2 * traj.steps), rtol=1e-12)


def test_stop_t_max_is_the_t_max_shorthand():
    spec = _vector()
    a = predict(spec, Discrete(0.05), stop=Stop(t_max=2.0))
    b = predict(spec, Discrete(0.05), t_max=2.0)
    assert a.steps[-1] == b.steps[-1] == 40
    np.testing.assert_array_equal(a.loss, b.loss)
    with pytest.raises(ValueError, match="end time once"):
        predict(spec, Discrete(0.05), stop=Stop(t_max=2.0), t_max=2.0)
    with pytest.raises(ValueError, match="save once"):
        predict(spec, Discrete(0.05), SaveAt.every(), record="all")


def test_flow_saves_on_the_grid_asked_and_refuses_steps():
    """Closed form: L(t) = L_0 e^{−2t}, so t_f = ln(1/f')/2 with f' = f·L_ref/L_0."""
    spec = _vector()
    traj = predict(spec, Flow(), SaveAt.grid(200), Stop(t_max=10.0))
    assert 200 <= traj.t.size <= 2 * 200 + 3  # the grid, its refinement, the crossings
    a, x0 = spec.a[:, 0], spec.x0[:, 0]
    l0 = 0.5 * float(np.sum((a - x0) ** 2))
    for f, t_f in traj.crossing_times().items():
        assert t_f == pytest.approx(0.5 * math.log(l0 / (f * spec.l_ref)), rel=1e-8)
    with pytest.raises(UsageError, match="grid"):
        predict(spec, Flow(), SaveAt.every())


def test_discrete_saveat_at_keeps_listed_steps_and_crossings():
    spec, lr = _vector(), 0.05
    every = predict(spec, Discrete(lr))
    some = predict(spec, Discrete(lr), SaveAt.at(50))
    assert set(range(0, every.steps[-1], 50)) <= set(some.steps.tolist())
    assert some.crossing_times() == every.crossing_times()
    assert dataclasses.replace(some).steps.tolist() == some.steps.tolist()
