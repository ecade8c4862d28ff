"""Phases of a loss curve: crossing times, initial decay, plateaus, drops and tail.

One analysis serves every loss curve, theory or experiment: smooth dense samples on a
log-spaced time grid, or a training run logged at every step (or at log-spaced plus linear
steps), possibly noisy (float32, SGD) and non-monotone.

Conventions (DESIGN §2). Time is continuous training time ``t`` (``t = η·step``); every
returned time is in units of ``t``, every rate in ``1/t``, every level in units of the loss.
``L_ref`` is the loss of the zero model. All definitions use only ``ln t`` and ``ln L``, so
the analysis is invariant under ``t -> c·t`` (times scale by c, rates by 1/c) and under
``L, L_ref -> c·L, c·L_ref`` (levels scale by c, nothing else changes).

Definitions
-----------
Crossing time
    ``t_f`` is the first time ``L(t) <= f·L_ref``, interpolated linearly in ``ln L`` between
    the two samples that bracket it; ``t[0]`` if the first sample is already below, ``None``
    if never reached. Computed on the raw samples, never on the smoothed curve.

Loss floor
    ``ln L`` is floored at ``ln(1e-150·L_ref)`` so that a loss reaching zero gives no NaN. A
    sample at or below the floor counts as "the loss has reached zero": the crossing times keep
    it (with the floored logarithm), the phase analysis leaves it out.

Smoothed log-log curve
    The samples with ``t > 0`` are mapped to ``x = ln t``, ``y = ln L`` and resampled on a
    uniform x grid of step δ = 0.005 (at least 64 points): the samples are binned on the grid,
    a bin of one or two samples keeps them as knots, a denser bin gives one knot (median x,
    median y) - sparse samples are interpolated, not averaged - and the grid is interpolated
    between knots by the shape-preserving piecewise cubic (PCHIP). The noise ε of y is the
    robust scatter (1.4826·median absolute value / √1.5) of each knot about the straight line
    through its two neighbours. y is then median-filtered (removes spikes, leaves monotone
    stretches untouched) and Savitzky-Golay smoothed (cubic) over a half-window
    ``h = max(3δ, (24 ε² δ / θ²)^(1/3))``, at most one e-fold of time: the least width at which
    the noise of the smoothed slope is below θ/4. A noise-free theory curve is therefore left
    practically untouched. The local log-log slope is ``σ(t) = d ln L / d ln t`` of the
    smoothed curve; ``L_end`` is the smoothed loss at the last sample.

Plateau
    A *flat run* is a maximal stretch of the grid on which ``|σ| < θ = 0.1`` (the loss changes
    by less than about 10 % per e-fold of time, while drops have ``|σ| >> 1`` and the power-law
    tails of interest ``|σ| >~ 0.5``) that spans at least 0.1 e-fold (it ends at least 1.105
    times its start time); shorter runs are noise. Consecutive flat runs whose levels differ
    by less than a factor ``R = 1.25`` are grouped (a noise excursion does not split a
    plateau); the *level* of a group is the median of the smoothed loss over its flat runs,
    weighted uniformly in t (so it does not depend on how densely the start is sampled). A
    group is a plateau when

    (i)  the next level (the next group's, or ``L_end`` after the last group) is at least a
         factor R lower, so that a drop follows; a flat stretch at the final level, or a curve
         stopped during a plateau, has none. Otherwise the group is merged with the next one,
         or, being the last, discarded;
    (ii) it lasts at least half as long as the drop that ends it:
         ``end - start >= κ·width``, ``κ = 1/2``. Otherwise it is discarded.

    (Groups are re-examined until every one passes.) A plateau *starts* when its first flat
    run starts, except that the first plateau starts at ``t[0]`` when the starting loss is
    within a factor R of its level (the curve starts on the plateau), and a later plateau
    starts no earlier than the preceding drop ends. It *ends* at ``t_0.9`` of its drop.

    Why (ii): on a ``ln t`` axis the start of every smooth curve is flat
    (``σ = t·d ln L/dt -> 0`` as ``t -> 0``), so flatness alone would call the first instants
    of ``exp(-r t)`` a plateau. In linear time that decay stays within 10 % of its start for
    ``ln(1/0.9)/r``, only 0.05 of its 90 %->10 % width ``ln 9/r``, and the power law
    ``(1 + t)^-a`` does likewise (0.02). The rank-1 logistic (drop width ``ln 40/(2s)``)
    passes from ``s/w0 ≈ 60`` on, once its loss has stayed near ``L_ref`` for half a drop
    width. θ, R and κ are dimensionless, so the rules keep the scale invariance.

Drop
    The fall that ends a plateau of level ``ℓ_b`` and leads to the next level ``ℓ_a`` (the
    next plateau's, or ``L_end``). With ``L_q = ℓ_a + q·(ℓ_b - ℓ_a)``, ``t_0.9`` is the first
    time after the plateau's last flat run at which the smoothed loss is ``<= L_0.9`` and
    ``t_0.1`` the first time after that at which it is ``<= L_0.1`` (linear interpolation in
    ``ln L`` between grid points); ``width = t_0.1 - t_0.9``. The drop's *time* is that of the
    steepest fall, the minimum of ``dL/dt`` over ``[t_0.9, t_0.1]`` (parabolic refinement on
    the grid). It is steepest in L, not in ``ln L``: for a drop to zero loss ``d ln L/dt`` need
    not have an interior minimum (the logistic has ``d ln L/dt = -4w``, monotone); ``dL/dt``
    of a sigmoid between two levels does not depend on the levels and peaks inside the drop.

Initial decay
    From ``t[0]`` to the start of the first plateau when that is later than ``t[0]`` (else
    there is none). With no plateau there is no drop either: the curve is initial decay plus
    tail, split at the end of the first e-fold, the first time the smoothed loss is e times
    below its value at the first sample with ``t > 0`` (no tail if never). Its ``rate`` is
    minus the slope of the least squares line ``ln L = a - rate·t`` through the raw samples,
    weighted uniformly in t.

Tail
    From the end of the last drop (``t_0.1``) - or, with no plateau, from the end of the
    initial decay - to the last sample. Two least-squares lines through the raw samples: the
    exponential ``ln L = a - rate·t`` (weighted uniformly in t) and the power law
    ``ln L = a - exponent·ln t`` (weighted uniformly in ``ln t``), each with its R² in its own
    weighting; ``kind`` names the one with the larger R² (a tie goes to the exponential).
    Fitted over the whole tail, the parameters are effective ones: ``(1 + t)^-a`` gives an
    exponent slightly below a when the tail starts near ``t ~ 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter

__all__ = ["Decay", "Drop", "Phases", "Plateau", "Tail", "analyze", "crossing_times"]

LOSS_FLOOR = 1e-150  # floor of L / L_ref before taking logarithms
GRID_STEP = 0.005  # δ: spacing of the ln t grid
MIN_GRID = 64  # least number of grid points
FLAT_SLOPE = 0.1  # θ: |d ln L / d ln t| below which the curve is flat
MIN_FLAT_SPAN = 0.1  # least length of a flat run, in e-folds of time
DROP_RATIO = 1.25  # R: least factor by which a drop lowers the loss
PLATEAU_TO_DROP = 0.5  # κ: least plateau length, in units of the drop's width
MAX_HALF_WINDOW = 1.0  # largest smoothing half-window, in e-folds of time


@dataclass(frozen=True)
class Decay:
    """Initial decay on ``[start, end]`` (times in t); ``rate`` of ``L ~ exp(-rate·t)``."""

    start: float
    end: float
    rate: float


@dataclass(frozen=True)
class Plateau:
    """Plateau on ``[start, end]``; ``length = end - start`` (in t); ``level`` of the loss."""

    start: float
    end: float
    length: float
    level: float


@dataclass(frozen=True)
class Drop:
    """Drop from ``level_before`` to ``level_after``.

    ``time`` is the time of steepest fall (minimum of dL/dt), ``start`` and ``end`` are
    ``t_0.9`` and ``t_0.1`` between the two levels, ``width = end - start`` (all in t).
    """

    time: float
    width: float
    start: float
    end: float
    level_before: float
    level_after: float


@dataclass(frozen=True)
class Tail:
    """Tail on ``[start, end]`` fitted by ``exp(-rate·t)`` and by ``t^-exponent``.

    ``rate`` is in 1/t, ``exponent`` dimensionless; ``r2_exponential`` and ``r2_power`` are
    the fits' R²; ``kind`` is ``"exponential"`` or ``"power"``, whichever R² is larger.
    """

    start: float
    end: float
    kind: str
    rate: float
    exponent: float
    r2_exponential: float
    r2_power: float


@dataclass(frozen=True)
class Phases:
    """Phases of one loss curve (definitions in the module docstring).

    ``crossings`` maps f to ``t_f`` for f = 0.5, 0.1, 0.01; ``initial`` and ``tail`` may be
    None; ``plateaus[k]`` is ended by ``drops[k]``.
    """

    l_ref: float
    crossings: dict[float, float | None]
    initial: Decay | None
    plateaus: list[Plateau]
    drops: list[Drop]
    tail: Tail | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy: plain floats, lists, dicts and None (crossing keys as strings)."""
        out = asdict(self)
        out["crossings"] = {str(f): v for f, v in self.crossings.items()}
        return out

    def describe(self) -> str:
        """Readable summary, one phase a line (times in t, levels also in units of L_ref)."""
        initial = self.initial
        lines = [
            "initial decay: none (the curve starts on a plateau)"
            if initial is None
            else f"initial decay: t = {initial.start:.4g} -> {initial.end:.4g}, "
            f"rate {initial.rate:.4g}"
        ]
        if not self.plateaus:
            lines.append("no plateau, no drop")
        for k, (plateau, drop) in enumerate(zip(self.plateaus, self.drops, strict=True), 1):
            lines.append(
                f"plateau {k}: t = {plateau.start:.4g} -> {plateau.end:.4g} "
                f"(length {plateau.length:.4g}), level {plateau.level / self.l_ref:.4g} L_ref"
            )
            lines.append(
                f"drop {k}: steepest at t = {drop.time:.4g}, width {drop.width:.4g} "
                f"(t = {drop.start:.4g} -> {drop.end:.4g}), "
                f"{drop.level_before / self.l_ref:.4g} -> {drop.level_after / self.l_ref:.4g} L_ref"
            )
        tail = self.tail
        if tail is None:
            lines.append("tail: none")
        else:
            lines.append(
                f"tail: {tail.kind}, t = {tail.start:.4g} -> {tail.end:.4g}; "
                f"exponential rate {tail.rate:.4g} (R² {tail.r2_exponential:.4f}), "
                f"power-law exponent {tail.exponent:.4g} (R² {tail.r2_power:.4f})"
            )
        return "\n".join(lines)


