"""Figures of the report, all in one style (the constants below).

* :func:`plot_trajectories` — the one drawing of trajectories, theory and experiment alike:
  loss / L_ref on a log axis, alignment with the truth (cosines) and norms of the learned
  vectors, against continuous time t; theory solid, experiment thin lines with markers,
  plateaus (from :func:`dynamics.phases.analyze`) shaded and drops dotted.
* :func:`plot_scaling` — measured points (mean ± sd over seeds) on closed-form lines.
* :func:`plot_groups` — per-capability loss curves, one panel per loss method.
* :func:`plot_family` — metrics of a family of objectives against its parameter: the
  prediction as a line, measured sets as markers, a reference line and a marked value.
* :func:`plot_recovery` — gradient groups against the true ones through training (ARI, F1 per
  group) beside each group's drop.
* :func:`plot_maps` — where a claim holds: one heatmap per :class:`figures.claims.ClaimMap`
  (green holds, red fails, shades between for a fraction of seeds, grey not measured).
* :func:`render_equation` — a LaTeX equation as a PNG (matplotlib mathtext; works offline).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_png` writes it.
Drawing and saving hold one lock, so report sections may run in threads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import threading
from collections.abc import Callable, Iterator, Sequence
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
_DRAWING = threading.RLock()  # matplotlib's global state: one thread draws at a time

__all__ = [
    "DPI",
    "PALETTE",
    "FamilyPanel",
    "RecoveryPanel",
    "ScalingPanel",
    "ScalingSet",
    "Series",
    "drawing",
    "plot_family",
    "plot_groups",
    "plot_maps",
    "plot_recovery",
    "plot_scaling",
    "plot_trajectories",
    "render_equation",
    "save_png",
    "save_thumbnail",
    "trajectory_rows",
    "visible_samples",
]

# ----------------------------------------------------------------------------- style
DPI = 110
PANEL_SIZE = (4.3, 2.9)  # inches per panel (axes with their labels)
LEGEND_COLUMNS = 5
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
FACTOR_LINES = ("-", "--", ":", "-.")  # theory: one line style per factor
FACTOR_MARKERS = ("o", "s", "^", "D")  # experiment: one marker per factor
THEORY_WIDTH = 1.8
EXPERIMENT_WIDTH = 0.8
MARKER_SIZE = 4.0
MARK_EVERY = 0.07  # markers of the group curves, spaced by this fraction of the axes diagonal
MARKS = 14  # markers per training curve, evenly spaced along the time axis
PLATEAU_ALPHA = 0.10
BAND_ROW = 0.035  # several shaded settings: height of each one's plateau row (axes fraction)
BAND_ALPHA = 0.45
LOSS_AXIS_FLOOR = 1e-12  # L / L_ref below this is float64 rounding noise: the axis stops here
GROUP_AXIS_FLOOR = 1e-10  # ℓ_g / ℓ_ref,g below this is rounding noise (float32 training)
MAX_VECTORS = 3  # above this many learned vectors per factor: median and 10-90 % band
DRAW_TOLERANCE = 1e-3  # a drawn curve may move by this fraction of its axis (≈ 0.4 px) when
# samples it does not need are dropped (:func:`visible_samples`)
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
    phases: dict | None = None
    """``Phases.to_dict()`` of the full-resolution run; None: analysed from ``trajectory``."""


@dataclass(frozen=True)
class ScalingSet:
    """Measured points of a scaling panel (mean ± sd over seeds) and their closed forms.

    ``lines``: ``(label, x, y)`` closed-form curves, drawn in the set's colour (solid, then
    dashed, dash-dotted) under the points.
    """

    label: str
    x: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    lines: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()


@dataclass(frozen=True)
class ScalingPanel:
    """One scaling plot: t_0.5 (or another time, in t) against a parameter, one colour per
    :class:`ScalingSet` (filled circles for the first set, hollow squares, triangles after)."""

    title: str
    xlabel: str
    sets: tuple[ScalingSet, ...]
    log_x: bool = True
    log_y: bool = False
    ylabel: str = r"$t_{0.5}$  (t)"


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` and close it: an 8-bit palette of the figure's
    256 most used colours (median cut, no dithering; a line plot has far fewer), about 3×
    smaller than matplotlib's RGBA and indistinguishable from it."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with _DRAWING:
        fig.savefig(buffer, dpi=DPI, format="png")
        plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    palette.save(path, optimize=True)
    return path


@contextlib.contextmanager
def drawing() -> Iterator[None]:
    """Hold the drawing lock, in the report's style (:data:`RC`): what a report section that
    builds its own matplotlib figure wraps around it (report sections run in threads, and
    matplotlib's text layout — mathtext tick labels on a log axis — is not thread-safe)."""
    with _DRAWING, plt.rc_context(RC):
        yield


def _styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw inside the report's style (:data:`RC`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with _DRAWING, plt.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def _figure(columns: int, rows: int = 1, legend: Sequence[Line2D | Patch] = (),
            title: str = "") -> tuple[Figure, np.ndarray]:
    """Panels on a fixed grid with fixed margins (in inches), legend below, title above.

    Fixed margins instead of ``tight_layout``/``bbox_inches="tight"``: every figure is drawn
    once, when it is saved.
    """
    width = PANEL_SIZE[0] * columns
    ncol = legend_columns(legend, width)
    legend_rows = -(-len(legend) // ncol)
    top, bottom = (0.55 if title else 0.3), 0.55 + 0.24 * legend_rows
    height = PANEL_SIZE[1] * rows + top + bottom
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    # right margin: half of the last x tick label hangs past the axes
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.3 / width, bottom=bottom / height,
                        top=1 - top / height, wspace=0.32, hspace=0.55)
    if legend:
        fig.legend(handles=list(legend), loc="lower center", ncol=ncol,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title, fontsize=RC["axes.titlesize"] + 1, y=1 - 0.12 / height, va="top")
    return fig, axes


