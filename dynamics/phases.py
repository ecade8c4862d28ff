"""Phases of a loss curve: crossing times, initial decay, plateaus, drops and tail.

Two analyses. :func:`analyze` reads the *shape* of any loss curve, theory or experiment:
smooth dense samples on a log-spaced time grid, or a training run logged at every step (or
at log-spaced plus linear steps), possibly noisy (float32, SGD) and non-monotone.
:func:`mechanistic_phases` reads the *mechanism* of a factorization curve from its order
parameters (cosines and norms of the learned vectors): when the off-target part has decayed
and when each target mode is learned. Both return a :class:`Phases`, so they can be shown
side by side.

Conventions (README "Conventions"). Time is continuous training time ``t`` (``t = η·step``); every
returned time is in units of ``t``, every rate in ``1/t``, every level in units of the loss.
``L_ref`` is the loss of the zero model. The shape analysis uses only ``ln L``, ratios of
rates ``d ln L/dt`` and products (time x rate), so it is invariant under ``t -> c·t`` (times
scale by c, rates by 1/c) and under ``L, L_ref -> c·L, c·L_ref`` (levels scale by c,
nothing else changes).

Shape definitions (:func:`analyze`)
-----------------------------------
Crossing time
    ``t_f`` is the first time ``L(t) <= f·L_ref``, interpolated linearly in ``ln L`` between
    the two samples that bracket it; ``t[0]`` if the first sample is already below, ``None``
    if never reached. Computed on the raw samples, never on the smoothed curve.

Loss floor
    ``ln L`` is floored at ``ln(1e-150·L_ref)`` so that a loss reaching zero gives no NaN. A
    sample at or below the floor counts as "the loss has reached zero": the crossing times keep
    it (with the floored logarithm), the phase analysis leaves it out.

Smoothed curve
    The samples with ``t > 0`` are mapped to ``x = ln t``, ``y = ln L`` and resampled on a
    uniform x grid of step δ = 0.005 (at least 64 points): the samples are binned on the grid,
    a bin of one or two samples keeps them as knots, a denser bin gives one knot (median x,
    median y) - sparse samples are interpolated, not averaged - and the grid is interpolated
    between knots by the shape-preserving piecewise cubic (PCHIP). The noise ε of y is the
    robust scatter (1.4826·median absolute value / √1.5) of each knot about the straight line
    through its two neighbours. y is then median-filtered (removes spikes, leaves monotone
    stretches untouched) and Savitzky-Golay smoothed (cubic) over a half-window
    ``h = max(3δ, (24 ε² δ / θ²)^(1/3))``, θ = 0.1, at most one e-fold of time: the least width
    at which the noise of the smoothed log-log slope ``d ln L/d ln t`` is below θ/4. A
    noise-free theory curve is therefore left practically untouched. From the smoothed curve:
    the *rate* ``r(t) = -d ln L/dt`` (in 1/t; the log-log slope divided by -t); the *later
    rate* ``R⁺(t) = max_{t' >= t} r_low(t')``, the fastest fall still to come, where
    ``r_low = r - 3·σ_r`` is a lower bound of the rate: ``σ_r(t) = ε·‖c(t)‖·√max(1, Δ/δ)/t``,
    ``c(t)`` the Savitzky-Golay slope coefficients at that grid point (larger in the last
    half-window at either edge), Δ the local spacing of the knots (noise of a sparse stretch
    is spread over several grid points). Without noise ``R⁺`` is the largest later rate
    itself; with noise it is not inflated by the large noise of ``r`` at small t (where
    ``σ_r ∝ 1/t``) or at the edges. ``L_end`` is the smoothed loss at the last sample.

Plateau
    A *flat run* is a maximal stretch of the grid on which the curve is slow next to what
    follows, ``|r(t)| < α·R⁺(t)`` with ``α = 0.1`` (the loss falls at under a tenth of the
    fastest rate it will reach later), that spans at least 0.1 e-fold of time (it ends at
    least 1.105 times its start time); shorter runs are noise. Consecutive flat runs whose
    levels differ by less than a factor ``R = 1.25`` are grouped (a noise excursion does not
    split a plateau). The group's *flattest point* ``t_flat`` is its grid point of least
    ``|r|``; its *level* is the median, uniform in t, of the smoothed loss over its *core*, the
    grid points where ``|r| <= (α/4)·R⁺(t_flat)`` (the smoothed loss at ``t_flat`` when the
    core has fewer than two points): the loss where the curve is flattest, robust to the noise
    of ``r``. A group is a plateau when

    (i)  the next level (the next group's, or ``L_end`` after the last group) is at least a
         factor R lower, so that a drop follows; a flat stretch at the final level, or a curve
         stopped during a plateau, has none. Otherwise the group is merged with the next one,
         or, being the last, discarded;
    (ii) it lasts at least one e-fold time of the fastest fall that follows,
         ``(end - start)·R⁺(t_flat) >= ρ = 1``, and the first plateau at least two,
         ``ρ₁ = 2``. Otherwise it is discarded. A later plateau is framed by the drop before
         it and the drop after it; the first one has only the curve's start before it, where
         noise in ``r`` is largest (the first samples of a training run make short slow
         stretches) and where a sigmoid that starts just below its top hesitates briefly.

    (Groups are re-examined until every one passes.) A plateau *starts* when its first flat
    run starts; the first plateau starts at ``t[0]`` instead when its first run starts at the
    first sample with ``t > 0``, or when the curve has not fallen before it by a factor
    ``D = 1.1`` (the larger of ``L(t[0])`` and the smoothed loss at the first positive sample is
    below ``D`` times the level: no initial decay worth the name); a later plateau starts no
    earlier than the preceding drop ends. A plateau *ends* at ``t_0.9`` of its drop.

    Why rates, and why in linear time. A plateau is a stretch where the loss is slow compared
    with the drop that ends it, so flatness is judged by the ratio ``r/R⁺``, which does not
    change under ``t -> c·t``. The former rule, ``|d ln L/d ln t| < θ`` on a log-t axis, judged
    flatness by ``t·r``; it missed the short shoulders at ``t ~ 1`` that follow a fast initial
    decay (``t·r`` is not small for long there), and the later steps of a staircase, which are
    long in t but short in ln t. Any log-convex decay - a pure exponential (``r`` constant),
    a power law ``(1 + t)^-a`` (``r = a/(1 + t)`` decreasing), any sum of exponentials - has
    ``R⁺(t) = r(t)`` and so no flat run at all: a plateau needs the rate to rise tenfold
    later. For the rank-1 logistic from ``w0`` (``r = 4w`` rising to ``4s``) the flat run is
    ``w < s/10``, and (ii), ``4s·t_0.9 >= ρ₁ = 2``, requires ``s/w0 >~ 35`` (measured; the
    estimate with the level at ``L(0)`` is ``ln(0.054·s/w0) >= 1``, ``s/w0 >= 50``; the core's
    level lies a little lower, so ``t_0.9`` comes a little later). For a staircase of modes
    learned one after another the k-th flat run lies between the (k-1)-th mode's remnant
    decay and the k-th mode's rise, at the level ``½Σ_{i>=k} s_i²`` (i counting from 1).
    α, R, D, ρ and ρ₁ are dimensionless, so the rules keep the scale invariance.

Drop
    The fall that ends a plateau of level ``ℓ_b`` and leads to the next level ``ℓ_a`` (the
    next plateau's, or ``L_end``). With ``L_q = ℓ_a + q·(ℓ_b - ℓ_a)``, ``t_0.9`` is the first
    time after the plateau's flattest point at which the smoothed loss is ``<= L_0.9`` and
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

Mechanistic definitions (:func:`mechanistic_phases`)
----------------------------------------------------
For the factorization ``L = ½‖C - X Yᵀ‖²`` with target ``C = A Bᵀ = Σ_j s_j u_j v_jᵀ`` (its
singular value decomposition), from the cosines ``c^X_jl``, ``c^Y_jl`` between the columns
of A (of B) and the learned vectors, and their norms ``‖x_l‖``, ``‖y_l‖``, as carried by
:class:`dynamics.trajectory.Trajectory`:

Overlaps
    The overlaps with the unit columns are ``p̂_jl = c^X_jl ‖x_l‖ = â_jᵀ x_l`` and
    ``q̂_jl = c^Y_jl ‖y_l‖ = b̂_jᵀ y_l``. Given ``target = (A, B)``, they are rotated exactly
    into the singular basis: with ``A = Q_A R_A``, ``B = Q_B R_B`` (QR) and
    ``R_A R_Bᵀ = W diag(s) Zᵀ`` (SVD), ``u_j = (Q_A W)_j`` and
    ``p_jl = u_jᵀ x_l = (Wᵀ R_A^{-T} diag(‖a‖) p̂)_jl``, likewise q. Given only ``s``, the
    columns are taken as the singular directions, ``u_j = â_j``, ``s_j = ‖a_j‖‖b_j‖``: exact
    when the columns of A and of B are orthogonal (rank 1, or a spec sampled with
    ``singular_values``), not for i.i.d. random A, B of rank > 1 (their columns are neither
    orthogonal nor the singular directions; e.g. the weakest singular mode, learned last, is
    then missed). ``p_jl = u_jᵀ x_l`` and ``q_jl = v_jᵀ y_l``; the model in
    the target's basis ``M_jj' = Σ_l p_jl q_j'l = u_jᵀ X Yᵀ v_j'``; mode j's learned strength
    ``w_j = M_jj`` (``p·q``, the square of the geometric-mean on-target overlap ``√(p q)``).

On- and off-target loss
    ``L = L_on + L_off`` exactly, with the on-target residual ``L_on = ½‖diag(s) - M‖²`` (the
    loss of the model projected onto the target's row and column spaces) and the off-target
    loss ``L_off = L - L_on = ½‖X Yᵀ - P_U X Yᵀ P_V‖²`` (what the learned vectors' components
    outside the target spaces contribute). The loss must be this squared error alone (no
    weight-decay penalty).

Initial decay
    From ``t[0]`` to the first time ``L_off <= ε·L_on``, ``ε = 0.1`` (interpolated linearly in
    t): the decay ends when the off-target part of the loss has shrunk to a tenth of the
    on-target residual. None when that holds at ``t[0]`` (a small start has no decay); ends
    at ``t[-1]`` if never. ``rate`` as for the shape (least squares of ``ln L`` on t).

Mode learning
    Mode j is *learned* between ``t^start_j``, the first time ``w_j >= (1 - √0.9)·s_j``
    (``≈ 0.051·s_j``, overlap ``√(p q) ≈ 0.23·√s_j``), and ``t^end_j``, the first time
    ``w_j >= (1 - √0.1)·s_j`` (``≈ 0.684·s_j``, overlap ``≈ 0.83·√s_j``): the mode's own
    residual ``½(s_j - w_j)²`` has fallen to 90 % and to 10 % of ``½s_j²``, the mechanistic
    counterparts of ``t_0.9`` and ``t_0.1``. Its *time* is the first time ``w_j >= s_j/3``,
    where the logistic ``w = s/(1 + (s/w0 - 1)e^{-2st})`` falls fastest in L. Each first time
    is interpolated linearly in t; ``t[0]`` if already so at the start, None if never.

Plateaus and drops
    Modes are taken in order of ``t^start``; a mode whose ``t^start`` comes before the
    previous group's ``t^end`` joins that group (modes learned together make one drop). A
    group whose ``t^start`` is later than both the end of the initial decay (``t[0]`` if
    none) and the previous group's ``t^end`` has a plateau from the later of those two to
    its ``t^start``, and a drop from its first ``t^start`` to its last ``t^end`` whose time
    is the strongest mode's time. Levels: before a group, ``½Σ s_j²`` over the modes not
    learned before it; after it, the same without the group's modes (the incremental-
    learning levels; modes never learned stay in every level). A group without a plateau
    (its learning began during the decay or the previous drop: no S-curve) has no drop entry
    either, as in the shape analysis; its modes stay listed in ``modes``. Nor has a group
    still being learned when the curve stops (some mode never reaches ``t^end``); later modes
    join it. The tail starts at the last drop's end and is fitted as for the shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import median_filter

__all__ = [
    "Decay",
    "Drop",
    "MechanisticPhases",
    "ModeLearning",
    "Phases",
    "Plateau",
    "Tail",
    "analyze",
    "crossing_times",
    "emergence_time",
    "fall_level",
    "fall_times",
    "mechanistic_phases",
    "relative_width",
]

LOSS_FLOOR = 1e-150  # floor of L / L_ref before taking logarithms
GRID_STEP = 0.005  # δ: spacing of the ln t grid
MIN_GRID = 64  # least number of grid points
FLAT_SLOPE = 0.1  # θ: target precision of the smoothed log-log slope (sets the window)
MAX_HALF_WINDOW = 1.0  # largest smoothing half-window, in e-folds of time
RATE_RATIO = 0.1  # α: flat where |r| < α·R⁺ (r = -d ln L/dt, R⁺ its largest later value)
CORE_RATIO = 0.025  # α/4: a plateau's level is its median where |r| <= α/4·R⁺
RATE_NOISE_Z = 3.0  # R⁺ is taken from r - 3·(noise of r)
MIN_FLAT_SPAN = 0.1  # least length of a flat run, in e-folds of time
DROP_RATIO = 1.25  # R: least factor by which a drop lowers the loss
DECAY_RATIO = 1.1  # D: least factor by which an initial decay lowers the loss
MIN_FIRST_PLATEAU_EFOLDS = 2.0  # ρ₁: least length of the first plateau, in units of 1/R⁺
MIN_PLATEAU_EFOLDS = 1.0  # ρ: least length of a later plateau, in units of 1/R⁺(t_flat)
OFF_TARGET_RATIO = 0.1  # ε: the mechanistic decay ends when L_off <= ε·L_on
MODE_START = 1 - math.sqrt(0.9)  # w_j/s_j where mode j's plateau ends (residual 90 %)
MODE_TIME = 1 / 3  # w_j/s_j of the logistic's steepest fall in L
MODE_END = 1 - math.sqrt(0.1)  # w_j/s_j where mode j's drop ends (residual 10 %)


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


@dataclass(frozen=True)
class ModeLearning:
    """When target mode ``mode`` (strength ``strength`` = s_j) is learned (times in t).

    ``start``, ``time`` and ``end`` are the first times the learned strength
    ``w_j = u_jᵀ X Yᵀ v_j`` reaches ``(1 - √0.9)·s_j``, ``s_j/3`` and ``(1 - √0.1)·s_j``
    (None if never); ``initial`` is ``w_j/s_j`` at ``t[0]``, ``final`` at ``t[-1]``.
    """

    mode: int
    strength: float
    start: float | None
    time: float | None
    end: float | None
    initial: float
    final: float


@dataclass(frozen=True)
class MechanisticPhases(Phases):
    """Phases from the order parameters (module docstring, "Mechanistic definitions").

    The :class:`Phases` fields mean what they mean for the shape, with boundaries set by
    the mechanism; ``modes`` lists every target mode in order of index; ``off_target`` is
    ``L_off/L_on`` at ``t[0]`` (None if ``L_on = 0`` there).
    """

    modes: list[ModeLearning]
    off_target: float | None

    def describe(self) -> str:
        """The :class:`Phases` summary, then one line per mode (times in t)."""
        ratio = "n/a" if self.off_target is None else f"{self.off_target:.3g} x"
        lines = [
            f"mechanism: off-target loss {ratio} on-target at the start; "
            f"decay ends when below {OFF_TARGET_RATIO:g} x",
            super().describe(),
        ]

        def when(value: float | None) -> str:
            return "never" if value is None else f"{value:.4g}"

        for m in self.modes:
            lines.append(
                f"mode {m.mode} (s = {m.strength:.4g}): w/s {m.initial:.3g} -> {m.final:.3g}; "
                f"learning t = {when(m.start)} -> {when(m.end)}, steepest {when(m.time)}"
            )
        return "\n".join(lines)


class _Curve(NamedTuple):
    """Smoothed curve on the uniform ``x = ln t`` grid."""

    x: np.ndarray  # grid of ln t
    y: np.ndarray  # smoothed ln L
    slope: np.ndarray  # d ln L / d ln t of the smoothed curve
    step: float  # grid spacing
    rate: np.ndarray  # r = -d ln L / dt of the smoothed curve
    later: np.ndarray  # R⁺: the largest r at or after each grid point


class _Group(NamedTuple):
    """Flat runs (inclusive grid index pairs) grouped into one candidate plateau."""

    runs: list[tuple[int, int]]
    level: float  # ln of the level: smoothed ln L at the flattest point
    flattest: int  # grid index of the flattest point (least |r|)


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


def fall_level(before: float, after: float, remaining: float) -> float:
    """The loss a fraction ``remaining`` = q of the way back up a fall from ``before`` to
    ``after``: ``L_q = after + q·(before − after)`` (loss units). THE drop's ends are
    ``t_0.9`` and ``t_0.1``, the first times at or below ``L_0.9`` and ``L_0.1`` (module doc,
    "Drop"); its width is ``t_0.1 − t_0.9`` (:attr:`Drop.width`, in t)."""
    return after + remaining * (before - after)


def fall_times(t: ArrayLike, loss: ArrayLike, before: float, after: float,
               remaining: tuple[float, ...] = (0.9, 0.5, 0.1)) -> np.ndarray:
    """First times the raw curve is at or below ``L_q`` (:func:`fall_level`) for each q of
    ``remaining``, as :func:`crossing_times` finds them (linear in ln L between samples), in
    the units of ``t``; NaN for a level never reached, all NaN unless ``before`` > 0 is
    finite. The default gives THE drop's (t_0.9, t_0.5, t_0.1)."""
    levels = [fall_level(before, after, q) for q in remaining]
    if not (math.isfinite(before) and before > 0) or not all(lv > 0 for lv in levels):
        return np.full(len(remaining), np.nan)
    times = crossing_times(t, loss, before, tuple(lv / before for lv in levels))
    return np.array([np.nan if times[lv / before] is None else times[lv / before]
                     for lv in levels])