class _Curve(NamedTuple):
    """Smoothed curve on the uniform ``x = ln t`` grid."""

    x: np.ndarray  # grid of ln t
    y: np.ndarray  # smoothed ln L
    slope: np.ndarray  # d ln L / d ln t of the smoothed curve
    step: float  # grid spacing


class _Group(NamedTuple):
    """Flat runs (inclusive grid index pairs) grouped into one candidate plateau."""

    runs: list[tuple[int, int]]
    level: float  # ln of the level


def crossing_times(
    t: ArrayLike,
    loss: ArrayLike,
    l_ref: float,
    fractions: tuple[float, ...] = (0.5, 0.1, 0.01),
) -> dict[float, float | None]:
    """Crossing times ``t_f``: first time ``L(t) <= f·l_ref``, for each f in ``fractions``.

    Linear interpolation in ``ln L`` between the bracketing raw samples; ``t[0]`` if the
    first sample is already below, ``None`` if the level is never reached. Times in t.
    """
    t, loss = _as_curve(t, loss)
    l_ref = _as_l_ref(l_ref)
    log_loss = np.log(np.maximum(loss, _floor(l_ref)))
    out: dict[float, float | None] = {}
    for f in fractions:
        f = float(f)
        if not (math.isfinite(f) and f > LOSS_FLOOR):
            raise ValueError(f"fractions must be finite and above {LOSS_FLOOR:g} (got {f})")
        below = np.flatnonzero(loss <= f * l_ref)
        if below.size == 0:
            out[f] = None
        elif below[0] == 0:
            out[f] = float(t[0])
        else:
            i = below[0]
            frac = (log_loss[i - 1] - math.log(f * l_ref)) / (log_loss[i - 1] - log_loss[i])
            out[f] = float(t[i - 1] + frac * (t[i] - t[i - 1]))
    return out


