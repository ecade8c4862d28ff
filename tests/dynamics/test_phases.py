"""Tests of dynamics.phases against curves whose phases are known in closed form.

The reference curve is the exact rank-1 solution w(t) = s / (1 + a e^{-2st}), a = s/w0 - 1,
L = ½(s - w)², L_ref = s²/2. From it, in closed form:

* L = f·L_ref  <=>  (1 - w/s)² = f  <=>  t = ln(a (1 - √f)/√f) / (2s)        (crossing times)
* d ln L/dt = -4w (monotone), dL/dt = -2w(s - w)² is extremal at w = s/3:
  t* = ln(a/2) / (2s), ln 2/(2s) before the logistic midpoint ln(a)/(2s)       (steepest fall)
* s - w ~ s·a·e^{-2st} for large t, so L ~ e^{-4st}: exponential tail of rate 4s.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dynamics.phases import analyze, crossing_times


def logistic_loss(t: np.ndarray, s: float, w0: float) -> np.ndarray:
    """½(s - w)² of the logistic, with s - w written without cancellation."""
    e = (s / w0 - 1) * np.exp(-2 * s * t)
    return 0.5 * (s * e / (1 + e)) ** 2


def logistic_time_at(loss: float, s: float, w0: float) -> float:
    """Closed-form time at which the logistic's loss equals ``loss`` (< s²/2)."""
    w = s - math.sqrt(2 * loss)
    return math.log((s / w0 - 1) / (s / w - 1)) / (2 * s)


S, W0 = 2.0, 2e-4  # a = s/w0 - 1 = 9999
L_REF = S**2 / 2


@pytest.fixture(scope="module")
def dense_logistic() -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 10.0, 200_001)  # Δt = 5e-5
    return t, logistic_loss(t, S, W0)


@pytest.mark.parametrize("f", [0.5, 0.1, 0.01])
def test_logistic_crossing_times_match_closed_form(dense_logistic, f):
    t, loss = dense_logistic
    exact = logistic_time_at(f * L_REF, S, W0)
    if f == 0.5:  # the logistic's closed form
        assert exact == pytest.approx(math.log((math.sqrt(2) - 1) * (S / W0 - 1)) / (2 * S))
    got = crossing_times(t, loss, L_REF)[f]
    # Linear interpolation of g = ln L between samples Δt apart misses the root by at most
    # Δt²/8 · max|g''| / min|g'| over the bracket, with g' = -4w and g'' = -8w(s - w).
    dt = t[1] - t[0]
    w_lo, w_hi = S - np.sqrt(2 * logistic_loss(exact + np.array([-dt, dt]), S, W0))
    max_g2 = 8 * max(w * (S - w) for w in (w_lo, w_hi, min(max(S / 2, w_lo), w_hi)))
    bound = dt**2 / 8 * max_g2 / (4 * w_lo)
    assert bound / exact < 1e-9
    assert abs(got - exact) <= bound


def test_logistic_phases(dense_logistic):
    t, loss = dense_logistic
    p = analyze(t, loss, L_REF)
    a = S / W0 - 1
    assert p.initial is None  # the curve starts on the plateau
    assert len(p.plateaus) == 1 and len(p.drops) == 1
    plateau, drop = p.plateaus[0], p.drops[0]
    assert plateau.start == 0.0
    assert plateau.level == pytest.approx(L_REF, rel=5e-3)
    assert drop.level_before == plateau.level
    assert drop.level_after < 1e-20 * L_REF
    # the plateau ends when 90 % of the loss is left (t_0.9 of the drop), before t_0.5
    l90 = drop.level_after + 0.9 * (drop.level_before - drop.level_after)
    assert plateau.end == pytest.approx(logistic_time_at(l90, S, W0), rel=1e-4)
    assert plateau.length == plateau.end
    assert 0.5 * p.crossings[0.5] < plateau.end < p.crossings[0.5]
    # steepest fall: w = s/3, ln 2/(2s) before the midpoint
    assert drop.time == pytest.approx(math.log(a / 2) / (2 * S), rel=1e-4)
    assert math.log(a) / (2 * S) - drop.time == pytest.approx(math.log(2) / (2 * S), rel=1e-2)
    l10 = drop.level_after + 0.1 * (drop.level_before - drop.level_after)
    assert drop.end == pytest.approx(logistic_time_at(l10, S, W0), rel=1e-4)
    assert drop.width == pytest.approx(drop.end - drop.start)
    assert drop.width == pytest.approx(math.log(40) / (2 * S), rel=1e-2)  # levels L_ref -> 0
    # tail L ~ e^{-4st}; the fit over [t_0.1, 10] keeps an O(1/(s(T - t_0.1))) bias
    assert p.tail is not None and p.tail.kind == "exponential"
    assert p.tail.start == drop.end
    assert p.tail.rate == pytest.approx(4 * S, rel=1e-2)
    assert p.tail.r2_exponential > 0.9999 > p.tail.r2_power


