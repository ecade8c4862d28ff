"""Extra seeds only where a verdict may be noise (:func:`figures.claims.more_seeds`), and the
cells whose seeds disagree counted per cell (``ClaimMap.counts``), on synthetic maps whose
answer is known by construction: all hold, all fail, a monotone boundary, a flip-flop row,
seeds that disagree."""

from __future__ import annotations

import numpy as np

from figures.claims import Axis, ClaimMap, headline, more_seeds, seed_short

SIGMA = Axis("σ", (1e-3, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))
N = Axis("n", (10, 30, 100, 300))


def _map(grid, seeds: int = 1, counts=None) -> ClaimMap:
    return ClaimMap("test", SIGMA, N, np.asarray(grid, dtype=float), seeds=seeds,
                    counts=counts)


def test_all_hold_and_all_fail_need_no_more_seeds():
    assert not more_seeds(_map(np.ones((4, 7)))).any()
    assert not more_seeds(_map(np.zeros((4, 7)))).any()


def test_a_monotone_boundary_adds_seeds_on_its_two_sides_only():
    # every row holds from σ = 0.03 (column 3) on: columns 2 and 3 sit beside the boundary
    grid = np.array([[j >= 3 for j in range(7)]] * 4)
    flagged = more_seeds(_map(grid))
    expected = np.zeros((4, 7), dtype=bool)
    expected[:, 2:4] = True
    np.testing.assert_array_equal(flagged, expected)
    # a boundary that moves with n: each row's two sides, and the cells above/below a step
    grid = np.array([[j >= i + 1 for j in range(7)] for i in range(4)])
    flagged = more_seeds(_map(grid))
    assert flagged.sum() == 8 + 0  # the row neighbours already cover the column steps
    assert all(flagged[i, i] and flagged[i, i + 1] for i in range(4))
    assert not flagged[:, 5:].any() and not flagged[3, :3].any()


def test_a_flip_flop_row_adds_seeds_along_the_whole_row():
    grid = np.ones((4, 7))
    grid[2] = [0, 0, 1, 0, 0, 0, 1]  # the claim 8 on one seed
    flagged = more_seeds(_map(grid))
    assert flagged[2].all()  # along the row: beside a change, or unlike the rows around it
    alone = ClaimMap(
        "test", SIGMA, Axis("n", (10,)), grid[2:3])
    np.testing.assert_array_equal(more_seeds(alone)[0],
                                  [False, True, True, True, False, True, True])
    # the rows above and below differ from it column by column: flagged where they do
    np.testing.assert_array_equal(flagged[1], grid[2] == 0)
    assert not flagged[0].any()


def test_cells_whose_seeds_disagree_get_seeds_until_they_rest_on_three():
    grid = np.ones((4, 7))
    grid[1, 5] = 0.5  # two seeds, one each way (0.5 is not "more than half": it fails)
    two = _map(grid, seeds=2)
    assert more_seeds(two)[1, 5]
    assert seed_short(two) == 1
    # with per-cell counts: the same cell on 3 seeds (1 of 3 holds) is settled …
    grid[1, 5] = 1 / 3
    counts = np.ones((4, 7), dtype=int)
    counts[1, 4:7] = 3
    settled = _map(grid, counts=counts)
    assert seed_short(settled) == 0
    one = Axis("σ", (0.1,)), Axis("n", (10,))
    assert not more_seeds(ClaimMap("test", *one, [[1 / 3]], counts=[[3]])).any()
    assert more_seeds(ClaimMap("test", *one, [[0.5]], counts=[[2]])).all()
    assert "seeds disagree" not in headline(settled)
    # … on 2 it is not, and the sentence says so without claiming one count for the map
    counts[1, 5] = 2
    grid[1, 5] = 0.5
    short = _map(grid, counts=counts)
    assert seed_short(short) == 1
    assert headline(short).endswith("(1 cell where seeds disagree rest on fewer than 3 seeds)")


def test_near_marks_cells_a_section_knows_are_close_to_a_threshold():
    near = np.zeros((4, 7), dtype=bool)
    near[0, 0] = True
    flagged = more_seeds(_map(np.ones((4, 7))), near)
    assert flagged.sum() == 1 and flagged[0, 0]
    unmeasured = np.ones((4, 7))
    unmeasured[0, 0] = np.nan
    assert not more_seeds(_map(unmeasured), near).any()  # nothing to rerun where nothing ran


def test_grouped_training_adds_seeds_only_to_a_task_whose_seeds_disagree():
    from figures.reporting.sections import grouped

    st = grouped.SECTION.settings(quick=False)
    assert tuple(st.seeds) == (0, 1)
    agree = [{"closer": True, "wider": False}] * 2
    split = [{"closer": True, "wider": True}, {"closer": False, "wider": True}]
    assert grouped._extra_seeds(st, {"parity": agree, "skills": agree}) == []
    assert grouped._extra_seeds(st, {"parity": agree, "skills": split}) == [("skills", 2)]
    three = [*split, {"closer": True, "wider": True}]
    assert grouped._extra_seeds(st, {"parity": three}) == []  # already on 3 seeds


def test_a_text_axis_held_everywhere_lists_its_values_not_a_range():
    from figures.claims import boundary

    tasks = ClaimMap("test", Axis("task", ("parity", "skills")), Axis("check", ("wider",)),
                     [[1.0, 1.0]])
    assert boundary(tasks) == "holds at every task tested (parity, skills)"
