"""Emergence metrics on curves whose crossing times are known exactly."""

import numpy as np
import pytest
import torch

from validation.emergence import (
    accuracy_emergence,
    adjusted_rand,
    emergence_spread,
    group_emergence,
    group_f1,
    loss_dispersion,
    mean_final,
    plateau_to_drop,
    recovery_relation,
    recovery_times,
    summarize_run,
    worst_group_loss,
)
from validation.grouped import cluster_unit_gradients, unit_rows

RATE = np.log(9.0)  # 10 % → 90 % of a logistic drop takes 2 ln 9 / RATE = 2 time units
FLOOR, HEIGHT = 0.01, 1.0


def logistic_drops(t: np.ndarray, centres: list[float]) -> np.ndarray:
    """ℓ_g(t) = FLOOR + HEIGHT / (1 + exp(RATE (t − t_g))): half drop at t_g, t_10 = t_g − 1,
    t_90 = t_g + 1 (the start and end differ from FLOOR + HEIGHT and FLOOR by < 1e-9)."""
    return np.stack([FLOOR + HEIGHT / (1 + np.exp(RATE * (t - c))) for c in centres], axis=1)


def test_group_emergence_levels_are_exact_for_exponentials_in_log_interpolation():
    # ℓ = e^{−t} from 1 to e^{−5}: the half drop is at ℓ = (1 + e^{−5})/2, the threshold e^{−2.5}
    t = np.arange(0.0, 6.0, 1.0)
    loss = np.exp(-t)[:, None]
    per_group = group_emergence(t, loss, threshold=np.exp(-2.5))
    assert per_group["t_threshold"][0] == pytest.approx(2.5, abs=1e-12)
    # between samples 0 and 1 (ℓ = 1, e^{−1}): linear in ln ℓ
    level = 1 - 0.5 * (1 - np.exp(-5.0))
    assert per_group["t_half"][0] == pytest.approx(-np.log(level), abs=1e-12)
    never = group_emergence(t, loss, threshold=1e-6)
    assert np.isnan(never["t_threshold"]).all() and np.isnan(never["t_half"]).all()


def test_drop_times_are_nan_without_a_drop():
    t = np.arange(4.0)
    per_group = group_emergence(t, np.array([[1.0], [0.4], [1.1], [1.0]]), threshold=0.5)
    assert per_group["t_threshold"][0] == pytest.approx(np.log(0.5) / np.log(0.4))
    assert np.isnan(per_group["t_half"]).all()  # the curve ends where it started


def piecewise(t: np.ndarray, plateau: float, rate: float, start: float = 0.7) -> np.ndarray:
    """ℓ = start up to ``plateau``, then start·e^{−rate (t − plateau)}: ln ℓ is piecewise
    linear, so interpolation in ln ℓ is exact on a grid through the kink."""
    return start * np.exp(-rate * np.clip(t - plateau, 0.0, None))


def test_plateau_to_drop_of_curves_with_known_plateau_and_drop():
    t = np.arange(0.0, 100.5, 0.5)
    loss = np.stack([piecewise(t, 20.0, 0.5), piecewise(t, 5.0, 0.05),
                     piecewise(t, 60.0, 0.01)], axis=1)
    out = plateau_to_drop(t, loss)
    # leaves 0.9 of its start after ln(10/9)/rate, reaches 0.2 after ln 5/rate
    plateau = np.array([20.0, 5.0, 60.0]) + np.log(10 / 9) / np.array([0.5, 0.05, 0.01])
    drop = np.log(4.5) / np.array([0.5, 0.05, 0.01])
    np.testing.assert_allclose(out["plateau"], plateau, rtol=1e-10)
    np.testing.assert_allclose(out["drop"][:2], drop[:2], rtol=1e-10)
    np.testing.assert_allclose(out["ratio"][:2], plateau[:2] / drop[:2], rtol=1e-10)
    assert out["ratio"][0] > 1 > out["ratio"][1]
    assert np.isnan(out["ratio"][2]) and np.isnan(out["t_drop_end"][2])  # never reaches 0.2
    # a logistic drop ℓ = 1/(1 + e^{r(t − c)}): the band edges in closed form
    r, c = 2.0, 10.0
    t = np.linspace(0.0, 30.0, 30001)
    curve = 1 / (1 + np.exp(r * (t - c)))
    s = curve[0]
    at = [c + np.log(1 / (f * s) - 1) / r for f in (0.9, 0.2)]
    out = plateau_to_drop(t, curve[:, None])
    assert out["plateau"][0] == pytest.approx(at[0], abs=1e-4)
    assert out["drop"][0] == pytest.approx(at[1] - at[0], abs=1e-4)


