"""One-sentence boundaries (:func:`figures.claims.headline`) on synthetic maps whose answer is
known by construction: all hold, all fail, a monotone boundary moving with y, a band, a row
that flips back and forth, and cells whose few seeds disagree."""

from __future__ import annotations

import numpy as np

from figures.claims import (
    Axis,
    ClaimMap,
    boundary,
    flipping_rows,
    headline,
    judge,
    row_shapes,
    seed_short,
)

SIGMA = Axis("σ", (1e-3, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))
N = Axis("n", (10, 30, 100, 300))


def _map(grid, seeds: int = 1, x: Axis = SIGMA, y: Axis = N) -> ClaimMap:
    return ClaimMap("test", x, y, np.asarray(grid, dtype=float), seeds=seeds)


def test_all_hold_and_all_fail_name_the_ranges():
    assert headline(_map(np.ones((4, 7)))) == "holds everywhere tested (σ 0.001–1, n 10–300)"
    assert headline(_map(np.zeros((4, 7)))) == "fails everywhere tested (σ 0.001–1, n 10–300)"


def test_a_monotone_boundary_gives_its_edge_and_how_it_moves():
    # row i holds from column i + 1 on: the edge rises 0.003, 0.01, 0.03, 0.1 with n
    grid = [[j >= i + 1 for j in range(7)] for i in range(4)]
    assert headline(_map(grid)) == "holds for σ ≥ 0.003…0.1 (rising with n) at every n"
    same = [[j >= 3 for j in range(7)]] * 4
    assert headline(_map(same)) == "holds for σ ≥ 0.03 at every n"
    falling = [[j <= 5 - i for j in range(7)] for i in range(4)]
    assert headline(_map(falling)) == "holds for σ ≤ 0.01…0.3 (falling with n) at every n"


def test_a_band_and_a_failing_stretch():
    band = np.zeros((4, 7))
    band[:, 2:5] = 1
    assert headline(_map(band)) == "holds for 0.01 ≤ σ ≤ 0.1 at every n"
    hole = np.ones((4, 7))
    hole[:, 3] = 0
    assert headline(_map(hole)) == "fails only at σ = 0.03 at every n"


def test_rows_that_hold_or_fail_everywhere_are_named():
    grid = np.ones((4, 7))
    grid[0] = 0
    grid[1, :3] = 0
    assert headline(_map(grid)) == ("holds for σ ≥ 0.03 at n = 30; holds at every σ tested at "
                                    "n = 100, 300; fails at every σ tested at n = 10")


def test_a_flip_flop_is_seed_dependent_with_its_fraction_not_a_region():
    # the claim 8 on one seed: holds at σ = 0.01 and 1, fails elsewhere
    row = [0, 0, 1, 0, 0, 0, 1]
    one = _map([row], y=Axis("n", (10,)))
    assert [shape for _, shape, _ in row_shapes(one)] == ["flip"]
    assert headline(one) == ("seed-dependent along σ (flips back and forth: holds at 2 of 7 "
                             "cells (29%))")
    assert "0.01, 1" in boundary(one)  # the cell list stays for the section
    grid = np.ones((4, 7))
    grid[2:] = row
    assert flipping_rows(_map(grid)) == [100, 300]
    assert headline(_map(grid)) == ("holds at every σ tested at n = 10, 30; seed-dependent "
                                    "along σ at n = 100, 300 (flips back and forth: holds at 4 "
                                    "of 14 cells (29%))")


def test_two_changes_are_a_boundary_not_a_flip():
    assert flipping_rows(_map([[0, 1, 1, 0, 0, 0, 0]] * 4)) == []
    assert flipping_rows(_map([[0, 1, 0, 1, 0, 0, 0]] * 4)) == [10, 30, 100, 300]


def test_cells_where_few_seeds_disagree_are_counted():
    grid = np.ones((4, 7))
    grid[:, 3] = 0.5
    assert seed_short(_map(grid, seeds=2)) == 4
    assert seed_short(_map(grid, seeds=3)) == 0
    assert headline(_map(grid, seeds=2)).endswith("(4 cells where seeds disagree rest on 2 seeds)")
    # 0.5 of the seeds is not "more than half": those cells fail
    assert headline(_map(grid, seeds=3)) == "fails only at σ = 0.03 at every n"


def test_unmeasured_cells_are_skipped_and_a_text_axis_falls_back_to_the_cell_list():
    grid = np.full((4, 7), np.nan)
    grid[1, 3:] = 1
    grid[1, :3] = 0
    assert headline(_map(grid)) == "holds for σ ≥ 0.03 at n = 30"
    assert headline(_map(np.full((4, 7), np.nan))) == "not measured"
    tasks = _map([[1, 0, 1]], x=Axis("task", ("modes", "scale", "parity")), y=Axis("n", (10,)))
    assert headline(tasks) == boundary(tasks)


def test_a_judged_claim_keeps_the_sentence_and_the_cell_list():
    grid = [[j >= 3 for j in range(7)]] * 4
    result = judge(2, [_map(grid)], "numbers")
    assert result.region == "holds for σ ≥ 0.03 at every n"
    assert result.cells == boundary(_map(grid))


def test_single_cells_per_row_read_as_one_moving_value():
    # the README's claim 2 before: σ = 0.3 holds at n = 10, 30, σ = 0.1 at n = 100, 300
    grid = np.zeros((4, 7))
    grid[:2, 5] = 1
    grid[2:, 4] = 1
    assert headline(_map(grid)) == "holds only at σ = 0.1…0.3 (falling with n) at every n"


def test_a_hinge_that_separates_the_cells_gives_the_boundary_in_it():
    grid = np.zeros((4, 7))
    grid[:2, 5] = 1  # nσ² = 0.9, 2.7
    grid[2:, 4] = 1  # nσ² = 1, 3
    m = _map(grid)
    m.hinge = ("nσ²", lambda sigma, n: n * sigma**2)
    assert headline(m) == "holds where nσ² ≈ 0.9–3; fails where it is smaller or larger"
    grid[3, 0] = 1  # σ = 0.001 at n = 300 (nσ² = 3e-4) also holds: the hinge no longer separates
    m = _map(grid)
    m.hinge = ("nσ²", lambda sigma, n: n * sigma**2)
    assert not headline(m).startswith("holds where nσ²")