def emergence_time(t: ArrayLike, loss: ArrayLike, before: float, after: float = 0.0,
                   remaining: float = 0.5) -> float:
    """THE emergence time: the first time the curve has done half its fall from ``before`` to
    ``after``, L ≤ ``after`` + ½(``before`` − ``after``) (:func:`fall_times` with q =
    ``remaining`` = ½; units of ``t``); NaN if never. Callers choose the fall: per group
    ``before`` = ℓ_g's reference (zero-model) loss and ``after`` = 0 for the theory's
    :func:`dynamics.groups.mode_emergence_time`, or the group's own start and end loss
    (:func:`validation.emergence.group_emergence`'s ``t_half``)."""
    return float(fall_times(t, loss, before, after, (remaining,))[0])


def relative_width(t_start: ArrayLike, t_mid: ArrayLike, t_end: ArrayLike) -> np.ndarray:
    """THE drop width relative to its time: ``(t_end − t_start)/t_mid`` (dimensionless), with
    ``(t_start, t_mid, t_end) = (t_0.9, t_0.5, t_0.1)`` of :func:`fall_times` (:attr:`Drop.width`
    over the half-fall time). NaN propagates (a level never reached)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(t_end, dtype=float) - np.asarray(t_start, dtype=float)) / np.asarray(
            t_mid, dtype=float)


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
    y_start = max(float(y[0]), float(curve.y[0]))
    plateaus, drops = _plateaus_and_drops(curve, float(t[0]), y_start)

    tail_start: float | None
    if plateaus:
        initial_end, tail_start = plateaus[0].start, drops[-1].end
    else:  # no plateau, no drop: the first e-fold is the initial decay, the rest the tail
        efold = _first_below(curve, 0, curve.y[0] - 1.0)
        initial_end, tail_start = (float(t[-1]), None) if efold is None else (efold[0],) * 2
    return Phases(
        l_ref=l_ref,
        crossings=crossings,
        initial=_decay(t, y, initial_end),
        plateaus=plateaus,
        drops=drops,
        tail=_tail(t, y, tail_start),
    )


def mechanistic_phases(
    t: ArrayLike,
    loss: ArrayLike,
    cosines: Mapping[str, ArrayLike] | None,
    norms: Mapping[str, ArrayLike] | None,
    s: ArrayLike | None = None,
    factors: Sequence[str] = ("X", "Y"),
    *,
    target: tuple[ArrayLike, ArrayLike] | None = None,
    overlaps: Mapping[str, ArrayLike] | None = None,
) -> MechanisticPhases:
    """Phases of a factorization curve from its order parameters (module docstring).

    ``t`` (T,) continuous time, ``loss`` (T,) the squared-error loss ½‖C - X Yᵀ‖² (no
    penalty), ``cosines[f]`` (T, r, k) the cosine between target column j and learned
    vector l of factor f, ``norms[f]`` (T, k) the learned vectors' norms (as carried by
    :class:`dynamics.trajectory.Trajectory`), ``factors`` the names of the left and right
    factor; or, instead of cosines and norms, ``overlaps[f]`` (T, r, k) = ‖w_l‖·cos_jl, the
    overlaps with the unit target columns (:meth:`dynamics.trajectory.Trajectory.overlaps`,
    straight from the order parameters). The target is given either by ``s`` (r,), its
    singular values
    ``s_j = ‖a_j‖‖b_j‖``, when the columns of A and of B are orthogonal (for a spec:
    ``norm(A, axis=0) * norm(B, axis=0)``), or by ``target = (A, B)`` (n x r each, full
    column rank), from which the overlaps are rotated exactly into the singular basis of
    ``C = A Bᵀ`` (modes then in order of decreasing singular value). ``l_ref = ½Σ s_j²``.
    Raises ValueError on inconsistent shapes or values.
    """
    t, loss = _as_curve(t, loss)
    if len(factors) != 2:
        raise ValueError(f"factors must name the left and right factor (got {factors!r})")
    if (s is None) == (target is None):
        raise ValueError("give the target as exactly one of s (singular values) or target=(A, B)")
    if overlaps is not None:
        p, q = (np.asarray(overlaps[f], dtype=np.float64) for f in factors)
    elif cosines is None or norms is None:
        raise ValueError("give cosines and norms, or overlaps")
    else:
        p, q = (
            np.asarray(cosines[f], dtype=np.float64)
            * np.asarray(norms[f], dtype=np.float64)[:, None, :]
            for f in factors
        )
    if target is not None:
        s, left, right = _singular_basis(*target)
        p, q = left @ p, right @ q  # overlaps with the singular directions u_j, v_j
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    if s.ndim != 1 or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f"s must be a 1-D array of finite positive values (got {s})")
    if p.shape != q.shape or p.shape[:2] != (t.size, s.size):
        raise ValueError(
            f"cosines and norms must have shapes (T, r, k) and (T, k) with T = {t.size}, "
            f"r = {s.size} (got overlaps {p.shape} and {q.shape})"
        )
    model = np.einsum("tjl,tml->tjm", p, q)  # M = Uᵀ X Yᵀ V, (T, r, r)
    strength = np.diagonal(model, axis1=1, axis2=2)  # w_j, (T, r)
    residual = model.copy()
    residual[:, np.arange(s.size), np.arange(s.size)] -= s
    on_target = 0.5 * np.sum(residual**2, axis=(1, 2))
    off_target = loss - on_target
    l_ref = 0.5 * float(np.sum(s**2))
    y = np.log(np.maximum(loss, _floor(l_ref)))

    decay_end = _first_time(t, OFF_TARGET_RATIO * on_target - off_target)
    decay_end = float(t[-1]) if decay_end is None else decay_end
    modes = [
        ModeLearning(
            mode=j,
            strength=float(s[j]),
            start=_first_time(t, strength[:, j] - MODE_START * s[j]),
            time=_first_time(t, strength[:, j] - MODE_TIME * s[j]),
            end=_first_time(t, strength[:, j] - MODE_END * s[j]),
            initial=float(strength[0, j] / s[j]),
            final=float(strength[-1, j] / s[j]),
        )
        for j in range(s.size)
    ]

    groups: list[tuple[list[ModeLearning], float | None]] = []  # (modes, last t^end)
    for mode in sorted((m for m in modes if m.start is not None), key=lambda m: m.start):
        if groups and (groups[-1][1] is None or mode.start < groups[-1][1]):
            members, end = groups[-1]
            end = None if end is None or mode.end is None else max(end, mode.end)
            groups[-1] = ([*members, mode], end)
        else:
            groups.append(([mode], mode.end))
    plateaus: list[Plateau] = []
    drops: list[Drop] = []
    unlearned = {m.mode for m in modes}
    previous_end = decay_end
    for group, end in groups:
        level_before = 0.5 * float(sum(s[j] ** 2 for j in unlearned))
        unlearned -= {m.mode for m in group}
        level_after = 0.5 * float(sum(s[j] ** 2 for j in unlearned))
        start = group[0].start
        if start > previous_end and end is not None:
            strongest = max(group, key=lambda m: m.strength)
            plateaus.append(Plateau(previous_end, start, start - previous_end, level_before))
            drops.append(
                Drop(
                    time=strongest.time if strongest.time is not None else start,
                    width=end - start,
                    start=start,
                    end=end,
                    level_before=level_before,
                    level_after=level_after,
                )
            )
        if end is None:
            break
        previous_end = max(previous_end, end)

    return MechanisticPhases(
        l_ref=l_ref,
        crossings=crossing_times(t, loss, l_ref),
        initial=_decay(t, y, decay_end),
        plateaus=plateaus,
        drops=drops,
        tail=_tail(t, y, drops[-1].end) if drops else None,
        modes=modes,
        off_target=float(off_target[0] / on_target[0]) if on_target[0] > 0 else None,
    )


def _singular_basis(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular values s of ``C = A Bᵀ`` and the maps from column overlaps to singular ones.

    With ``A = Q_A R_A`` (QR) and ``R_A R_Bᵀ = W diag(s) Zᵀ`` (SVD), ``C = U diag(s) Vᵀ`` with
    ``U = Q_A W``, ``V = Q_B Z``. A learned vector's overlaps with the unit columns,
    ``p̂_j = â_jᵀ x``, give ``Uᵀx = Wᵀ R_A^{-T} diag(‖a_j‖) p̂``; the returned ``left`` is that
    r x r matrix (``right`` likewise for B and y).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] > a.shape[0]:
        raise ValueError(f"target must be two n x r arrays with r <= n (got {a.shape}, {b.shape})")
    r_a, r_b = np.linalg.qr(a, mode="r"), np.linalg.qr(b, mode="r")
    if min(np.min(np.abs(np.diag(r_a))), np.min(np.abs(np.diag(r_b)))) <= 0:
        raise ValueError("target: A and B must have full column rank")
    w, s, z_t = np.linalg.svd(r_a @ r_b.T)
    col_a, col_b = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    left = w.T @ np.linalg.solve(r_a.T, np.diag(col_a))
    right = z_t @ np.linalg.solve(r_b.T, np.diag(col_b))
    return s, left, right


def _first_time(t: np.ndarray, g: np.ndarray) -> float | None:
    """First time ``g >= 0`` (linear interpolation in t); ``t[0]`` if at once, None if never."""
    above = np.flatnonzero(g >= 0)
    if above.size == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (t[i] - t[i - 1]) * (-g[i - 1]) / (g[i] - g[i - 1]))


def _decay(t: np.ndarray, y: np.ndarray, end: float) -> Decay | None:
    """Initial decay on ``[t[0], end]`` with its least-squares rate; None if too short."""
    segment = t <= end
    if end <= t[0] or np.count_nonzero(segment) < 2:
        return None
    slope, _ = _fit_line(t[segment], y[segment])
    return Decay(start=float(t[0]), end=float(end), rate=-slope)


def _tail(t: np.ndarray, y: np.ndarray, start: float | None) -> Tail | None:
    """Tail on ``[start, t[-1]]``: exponential and power-law fits; None if < 3 samples."""
    if start is None or np.count_nonzero(t >= start) < 3:
        return None
    segment = t >= start
    rate, r2_exp = _fit_line(t[segment], y[segment])
    exponent, r2_pow = _fit_line(np.log(t[segment]), y[segment])
    return Tail(
        start=float(start),
        end=float(t[-1]),
        kind="exponential" if r2_exp >= r2_pow else "power",
        rate=-rate,
        exponent=-exponent,
        r2_exponential=r2_exp,
        r2_power=r2_pow,
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
    smooth = savgol_cubic(raw, window)
    slope = savgol_cubic(raw, window, deriv=1, delta=step)
    rate = -slope * np.exp(-grid)
    # R⁺ from a lower bound of r: r minus RATE_NOISE_Z times the noise of the smoothed slope
    # (ε times the norm of the Savitzky-Golay slope coefficients at each position, more where
    # knots are sparser than the grid) divided by t
    spread = _slope_coefficient_norms(window, n_grid, step)
    if knot_x.size >= 2:
        gaps = np.interp(grid, 0.5 * (knot_x[1:] + knot_x[:-1]), np.diff(knot_x))
        spread = spread * np.sqrt(np.maximum(1.0, gaps / step))
    rate_low = rate - RATE_NOISE_Z * noise * spread * np.exp(-grid)
    later = np.maximum.accumulate(rate_low[::-1])[::-1]
    return _Curve(x=grid, y=smooth, slope=slope, step=step, rate=rate, later=later)


def _cubic_fit(window: int) -> np.ndarray:
    """pinv(V) (4, window) of the cubic least-squares fit on offsets u = −h..h, h = window // 2."""
    u = np.arange(window, dtype=np.float64) - window // 2
    return np.linalg.pinv(np.vander(u, 4, increasing=True))


