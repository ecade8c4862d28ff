"""Emergence metrics on curves whose crossing times are known exactly."""

import numpy as np
import pytest

from validation.emergence import (
    accuracy_emergence,
    adjusted_rand,
    crossing_time,
    drop_times,
    emergence_spread,
    group_emergence,
    loss_dispersion,
    summarize_run,
    worst_group_loss,
)

RATE = np.log(9.0)  # 10 % → 90 % of a logistic drop takes 2 ln 9 / RATE = 2 time units
FLOOR, HEIGHT = 0.01, 1.0


def logistic_drops(t: np.ndarray, centres: list[float]) -> np.ndarray:
    """ℓ_g(t) = FLOOR + HEIGHT / (1 + exp(RATE (t − t_g))): half drop at t_g, t_10 = t_g − 1,
    t_90 = t_g + 1 (the start and end differ from FLOOR + HEIGHT and FLOOR by < 1e-9)."""
    return np.stack([FLOOR + HEIGHT / (1 + np.exp(RATE * (t - c))) for c in centres], axis=1)


def test_crossing_time_is_exact_for_exponentials_in_log_interpolation():
    t = np.arange(0.0, 6.0, 1.0)
    assert crossing_time(t, np.exp(-t), np.exp(-2.5)) == pytest.approx(2.5, abs=1e-12)
    assert crossing_time(t, np.exp(-t), 2.0) == 0.0
    assert np.isnan(crossing_time(t, np.exp(-t), 1e-6))


def test_drop_times_are_nan_without_a_drop():
    t = np.arange(4.0)
    assert np.isnan(drop_times(t, np.array([1.0, 1.2, 1.1, 1.0]), np.array([0.5]))).all()


def test_group_emergence_on_logistic_curves_recovers_the_known_times():
    t = np.arange(0.0, 40.5, 0.5)
    centres = [10.0, 15.0, 20.0]
    loss = logistic_drops(t, centres)
    per_group = group_emergence(t, loss, threshold=FLOOR + HEIGHT / 2)
    np.testing.assert_allclose(per_group["t_half"], centres, atol=1e-6)
    np.testing.assert_allclose(per_group["t_10"], np.subtract(centres, 1), atol=1e-6)
    np.testing.assert_allclose(per_group["t_90"], np.add(centres, 1), atol=1e-6)
    np.testing.assert_allclose(per_group["width"], 2 / np.array(centres), atol=1e-6)
    np.testing.assert_allclose(per_group["t_threshold"], centres, atol=1e-6)
    spread = emergence_spread(per_group["t_half"])
    assert spread["ratio"] == pytest.approx(2.0, abs=1e-6)
    assert spread["sd_log"] == pytest.approx(np.log(centres).std(), abs=1e-6)


def test_group_that_never_reaches_the_threshold_has_no_emergence_time():
    t = np.arange(0.0, 40.5, 0.5)
    loss = logistic_drops(t, [10.0, 100.0])  # the second drop has not happened by t = 40
    per_group = group_emergence(t, loss, threshold=np.array([0.5, 0.5]))
    assert np.isfinite(per_group["t_half"][0]) and np.isnan(per_group["t_half"][1])
    assert np.isnan(emergence_spread(per_group["t_half"])["ratio"])


def test_across_group_curves_and_ari():
    loss = np.array([[1.0, 4.0], [0.5, 0.5], [0.1, 1e-3]])
    np.testing.assert_allclose(worst_group_loss(loss), [4.0, 0.5, 0.1])
    np.testing.assert_allclose(loss_dispersion(loss), [np.log(4) / 2, 0.0, np.log(100) / 2])
    assert adjusted_rand(np.array([2, 2, 0, 0, 1]), np.array([0, 0, 1, 1, 2])) == 1.0
    assert adjusted_rand(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) < 0


def test_summarize_run_of_logistic_curves():
    t = np.arange(0.0, 40.5, 0.5)
    loss = logistic_drops(t, [10.0, 20.0])
    summary = summarize_run(t, loss, threshold=0.5)
    assert summary["t_first"] == pytest.approx(10.0, abs=1e-6)
    assert summary["t_last"] == pytest.approx(20.0, abs=1e-6)
    assert summary["spread"] == pytest.approx(2.0, abs=1e-6)
    assert summary["width"] == pytest.approx((0.2 + 0.1) / 2, abs=1e-6)
    assert summary["emerged"] == 1.0
    assert summary["worst_final"] == pytest.approx(loss[-1].max())


def test_accuracy_emergence_of_linear_rises():
    # accuracy rises linearly from 0.5 at t = 10 + g to 1.0 at t = 20 + g (group g)
    t = np.arange(0.0, 40.5, 0.5)
    acc = np.stack([np.clip(0.5 + 0.05 * (t - 10 - g), 0.5, 1.0) for g in (0, 4)], axis=1)
    rise = accuracy_emergence(t, acc)
    np.testing.assert_allclose(rise["t_lo"], [12.0, 16.0])  # 0.6 = chance + 0.2·(1 − chance)
    np.testing.assert_allclose(rise["t_mid"], [15.0, 19.0])
    np.testing.assert_allclose(rise["t_hi"], [18.0, 22.0])
    np.testing.assert_allclose(rise["width"], [6 / 15, 6 / 19])
    flat = accuracy_emergence(t, np.full((t.size, 1), 0.55))
    assert np.isnan(flat["t_mid"]).all()
    loss = logistic_drops(t, [15.0, 19.0])
    summary = summarize_run(t, loss, threshold=0.5, group_accuracy=acc)
    assert summary["acc_width"] == pytest.approx(np.median([6 / 15, 6 / 19]))
    assert summary["acc_spread"] == pytest.approx(19 / 15)
    assert np.isnan(summarize_run(t, loss, threshold=0.5)["acc_width"])
