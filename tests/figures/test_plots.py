"""Plots: one trajectory drawing for theory and experiment, its data rows, equations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dynamics.trajectory import Trajectory
from figures.plots import (
    MAX_VECTORS,
    ScalingPanel,
    ScalingSet,
    Series,
    _wrap_latex,
    plot_groups,
    plot_scaling,
    plot_trajectories,
    render_equation,
    save_png,
    trajectory_rows,
    visible_samples,
)

PNG = b"\x89PNG"


def _logistic(k: int = 1, samples: int = 200) -> Trajectory:
    """Rank-1 logistic w(t) = s/(1 + (s/w0 − 1)e^{−2st}), s = 1: a plateau, then a drop."""
    t = np.linspace(0.0, 12.0, samples)
    w = 1.0 / (1.0 + (1e5 - 1.0) * np.exp(-2.0 * t))
    cos = np.repeat(np.sqrt(w / (w + 1e-4))[:, None, None], k, axis=2)
    norms = np.repeat(np.sqrt(w + 1e-4 * np.exp(-t))[:, None], k, axis=1)
    return Trajectory(t, 0.5 * (1.0 - w) ** 2 + 1e-20, 0.5, {"X": cos, "Y": cos},
                      {"X": norms, "Y": norms}, "flow")


def test_theory_and_training_on_three_panels(tmp_path):
    theory, trained = _logistic(), _logistic(samples=40)
    fig = plot_trajectories([Series(theory, "σ=1e-3"), Series(trained, "σ=1e-3", False)],
                            "rank 1")
    axes = fig.axes
    assert len(axes) == 3
    assert axes[0].get_yscale() == "log" and axes[2].get_yscale() == "log"
    assert all("t" in ax.get_xlabel() for ax in axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"σ=1e-3", "theory", "training", "factor X", "factor Y"} <= set(labels)
    assert "plateau (shaded)" in labels  # the logistic has a plateau, and it is shaded
    assert axes[0].get_ylim()[0] >= 1e-12  # rounding noise below the floor is cut
    path = save_png(fig, tmp_path / "f.png")
    assert path.read_bytes()[:4] == PNG


def test_data_rows_are_the_drawn_curves():
    few, many = _logistic(k=1, samples=30), _logistic(k=MAX_VECTORS + 1, samples=30)
    rows = trajectory_rows([Series(few, "a"), Series(many, "b", False)])
    curves = {(r["series"], r["panel"], r["factor"], r["curve"]) for r in rows}
    # a: loss + (alignment, norm) x 2 factors x 1 vector; b: the same with median, p10, p90
    assert len([c for c in curves if c[0] == "a"]) == 1 + 2 * 2
    assert len([c for c in curves if c[0] == "b"]) == 1 + 2 * 2 * 3
    # every curve keeps its first and last sample and at most all 30 (thinned to what is drawn)
    per_curve = Counter((r["series"], r["panel"], r["factor"], r["curve"]) for r in rows)
    assert all(2 <= k <= 30 for k in per_curve.values())
    assert {r["source"] for r in rows} == {"theory", "training"}


def test_visible_samples_keep_what_a_drawing_needs():
    x = np.linspace(0.0, 1.0, 2001)
    # a straight line needs its two ends; a corner needs the corner too
    assert list(visible_samples(x, [3 * x + 1], [4.0])) == [0, 2000]
    corner = np.minimum(x, 0.5)
    assert list(visible_samples(x, [corner], [0.5])) == [0, 1000, 2000]
    # a sigmoid: far fewer samples, and every dropped one lies within the tolerance of the
    # straight segments between the kept ones (checked here by interpolation, independently)
    y = 1 / (1 + np.exp(-(x - 0.5) * 40))
    for tol in (1e-2, 1e-3, 1e-4):
        keep = visible_samples(x, [y], [1.0], tolerance=tol)
        assert keep.size < 2001 / 5
        assert np.max(np.abs(np.interp(x, x[keep], y[keep]) - y)) <= tol
    # several curves share one set of samples; a NaN sample is kept
    z = y.copy()
    z[7] = np.nan
    keep = visible_samples(x, [y, corner, z], [1.0, 0.5, 1.0])
    assert 7 in keep and 1000 in keep


def test_several_settings_get_one_plateau_row_each_above_the_data():
    slow, fast = _logistic(), _logistic()
    fast = Trajectory(fast.t / 2, fast.loss, fast.l_ref, fast.cosines, fast.norms, "flow")
    fig = plot_trajectories([Series(slow, "slow"), Series(fast, "fast", color=1)])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "plateaus (top rows, one per setting)" in labels
    loss_ax = fig.axes[0]
    spans = [p for p in loss_ax.patches if p.get_alpha() and p.get_alpha() > 0.3]
    assert len(spans) == 2  # one row per setting, in the band above the data
    top = max(float(np.max(s.loss / s.l_ref)) for s in (slow, fast))
    low, high = np.log10(loss_ax.get_ylim())
    assert (np.log10(top) - low) / (high - low) < 1 - 2 * 0.035  # the band holds no data


def test_scaling_and_group_figures():
    x = np.array([1e-3, 1e-2, 1e-1])
    line = ("closed form", np.geomspace(1e-3, 1e-1, 20), np.log(1 / np.geomspace(1e-3, 1e-1, 20)))
    panel = ScalingPanel("σ", "σ", (ScalingSet("measured", x, np.log(1 / x), 0.1 * x, (line,)),
                                    ScalingSet("other", x, np.log(2 / x), 0 * x)))
    fig = plot_scaling([panel, panel], "t_0.5")
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["closed form", "measured", "other"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.001", "0.01", "0.1"]
    t = np.linspace(0, 1, 10)
    fig = plot_groups([("mean", t, np.exp(-np.outer(t, [1, 2]))),
                       ("grouped", t[:5], np.exp(-np.outer(t[:5], [9, 9])))], ["g0", "g1"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["g0", "g1"]
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()  # one y range for every method
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
    fig = plot_groups([("mean", t, np.exp(-np.outer(t, [1, 2])))], ["g0", "g1"],
                      theory=[(t, np.exp(-np.outer(t, [1, 2])))])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["g0", "g1", "theory",
                                                                  "training"]


def test_equations_render_and_wrap_at_top_level_signs():
    assert render_equation(r"\frac{dP}{dt} = G_{A} Q - P V")[:4] == PNG
    long = r"x = " + " + ".join([r"\left(a - b\right) c"] * 12)
    lines = _wrap_latex(long, 60)
    assert len(lines) > 1
    assert all(line.count(r"\left") == line.count(r"\right") for line in lines)
    with pytest.raises(ValueError):
        render_equation(r"\frac{")


def test_claim_maps_draw_one_heatmap_per_map_and_a_thumbnail(tmp_path):
    from figures.claims import Axis, ClaimMap
    from figures.plots import plot_maps, save_thumbnail

    sigma = Axis("σ", (1e-3, 0.1, 1.0), "init σ")
    maps = [ClaimMap("whole sequence", sigma, Axis("n", (10, 100)), [[0, 1, 1], [np.nan, 1, 0]],
                     notes=[["D", "", ""], ["", "", "S"]]),
            ClaimMap("Adam plateau", sigma, Axis("η", (1e-3,)), [[1 / 3, 2 / 3, 1]], seeds=3)]
    fig = plot_maps(maps, "Claim 2: where it holds")
    assert len(fig.axes) == 2
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["D", "✓", "✓", "n/a", "✓", "S"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["1/3", "2/3", "3/3"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.001", "0.1", "1"]
    assert save_png(fig, tmp_path / "map.png").read_bytes().startswith(PNG)
    thumb = plot_maps(maps, thumbnail=True)
    assert all(not ax.get_xticks().size and not ax.texts for ax in thumb.axes)
    assert save_thumbnail(thumb, tmp_path / "thumb.png").stat().st_size < 5000


def test_a_figure_legend_and_the_last_tick_label_stay_on_the_canvas():
    """The grouped section's figure (2 panels wide, five long group names and the marker's
    label): matplotlib's own layout of the legend and of every tick label lies inside the
    figure (it overflowed on both sides with a fixed 5 legend columns)."""
    t = np.linspace(0, 8000, 50)
    names = [f"task {g} (p = {p:.2f})" for g, p in zip(range(1, 6), (0.44, 0.22, 0.15, 0.11,
                                                                        0.09), strict=True)]
    fig = plot_groups([(m, t, np.exp(-np.outer(t / 8000, np.arange(1, 6))))
                       for m in ("mean", "grouped", "cluster", "svd")], names,
                      marks=[np.array([1000.0, 2000, 3000, 4000, 5000])] * 4)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    right = fig.bbox.x1
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.x0 >= 0 and legend.x1 <= right, (legend, right)
    for ax in fig.axes:
        for label in ax.get_xticklabels():
            if label.get_visible() and label.get_text():
                box = label.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= right, (label.get_text(), box, right)
