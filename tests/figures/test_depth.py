"""The "Depth" report section (figures.reporting.sections.depth): a quick build, its blocks
and its numbers."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest
from tqdm import tqdm

from figures.reporting.blocks import Context, FigureBlock, TableBlock, TextBlock
from figures.reporting.sections import depth as section
from figures.sweeps import CacheStats


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("depth")
    with ProcessPoolExecutor(2) as executor:
        ctx = Context(out, True, executor, out / "cache", CacheStats(), section.SECTION,
                      tqdm(total=0, disable=True), section.QUICK)
        return out, section.SECTION.build(ctx)


def test_section_shows_curves_sweep_and_tables(built):
    _, result = built
    figures = [b for b in result.blocks if isinstance(b, FigureBlock)]
    tables = [b for b in result.blocks if isinstance(b, TableBlock)]
    assert [f.png.name for f in figures] == ["13-depth-curves.png", "13-depth-sigma.png"]
    for block in figures:
        assert block.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert block.data.is_file() and "η" in block.caption and "σ" in block.caption
        assert "scurve report --only depth" in block.command
    assert len(tables) == 3 and all(t.rows for t in tables)
    assert not [b for b in result.blocks if isinstance(b, TextBlock) and b.kind != "note"]
    assert result.claims == []


def test_fitted_slopes_beside_the_predicted_ones(built):
    """Quick grid (two σ a factor 2 apart, one seed): the flow's slope of ln t_0.5 against ln σ
    is within 0.1 of −(D − 2) for D = 3, 4 (ratio per halving near 2^{D−2}); at D = 2 it is
    small (logarithmic law) and dt_0.5/d ln σ is near −1/s = −1 (the σ → 0 value; measured
    −0.90 at σ = 0.04–0.08, n = 10: the init's energy off the target, ~nσ², slows the drop)."""
    _, result = built
    rows = {r["D"]: r for r in result.data["slopes"]}
    assert sorted(rows) == [2, 3, 4]
    for depth in (3, 4):
        row = rows[depth]
        assert row["predicted slope (σ → 0)"] == -(depth - 2)
        assert row["flow: fitted slope"] == pytest.approx(-(depth - 2), abs=0.1)
        assert row["flow: ratio per halving (smallest σ)"] == pytest.approx(2 ** (depth - 2),
                                                                              rel=0.1)
    assert rows[2]["predicted slope (σ → 0)"] == 0
    assert -0.5 < rows[2]["flow: fitted slope"] < 0
    assert rows[2]["D = 2: dt/d ln σ flow (predicted −1/s)"] == pytest.approx(-1.0, rel=0.15)


def test_training_follows_the_theory(built):
    """SGD in float64 from the same spec: t_0.5 within 5 % of the flow's (η = 0.02: GD lags
    by ~η·s/2 in the drop) in the curves, and the same slopes in the sweep (η = 0.05)."""
    _, result = built
    for row in result.data["curves"]:
        assert row["t_0.5 rel. diff"] < 0.05, row
    for row in result.data["slopes"]:
        assert row["training: fitted slope"] == pytest.approx(row["flow: fitted slope"],
                                                              abs=0.05), row


def test_balanced_start_matches_the_closed_form(built):
    _, result = built
    for row in result.data["balanced"]:
        assert row["max |L_flow − L_closed|/L_ref"] < 1e-8
        assert row["t_0.5 rel. diff"] < 1e-9
