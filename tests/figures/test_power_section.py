"""The "Power family" report section (figures.reporting.sections.power) on a tiny grid
(modes-scale, q ∈ {0, 1} and q*, one seed, law grid of step ½), checked against numbers
computed here from other pieces: q* from dynamics.groups.mode_emergence_time with the initial
strengths written out, the mean-loss/q = 0 equivalence of equal frequencies, and the cost
read from a run of validation.tasks.train_task."""

from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch
from tqdm import tqdm

from dynamics.groups import mode_emergence_time, objective
from figures.reporting.blocks import Context, FigureBlock, TableBlock, TextBlock
from figures.reporting.sections import SECTIONS, resolve_sections
from figures.reporting.sections import power as section
from figures.sweeps import CacheStats
from validation.tasks import TASKS, make_task, train_task

TINY = section.Settings(qs=(0.0, 1.0), seeds=1, law_step=0.5, tasks=("modes-scale",))
GRID = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("power")
    with ProcessPoolExecutor(2) as executor:
        ctx = Context(out, True, executor, out / "cache", CacheStats(), section.SECTION,
                      tqdm(total=0, disable=True), TINY)
        return section.SECTION.build(ctx)


def _rows(result) -> dict:
    return {r["q"]: r for r in result.data["rows"]}


def test_registered_after_depth():
    assert [s.slug for s in SECTIONS][-4:] == ["depth", "power-family", "committee", "icl"]
    assert resolve_sections("14") == resolve_sections("power-family") == [section.SECTION]


def test_q_star_is_the_least_spread_of_the_decoupled_modes(built):
    """q* from the law's grid equals the argmin computed here: w_g(0) = ‖(a_gᵀX₀ + b_gᵀY₀)/2‖²
    written out, t_g from mode_emergence_time, spread t_max/t_min. With s_g from 2 to 1 the
    plateau rates λ_g ∝ s_g^(1+2q) are equal at q = −½, the grid's argmin."""
    task = make_task("modes-scale", 0)
    d = task.spec.data
    s, p = np.diag(d["S"]), task.frequencies
    w0 = [float(np.sum(((d["A"][:, g] @ d["X0"] + d["B"][:, g] @ d["Y0"]) / 2) ** 2))
          for g in range(len(s))]
    spreads = []
    for q in GRID:
        t = [mode_emergence_time(objective("power", q=q), s[g], w0[g], p[g]) for g in range(5)]
        spreads.append(max(t) / min(t))
    assert built.data["q_star"] == {"modes-scale": GRID[int(np.argmin(spreads))]} \
        == {"modes-scale": -0.5}
    assert built.data["law"]["modes-scale"]["q"] == list(GRID)
    np.testing.assert_allclose(built.data["law"]["modes-scale"]["spread"], spreads, rtol=1e-9)


def test_trained_objectives_and_the_figure_data(built):
    rows = _rows(built)
    assert sorted(rows, key=lambda q: -9 if q is None else q) == [None, -0.5, 0.0, 1.0]
    assert [r["q*"] for r in rows.values()].count(True) == 1 and rows[-0.5]["q*"]
    (figure,) = [b for b in built.blocks if isinstance(b, FigureBlock)]
    assert figure.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "η = 0.01" in figure.caption and "scurve report --only power-family" in figure.command
    with open(figure.data) as fh:
        data = list(csv.DictReader(fh))
    law = [r for r in data if r["source"] == "law" and not r.get("objective")]
    assert [float(r["q"]) for r in law] == list(GRID)
    for source in ("law", "flow", "training"):
        named = {r["objective"] for r in data if r["source"] == source and r.get("objective")}
        assert named == {"mean", "power(q=-0.5, eps=0.01)", "power(q=0)", "power(q=1)"}
    tables = [b for b in built.blocks if isinstance(b, TableBlock)]
    assert [len(t.rows) for t in tables] == [4, 4]
    assert built.claims == []
    texts = [b.text for b in built.blocks if isinstance(b, TextBlock)]
    assert all(b.kind == "note" for b in built.blocks if isinstance(b, TextBlock))
    assert any("q* = -0.5" in t for t in texts)


def test_equal_frequencies_make_the_mean_loss_q0_slowed_fivefold(built):
    """p̂_g = 1/5: the mean loss is ⅕ of power(q = 0), the same flow in t/5, so the same
    spread and width (law exactly; SGD up to the step, whose lag differs)."""
    rows = _rows(built)
    mean, zero = rows[None], rows[0.0]
    for metric in ("spread law", "width law", "spread flow", "width flow"):
        assert mean[metric] == pytest.approx(zero[metric], rel=2e-3), metric
    assert mean["spread training"] == pytest.approx(zero["spread training"], rel=0.01)


def test_theory_against_training(built):
    """The GD map equals float64 SGD to rounding; the flow is within 3 % at η = 0.01 and
    leads by about the plateau estimate of the step's lag; the law's spread and width are
    within 3 % of training's."""
    for q, row in _rows(built).items():
        assert row["error GD map (seed 0)"] < 1e-10, q
        assert row["error flow"] < 0.03, q
        assert row["error flow"] == pytest.approx(row["step lag (plateau estimate)"], abs=0.006)
        assert row["spread law"] == pytest.approx(row["spread training"], rel=0.03), q
        assert row["width law"] == pytest.approx(row["width training"], rel=0.03), q


def test_cost_at_q_star_matches_a_plain_training_run(built):
    """Final losses and the steps until the mean loss settles ≤ 10⁻² × its start, at q*, from
    train_task (float64) with the mean loss formed here."""
    row = _rows(built)[-0.5]
    task = make_task("modes-scale", 0)
    run = train_task(task, "power(q=-0.5)", row["run steps"], TASKS["modes-scale"].lr,
                     dtype=torch.float64)
    mean = run.group_loss @ task.frequencies
    settled = next(k for k in range(len(mean)) if np.all(mean[k:] <= 1e-2 * mean[0]))
    assert row["run steps"] == TASKS["modes-scale"].steps  # q ≤ 1 needs no longer run
    assert row["steps to level"] == settled
    assert row["worst-group final"] == pytest.approx(run.group_loss[-1].max(), abs=1e-12)
    assert row["mean final"] == pytest.approx(mean[-1], abs=1e-12)
    assert row["mean start"] == pytest.approx(mean[0], rel=1e-12)
