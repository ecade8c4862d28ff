"""The committee section's slope fit (figures/reporting/sections/committee.py ``_slope``)
against numpy's least squares on the seed means, and its standard error against the spread
of slopes refitted on resampled seed means (a Monte-Carlo oracle)."""

import numpy as np
import pytest

from figures.reporting.sections.committee import _slope


def test_slope_and_its_standard_error():
    rng = np.random.default_rng(0)
    x = np.log([250.0, 500, 1000, 2000, 4000])
    sd = np.array([5.0, 8.0, 6.0, 10.0, 7.0])
    y = 3.0 + 6.5 * x[:, None] + sd[:, None] * rng.normal(size=(5, 12))
    y[2, 3] = np.nan  # a seed that never escaped is left out of its mean
    slope, se = _slope(x, y)
    means = np.nanmean(y, 1)
    assert slope == pytest.approx(np.polyfit(x, means, 1)[0], rel=1e-12)
    counts = np.sum(np.isfinite(y), 1)
    spread = np.nanstd(y, 1, ddof=1) / np.sqrt(counts)
    refits = [np.polyfit(x, means + spread * rng.normal(size=5), 1)[0] for _ in range(20000)]
    # Monte-Carlo s.e. of a standard deviation from 20 000 refits: ≈ 0.5 %; tolerance 5 %
    assert se == pytest.approx(np.std(refits), rel=0.05)


def test_paired_slope_removes_the_seeds_offsets():
    """Seeds with large offsets of their own (coupled starts): the paired s.e. is that of the
    per-point noise alone, against a Monte-Carlo of whole experiments redrawn."""
    rng = np.random.default_rng(1)
    x = np.log([250.0, 500, 1000, 2000, 4000])

    def experiment():
        return 2.0 + 7.5 * x[:, None] + 20 * rng.normal(size=(1, 10)) + 0.5 * rng.normal(
            size=(5, 10))

    y = experiment()
    slope, se = _slope(x, y, paired=True)
    assert slope == pytest.approx(np.polyfit(x, y.mean(1), 1)[0], rel=1e-12)
    spread = np.std([_slope(x, experiment(), paired=True)[0] for _ in range(4000)])
    # the s.e. from one experiment's 10 seeds scatters ≈ 24 % around the truth; 4000 redraws
    # fix the truth to ≈ 1 %
    assert se == pytest.approx(spread, rel=0.6)
    assert _slope(x, y)[1] > 5 * se  # unpaired: the offsets dominate