def test_logistic_on_log_grid_gives_the_same_phases(dense_logistic):
    t_log = np.concatenate(([0.0], np.logspace(-4, 1, 3000)))
    p_log = analyze(t_log, logistic_loss(t_log, S, W0), L_REF)
    p_lin = analyze(*dense_logistic, L_REF)
    assert len(p_log.plateaus) == len(p_log.drops) == 1
    assert p_log.plateaus[0].end == pytest.approx(p_lin.plateaus[0].end, rel=1e-3)
    assert p_log.drops[0].time == pytest.approx(p_lin.drops[0].time, rel=1e-3)
    assert p_log.tail.rate == pytest.approx(p_lin.tail.rate, rel=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_logistic_keeps_one_plateau_and_t_half(seed):
    # a training run logged at every step (η = 0.0025) with 1 % multiplicative noise
    t = 0.0025 * np.arange(4001)
    rng = np.random.default_rng(seed)
    loss = logistic_loss(t, S, W0) * np.exp(0.01 * rng.standard_normal(t.size))
    p = analyze(t, loss, L_REF)
    exact = analyze(t, logistic_loss(t, S, W0), L_REF)
    assert len(p.plateaus) == len(p.drops) == 1
    assert p.crossings[0.5] == pytest.approx(logistic_time_at(0.5 * L_REF, S, W0), rel=1e-2)
    assert p.drops[0].time == pytest.approx(exact.drops[0].time, rel=3e-2)
    assert p.plateaus[0].level == pytest.approx(L_REF, rel=1e-2)
    assert p.tail.kind == "exponential"
    assert p.tail.rate == pytest.approx(4 * S, rel=2e-2)


def test_two_step_staircase():
    s1, s2, w0 = 1.0, 0.25, 1e-6  # mode 1 learned at t ~ 6.6, mode 2 at t ~ 23.5
    t = np.concatenate(([0.0], np.logspace(-3, math.log10(60), 4000)))
    loss = logistic_loss(t, s1, w0) + logistic_loss(t, s2, w0)
    p = analyze(t, loss, (s1**2 + s2**2) / 2)
    assert len(p.plateaus) == len(p.drops) == 2
    assert p.plateaus[0].level == pytest.approx((s1**2 + s2**2) / 2, rel=1e-2)
    assert p.plateaus[1].level == pytest.approx(s2**2 / 2, rel=1e-2)
    assert p.drops[0].level_after == p.plateaus[1].level
    for drop, s in zip(p.drops, (s1, s2), strict=True):
        # each drop is one mode's logistic; the other mode is flat there (to < 1e-4)
        assert drop.time == pytest.approx(math.log((s / w0 - 1) / 2) / (2 * s), rel=2e-3)
        assert drop.width == pytest.approx(math.log(40) / (2 * s), rel=2e-2)
    assert p.drops[0].end <= p.plateaus[1].start < p.plateaus[1].end == p.drops[1].start
    assert p.tail.kind == "exponential"
    assert p.tail.rate == pytest.approx(4 * s2, rel=2e-2)


def test_initial_decay_then_plateau():
    # a misaligned component decays as e^{-3t} before the logistic plateau
    s, w0, c = 1.0, 1e-5, 1.0
    t = np.linspace(0.0, 15.0, 15_001)
    loss = logistic_loss(t, s, w0) + c * np.exp(-3 * t)
    p = analyze(t, loss, s**2 / 2)
    assert len(p.plateaus) == 1
    assert p.initial is not None and p.initial.start == 0.0
    assert p.initial.end == p.plateaus[0].start
    # the plateau starts where the closed form's rate r = -d ln L/dt falls below a tenth of
    # the fastest rate still to come (r -> 4s in the tail). The former definition,
    # |d ln L/d ln t| < 0.1, judged flatness on a ln t axis and put the start 75 % later.
    w = s / (1 + (s / w0 - 1) * np.exp(-2 * s * t))
    dloss = -2 * w * (s - w) ** 2 - 3 * c * np.exp(-3 * t)
    rate = -dloss / loss
    later = np.maximum.accumulate(rate[::-1])[::-1]
    flat_start = t[np.argmax(rate < 0.1 * later)]
    assert p.plateaus[0].start == pytest.approx(flat_start, rel=1e-2)
    # initial rate: least-squares slope of ln L on [0, end], uniform in t
    seg = t <= p.initial.end
    assert p.initial.rate == pytest.approx(-np.polyfit(t[seg], np.log(loss[seg]), 1)[0], 1e-3)


def test_pure_exponential_has_no_plateau_and_no_drop():
    t = np.linspace(0.0, 10.0, 2001)
    p = analyze(t, np.exp(-2 * t), 1.0)
    assert p.plateaus == [] and p.drops == []
    # initial decay: the first e-fold after the first positive sample t[1]
    assert p.initial.end == pytest.approx(t[1] + 0.5, rel=1e-4)
    assert p.initial.rate == pytest.approx(2.0, rel=1e-9)
    assert p.tail.start == p.initial.end
    assert p.tail.kind == "exponential"
    assert p.tail.rate == pytest.approx(2.0, rel=1e-9)
    assert p.tail.r2_exponential == pytest.approx(1.0, abs=1e-12)
    assert p.tail.r2_power < 0.95
    assert p.crossings[0.5] == pytest.approx(math.log(2) / 2, rel=1e-9)


def test_power_law_tail():
    t = np.concatenate(([0.0], np.logspace(-3, 4, 2000)))
    p = analyze(t, (1 + t) ** -1.5, 1.0)
    assert p.plateaus == [] and p.drops == []
    t_efold = (1 + t[1]) * math.exp(2 / 3) - 1  # (1 + t)^-1.5 = (1 + t[1])^-1.5 / e
    assert p.initial.end == pytest.approx(t_efold, rel=1e-3)
    assert p.tail.kind == "power"
    assert p.tail.r2_power > 0.99 > p.tail.r2_exponential
    # effective exponent: least squares of ln L on ln t, uniform in ln t, over the tail
    log_t = np.linspace(math.log(p.tail.start), math.log(1e4), 100_001)
    effective = -np.polyfit(log_t, -1.5 * np.log1p(np.exp(log_t)), 1)[0]
    assert p.tail.exponent == pytest.approx(effective, rel=1e-3)
    assert p.tail.exponent == pytest.approx(1.5, abs=0.1)


def test_curve_stopped_during_the_plateau_has_no_plateau():
    t = np.linspace(0.0, 1.2, 1201)  # L(1.2) = 0.976 L_ref: the drop (t* = 2.13) is ahead
    p = analyze(t, logistic_loss(t, S, W0), L_REF)
    assert p.plateaus == [] and p.drops == [] and p.tail is None
    assert p.initial.end == t[-1]
    assert p.crossings == {0.5: None, 0.1: None, 0.01: None}


def _check_scaled(p, q, time_scale: float, loss_scale: float) -> None:
    """q is the analysis of L(t/time_scale)·loss_scale, p that of L(t)."""
    rel = 1e-7
    assert q.l_ref == pytest.approx(p.l_ref * loss_scale, rel=rel)
    for f, t_f in p.crossings.items():
        assert q.crossings[f] == pytest.approx(t_f * time_scale, rel=rel)
    assert len(q.plateaus) == len(p.plateaus) and len(q.drops) == len(p.drops)
    for a, b in zip(p.plateaus, q.plateaus, strict=True):
        assert (b.start, b.end, b.length) == pytest.approx(
            (a.start * time_scale, a.end * time_scale, a.length * time_scale), rel=rel
        )
        assert b.level == pytest.approx(a.level * loss_scale, rel=rel)
    for a, b in zip(p.drops, q.drops, strict=True):
        times_a = np.array([a.time, a.width, a.start, a.end]) * time_scale
        assert [b.time, b.width, b.start, b.end] == pytest.approx(times_a, rel=rel)
        levels_a = np.array([a.level_before, a.level_after]) * loss_scale
        assert [b.level_before, b.level_after] == pytest.approx(levels_a, rel=rel)
    a, b = p.tail, q.tail
    assert b.kind == a.kind
    assert (b.start, b.end) == pytest.approx((a.start * time_scale, a.end * time_scale), rel=rel)
    assert b.rate == pytest.approx(a.rate / time_scale, rel=rel)
    assert (b.exponent, b.r2_exponential, b.r2_power) == pytest.approx(
        (a.exponent, a.r2_exponential, a.r2_power), rel=rel
    )


@pytest.mark.parametrize("c", [1e-2, 7.0, 1e3])
def test_scale_invariance(c):
    s1, s2, w0 = 1.0, 0.25, 1e-6
    t = np.concatenate(([0.0], np.logspace(-3, math.log10(60), 4000)))
    loss = logistic_loss(t, s1, w0) + logistic_loss(t, s2, w0) + 0.3 * np.exp(-4 * t)
    l_ref = (s1**2 + s2**2) / 2
    p = analyze(t, loss, l_ref)
    assert p.initial is not None and len(p.plateaus) == 2
    _check_scaled(p, analyze(c * t, loss, l_ref), time_scale=c, loss_scale=1.0)
    _check_scaled(p, analyze(t, c * loss, c * l_ref), time_scale=1.0, loss_scale=c)
    q = analyze(c * t, loss, l_ref)
    assert q.initial.end == pytest.approx(p.initial.end * c, rel=1e-7)
    assert q.initial.rate == pytest.approx(p.initial.rate / c, rel=1e-7)


def test_loss_reaching_zero_gives_no_nan():
    t = np.linspace(0.0, 10.0, 10_001)
    loss = logistic_loss(t, S, W0)
    cut = t > 4.0
    zeroed = np.where(cut, np.where(np.arange(t.size) % 2, 0.0, -1e-30), loss)
    p = analyze(t, zeroed, L_REF)
    reference = analyze(t[~cut], loss[~cut], L_REF)
    json.dumps(p.to_dict(), allow_nan=False)  # no NaN or inf anywhere
    assert p.to_dict() == reference.to_dict()
    # a sample at zero crosses every level just after its predecessor: ln L floored at
    # ln(1e-150·L_ref), interpolated linearly in ln L
    got = crossing_times([0.0, 1.0], [L_REF, 0.0], L_REF, fractions=(0.5,))[0.5]
    assert got == pytest.approx(math.log(2) / (150 * math.log(10)), rel=1e-12)


def test_crossing_time_edge_cases():
    t = np.array([1.0, 2.0, 3.0])
    assert crossing_times(t, [0.4, 0.3, 0.2], 1.0, fractions=(0.5,)) == {0.5: 1.0}
    assert crossing_times(t, [0.9, 0.8, 0.7], 1.0, fractions=(0.5,)) == {0.5: None}
    # non-monotone: the first crossing counts; ln L linear between (1, ln 1) and (2, ln 0.25)
    got = crossing_times(t, [1.0, 0.25, 2.0], 1.0, fractions=(0.5,))[0.5]
    assert got == pytest.approx(1.5, rel=1e-12)


def test_to_dict_is_plain_json():
    t = np.linspace(0.0, 10.0, 5001)
    d = analyze(t, logistic_loss(t, S, W0), L_REF).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"l_ref", "crossings", "initial", "plateaus", "drops", "tail"}
    assert set(d["crossings"]) == {"0.5", "0.1", "0.01"}
    assert set(d["drops"][0]) == {"time", "width", "start", "end", "level_before", "level_after"}
    assert type(d["plateaus"][0]["level"]) is float and type(d["tail"]["rate"]) is float