def analyze(t: ArrayLike, loss: ArrayLike, l_ref: float) -> Phases:
    """Crossing times, initial decay, plateaus, drops and tail of the curve ``L(t)``.

    ``t`` is continuous time (``t >= 0``, strictly increasing), ``loss`` the loss at those
    times, ``l_ref`` the loss of the zero model. Definitions in the module docstring. Raises
    ValueError for NaN or inf, mismatched lengths, decreasing or negative t, ``l_ref <= 0``,
    or fewer than 3 samples with ``t > 0`` above the loss floor.
    """
    t, loss = _as_curve(t, loss)
    l_ref = _as_l_ref(l_ref)
    if t[0] < 0:
        raise ValueError(f"t must be >= 0 (continuous training time; got t[0] = {t[0]})")
    crossings = crossing_times(t, loss, l_ref)
    keep = loss > _floor(l_ref)
    t, y = t[keep], np.log(loss[keep])
    positive = t > 0
    if np.count_nonzero(positive) < 3:
        raise ValueError(
            f"analyze needs at least 3 samples with t > 0 and loss > {LOSS_FLOOR:g}·l_ref"
        )
    curve = _smooth(np.log(t[positive]), y[positive])
    plateaus, drops = _plateaus_and_drops(curve, float(t[0]))

    tail_start: float | None
    if plateaus:
        initial_end, tail_start = plateaus[0].start, drops[-1].end
    else:  # no plateau, no drop: the first e-fold is the initial decay, the rest the tail
        efold = _first_below(curve, 0, curve.y[0] - 1.0)
        initial_end, tail_start = (float(t[-1]), None) if efold is None else (efold[0],) * 2

    initial = None
    segment = t <= initial_end
    if initial_end > t[0] and np.count_nonzero(segment) >= 2:
        slope, _ = _fit_line(t[segment], y[segment])
        initial = Decay(start=float(t[0]), end=float(initial_end), rate=-slope)

    tail = None
    if tail_start is not None and np.count_nonzero(t >= tail_start) >= 3:
        segment = t >= tail_start
        rate, r2_exp = _fit_line(t[segment], y[segment])
        exponent, r2_pow = _fit_line(np.log(t[segment]), y[segment])
        tail = Tail(
            start=float(tail_start),
            end=float(t[-1]),
            kind="exponential" if r2_exp >= r2_pow else "power",
            rate=-rate,
            exponent=-exponent,
            r2_exponential=r2_exp,
            r2_power=r2_pow,
        )
    return Phases(
        l_ref=l_ref,
        crossings=crossings,
        initial=initial,
        plateaus=plateaus,
        drops=drops,
        tail=tail,
    )