def _cubic_basis(u: np.ndarray, deriv: int) -> np.ndarray:
    """Rows (1, u, u², u³) (``deriv`` 0) or (0, 1, 2u, 3u²) (``deriv`` 1) at offsets ``u``."""
    u = np.asarray(u, dtype=np.float64)
    if deriv == 0:
        return np.stack([np.ones_like(u), u, u**2, u**3], axis=-1)
    return np.stack([np.zeros_like(u), np.ones_like(u), 2 * u, 3 * u**2], axis=-1)


def savgol_cubic(y: np.ndarray, window: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """Cubic Savitzky-Golay smoothing (``deriv`` 0) or slope (``deriv`` 1, per unit of a grid
    step ``delta``) of ``y`` with an odd ``window`` in 5..len(y): the least-squares cubic of each
    centred window evaluated at its centre, and at the edges the cubic of the first / last
    window evaluated at the edge points (scipy.signal.savgol_filter's ``mode="interp"``)."""
    y = np.asarray(y, dtype=np.float64)
    n, half = y.size, window // 2
    if window % 2 == 0 or not 3 < window <= n or deriv not in (0, 1):
        raise ValueError(f"savgol_cubic: an odd window in 5..{n} and deriv 0 or 1 needed")
    fit, scale = _cubic_fit(window), 1.0 if deriv == 0 else 1.0 / delta
    out = np.empty(n)
    out[half:n - half] = np.correlate(y, _cubic_basis(0.0, deriv) @ fit, mode="valid") * scale
    out[:half] = _cubic_basis(np.arange(-half, 0), deriv) @ (fit @ y[:window]) * scale
    out[n - half:] = _cubic_basis(np.arange(1, half + 1), deriv) @ (fit @ y[n - window:]) * scale
    return out


def _slope_coefficient_norms(window: int, n_grid: int, step: float) -> np.ndarray:
    """‖c‖₂ of the cubic Savitzky-Golay slope coefficients at each grid point.

    The cubic fitted to a window has slope coefficients ``(0, 1, 2u, 3u²)·pinv(V)/step`` at
    offset u from the window's centre (V the window's Vandermonde matrix); interior points
    use u = 0, the ``window // 2`` points at each edge (``mode="interp"``) their own offset.
    """
    half = window // 2
    offsets = np.arange(-half, 1, dtype=np.float64)  # left edge ... centre
    edge = np.linalg.norm(_cubic_basis(offsets, 1) @ _cubic_fit(window), axis=1) / step
    norms = np.full(n_grid, edge[-1])
    k = min(half, n_grid // 2)
    norms[:k] = edge[:k]
    norms[n_grid - k :] = edge[:k][::-1]
    return norms


def _flat_runs(curve: _Curve) -> list[tuple[int, int]]:
    """Maximal grid stretches that are slow next to what follows, spanning >= MIN_FLAT_SPAN.

    Slow: ``|r| < α·R⁺`` with ``r = -d ln L/dt`` and ``R⁺`` its largest later value.
    """
    rate, later = curve.rate, curve.later
    flat = np.concatenate(([False], (np.abs(rate) < RATE_RATIO * later) & (later > 0), [False]))
    edges = np.flatnonzero(np.diff(flat.astype(np.int8)))
    runs = zip(edges[::2], edges[1::2] - 1, strict=True)
    return [(int(a), int(b)) for a, b in runs if curve.x[b] - curve.x[a] >= MIN_FLAT_SPAN]


def _group(curve: _Curve, runs: list[tuple[int, int]]) -> _Group:
    """Group of flat runs, its flattest point (least |r|) and its level (module docstring)."""
    index = np.concatenate([np.arange(a, b + 1) for a, b in runs])
    rate = np.abs(curve.rate[index])
    flattest = int(index[np.argmin(rate)])
    core = index[rate <= CORE_RATIO * curve.later[flattest]]
    if core.size < 2:
        return _Group(runs, float(curve.y[flattest]), flattest)
    # median uniform in t: on the ln t grid a point stands for a time interval ∝ t = e^x
    order = np.argsort(curve.y[core])
    weights = np.cumsum(np.exp(curve.x[core][order] - curve.x[core].max()))
    level = float(curve.y[core][order][np.searchsorted(weights, 0.5 * weights[-1])])
    return _Group(runs, level, flattest)


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


def _plateaus_and_drops(curve: _Curve, t0: float, y0: float) -> tuple[list[Plateau], list[Drop]]:
    """Plateaus and the drops that end them, by the rules (i) and (ii) of the module."""
    log_ratio = math.log(DROP_RATIO)
    groups: list[_Group] = []
    for run in _flat_runs(curve):
        group = _group(curve, [run])
        if groups and group.level > groups[-1].level - log_ratio:
            groups[-1] = _group(curve, [*groups[-1].runs, run])
        else:
            groups.append(group)

    while True:
        plateaus: list[Plateau] = []
        drops: list[Drop] = []
        for k, group in enumerate(groups):
            after = groups[k + 1].level if k + 1 < len(groups) else float(curve.y[-1])
            if group.level - after < log_ratio:  # rule (i) fails: no drop follows
                if k + 1 < len(groups):
                    runs = group.runs + groups[k + 1].runs
                    groups[k : k + 2] = [_group(curve, runs)]
                else:
                    del groups[k]
                break
            before_lin, after_lin = math.exp(group.level), math.exp(after)
            q90 = math.log(fall_level(before_lin, after_lin, 0.9))
            q10 = math.log(fall_level(before_lin, after_lin, 0.1))
            # Both exist: the next group, or the last grid point, lies at or below `after`.
            t90, i90 = _first_below(curve, group.flattest, q90)
            t10, i10 = _first_below(curve, i90, q10)
            start = math.exp(curve.x[group.runs[0][0]])
            if k == 0 and (group.runs[0][0] == 0 or y0 < group.level + math.log(DECAY_RATIO)):
                start = t0
            elif drops:
                start = max(start, drops[-1].end)
            least = MIN_PLATEAU_EFOLDS if drops else MIN_FIRST_PLATEAU_EFOLDS
            if (t90 - start) * curve.later[group.flattest] < least:  # rule (ii) fails
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