def test_describe_lists_each_phase():
    t = np.linspace(0.0, 10.0, 5001)
    p = analyze(t, logistic_loss(t, S, W0), L_REF)
    lines = p.describe().splitlines()
    assert len(lines) == 4
    assert lines[0] == "initial decay: none (the curve starts on a plateau)"
    plateau, drop = p.plateaus[0], p.drops[0]
    assert lines[1].startswith(f"plateau 1: t = 0 -> {plateau.end:.4g} ")
    assert lines[2].startswith(f"drop 1: steepest at t = {drop.time:.4g}, width {drop.width:.4g}")
    assert lines[3].startswith(f"tail: exponential, t = {drop.end:.4g} -> 10;")
    no_plateau = analyze(t, np.exp(-t), 1.0).describe().splitlines()
    assert no_plateau[1] == "no plateau, no drop"


@pytest.mark.parametrize(
    ("t", "loss", "l_ref", "message"),
    [
        ([0.0, 1.0, 2.0], [1.0, np.nan, 0.5], 1.0, "loss contains NaN or inf"),
        ([0.0, 1.0, 2.0], [1.0, np.inf, 0.5], 1.0, "loss contains NaN or inf"),
        ([0.0, np.inf, 2.0], [1.0, 0.7, 0.5], 1.0, "t contains NaN or inf"),
        ([0.0, 1.0, 2.0], [1.0, 0.5], 1.0, "same length"),
        ([0.0, 2.0, 1.0], [1.0, 0.7, 0.5], 1.0, "strictly increasing"),
        ([0.0, 1.0, 1.0], [1.0, 0.7, 0.5], 1.0, "strictly increasing"),
        ([[0.0, 1.0]], [[1.0, 0.5]], 1.0, "1-D"),
        ([0.0], [1.0], 1.0, "at least 2 samples"),
        ([0.0, 1.0, 2.0], [1.0, 0.7, 0.5], 0.0, "l_ref"),
        ([0.0, 1.0, 2.0], [1.0, 0.7, 0.5], np.nan, "l_ref"),
    ],
)
def test_invalid_input_raises(t, loss, l_ref, message):
    for function in (crossing_times, analyze):
        with pytest.raises(ValueError, match=message):
            function(t, loss, l_ref)