def legend_columns(handles: Sequence[Line2D | Patch], width: float) -> int:
    """Columns of a figure legend that fit ``width`` inches: at most :data:`LEGEND_COLUMNS`,
    each as wide as the longest label (≈ 0.55 em per character at the legend's font size) plus
    the handle and the gaps (≈ 0.75 in)."""
    labels = [str(h.get_label()) for h in handles] or [""]
    em = RC["legend.fontsize"] / 72  # inches
    entry = 0.75 + 0.55 * em * max(len(label) for label in labels)
    return max(1, min(LEGEND_COLUMNS, len(labels), int(width // entry)))


def _alignment(cosines: np.ndarray) -> np.ndarray:
    """max_j |cos(target j, learned l)| per learned vector l: (T, r, k) -> (T, k)."""
    return np.max(np.abs(cosines), axis=1)


@dataclass(frozen=True)
class _Curve:
    panel: int  # 0 loss, 1 alignment, 2 norms
    factor: str
    name: str  # "L/L_ref", "vector l" or "median"
    t: np.ndarray
    y: np.ndarray
    band: np.ndarray | None = None  # (2, T): 10 % and 90 % quantiles over learned vectors


PANELS = ("loss", "alignment", "norm")


def visible_samples(x: np.ndarray, ys: Sequence[np.ndarray], spans: Sequence[float],
                    tolerance: float = DRAW_TOLERANCE) -> np.ndarray:
    """Indices of the samples of curves ``ys`` over a shared sorted ``x`` that a drawing needs:
    dropping any other sample moves no curve by more than ``tolerance`` of its axis.

    Ramer–Douglas–Peucker on the vertical distance: a segment between kept samples a < b is
    split at the sample i with the largest max_c |y_c(i) − lerp_c(i)| / span_c while that
    exceeds ``tolerance``. ``x`` and ``ys`` are in the axis' own coordinates (log10 on a log
    axis); ``spans`` is each curve's y span on its axis (x is normalised by its own range).
    First and last samples are always kept; non-finite values count as always visible."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n <= 2:
        return np.arange(n)
    xs = (x - x[0]) / (x[-1] - x[0]) if x[-1] > x[0] else np.zeros(n)
    y = np.stack([np.asarray(c, dtype=np.float64) / s for c, s in zip(ys, spans, strict=True)])
    bad = ~np.isfinite(y).all(axis=0)
    y = np.where(np.isfinite(y), y, 0.0)
    keep = bad.copy()
    keep[[0, -1]] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        w = (xs[a + 1:b] - xs[a]) / (xs[b] - xs[a]) if xs[b] > xs[a] else np.zeros(b - a - 1)
        line = y[:, a:a + 1] + (y[:, b:b + 1] - y[:, a:a + 1]) * w
        gap = np.abs(y[:, a + 1:b] - line).max(axis=0)
        gap[bad[a + 1:b]] = np.inf
        i = int(np.argmax(gap))
        if gap[i] > tolerance:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return np.flatnonzero(keep)


def _thinned(c: _Curve, log_time: bool) -> _Curve:
    """``c`` with only its :func:`visible_samples` (curve and band together): what the figure
    draws and its data file holds. Loss and norm panels are log axes (loss cut at
    :data:`LOSS_AXIS_FLOOR`), alignment a linear one of span 1."""
    t = np.log10(np.maximum(c.t, np.finfo(float).tiny)) if log_time else c.t
    curves = [c.y] if c.band is None else [c.y, *c.band]
    if c.panel == 1:
        ys, spans = curves, [1.0] * len(curves)
    else:
        floor = LOSS_AXIS_FLOOR if c.panel == 0 else np.finfo(float).tiny
        ys = [np.log10(np.maximum(y, floor)) for y in curves]
        finite = [y[np.isfinite(y)] for y in ys]
        spans = [max(float(np.ptp(y)) if y.size else 0.0, 1.0) for y in finite]
    keep = visible_samples(t, ys, spans)
    return _Curve(c.panel, c.factor, c.name, c.t[keep], c.y[keep],
                  None if c.band is None else c.band[:, keep])


def _curves(traj: Trajectory, log_time: bool) -> Iterator[_Curve]:
    """The curves drawn for one trajectory (the figure and its data file share them), each
    with only the samples a drawing needs (:func:`_thinned`).

    Up to :data:`MAX_VECTORS` learned vectors per factor one by one, more as their median
    with a 10-90 % band.
    """
    keep = traj.t > 0 if log_time else np.ones(traj.t.shape, bool)
    t = traj.t[keep]
    yield _thinned(_Curve(0, "", "L/L_ref", t, traj.loss[keep] / traj.l_ref), log_time)
    for name in traj.cosines:
        for panel, values in ((1, _alignment(traj.cosines[name])), (2, traj.norms[name])):
            values = values[keep]
            if values.shape[1] <= MAX_VECTORS:
                for l in range(values.shape[1]):
                    yield _thinned(_Curve(panel, name, f"vector {l}", t, values[:, l]), log_time)
            else:
                low, mid, high = np.percentile(values, [10, 50, 90], axis=1)
                yield _thinned(_Curve(panel, name, "median", t, mid, np.stack([low, high])),
                               log_time)


def trajectory_rows(series: Sequence[Series], log_time: bool = False) -> list[dict[str, object]]:
    """Every number :func:`plot_trajectories` draws, one row per point (long format).

    Columns: series, source (theory/training), panel, factor, curve, t, value; a band adds
    rows with curve ``p10`` and ``p90``.
    """
    rows: list[dict[str, object]] = []
    for s in series:
        source = "theory" if s.theory else "training"
        for c in _curves(s.trajectory, log_time):
            named = [(c.name, c.y)]
            if c.band is not None:
                named += [("p10", c.band[0]), ("p90", c.band[1])]
            for curve, ys in named:
                rows.extend({"series": s.label, "source": source, "panel": PANELS[c.panel],
                             "factor": c.factor, "curve": curve, "t": float(t), "value": float(y)}
                            for t, y in zip(c.t, ys, strict=True))
    return rows


def _marks(c: _Curve, span: tuple[float, float], log_time: bool,
           offset: float = 0.0, count: int = MARKS) -> tuple[np.ndarray, np.ndarray]:
    """Marker positions (t, y) on curve ``c``: ``count`` times evenly spaced along the time
    axis over ``span`` (in log t on a log axis), shifted by ``offset`` of a spacing, that fall
    within the curve (or half a spacing past its ends, drawn at the end); y on the drawn line
    (interpolated in the axes' coordinates: log y on the loss and norm panels). Markers are
    evenly spread in x however sparsely the curve is sampled (:func:`_thinned`) or however it
    wiggles."""
    if c.t.size == 0:
        return np.zeros(0), np.zeros(0)

    def axis(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(x, span[0])) if log_time else x
    lo, hi = axis(np.array(span, dtype=float))
    step = (hi - lo) / count if hi > lo else 1.0
    targets = lo + step * (np.arange(count + 1) + offset)
    u = axis(c.t)
    inside = (targets >= u[0] - step / 2) & (targets <= u[-1] + step / 2)
    targets = np.unique(np.clip(targets[inside], u[0], u[-1]))  # the ends within half a step
    t = np.exp(targets) if log_time else targets
    if c.panel == 1:
        return t, np.interp(targets, u, c.y)
    return t, np.exp(np.interp(targets, u, np.log(np.maximum(c.y, np.finfo(float).tiny))))


def _draw(ax: plt.Axes, c: _Curve, color: str, theory: bool, style: int,
          size: float = MARKER_SIZE,
          marks: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    if theory:
        ax.plot(c.t, c.y, color=color, lw=THEORY_WIDTH, ls=FACTOR_LINES[style % 4], alpha=0.9)
        if c.band is not None:
            ax.fill_between(c.t, c.band[0], c.band[1], color=color, alpha=0.15, lw=0)
    else:
        ax.plot(c.t, c.y, color=color, lw=EXPERIMENT_WIDTH, ls="-")
        if marks is not None:
            ax.plot(*marks, color=color, ls="none", marker=FACTOR_MARKERS[style % 4], ms=size,
                    mfc="none", mew=0.9)
        if c.band is not None:
            for edge in c.band:
                ax.plot(c.t, edge, color=color, lw=0.6, ls=":")


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
    median with a 10-90 % band (dotted edges for training). Factors are told apart by line
    style (theory) or marker (training). Plateaus of the theory curves (of the training ones
    for a setting without theory) are shaded in the series colour and their drops marked by
    dotted lines. ``log_time`` puts t on a log axis (samples at t = 0 are left out).
    """
    with_theory = {s.color for s in series if s.theory}
    # shade each setting once: its theory's phases, or its training's when it has no theory
    phases = [(s, _phases(s)) for s in series
              if shade_phases and (s.theory or s.color not in with_theory)]
    factors = list(dict.fromkeys(name for s in series for name in s.trajectory.cosines))
    many = any(v.shape[1] > MAX_VECTORS for s in series for v in s.trajectory.norms.values())
    shaded = [(s, p) for s, p in phases if p is not None and p["plateaus"]]
    fig, axes = _figure(3, legend=_legend_handles(series, factors, many, len(shaded)),
                        title=title)
    training = sum(not s.theory for s in series)
    later = training  # training series still to draw
    positive = [s.trajectory.t[s.trajectory.t > 0] for s in series]
    span = (min((float(t.min()) for t in positive if t.size), default=1.0),
            max((float(s.trajectory.t[-1]) for s in series), default=1.0))
    if not log_time:
        span = (0.0, span[1])
    for s in series:
        color = PALETTE[s.color % len(PALETTE)]
        # earlier training series get bigger markers, so that coinciding ones stay visible;
        # their markers are staggered along t
        later -= not s.theory
        size = MARKER_SIZE + (0 if s.theory else 1.5 * later)
        for c in _curves(s.trajectory, log_time):
            marks = None if s.theory else _marks(c, span, log_time,
                                                 (training - 1 - later) / max(training, 1))
            _draw(axes[0][c.panel], c, color, s.theory,
                  factors.index(c.factor) if c.factor else 0, size, marks)
    for s, p in phases:
        if p is not None:
            row = next((i for i, (t, _) in enumerate(shaded) if t is s), 0)
            _shade(axes[0], p, PALETTE[s.color % len(PALETTE)], row, len(shaded))
    ax_loss, ax_cos, ax_norm = axes[0]
    ax_loss.set_yscale("log")
    lowest = min((float(np.min(s.trajectory.loss / s.trajectory.l_ref)) for s in series),
                 default=1.0)
    ax_loss.set_ylabel(r"$L\,/\,L_{\mathrm{ref}}$")
    if lowest < LOSS_AXIS_FLOOR:  # below: float64 rounding noise
        ax_loss.set_ylim(bottom=LOSS_AXIS_FLOOR)
        ax_loss.set_ylabel(r"$L\,/\,L_{\mathrm{ref}}$ (axis cut at "
                           f"$10^{{{np.log10(LOSS_AXIS_FLOOR):.0f}}}$)")
    ax_loss.set_title("loss")
    ax_cos.set_ylabel(r"$\max_j\,|\cos(\mathrm{truth}_j,\,w_l)|$")
    ax_cos.set_ylim(-0.02, 1.04)
    ax_cos.set_title("alignment with the truth")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel(r"$\|w_l\|$")
    ax_norm.set_title("norms of the learned vectors")
    first = min((float(s.trajectory.t[s.trajectory.t > 0].min(initial=np.inf)) for s in series),
                default=np.inf)
    last = max((float(s.trajectory.t[-1]) for s in series), default=1.0)
    for ax in axes[0]:
        if len(shaded) > 1:
            _headroom(ax, BAND_ROW * len(shaded) + 0.02)
        ax.set_xlabel(TIME_LABEL)
        if log_time:
            ax.set_xscale("log")
            if np.isfinite(first) and last > first:  # shading from t = 0 must not widen it
                ax.set_xlim(first / 1.3, last * 1.3)
    return fig


def _phases(s: Series) -> dict | None:
    """The phases of a series: given, or analysed from its trajectory (None if impossible)."""
    if s.phases is not None:
        return s.phases
    try:
        return s.trajectory.phases().to_dict()
    except ValueError:  # too few usable samples for the analysis
        return None


def _shade(axes: Sequence[plt.Axes], phases: dict, color: str, row: int = 0,
           rows: int = 1) -> None:
    """Shade the plateaus and mark the drops (``Phases.to_dict()`` form) on every panel.

    One shaded setting (``rows == 1``): its plateaus span the full height. Several: each
    setting's plateaus fill its own row of a band at the top of the panel (row 0 on top; the
    band is kept free of data by :func:`_headroom`), so that they never overlap.
    """
    top = 1.0 - row * BAND_ROW
    for ax in axes:
        for plateau in phases["plateaus"]:
            if rows == 1:
                ax.axvspan(plateau["start"], plateau["end"], color=color, alpha=PLATEAU_ALPHA,
                           lw=0)
            else:
                ax.axvspan(plateau["start"], plateau["end"], ymin=top - BAND_ROW * 0.8,
                           ymax=top, color=color, alpha=BAND_ALPHA, lw=0)
        for drop in phases["drops"]:
            ax.axvline(drop["time"], color=color, ls=":", lw=1.0)


def _headroom(ax: plt.Axes, fraction: float) -> None:
    """Raise the top of the y axis so that the data fill the lower 1 − ``fraction`` of it
    (ticks stay within the data's range)."""
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high * (1 + 1e-9)]
    if ax.get_yscale() == "log":
        a, b = np.log10(low), np.log10(high)
        ax.set_ylim(low, 10 ** (a + (b - a) / (1 - fraction)))
    else:
        ax.set_ylim(low, low + (high - low) / (1 - fraction))
    ax.set_yticks(ticks)


def _legend_handles(series: Sequence[Series], factors: list[str], many: bool,
                    shaded: int) -> list:
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
    if shaded == 1:
        handles.append(Patch(color="gray", alpha=0.25, label="plateau (shaded)"))
    elif shaded > 1:
        handles.append(Patch(color="gray", alpha=BAND_ALPHA,
                             label="plateaus (top rows, one per setting)"))
    if shaded:
        handles.append(Line2D([], [], color="gray", ls=":", label="drop (steepest fall)"))
    return handles


SCALING_LINES = ("-", "--", "-.")
SCALING_MARKERS = ("o", "s", "^")


@_styled
def plot_scaling(panels: Sequence[ScalingPanel], title: str = "", columns: int = 3) -> Figure:
    """Measured plateau times (points, mean ± sd) on their closed-form lines, one panel each.

    A set's points and its lines share a colour; the x ticks are the measured x values.
    """
    rows = int(np.ceil(len(panels) / columns))
    handles = [Line2D([], [], color="k", lw=THEORY_WIDTH, label="closed form (line)"),
               Line2D([], [], color="k", ls="none", marker="o", ms=MARKER_SIZE + 1,
                      label="training: mean ± sd over seeds (points)")]
    fig, axes = _figure(min(columns, len(panels)), rows, legend=handles, title=title)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        ticks: list[float] = []
        for i, data in enumerate(panel.sets):
            color = PALETTE[i % len(PALETTE)]
            for j, (label, x, y) in enumerate(data.lines):
                ax.plot(x, y, color=color, lw=THEORY_WIDTH, ls=SCALING_LINES[j % 3],
                        alpha=0.8, label=label)
            ax.errorbar(data.x, data.mean, yerr=data.sd, fmt=SCALING_MARKERS[i % 3],
                        color=color, mfc=color if i == 0 else "none", mew=1.2,
                        ms=MARKER_SIZE + 1.5, capsize=3, label=data.label, zorder=3)
            ticks.extend(float(v) for v in data.x)
        if panel.log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        if panel.log_y:
            ax.set_yscale("log")
        ticks = sorted(set(ticks))
        ax.set_xticks(ticks, [f"{x:g}" if x == round(x) else f"{x:.2g}" for x in ticks])
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title)
        ax.legend(frameon=False, loc="best", fontsize=RC["legend.fontsize"] - 1)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    return fig


@_styled
def plot_groups(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    group_labels: Sequence[str],
    time_label: str = TIME_LABEL,
    ylabel: str = r"$\ell_g\,/\,\ell_{\mathrm{ref},g}$",
    title: str = "",
    theory: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
    marks: Sequence[np.ndarray | None] | None = None,
    mark_label: str = "emergence time (half of its own drop)",
) -> Figure:
    """Per-capability curves: one panel per ``(method, t (T,), group values (T, G))``.

    One colour per group (the same in every panel); every panel on the same log y range and
    time range, so that methods compare at a glance; the y axis stops at
    :data:`GROUP_AXIS_FLOOR` (the label says so when data lie below). ``theory`` (one
    ``(t, values)`` or None per panel) is drawn solid and thick under the training curves,
    which then get markers. ``marks`` (one (G,) array of times or None per panel): a
    triangle in the group's colour at the top of the panel at each time (NaN: none), e.g. the
    groups' emergence times, named ``mark_label`` in the legend.
    """
    count = len(panels)
    columns = 2 if count == 4 else 4 if count > 6 else min(count, 3)
    rows = int(np.ceil(count / columns))
    theory = list(theory) if theory is not None else [None] * count
    marks = list(marks) if marks is not None else [None] * count
    with_theory = any(th is not None for th in theory)
    handles: list = [Line2D([], [], color=PALETTE[g % len(PALETTE)], lw=1.5, label=label)
                     for g, label in enumerate(group_labels)]
    if with_theory:
        handles += [Line2D([], [], color="k", lw=THEORY_WIDTH + 1, alpha=0.35, label="theory"),
                    Line2D([], [], color="k", lw=EXPERIMENT_WIDTH, marker="o", mfc="none",
                           ms=MARKER_SIZE, label="training")]
    if any(m is not None for m in marks):
        handles.append(Line2D([], [], color="k", lw=0, marker="v", ms=MARKER_SIZE + 1,
                              label=mark_label))
    fig, axes = _figure(columns, rows, legend=handles, title=title)
    end = max(float(t[-1]) for _, t, _ in panels)
    values_all = [v[np.isfinite(v) & (v > 0)] for _, _, v in panels]
    values_all = [v for v in values_all if v.size]
    low = min((float(v.min()) for v in values_all), default=1e-3)
    high = max((float(v.max()) for v in values_all), default=1.0)
    if low < GROUP_AXIS_FLOOR:  # below: rounding noise of the float32 runs and the theory
        low = GROUP_AXIS_FLOOR
        ylabel += f" (axis cut at $10^{{{np.log10(GROUP_AXIS_FLOOR):.0f}}}$)"
    for ax, (name, t, values), th, mark in zip(axes.ravel(), panels, theory, marks,
                                               strict=False):
        if mark is not None:
            for g, when in enumerate(np.asarray(mark, dtype=float)):
                if np.isfinite(when):
                    ax.plot([when], [0.97], transform=ax.get_xaxis_transform(), marker="v",
                            ms=MARKER_SIZE + 1, color=PALETTE[g % len(PALETTE)], clip_on=False,
                            lw=0)
        if th is not None:
            th_t, th_values = th
            for g in range(th_values.shape[1]):
                ax.plot(th_t, th_values[:, g], color=PALETTE[g % len(PALETTE)],
                        lw=THEORY_WIDTH + 1, alpha=0.35)
        for g in range(values.shape[1]):
            if with_theory:
                ax.plot(t, values[:, g], color=PALETTE[g % len(PALETTE)], lw=EXPERIMENT_WIDTH,
                        marker="o", ms=MARKER_SIZE - 1, mfc="none", markevery=MARK_EVERY)
            else:
                ax.plot(t, values[:, g], color=PALETTE[g % len(PALETTE)], lw=1.5)
        ax.set_xlim(0, end)  # one time axis for every method: shorter runs end early
        ax.set_yscale("log")
        ax.set_ylim(low if low == GROUP_AXIS_FLOOR else low / 2, high * 2)
        ax.set_title(name)
        ax.set_xlabel(time_label)
        ax.set_ylabel(ylabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    return fig


@dataclass(frozen=True)
class RecoveryPanel:
    """One source of gradient groups in :func:`plot_recovery`: re-clustering times ``t`` (R,),
    the adjusted Rand index ``ari`` (R,) of the found groups against the true ones, each true
    group's best-matching F1 ``f1`` (R, G), and each group's emergence: ``emergence`` (G,) its
    time and ``drop`` (G, 2) the window of its drop (start, end; NaN: never)."""

    title: str
    t: np.ndarray
    ari: np.ndarray
    f1: np.ndarray
    emergence: np.ndarray
    drop: np.ndarray


@_styled
def plot_recovery(
    panels: Sequence[RecoveryPanel],
    group_labels: Sequence[str],
    ari_level: float,
    f1_level: float,
    time_label: str = "step",
    title: str = "",
    drop_label: str = "drop of the group's loss (bar), its emergence time (dot)",
) -> Figure:
    """Do gradient groups find the true groups, and when? One panel per source.

    ARI against time (thick black), each group's F1 (thin, the group's colour) with the two
    levels dashed (``ari_level``, ``f1_level``), and above the data a bar per group over its
    drop window with a dot at its emergence time, in the group's colour: a group's F1 above
    its level left of its bar means it was recovered while still on its plateau.
    """
    count = len(panels)
    columns = min(count, 4)
    rows = int(np.ceil(count / columns))
    handles: list = [Line2D([], [], color="k", lw=2.2, label="ARI (all groups)")]
    handles += [Line2D([], [], color=PALETTE[g % len(PALETTE)], lw=1.0, label=f"F1: {label}")
                for g, label in enumerate(group_labels)]
    handles += [Line2D([], [], color="#777", lw=1.0, ls="--", label="levels (ARI, F1)"),
                Line2D([], [], color="#777", lw=3, marker="o", ms=MARKER_SIZE,
                       label=drop_label)]
    fig, axes = _figure(columns, rows, legend=handles, title=title)
    groups = len(group_labels)
    strip = 0.055  # height of one group's drop bar row, in data units above 1
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        f1 = np.asarray(panel.f1, dtype=float).reshape(len(panel.t), -1)
        for g in range(f1.shape[1]):
            ax.plot(panel.t, f1[:, g], color=PALETTE[g % len(PALETTE)], lw=1.0, alpha=0.8)
        ax.plot(panel.t, panel.ari, color="k", lw=2.2)
        for level, name in ((ari_level, "ARI"), (f1_level, "F1")):
            ax.axhline(level, color="#777", lw=1.0, ls="--")
            ax.text(0.995, level, f"{name} {level:g}", transform=ax.get_yaxis_transform(),
                    va="bottom", ha="right", fontsize=RC["legend.fontsize"] - 1, color="#555")
        end = float(panel.t[-1]) if len(panel.t) else 1.0
        for g in range(groups):
            y = 1.06 + strip * (g + 0.5)
            start, stop = np.asarray(panel.drop, dtype=float).reshape(-1, 2)[g]
            color = PALETTE[g % len(PALETTE)]
            if np.isfinite(start):
                ax.plot([start, stop if np.isfinite(stop) else end], [y, y], color=color, lw=3,
                        solid_capstyle="butt")
            when = float(np.asarray(panel.emergence, dtype=float)[g])
            if np.isfinite(when):
                ax.plot([when], [y], color=color, marker="o", ms=MARKER_SIZE, mec="k", mew=0.5)
        ax.set_ylim(-0.15, 1.06 + strip * groups + 0.03)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlim(0, end * 1.02)
        ax.set_title(panel.title)
        ax.set_xlabel(time_label)
        ax.set_ylabel("ARI / F1")
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig


@dataclass(frozen=True)
class FamilyPanel:
    """One metric of a family of objectives against the family's parameter (e.g. q).

    ``curve``: the prediction ``(x, y)`` on a dense grid (solid line); ``points``: measured
    sets ``(x, mean, sd)``, one per marker style of :func:`plot_family` (sd drawn as error bars
    where finite and > 0); ``reference``: a horizontal line (another objective's value, e.g.
    the mean loss's); ``mark``: a vertical line at a chosen parameter value; ``floor``: the
    lowest y shown (None: automatic).
    """

    title: str
    xlabel: str
    ylabel: str
    curve: tuple[np.ndarray, np.ndarray]
    points: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    reference: float | None = None
    mark: float | None = None
    log_y: bool = True
    floor: float | None = None


FAMILY_MARKERS = (("s", "none"), ("o", "full"))  # (marker, fill) per measured set


@_styled
def plot_family(panels: Sequence[FamilyPanel], curve_label: str, point_labels: Sequence[str],
                reference_label: str, mark_label: str, title: str = "",
                columns: int = 2) -> Figure:
    """Metrics against a family parameter: prediction (line), measured sets (markers), one
    reference (dashed) and one mark (dotted) per panel, with one shared legend. Log y axes
    are ticked at 1, 2, 5 × 10^k with plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    handles = [Line2D([], [], color=PALETTE[0], lw=THEORY_WIDTH, label=curve_label)]
    for i, label in enumerate(point_labels):
        marker, fill = FAMILY_MARKERS[i % len(FAMILY_MARKERS)]
        color = PALETTE[(i + 1) % len(PALETTE)]
        handles.append(Line2D([], [], color=color, ls="none", marker=marker, ms=MARKER_SIZE + 2,
                              mfc=color if fill == "full" else "none", mew=1.2, label=label))
    handles += [Line2D([], [], color="0.35", lw=1.2, ls="--", label=reference_label),
                Line2D([], [], color="k", lw=1.0, ls=":", label=mark_label)]
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = _figure(columns, rows, legend=handles, title=title)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        ax.plot(*panel.curve, color=PALETTE[0], lw=THEORY_WIDTH, zorder=2)
        for i, (x, mean, sd) in enumerate(panel.points):
            marker, fill = FAMILY_MARKERS[i % len(FAMILY_MARKERS)]
            color = PALETTE[(i + 1) % len(PALETTE)]
            err = np.where(np.isfinite(sd) & (sd > 0), sd, 0.0)
            ax.errorbar(x, mean, yerr=err if err.any() else None, fmt=marker, color=color,
                        mfc=color if fill == "full" else "none", mew=1.2,
                        ms=MARKER_SIZE + 2 - 1.5 * i, capsize=3, zorder=3 + i)
        if panel.reference is not None and np.isfinite(panel.reference):
            ax.axhline(panel.reference, color="0.35", lw=1.2, ls="--", zorder=1)
        if panel.mark is not None:
            ax.axvline(panel.mark, color="k", lw=1.0, ls=":", zorder=1)
        if panel.log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(NullFormatter())
        if panel.floor is not None:
            low, high = ax.get_ylim()
            ax.set_ylim(min(low, panel.floor), high)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    return fig


def _wrap_latex(latex: str, width: int) -> list[str]:
    """Split ``latex`` at top-level `` + ``/`` - `` into lines of at most ~``width`` chars."""
    pieces, depth, start, i = [], 0, 0, 0
    while i < len(latex):
        if latex.startswith(("\\left", "{"), i):
            depth += 1
        elif latex.startswith(("\\right", "}"), i):
            depth -= 1
        elif depth == 0 and latex.startswith((" + ", " - "), i) and i > start:
            pieces.append(latex[start:i])
            start = i + 1
        i += 1
    pieces.append(latex[start:])
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + len(piece) > width:
            lines.append(r"\quad " + piece)
        else:
            lines[-1] += " " + piece
    return lines


def render_equation(latex: str, fontsize: int = 15, width: int = 150) -> bytes:
    """PNG bytes of ``latex`` typeset by matplotlib mathtext (raises ValueError if it can't).

    Long equations are broken at top-level signs into lines of about ``width`` characters
    of LaTeX source.
    """
    text = "\n".join(f"${line}$" for line in _wrap_latex(latex, width))
    buffer = io.BytesIO()
    with _DRAWING, plt.rc_context({"mathtext.fontset": "cm"}):
        fig = plt.figure(figsize=(0.01, 0.01))
        try:
            fig.text(0, 0, text, fontsize=fontsize)
            fig.savefig(buffer, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.05,
                        facecolor="white")
        finally:
            plt.close(fig)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- claim maps
MAP_COLORS = ("#d7301f", "#fdd49e", "#78c679", "#238443")  # fails … holds (fraction of seeds)
MAP_MISSING = "#e6e6e6"
MAP_CELL = (0.62, 0.42)  # inches per cell
THUMB_DPI = 40


def _map_color(value: float) -> str:
    if not np.isfinite(value):
        return MAP_MISSING
    return MAP_COLORS[min(len(MAP_COLORS) - 1, int(value * (len(MAP_COLORS) - 1) + 0.5))]


def plot_maps(maps: Sequence, title: str = "", thumbnail: bool = False) -> Figure:
    """One heatmap per :class:`~figures.claims.ClaimMap`, side by side: cell (y, x) coloured by
    the fraction of seeds at which the map's test holds (red 0 … green 1; grey: not measured),
    annotated with the cell's note (e.g. the elements that failed) or the fraction.

    ``thumbnail``: the same, small and without text (for the claims table).
    """
    with _DRAWING, plt.rc_context(RC):
        return _plot_maps(maps, title, thumbnail)


def _plot_maps(maps: Sequence, title: str, thumbnail: bool) -> Figure:
    if thumbnail:
        width = sum(max(1.0, 0.22 * len(m.x.values)) for m in maps) + 0.1 * len(maps)
        height = max(0.22 * max(len(m.y.values) for m in maps), 0.5)
        fig, axes = plt.subplots(1, len(maps), figsize=(width, height), squeeze=False,
                                 gridspec_kw={"width_ratios": [len(m.x.values) for m in maps]})
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.96, wspace=0.15)
    else:
        widths = [max(2.2, MAP_CELL[0] * len(m.x.values)) for m in maps]
        rows = max(len(m.y.values) for m in maps)
        left, gap, right = 1.25, 1.3, 0.2
        width = left + sum(widths) + gap * (len(maps) - 1) + right
        if width < 0.075 * len(title) + 0.5:  # room for the title
            extra = 0.075 * len(title) + 0.5 - width
            left, right, width = left + extra / 2, right + extra / 2, width + extra
        title_lines = max(len(_lines(m.test, 34)) for m in maps)
        top, bottom = 0.12 + 0.16 * title_lines + (0.3 if title else 0.0), 0.75
        height = MAP_CELL[1] * rows + top + bottom + 0.3
        fig, axes = plt.subplots(1, len(maps), figsize=(width, height), squeeze=False,
                                 gridspec_kw={"width_ratios": widths})
        fig.subplots_adjust(left=left / width, right=1 - right / width,
                            bottom=bottom / height, top=1 - top / height,
                            wspace=gap * len(maps) / sum(widths))
        if title:
            fig.suptitle(title, fontsize=RC["axes.titlesize"] + 1, y=1 - 0.1 / height, va="top")
    for ax, m in zip(axes[0], maps, strict=True):
        ny, nx = m.holds.shape
        for i in range(ny):
            for j in range(nx):
                value = m.holds[i, j]
                ax.add_patch(plt.Rectangle((j - 0.51, i - 0.51), 1.02, 1.02,
                                           color=_map_color(value), lw=0,
                                           alpha=0.3 if getattr(m, "reference", False) else 1,
                                           hatch="//" if getattr(m, "reference", False)
                                           else None))
                if thumbnail:
                    continue
                note = "" if m.notes is None else str(m.notes[i, j] or "")
                seeds = m.seeds if getattr(m, "counts", None) is None else int(m.counts[i, j])
                if not np.isfinite(value):
                    text = note or "n/a"
                elif note and seeds > 1:
                    text = f"{value * seeds:.0f}/{seeds}\n{note}"
                elif note:
                    text = note
                elif seeds > 1:
                    text = f"{value * seeds:.0f}/{seeds}"
                else:
                    text = "✓" if value > 0.5 else "✗"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                        color="white" if np.isfinite(value) and (value < 0.2 or value > 0.8)
                        else "#222")
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(ny - 0.5, -0.5)
        ax.grid(False)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(not thumbnail)
        if thumbnail:
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.set_xticks(range(nx), [m.x.fmt(v) for v in m.x.values],
                      rotation=45 if nx > 6 else 0, fontsize=8)
        ax.set_yticks(range(ny), [m.y.fmt(v) for v in m.y.values], fontsize=8)
        ax.set_xlabel(m.x.label or m.x.name)
        ax.set_ylabel(m.y.label or m.y.name)
        ax.set_title("\n".join(_lines(m.test, 34)), fontsize=RC["axes.titlesize"] - 0.5)
    return fig


def _lines(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*out, line] if line else out


def save_thumbnail(fig: Figure, path: str | Path) -> Path:
    """Write a :func:`plot_maps` thumbnail (low DPI) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _DRAWING:
        fig.savefig(path, dpi=THUMB_DPI * 2)
        plt.close(fig)
    return path