def _as_curve(t: ArrayLike, loss: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of ``t`` and ``loss`` (ValueError with a one-line reason)."""
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or loss.ndim != 1:
        raise ValueError(f"t and loss must be 1-D (got shapes {t.shape} and {loss.shape})")
    if t.size != loss.size:
        raise ValueError(f"t and loss must have the same length (got {t.size} and {loss.size})")
    if t.size < 2:
        raise ValueError(f"a loss curve needs at least 2 samples (got {t.size})")
    if not np.all(np.isfinite(t)):
        raise ValueError("t contains NaN or inf")
    if not np.all(np.isfinite(loss)):
        raise ValueError("loss contains NaN or inf")
    if np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    return t, loss


def _as_l_ref(l_ref: float) -> float:
    """``l_ref`` as a float, which must be finite and positive."""
    value = float(l_ref)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"l_ref must be finite and positive (got {l_ref})")
    return value


def _floor(l_ref: float) -> float:
    """Smallest loss kept before taking logarithms: ``LOSS_FLOOR·l_ref`` (never zero)."""
    return max(LOSS_FLOOR * l_ref, np.finfo(np.float64).tiny)


def _smooth(x: np.ndarray, y: np.ndarray) -> _Curve:
    """Resample ``y = ln L`` at ``x = ln t`` on a uniform grid and smooth it (see module)."""
    n_grid = max(MIN_GRID, math.ceil((x[-1] - x[0]) / GRID_STEP) + 1)
    grid = np.linspace(x[0], x[-1], n_grid)
    step = float(grid[1] - grid[0])
    cuts = np.flatnonzero(np.diff(np.rint((x - x[0]) / step))) + 1
    knot_x, knot_y = [], []
    for part_x, part_y in zip(np.split(x, cuts), np.split(y, cuts), strict=True):
        if part_x.size <= 2:  # sparse: the samples themselves
            knot_x.extend(part_x)
            knot_y.extend(part_y)
        else:  # dense: one robust point per bin
            knot_x.append(np.median(part_x))
            knot_y.append(np.median(part_y))
    knot_x, knot_y = np.array(knot_x), np.array(knot_y)

    noise = 0.0
    if knot_x.size >= 3:
        w_left = (knot_x[2:] - knot_x[1:-1]) / (knot_x[2:] - knot_x[:-2])
        resid = knot_y[1:-1] - (w_left * knot_y[:-2] + (1 - w_left) * knot_y[2:])
        noise = 1.4826 * float(np.median(np.abs(resid))) / math.sqrt(1.5)
    half = (24 * noise**2 * step / FLAT_SLOPE**2) ** (1 / 3)
    half_points = max(3, round(min(half, MAX_HALF_WINDOW) / step))
    window = min(2 * half_points + 1, n_grid - (1 - n_grid % 2))

    resampled = PchipInterpolator(knot_x, knot_y)(grid)  # shape-preserving, local, O(h³)
    raw = median_filter(resampled, size=window, mode="nearest")
    smooth = savgol_filter(raw, window, 3, mode="interp")
    slope = savgol_filter(raw, window, 3, deriv=1, delta=step, mode="interp")
    return _Curve(x=grid, y=smooth, slope=slope, step=step)


def _flat_runs(curve: _Curve) -> list[tuple[int, int]]:
    """Maximal grid stretches with ``|σ| < θ`` spanning at least ``MIN_FLAT_SPAN`` e-folds."""
    flat = np.concatenate(([False], np.abs(curve.slope) < FLAT_SLOPE, [False]))
    edges = np.flatnonzero(np.diff(flat.astype(np.int8)))
    runs = zip(edges[::2], edges[1::2] - 1, strict=True)
    return [(int(a), int(b)) for a, b in runs if curve.x[b] - curve.x[a] >= MIN_FLAT_SPAN]


def _group_level(curve: _Curve, runs: list[tuple[int, int]]) -> float:
    """ln of a group's level: median of the smoothed ln L over its flat runs, uniform in t.

    On the ln t grid a point stands for a time interval proportional to t = exp(x).
    """
    index = np.concatenate([np.arange(a, b + 1) for a, b in runs])
    order = np.argsort(curve.y[index])
    weights = np.cumsum(np.exp(curve.x[index][order] - curve.x[index].max()))
    return float(curve.y[index][order][np.searchsorted(weights, 0.5 * weights[-1])])


def _first_below(curve: _Curve, start: int, level: float) -> tuple[float, int] | None:
    """First time at grid index >= ``start`` where the smoothed ln L is <= ``level``.

    Interpolated linearly in ln L between grid points in ln t; returns (time, grid index) or
    None if never.
    """
    below = np.flatnonzero(curve.y[start:] <= level)
    if below.size == 0:
        return None
    j = start + int(below[0])
    if j == start:
        return math.exp(curve.x[j]), j
    frac = (curve.y[j - 1] - level) / (curve.y[j - 1] - curve.y[j])
    return math.exp(curve.x[j - 1] + frac * curve.step), j


def _steepest_time(curve: _Curve, lo: int, hi: int) -> float:
    """Time of the minimum of dL/dt over grid indices ``lo..hi`` (parabolic refinement)."""
    index = np.arange(max(lo - 1, 0), min(hi + 2, curve.x.size))
    log_scale = curve.y[index] - curve.x[index]  # ln(L/t)
    dloss = curve.slope[index] * np.exp(log_scale - log_scale.max())  # ∝ dL/dt = σ·L/t
    inner = slice(lo - index[0], hi - index[0] + 1)
    j = inner.start + int(np.argmin(dloss[inner]))
    x = curve.x[index[j]]
    if 0 < j < dloss.size - 1:
        curvature = dloss[j - 1] - 2 * dloss[j] + dloss[j + 1]
        if curvature > 0:
            x += 0.5 * (dloss[j - 1] - dloss[j + 1]) / curvature * curve.step
    return math.exp(x)


def _plateaus_and_drops(curve: _Curve, t0: float) -> tuple[list[Plateau], list[Drop]]:
    """Plateaus and the drops that end them, by the rules (i) and (ii) of the module."""
    log_ratio = math.log(DROP_RATIO)
    groups: list[_Group] = []
    for run in _flat_runs(curve):
        level = _group_level(curve, [run])
        if groups and level > groups[-1].level - log_ratio:
            runs = [*groups[-1].runs, run]
            groups[-1] = _Group(runs, _group_level(curve, runs))
        else:
            groups.append(_Group([run], level))

    while True:
        plateaus: list[Plateau] = []
        drops: list[Drop] = []
        for k, group in enumerate(groups):
            after = groups[k + 1].level if k + 1 < len(groups) else float(curve.y[-1])
            if group.level - after < log_ratio:  # rule (i) fails: no drop follows
                if k + 1 < len(groups):
                    runs = group.runs + groups[k + 1].runs
                    groups[k : k + 2] = [_Group(runs, _group_level(curve, runs))]
                else:
                    del groups[k]
                break
            before_lin, after_lin = math.exp(group.level), math.exp(after)
            q90 = math.log(after_lin + 0.9 * (before_lin - after_lin))
            q10 = math.log(after_lin + 0.1 * (before_lin - after_lin))
            # Both exist: the next group, or the last grid point, lies at or below `after`.
            t90, i90 = _first_below(curve, group.runs[-1][1], q90)
            t10, i10 = _first_below(curve, i90, q10)
            start = math.exp(curve.x[group.runs[0][0]])
            if k == 0 and curve.y[0] <= group.level + log_ratio:
                start = t0
            elif drops:
                start = max(start, drops[-1].end)
            if t90 - start < PLATEAU_TO_DROP * (t10 - t90):  # rule (ii) fails: too short
                del groups[k]
                break
            plateaus.append(Plateau(start=start, end=t90, length=t90 - start, level=before_lin))
            drops.append(
                Drop(
                    time=_steepest_time(curve, max(i90 - 1, 0), i10),
                    width=t10 - t90,
                    start=t90,
                    end=t10,
                    level_before=before_lin,
                    level_after=after_lin,
                )
            )
        else:
            return plateaus, drops


def _fit_line(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Slope and R² of the least-squares line v = a + b·u, weighted uniformly in u.

    The weights are the trapezoid-rule cell widths of the samples, so the fit approximates
    the continuous least-squares fit over ``[u[0], u[-1]]`` whatever the sampling. R² is 1
    for an exactly constant v. Works on u rescaled to [0, 1], so any range of t is safe.
    """
    span = u[-1] - u[0]
    z = (u - u[0]) / span
    dz = np.diff(z)
    w = np.concatenate((dz, [0.0])) + np.concatenate(([0.0], dz))
    z_mean = np.average(z, weights=w)
    v_mean = np.average(v, weights=w)
    slope = np.sum(w * (z - z_mean) * (v - v_mean)) / np.sum(w * (z - z_mean) ** 2)
    total = np.sum(w * (v - v_mean) ** 2)
    resid = np.sum(w * (v - v_mean - slope * (z - z_mean)) ** 2)
    return float(slope / span), float(1.0 - resid / total) if total > 0 else 1.0