def test_analyze_specific_errors():
    with pytest.raises(ValueError, match="t must be >= 0"):
        analyze([-1.0, 0.0, 1.0, 2.0], [1.0, 0.9, 0.8, 0.7], 1.0)
    with pytest.raises(ValueError, match="at least 3 samples with t > 0"):
        analyze([0.0, 1.0, 2.0], [1.0, 0.9, 0.8], 1.0)
    with pytest.raises(ValueError, match="fractions"):
        crossing_times([0.0, 1.0], [1.0, 0.5], 1.0, fractions=(0.0,))


@pytest.mark.parametrize(("n", "window"), [(7, 7), (50, 9), (301, 41), (1000, 5)])
def test_savgol_cubic_equals_scipy(n, window):
    """The smoothing of the phase analysis (NumPy, so importing it stays light) against
    scipy.signal.savgol_filter (mode "interp"), value and slope."""
    signal = pytest.importorskip("scipy.signal")
    from dynamics.phases import savgol_cubic

    y = np.cumsum(np.random.default_rng(n).standard_normal(n))
    for deriv, delta in ((0, 1.0), (1, 0.37)):
        expected = signal.savgol_filter(y, window, 3, deriv=deriv, delta=delta, mode="interp")
        np.testing.assert_allclose(savgol_cubic(y, window, deriv, delta), expected,
                                   rtol=1e-10, atol=1e-10 * np.abs(y).max())


