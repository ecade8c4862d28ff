"""The claim rules of :mod:`figures.claims` that turn a section's measurements into map cells
and verdicts, on synthetic inputs whose answers are known by hand: cells over seeds, failed
checks, the fits (exponential decay, log-log slope) and the per-claim comparisons."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from figures.claims import (
    IN_PART,
    NOT_MEASURED,
    SUPPORTED,
    Axis,
    ClaimMap,
    ClaimResult,
    Verdict,
    any_cell,
    cells,
    counted_cell,
    crossing,
    earlier,
    exp_fit,
    failed,
    failure_counts,
    fit_slope,
    gradient_group_checks,
    groups_found,
    judge,
    legend,
    more_bumps,
    most_failed,
    plateau_count,
    plateau_share,
    recovery_counts,
    same_plateaus,
    seed_cell,
    simultaneous,
    solution_size,
)


def test_verdicts_are_members_and_round_trip_through_json():
    assert json.loads(json.dumps([IN_PART])) == ["holds in part"]
    assert f"{SUPPORTED}" == str(SUPPORTED) == "supported"
    back = ClaimResult(**json.loads(json.dumps(ClaimResult(3, IN_PART, "x").__dict__)))
    assert back.verdict is Verdict.IN_PART
    with pytest.raises(ValueError):
        ClaimResult(1, "supported, mostly", "x")


def test_cells_fills_rows_of_y_and_columns_of_x():
    x, y = Axis("σ", (0.1, 1.0)), Axis("n", (10, 20, 30))
    holds, notes = cells(x, y, lambda n, s: (n * s, f"{n}@{s:g}"))
    assert holds.shape == notes.shape == (3, 2)
    assert holds[2, 0] == pytest.approx(3.0) and notes[1, 1] == "20@1"


def test_judge_takes_the_verdict_and_region_of_its_maps():
    x, y = Axis("σ", (0.01, 0.1, 1.0)), Axis("n", (10,))
    m = ClaimMap("t", x, y, [[0.0, 1.0, 1.0]])
    claim = judge(4, [m], "Numbers.", "flow", "thumb.png")
    # the one-sentence headline is the region; the cell-by-cell text is kept in ``cells``
    assert claim == ClaimResult(4, IN_PART, "Numbers.", "flow", "holds for σ ≥ 0.1",
                                "thumb.png", cells="holds for σ ≥ 0.1; fails below")
    unmeasured = ClaimMap("t", x, y, [[math.nan] * 3])
    assert judge(4, [unmeasured], "").verdict == NOT_MEASURED


def test_failed_checks_are_abbreviated_in_order():
    assert failed({"decay": False, "plateau": True, "sharp": False}) == "D,S"
    assert failed({"later": True, "smaller": True}) == ""
    assert legend(["closer", "wider"]).startswith("C = smaller spread")


SEEDS = [  # three seeds: decay fails at two, norms at one, plateau at none
    {"decay": False, "plateau": True, "norms": True},
    {"decay": False, "plateau": True, "norms": False},
    {"decay": True, "plateau": True, "norms": True},
]


def test_a_seed_cell_is_the_fraction_of_seeds_where_every_check_holds():
    assert seed_cell(SEEDS) == (pytest.approx(1 / 3), "D")  # norms fail at 1 of 3 < half
    assert seed_cell(SEEDS[:2]) == (0.0, "D,N")  # 1 of 2 is half: named
    assert seed_cell([{"later": True, "smaller": False}]) == (0.0, "Si")
    value, note = seed_cell([])
    assert math.isnan(value) and note == ""


def test_failure_counts_and_the_checks_failed_most():
    assert failure_counts(SEEDS) == {"decay": 2, "plateau": 0, "norms": 1}
    assert most_failed(SEEDS) == [("decay", 2), ("norms", 1)]
    assert most_failed(SEEDS, count=1) == [("decay", 2)]
    tie = [{"aligns": False, "norms": False}]
    assert most_failed(tie) == [("norms", 1), ("aligns", 1)]  # ties: the later key first
    assert failure_counts([]) == {} and most_failed([]) == []


def test_an_any_cell_holds_where_one_check_does():
    checks = [{"plateau": True, "stall": False}, {"plateau": False, "stall": True},
              {"plateau": True, "stall": False}, {"plateau": False, "stall": False}]
    assert any_cell(checks) == (0.75, "")  # plateau at 2 of 4: not a majority
    assert any_cell(checks[:3]) == (1.0, "plateau")
    assert any_cell([{"plateau": True, "stall": True}]) == (1.0, "plateau+stall")
    assert math.isnan(any_cell([])[0])


def test_crossings_and_plateaus_of_a_run_summary():
    run = {"crossings": {"0.5": 3.0, "0.1": None}, "phases": None}
    assert crossing(run) == 3.0 and math.isnan(crossing(run, 0.1))
    assert plateau_count(run) == 0
    assert plateau_count({"phases": {"plateaus": [{}, {}]}}) == 2


def test_exp_fit_of_a_pure_exponential_and_of_a_plateau():
    t = np.linspace(0, 10, 201)
    rate, r2 = exp_fit(t, 3.0 * np.exp(-2.0 * t), l_ref=3.0)
    assert rate == pytest.approx(2.0, rel=1e-12) and r2 == pytest.approx(1.0, abs=1e-12)
    # a rounding floor (1e-30, below 1e-12 L_ref from t ≈ 14) is left out of the fit
    t = np.linspace(0, 40, 801)
    rate, r2 = exp_fit(t, np.maximum(3.0 * np.exp(-2.0 * t), 1e-30), 3.0)
    assert rate == pytest.approx(2.0, rel=1e-9) and r2 == pytest.approx(1.0, abs=1e-9)
    s_curve = 1 / (1 + np.exp(2 * (t - 10)))  # a plateau then a drop: far from a line
    assert exp_fit(t, s_curve, 1.0)[1] < 0.95


def test_fit_slope_recovers_a_power_law_and_a_logarithm():
    x = np.array([0.01, 0.02, 0.04, 0.08])
    assert fit_slope(x, 3.0 * x**-2) == pytest.approx(-2.0, rel=1e-12)
    assert fit_slope(x, 5.0 - np.log(x), log_y=False) == pytest.approx(-1.0, rel=1e-12)
    assert fit_slope(np.append(x, 0.16), np.append(3.0 * x**-2, math.nan)) == pytest.approx(-2.0)
    assert math.isnan(fit_slope(x[:1], x[:1]))
    assert math.isnan(fit_slope(x, np.full(4, math.nan)))


def test_earlier_means_five_percent_earlier():
    assert earlier(1.0, 1.06) and not earlier(1.0, 1.04)
    assert not earlier(math.nan, 2.0) and not earlier(1.0, math.nan)


def _factors(*rows):
    return {"factors": {f"W{i}": {"bumps": b, "vectors": v, "norm_end": e}
                        for i, (b, v, e) in enumerate(rows)}}


def test_bumps_plateaus_and_solution_size_comparisons():
    adam, sgd = _factors((3, 2, 0.5), (1, 2, 2.0)), _factors((1, 2, 1.0), (1, 2, 1.0))
    assert more_bumps(adam, sgd) and not more_bumps(sgd, adam)  # 4/4 against 2/4 per vector
    assert solution_size(adam) == pytest.approx(1.0)  # ‖X‖‖Y‖ = 0.5 · 2
    with_one = {"phases": {"plateaus": [{}]}}
    without = {"phases": {"plateaus": []}}
    assert same_plateaus(with_one, with_one) and same_plateaus(without, {"phases": None})
    assert not same_plateaus(with_one, without)


def test_grouped_rules():
    assert simultaneous({"spread": 1.04}) and not simultaneous({"spread": 1.05})
    assert not simultaneous({"spread": None}) and not simultaneous({})
    assert groups_found(0.5) and not groups_found(0.49) and not groups_found(math.nan)


def test_recovery_counts_count_each_relation_in_order():
    counts = recovery_counts(["before", "never", "before", "at"])
    assert counts == {"before": 2, "at": 1, "after": 0, "never": 1}
    assert list(counts) == ["before", "at", "after", "never"]
    assert recovery_counts([]) == {"before": 0, "at": 0, "after": 0, "never": 0}
    with pytest.raises(ValueError, match="'later'"):
        recovery_counts(["before", "later"])


def test_gradient_group_checks_take_the_median_ari_and_a_strict_majority_before():
    # median of (0.1, 0.6, 0.7) is 0.6 >= 0.5; of (0.6, 0.1, 0.2) it is 0.2 (a good first
    # clustering alone does not count)
    assert gradient_group_checks([0.1, 0.6, 0.7], ["never"])["found"]
    assert not gradient_group_checks([0.6, 0.1, 0.2], ["never"])["found"]
    assert gradient_group_checks([math.nan, 0.6], ["never"])["found"]  # NaN left out
    assert not gradient_group_checks([math.nan], ["never"])["found"]
    assert not gradient_group_checks([], ["never"])["found"]
    # separable at step 0, before any learning: the inputs, not capabilities
    assert not gradient_group_checks([0.9, 0.6, 0.7], ["never"])["found"]
    # "early": more than half of the groups recovered before they emerge; half is not enough
    assert gradient_group_checks([0.0], ["before", "before", "after"])["early"]
    assert not gradient_group_checks([0.0], ["before", "after"])["early"]
    assert not gradient_group_checks([0.0], ["at", "at", "at"])["early"]


def test_plateau_share_counts_only_the_reclusterings_on_each_plateau():
    t = [0.0, 100.0, 200.0, 300.0]
    f1 = np.array([[0.9, 0.1, 1.0],
                   [0.9, 0.8, 1.0],
                   [0.5, 0.8, 1.0],
                   [0.9, 0.1, 1.0]])
    # group 0 leaves its plateau at 250: re-clusterings 0, 100, 200 -> F1 >= 0.8 at 2 of 3;
    # group 1 never leaves it (NaN): all four count, F1 = 0.8 is at the level -> 2 of 4;
    # group 2 leaves it at t = 0: no re-clustering on its plateau
    share = plateau_share(t, f1, [250.0, math.nan, 0.0], level=0.8)
    assert share[:2] == pytest.approx([2 / 3, 0.5])
    assert math.isnan(share[2])


def test_counted_cell_puts_the_seed_count_before_the_failed_checks():
    checks = [{"closer": True, "wider": True}, {"closer": False, "wider": True},
              {"closer": False, "wider": True}]
    assert counted_cell(checks) == (pytest.approx(1 / 3), "1/3\nC")
    assert counted_cell(checks[:1]) == (1.0, "1/1")
    value, note = counted_cell([])
    assert math.isnan(value) and note == ""
