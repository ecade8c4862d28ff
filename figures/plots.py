"""Figures of the report, all in one style (the constants below).

* :func:`plot_trajectories` — the one drawing of trajectories, theory and experiment alike:
  loss / L_ref on a log axis, alignment with the truth (cosines) and norms of the learned
  vectors, against continuous time t; theory solid, experiment thin lines with markers,
  plateaus (from :func:`dynamics.phases.analyze`) shaded and drops dotted.
* :func:`plot_scaling` — measured points (mean ± sd over seeds) on closed-form lines.
* :func:`plot_groups` — per-capability loss curves, one panel per loss method.
* :func:`render_equation` — a LaTeX equation as a PNG (matplotlib mathtext; works offline).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_png` writes it.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dynamics.trajectory import Trajectory

P = ParamSpec("P")

__all__ = [
    "DPI",
    "PALETTE",
    "ScalingPanel",
    "Series",
    "plot_groups",
    "plot_scaling",
    "plot_trajectories",
    "render_equation",
    "save_png",
]

# ----------------------------------------------------------------------------- style
DPI = 110
PANEL_SIZE = (4.3, 3.3)  # inches per panel
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
FACTOR_LINES = ("-", "--", ":", "-.")  # theory: one line style per factor
FACTOR_MARKERS = ("o", "s", "^", "D")  # experiment: one marker per factor
THEORY_WIDTH = 1.8
EXPERIMENT_WIDTH = 0.8
MARKER_SIZE = 4.0
MARK_EVERY = 0.07  # experiment markers, spaced by this fraction of the axes diagonal
PLATEAU_ALPHA = 0.10
MAX_VECTORS = 3  # above this many learned vectors per factor: median and 10-90 % band
TIME_LABEL = "t  (= η · step)"
RC = {
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Series:
    """One trajectory to draw.

    ``label`` names its setting in the legend; theory and experiment of one setting share a
    ``color`` (index into :data:`PALETTE`), so that a curve and its check read as one.
    """

    trajectory: Trajectory
    label: str
    theory: bool = True
    color: int = 0


@dataclass(frozen=True)
class ScalingPanel:
    """One scaling plot: t_0.5 (or another time, in t) against a parameter.

    ``x``, ``mean``, ``sd``: measured points (mean ± sd over seeds); ``line_x``, ``line_y``:
    the closed form; ``extra`` optional second measured set (label, mean) drawn hollow, e.g.
    the integrated theory.
    """

    title: str
    xlabel: str
    x: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    line_x: np.ndarray
    line_y: np.ndarray
    line_label: str
    point_label: str = "training (mean ± sd over seeds)"
    extra: tuple[str, np.ndarray] | None = None
    log_x: bool = True
    ylabel: str = "t_0.5  (t)"


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw inside the report's style (:data:`RC`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with plt.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def _figure(panels: int, rows: int = 1) -> tuple[Figure, np.ndarray]:
    size = (PANEL_SIZE[0] * panels, PANEL_SIZE[1] * rows)
    fig, axes = plt.subplots(rows, panels, figsize=size, squeeze=False)
    return fig, axes


def _vectors(values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Per-vector curves of a (T, k) array, or its median with a 10-90 % band if k is large."""
    if values.shape[1] <= MAX_VECTORS:
        return [values[:, l] for l in range(values.shape[1])], None
    low, mid, high = np.percentile(values, [10, 50, 90], axis=1)
    return [mid], np.stack([low, high])


def _alignment(cosines: np.ndarray) -> np.ndarray:
    """max_j |cos(target j, learned l)| per learned vector l: (T, r, k) -> (T, k)."""
    return np.max(np.abs(cosines), axis=1)