def test_mean_final_weights_by_frequency():
    loss = np.array([[1.0, 1.0, 1.0], [0.1, 0.4, 0.9]])
    assert mean_final(loss, np.array([0.5, 0.3, 0.2])) == pytest.approx(0.05 + 0.12 + 0.18)
    assert mean_final(loss, np.array([1.0, 1.0, 2.0])) == pytest.approx((0.1 + 0.4 + 1.8) / 4)


def test_group_f1_of_the_best_matching_cluster():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    found = np.array([5, 5, 5, 1, 1, 1, 1, 1])
    # group 0: cluster 5 (3 of 4, size 3) F1 = 6/7; group 1: cluster 1 (2 of 2, size 5) 4/7;
    # group 2: cluster 1, 4/7; group 3 has no example
    np.testing.assert_allclose(group_f1(found, true, 4)[:3], [6 / 7, 4 / 7, 4 / 7])
    assert np.isnan(group_f1(found, true, 4)[3])


def test_recovery_times_and_their_relation_to_emergence():
    t = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    f1 = np.array([[0.9, 0.2, 0.5, 0.9],
                   [0.5, 0.3, 0.85, 0.9],
                   [0.85, 0.9, 0.9, 0.9],
                   [0.9, 0.9, 0.95, 0.5],
                   [0.95, 0.95, 0.9, 0.6]])  # fmt: skip
    recovered = recovery_times(t, f1)
    np.testing.assert_array_equal(recovered[:3], [20.0, 20.0, 10.0])
    assert np.isnan(recovered[3])  # recovered early, lost at the end
    relation = recovery_relation(recovered, np.array([25.0, 15.0, 5.0, 1.0]),
                                 np.array([30.0, 25.0, 8.0, 2.0]))
    assert relation == ["before", "at", "after", "never"]
    assert recovery_relation(np.array([3.0]), np.array([np.nan]), np.array([np.nan])) == [
        "after"]  # never left its plateau: recovered, but not before an emergence


def test_recoverability_from_synthetic_gradients_that_align_one_group_at_a_time():
    """Before τ_g the gradients of group g point along a direction shared by every unlearned
    group, from τ_g on along its own direction u_g (plus 5 % noise). Clustering into G groups
    then recovers group g at the first clustering after τ_g, and the last group as soon as
    every other one has left the shared direction (it is what is left)."""
    rng = np.random.default_rng(0)
    groups, per, dim = 3, 20, 40
    basis = np.linalg.qr(rng.standard_normal((dim, groups + 1)))[0].T
    shared, own = basis[0], basis[1:]
    labels = np.repeat(np.arange(groups), per)
    aligned_from = np.array([5.0, 15.0, 25.0])
    times = np.arange(0.0, 40.0, 5.0)
    f1, ari = [], []
    for now in times:
        aligned = now >= aligned_from[labels]
        points = np.where(aligned[:, None], own[labels], shared)
        points = points + 0.05 * rng.standard_normal(points.shape)
        unit = unit_rows(torch.as_tensor(points))
        found = cluster_unit_gradients(unit, groups, "spectral", n_init=4, affinity="cosine")
        f1.append(group_f1(found, labels, groups))
        ari.append(adjusted_rand(found, labels))
    f1 = np.array(f1)
    assert (f1[times < 15, 1:] < 0.8).all()  # the shared direction holds groups 1 and 2
    np.testing.assert_array_equal(recovery_times(times, f1), [5.0, 15.0, 15.0])
    assert ari[0] < 0.1 and ari[-1] == 1.0
    relation = recovery_relation(recovery_times(times, f1), aligned_from, aligned_from + 5)
    assert relation == ["at", "at", "before"]


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