def test_fall_times_and_relative_width_match_a_logistic_closed_form():
    """L = a + (b − a)/(1 + e^{t−5}) reaches a + q(b − a) at t = 5 + ln(1/q − 1): the drop
    (t_0.9, t_0.5, t_0.1) = 5 ∓ ln 9, 5, relative width 2 ln 9 / 5. Oracle: the closed form;
    sampling every 1e-3 in t makes the ln-L interpolation error < 1e-6 (tolerance 1e-5)."""
    from dynamics.phases import fall_level, fall_times, relative_width

    before, after = 2.0, 0.5
    t = np.linspace(0.0, 12.0, 12_001)
    loss = after + (before - after) / (1 + np.exp(t - 5))
    assert fall_level(before, after, 0.9) == pytest.approx(0.5 + 0.9 * 1.5, rel=1e-15)
    got = fall_times(t, loss, before, after)
    want = 5 + np.log(1 / np.array([0.9, 0.5, 0.1]) - 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert float(relative_width(*got)) == pytest.approx(2 * np.log(9) / 5, abs=1e-5)
    assert np.isnan(fall_times(t, loss, before, after, (0.0,))).all()  # L_0 = a: never
    assert np.isnan(fall_times(t, loss, np.nan, after)).all()


def test_emergence_time_is_the_half_fall_of_a_logistic():
    """L = b/(1 + e^{2(t−3)}) falls from b to 0; half way (L = b/2) at t = 3 exactly. With
    after = b/4 the half-fall level 5b/8 is reached at 3 + ln(3/5)/2. Oracle: the closed
    form; 1e-3 sampling makes the ln-L interpolation error < 1e-6 (tolerance 1e-5)."""
    from dynamics.phases import emergence_time

    b = 3.0
    t = np.linspace(0.0, 8.0, 8_001)
    loss = b / (1 + np.exp(2 * (t - 3)))
    assert emergence_time(t, loss, b) == pytest.approx(3.0, abs=1e-5)
    assert emergence_time(t, loss, b, b / 4) == pytest.approx(3 + np.log(3 / 5) / 2, abs=1e-5)
    assert np.isnan(emergence_time(t[:100], loss[:100], b))  # not by the end