def _draw(ax: plt.Axes, t: np.ndarray, y: np.ndarray, color: str, theory: bool, style: int,
          band: np.ndarray | None = None) -> None:
    if theory:
        ax.plot(t, y, color=color, lw=THEORY_WIDTH, ls=FACTOR_LINES[style % 4], alpha=0.9)
        if band is not None:
            ax.fill_between(t, band[0], band[1], color=color, alpha=0.15, lw=0)
    else:
        ax.plot(t, y, color=color, lw=EXPERIMENT_WIDTH, ls="-", marker=FACTOR_MARKERS[style % 4],
                ms=MARKER_SIZE, mfc="none", mew=0.9, markevery=MARK_EVERY)
        if band is not None:
            ax.plot(t, band[0], color=color, lw=0.6, ls=":")
            ax.plot(t, band[1], color=color, lw=0.6, ls=":")


@_styled
def plot_trajectories(
    series: Sequence[Series],
    title: str = "",
    log_time: bool = False,
    shade_phases: bool = True,
) -> Figure:
    """Three panels against t: L / L_ref (log), alignment with the truth, norms (log).

    Alignment of learned vector l is max_j |cos(target j, learned l)|; norms are ‖w_l‖. Up
    to :data:`MAX_VECTORS` learned vectors per factor are drawn one by one, more as their
    median with a 10-90 % band. Factors are told apart by line style (theory) or marker
    (experiment). Plateaus of the theory curves (of the experiment ones if there is no theory)
    are shaded in the series colour and their drops marked by dotted lines. ``log_time``
    puts t on a log axis (samples at t = 0 are left out).
    """
    fig, axes = _figure(3)
    ax_loss, ax_cos, ax_norm = axes[0]
    factors: list[str] = []
    many = False
    shaded = any(s.theory for s in series)
    drew_phase = False
    for s in series:
        traj, color = s.trajectory, PALETTE[s.color % len(PALETTE)]
        keep = traj.t > 0 if log_time else np.ones(traj.t.shape, bool)
        t = traj.t[keep]
        _draw(ax_loss, t, traj.loss[keep] / traj.l_ref, color, s.theory, 0)
        for name in traj.cosines:
            if name not in factors:
                factors.append(name)
            style = factors.index(name)
            for ax, values in ((ax_cos, _alignment(traj.cosines[name])),
                               (ax_norm, traj.norms[name])):
                curves, band = _vectors(values[keep])
                many = many or band is not None
                for curve in curves:
                    _draw(ax, t, curve, color, s.theory, style, band)
        if shade_phases and s.theory == shaded:
            drew_phase = _shade(axes[0], traj, color) or drew_phase
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("L / L_ref")
    ax_loss.set_title("loss")
    ax_cos.set_ylabel("max_j |cos(truth_j, learned_l)|")
    ax_cos.set_ylim(-0.02, 1.04)
    ax_cos.set_title("alignment with the truth")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("‖learned_l‖")
    ax_norm.set_title("norms of the learned vectors")
    for ax in axes[0]:
        ax.set_xlabel(TIME_LABEL)
        if log_time:
            ax.set_xscale("log")
    handles = _legend_handles(series, factors, many, drew_phase)
    columns = 5
    fig.legend(handles=handles, loc="lower center", ncol=columns, frameon=False)
    if title:
        fig.suptitle(title, fontsize=RC["axes.titlesize"] + 1)
    rows = -(-len(handles) // columns)
    fig.tight_layout(rect=(0, 0.06 * rows + 0.01, 1, 1))
    return fig


def _shade(axes: Sequence[plt.Axes], traj: Trajectory, color: str) -> bool:
    """Shade the plateaus of ``traj`` and mark its drops; True if there was any."""
    try:
        phases = traj.phases()
    except ValueError:  # too few samples for the analysis
        return False
    for ax in axes:
        for plateau in phases.plateaus:
            ax.axvspan(plateau.start, plateau.end, color=color, alpha=PLATEAU_ALPHA, lw=0)
        for drop in phases.drops:
            ax.axvline(drop.time, color=color, ls=":", lw=1.0)
    return bool(phases.plateaus)


def _legend_handles(series: Sequence[Series], factors: list[str], many: bool,
                    phases: bool) -> list:
    handles: list = []
    seen: set[tuple[str, int]] = set()
    for s in series:
        if (s.label, s.color) in seen:
            continue
        seen.add((s.label, s.color))
        handles.append(Patch(color=PALETTE[s.color % len(PALETTE)], label=s.label))
    if any(s.theory for s in series):
        handles.append(Line2D([], [], color="k", lw=THEORY_WIDTH, label="theory"))
    if any(not s.theory for s in series):
        handles.append(Line2D([], [], color="k", lw=EXPERIMENT_WIDTH, marker="o", mfc="none",
                              ms=MARKER_SIZE, label="training"))
    if len(factors) > 1:
        for i, name in enumerate(factors):
            handles.append(Line2D([], [], color="gray", ls=FACTOR_LINES[i % 4],
                                  marker=FACTOR_MARKERS[i % 4], mfc="none", ms=MARKER_SIZE,
                                  label=f"factor {name}"))
    if many:
        handles.append(Patch(color="gray", alpha=0.3,
                             label="median over learned vectors, 10–90 % band"))
    if phases:
        handles.append(Patch(color="gray", alpha=0.25, label="plateau (shaded)"))
        handles.append(Line2D([], [], color="gray", ls=":", label="drop (steepest fall)"))
    return handles


@_styled
def plot_scaling(panels: Sequence[ScalingPanel], title: str = "", columns: int = 3) -> Figure:
    """Measured plateau times (points, mean ± sd) on their closed-form lines, one panel each."""
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = _figure(min(columns, len(panels)), rows)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        ax.plot(panel.line_x, panel.line_y, color=PALETTE[0], lw=THEORY_WIDTH,
                label=panel.line_label)
        ax.errorbar(panel.x, panel.mean, yerr=panel.sd, fmt="o", color=PALETTE[1],
                    ms=MARKER_SIZE + 1, capsize=3, label=panel.point_label)
        if panel.extra is not None:
            ax.plot(panel.x, panel.extra[1], "s", mfc="none", color=PALETTE[2],
                    ms=MARKER_SIZE + 3, label=panel.extra[0])
        if panel.log_x:
            ax.set_xscale("log")
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title)
        ax.legend(frameon=False, loc="best")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=RC["axes.titlesize"] + 1)
    fig.tight_layout()
    return fig


