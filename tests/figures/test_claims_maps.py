"""Verdict logic of :mod:`figures.claims` on synthetic inputs: maps that hold, fail, hold in
part, and the cell tests on hand-made run summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from figures.claims import (
    CHECKS,
    CLAIMS,
    IN_PART,
    NOT_MEASURED,
    NOT_SUPPORTED,
    README_BEGIN,
    README_END,
    SUPPORTED,
    Axis,
    ClaimMap,
    ClaimResult,
    attention_checks,
    boundary,
    bumps_as_claimed,
    ce_checks,
    claim_verdict,
    claims_markdown,
    claims_table,
    exponential_checks,
    full_rank_checks,
    grouped_checks,
    map_verdict,
    rank_10_checks,
    replace_readme_table,
    s_curve_checks,
    weight_decay_checks,
)

SIGMA = Axis("σ", (1e-3, 0.01, 0.03, 0.1, 0.3, 1.0))
N = Axis("n", (10, 100))


def _map(grid, x=SIGMA, y=N) -> ClaimMap:
    return ClaimMap("test", x, y, np.asarray(grid, dtype=float))


def test_a_map_that_holds_everywhere():
    m = _map(np.ones((2, 6)))
    assert map_verdict(m) == SUPPORTED
    assert boundary(m) == "holds at every σ tested (0.001–1) at every n (10, 100)"


def test_a_map_that_fails_everywhere():
    m = _map(np.zeros((2, 6)))
    assert map_verdict(m) == NOT_SUPPORTED
    assert boundary(m) == "fails at every σ tested at every n (10, 100)"


def test_a_map_that_holds_in_part_states_the_boundary_per_row():
    m = _map([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]])
    assert map_verdict(m) == IN_PART
    assert boundary(m) == ("holds for σ ≥ 0.03 at n = 10; fails below; "
                           "holds for σ ≥ 0.01 at n = 100; fails below")


def test_rows_alike_are_merged_and_intervals_named():
    m = _map([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0]])
    assert boundary(m) == "holds for 0.01 ≤ σ ≤ 0.1 at every n (10, 100); fails outside"
    low = _map([[1, 1, 0, 0, 0, 0]], y=Axis("n", (100,)))
    assert boundary(low) == "holds for σ ≤ 0.01; fails above"


def test_scattered_and_categorical_cells_are_listed():
    m = _map([[1, 0, 1, 0, 0, 0]], y=Axis("n", (100,)))
    assert boundary(m) == "holds at σ = 0.001, 0.03; fails at 0.01, 0.1, 0.3, 1"
    tasks = ClaimMap("t", Axis("task", ("modes", "parity", "modes-scale")), Axis("seed", (0,)),
                     [[1, 1, 0]])
    assert boundary(tasks) == "holds at task = modes, parity; fails at modes-scale"


def test_unmeasured_cells_are_left_out_and_seed_fractions_need_a_majority():
    m = _map([[np.nan, 0, 1, 1, 1, 1], [np.nan] * 6])
    assert map_verdict(m) == IN_PART
    assert boundary(m) == "holds for σ ≥ 0.03 at n = 10; fails below"
    assert map_verdict(_map(np.full((2, 6), np.nan))) == NOT_MEASURED
    seeds = _map([[2 / 3, 1 / 3, 0.5, 1, 1, 1]], y=Axis("n", (100,)))
    assert list(seeds.ok[0]) == [True, False, False, True, True, True]
    rows = seeds.rows()
    assert len(rows) == 6 and rows[1]["holds"] is False and rows[0]["σ"] == 1e-3


def test_a_claim_of_several_maps():
    holds, fails = _map(np.ones((2, 6))), _map(np.zeros((2, 6)))
    assert claim_verdict([holds, holds])[0] == SUPPORTED
    assert claim_verdict([fails, fails])[0] == NOT_SUPPORTED
    result, region = claim_verdict([holds, fails])
    assert result == IN_PART and region.count("test:") == 2


def _run(plateaus=(), drops=(), initial=None, tail=None, loss_start=1.0, final=1e-4,
         factors=None, crossings=None):
    factors = factors or {"X": {"alignment_start": 0.1, "alignment_end": 1.0,
                                "norm_min_ratio": 0.5, "norm_growth": 10.0, "bumps": 0,
                                "bumps_in_growth": 0, "vectors": 1, "t_align": 5.0}}
    return {"phases": {"initial": initial, "plateaus": list(plateaus), "drops": list(drops),
                       "tail": tail},
            "factors": factors, "loss_start": loss_start, "final_loss": final, "l_ref": 1.0,
            "crossings": crossings or {"0.9": 4.0, "0.5": 5.0, "0.1": 6.0}}


PLATEAU = {"level": 0.5, "start": 1.0, "end": 4.0, "length": 3.0}
DROP = {"time": 5.0, "width": 1.0}


def test_the_s_curve_checks():
    whole = s_curve_checks(_run([PLATEAU], [DROP]))
    assert set(whole) <= set(CHECKS) and all(whole.values())
    flat = s_curve_checks(_run(loss_start=0.5, plateaus=[PLATEAU], drops=[DROP]))
    assert not flat["decay"] and flat["plateau"]
    none = s_curve_checks(_run(final=0.5))
    assert not none["plateau"] and not none["sharp"] and not none["levels"]


def test_rank_n_and_rank_10_checks():
    power = {"kind": "power"}
    full = full_rank_checks(_run(initial={"start": 0, "end": 1, "rate": 2}, tail=power))
    assert full == {"no plateau": True, "power tail": True, "spans": False}  # aligned (1.0)
    smeared = _run([PLATEAU], [DROP], crossings={"0.9": 2.0, "0.5": 5.0, "0.1": 10.0})
    sharp = _run([PLATEAU], [DROP])
    assert rank_10_checks(smeared, sharp) == {"plateau": True, "smeared": True}
    assert not rank_10_checks(sharp, sharp)["smeared"]


def test_exponential_attention_and_weight_decay_checks():
    assert all(exponential_checks(0.9999, _run()).values())
    assert not exponential_checks(0.99, _run())["exponential"]
    assert all(attention_checks(_run([PLATEAU], [DROP])).values())
    late = _run([PLATEAU], [DROP], crossings={"0.5": 2.0})
    assert not attention_checks(late)["aligned at drop"]
    assert weight_decay_checks(6.0, 5.0, 0.7, 1.0, 0.3) == {"later": True, "smaller": True}
    assert weight_decay_checks(math.nan, 5.0, 0.0, 1.0, 1.2) == {"later": True, "smaller": True}
    assert weight_decay_checks(5.0, 5.0, 1.0, 1.0, 0.3) == {"later": False, "smaller": False}


def test_bump_checks():
    def factors(bumps, growth):
        return {"X": {"alignment_start": 0, "alignment_end": 1, "norm_min_ratio": 1,
                      "norm_growth": 1, "bumps": bumps, "bumps_in_growth": growth,
                      "vectors": 2, "t_align": 1.0}}

    assert bumps_as_claimed(_run(factors=factors(0, 0)), 1)
    assert not bumps_as_claimed(_run(factors=factors(1, 1)), 1)
    assert bumps_as_claimed(_run(factors=factors(5, 4)), 2)
    assert not bumps_as_claimed(_run(factors=factors(5, 1)), 2)
    assert not bumps_as_claimed(_run(factors=factors(0, 0)), 10)


def test_cross_entropy_and_grouped_checks():
    two = _run([PLATEAU, PLATEAU], [DROP, DROP], final=1e-4)
    stuck = _run(final=0.05)
    assert ce_checks(two, stuck, _run(), False) == {"two plateaus": True, "struggles": True,
                                                    "unchanged": True}
    assert not ce_checks(two, two, _run(), True)["unchanged"]
    assert grouped_checks({"spread": 3, "width": 0.5}, {"spread": 1.5, "width": 0.9}) == {
        "closer": True, "wider": True}
    assert grouped_checks({"spread": 3, "width": 0.5}, {"spread": None, "width": 0.4}) == {
        "closer": False, "wider": False}
    # a smaller spread among fewer emerged groups is not closer: one group never emerged
    assert grouped_checks({"spread": 3, "width": 0.5, "emerged": 1.0},
                          {"spread": 1.5, "width": 0.9, "emerged": 0.8}) == {
        "closer": False, "wider": True}
    assert grouped_checks({"spread": 3, "width": 0.5, "emerged": 0.8},
                          {"spread": 1.5, "width": 0.9, "emerged": 0.8})["closer"]


def test_table_and_readme_markdown():
    rows = claims_table({2: ClaimResult(2, IN_PART, "Holds at σ = 0.1.", "flow", "σ ≥ 0.03")},
                        {"rank-1": "x", "scalar-vector": "not run"})
    assert [r["claim"] for r in rows] == [c.number for c in CLAIMS]
    assert rows[0]["verdict"] == NOT_MEASURED and rows[0]["numbers"] == "not run"
    table = claims_markdown(rows)
    assert table.count("\n") == len(CLAIMS) + 1 and "σ ≥ 0.03" in table
    readme = f"intro\n{README_BEGIN}\nstale\n{README_END}\nrest"
    new = replace_readme_table(readme, table)
    assert new.startswith("intro\n") and new.endswith(f"{README_END}\nrest") and "stale" not in new
    assert replace_readme_table(new, table) == new
    with pytest.raises(ValueError, match="markers"):
        replace_readme_table("no markers", table)


def _curve(t, loss, phases=None, l_ref=1.0):
    from types import SimpleNamespace

    traj = SimpleNamespace(t=np.asarray(t, float), loss=np.asarray(loss, float))
    return {"trajectory": traj, "final_loss": float(loss[-1]), "l_ref": l_ref,
            "phases": phases or {"initial": None, "plateaus": [], "drops": [], "tail": None}}


def test_adam_plateau_or_stall_against_sgd_after_the_same_steps():
    from figures.claims import adam_plateau_checks, stalls

    t = np.linspace(0, 6, 61)
    stuck = _curve(t, 0.3 * np.exp(-0.02 * t) + 1e-3)  # Adam: sits near 0.3 L_ref
    falling = _curve(t * 4, 0.3 * np.exp(-0.5 * t * 4))  # SGD: η 4× larger, keeps falling
    assert stalls(stuck) and not stalls(falling)
    assert adam_plateau_checks(stuck, falling, 1e-3, 4e-3) == {"plateau": False, "stall": True}
    assert not any(adam_plateau_checks(falling, falling, 4e-3, 4e-3).values())
    shaped = _curve(t, 0.3 * np.exp(-0.5 * t), {"plateaus": [PLATEAU], "drops": [DROP]})
    assert adam_plateau_checks(shaped, falling, 1e-3, 4e-3)["plateau"]
    done = _curve(t, np.full(t.shape, 1e-4))  # converged: below 1 % L_ref is not a stall
    assert not stalls(done)


def test_a_single_holding_value_is_named_as_such():
    m = _map([[0, 0, 1, 0, 0, 0]], y=Axis("n", (100,)))
    assert boundary(m) == "holds only at σ = 0.03; fails at the other σ tested"


def test_reference_maps_are_shown_but_never_judged():
    by_construction = ClaimMap("task-code block", SIGMA, N, np.ones((2, 6)), reference=True)
    result, region = claim_verdict([_map(np.zeros((2, 6))), by_construction])
    assert result == NOT_SUPPORTED and "task-code" not in region


def test_a_few_scattered_failures_are_named_as_exceptions():
    m = _map([[1, 1, 0, 1, 1, 1]], y=Axis("n", (100,)))
    assert boundary(m) == "holds at every σ tested except σ = 0.03"
