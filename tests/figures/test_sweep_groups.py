"""Grouped models in ``scurve sweep``: the modes family's derived axes (``groups``, ``spread``,
``zipf``) and the emergence columns of the table, checked against values computed here from
the curves and the formulas (claim 11's theory map is this sweep)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.methods import Flow
from dynamics.problems import load as load_spec
from figures.cli import main
from figures.sweep import sweep


def _sample(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "modes.npz"
    try:
        return main(["sample", "modes", *args, "-o", str(out)]), out
    except SystemExit as exc:  # argparse's own errors (exit 2)
        return int(exc.code), out


def test_groups_spread_and_zipf_draw_the_family_they_name(tmp_path: Path) -> None:
    code, path = _sample(tmp_path, "--groups", "4", "--spread", "8", "--zipf", "1",
                         "--seed", "3")
    assert code == 0
    spec = load_spec(path)
    # s_g = 8^((G − g)/(G − 1)): 8, 4, 2, 1
    np.testing.assert_allclose(np.diag(spec.data["S"]), [8.0, 4.0, 2.0, 1.0], rtol=1e-14)
    # p_g ∝ 1/g; the dataset holds round(256 p_g) examples of group g
    p = 1 / np.arange(1, 5)
    counts = np.round(256 * p / p.sum())
    np.testing.assert_allclose(np.diag(spec.data["D"]), counts / counts.sum(), rtol=1e-14)
    # the same spec as the explicit lists from the same seed
    code, explicit = _sample(tmp_path, "--scales", "8,4,2,1", "--frequencies",
                             ",".join(repr(float(v)) for v in p / p.sum()), "--seed", "3")
    assert code == 0
    other = load_spec(explicit)
    for key in ("A", "B", "X0", "Y0", "D"):
        np.testing.assert_allclose(other.data[key], spec.data[key], rtol=1e-14)
    # --zipf also weighs explicit scales
    code, path = _sample(tmp_path, "--scales", "1,1,1", "--zipf", "2")
    q = 1 / np.arange(1, 4) ** 2
    counts = np.round(256 * q / q.sum())
    np.testing.assert_allclose(np.diag(load_spec(path).data["D"]), counts / counts.sum())


@pytest.mark.parametrize("args, message", [
    ((), "needs --scales S1,... or --groups G"),
    (("--scales", "1,2", "--groups", "2"), "needs --scales S1,... or --groups G"),
    (("--scales", "1,2", "--spread", "2"), "--spread needs --groups"),
    (("--groups", "2", "--zipf", "1", "--frequencies", "1,2"), "--frequencies or --zipf"),
    (("--groups", "0"), "--groups"),
])
def test_bad_family_options_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             args: tuple[str, ...], message: str) -> None:
    code, _ = _sample(tmp_path, *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def _half_drop(t: np.ndarray, loss: np.ndarray) -> float:
    """First t with ℓ ≤ (ℓ(0) + ℓ(end))/2, linear in ln ℓ between samples (here, not
    dynamics.phases)."""
    level = (loss[0] + loss[-1]) / 2
    i = int(np.flatnonzero(loss <= level)[0])
    a, b = np.log(loss[i - 1]), np.log(loss[i])
    return float(t[i - 1] + (np.log(level) - a) / (b - a) * (t[i] - t[i - 1]))


def test_grouped_rows_carry_the_groups_emergence(tmp_path: Path) -> None:
    """emergence_spread = t_last/t_first of the groups' half-drop times of the flow's group
    losses; a horizon before any group has emerged leaves it empty with groups_emerged 0; an
    ungrouped model's rows leave the columns empty."""
    with ThreadPoolExecutor(1) as pool:
        rows = sweep("modes", ["spread=1,3", "t_max=60,2"], seeds=1, theories=("flow",),
                     defaults={"groups": 3, "zipf": 1.0, "n": 6, "hidden": 4, "init": 0.01},
                     executor=pool, cache_dir=tmp_path / "c")
    assert len(rows) == 4
    for row in rows:
        if row["t_max"] == 2:  # nothing has halved its loss yet
            assert row["groups_emerged"] == 0 and row["emergence_spread"] is None, row
            continue
        assert row["groups_emerged"] == 1.0, row
        s = np.geomspace(row["spread"], 1.0, 3)
        p = 1 / np.arange(1, 4)
        from dynamics.models.modes import sample_modes

        spec = sample_modes(s, p / p.sum(), n=6, hidden=4, init=0.01, seed=0)
        traj = predict(spec, Flow(), t_max=60)
        halves = [_half_drop(traj.t, traj.group_loss[:, g]) for g in range(3)]
        assert math.isclose(row["emergence_spread"], max(halves) / min(halves), rel_tol=1e-9)
    # the spread of scales separates the modes in time: a wider emergence spread
    by = {r["spread"]: r["emergence_spread"] for r in rows if r["t_max"] == 60}
    assert by[3.0] > by[1.0]
    with ThreadPoolExecutor(1) as pool:
        plain = sweep("vector", ["init=0.1"], defaults={"n": 3}, executor=pool,
                      cache_dir=tmp_path / "v")
    assert all(plain[0][k] is None for k in ("emergence_spread", "emergence_width",
                                             "groups_emerged"))


def test_a_heatmap_keeps_the_other_axes_apart() -> None:
    """A third grid axis gets its own panels: its values are not pooled into the median."""
    from figures.sweep import heatmap_panels

    rows = [{"a": a, "b": b, "objective": o, "seed": k, "source": "flow",
             "t_0.5": 100 * (o == "grouped") + 10 * a + b + k}
            for a in (1, 2) for b in (1, 2, 3) for o in ("mean", "grouped") for k in (0, 1, 2)]
    xs, ys, panels = heatmap_panels(rows, "t_0.5", "a", "b", ["a", "b", "objective"])
    assert xs == [1, 2] and ys == [1, 2, 3]
    assert [title for title, _ in panels] == ["flow, objective=mean", "flow, objective=grouped"]
    for (_, grid), extra in zip(panels, (0, 100), strict=True):
        # median over seeds 0, 1, 2 adds 1
        expected = np.array([[extra + 10 * a + b + 1 for a in (1, 2)] for b in (1, 2, 3)])
        np.testing.assert_array_equal(grid, expected)


def test_a_sampler_rule_fails_before_any_cell_runs(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """modes needs --scales or --groups: the sweep says so in one line, exit 2, no cell run."""
    from figures.sweep import SweepError

    with pytest.raises(SweepError, match=r"needs --scales S1,\.\.\. or --groups G"):
        sweep("modes", ["zipf=0,1"], cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    code = main(["sweep", "modes", "--grid", "zipf=0,1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--groups" in err, err