@_styled
def plot_groups(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    group_labels: Sequence[str],
    time_label: str = TIME_LABEL,
    ylabel: str = "ℓ_g / ℓ_g(0)",
    title: str = "",
) -> Figure:
    """Per-capability curves: one panel per ``(method, t (T,), group values (T, G))``.

    One colour per group (the same in every panel), y on a log axis.
    """
    columns = min(len(panels), 3)
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = _figure(columns, rows)
    for ax, (name, t, values) in zip(axes.ravel(), panels, strict=False):
        for g in range(values.shape[1]):
            ax.plot(t, values[:, g], color=PALETTE[g % len(PALETTE)], lw=1.5)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel(time_label)
        ax.set_ylabel(ylabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=PALETTE[g % len(PALETTE)], lw=1.5, label=label)
               for g, label in enumerate(group_labels)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    if title:
        fig.suptitle(title, fontsize=RC["axes.titlesize"] + 1)
    fig.tight_layout(rect=(0, 0.07 / rows + 0.02, 1, 1))
    return fig


def render_equation(latex: str, fontsize: int = 13) -> bytes:
    """PNG bytes of ``latex`` typeset by matplotlib mathtext (raises ValueError if it can't)."""
    buffer = io.BytesIO()
    with plt.rc_context({"mathtext.fontset": "cm"}):
        fig = plt.figure(figsize=(0.01, 0.01))
        try:
            fig.text(0, 0, f"${latex}$", fontsize=fontsize)
            fig.savefig(buffer, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.05,
                        transparent=False, facecolor="white")
        finally:
            plt.close(fig)
    return buffer.getvalue()
