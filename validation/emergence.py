"""Emergence metrics of per-group loss curves: when, how sharply, and how together.

numpy only. Curves are sampled at times ``t`` (T,) (continuous time t = η·step, or steps,
whichever the run reports) with per-group losses ``group_loss`` (T, G). Crossing times are
interpolated linearly in ln ℓ between samples (README "Conventions").
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from dynamics.phases import crossing_times

__all__ = [
    "accuracy_emergence",
    "adjusted_rand",
    "crossing_time",
    "drop_times",
    "emergence_spread",
    "group_emergence",
    "loss_dispersion",
    "summarize_run",
    "worst_group_loss",
]


def crossing_time(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """First time y(t) ≤ level, interpolated linearly in ln y between samples; NaN if never.

    t[0] when y(t[0]) ≤ level already; same units as ``t``. This is
    :func:`dynamics.phases.crossing_times` with L_ref = level and f = 1 (one function for
    theory and experiment, README "Conventions"); ``level`` must be positive.
    """
    time = crossing_times(t, y, level, fractions=(1.0,))[1.0]
    return float("nan") if time is None else time


def drop_times(t: np.ndarray, y: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Times at which each fraction f of the curve's own drop is done.

    t_f = first time y ≤ y(t₀) − f·(y(t₀) − y(t_end)) (:func:`crossing_time`); t_0.5 is the
    half-drop time. NaN for every f when the curve does not drop (y(t_end) ≥ y(t₀)).
    """
    start, end = y[0], y[-1]
    if not end < start:
        return np.full(len(fractions), np.nan)
    return np.array([crossing_time(t, y, start - f * (start - end)) for f in fractions])


def group_emergence(
    t: np.ndarray, group_loss: np.ndarray, threshold: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Per-group emergence of ``group_loss`` (T, G); each entry of the result is (G,).

    * ``t_threshold``: first time ℓ_g ≤ threshold (scalar or per group).
    * ``t_half``, ``t_10``, ``t_90``: times when 50 %, 10 %, 90 % of the group's own drop
      ℓ_g(t₀) − ℓ_g(t_end) is done (:func:`drop_times`); t_half is "the" emergence time.
    * ``width``: (t_90 − t_10) / t_half, the duration of the drop relative to its time.

    Drop times are NaN for a group that never reaches the threshold (it has not emerged,
    and its "own drop" is then noise).
    """
    levels = np.broadcast_to(np.asarray(threshold, dtype=float), group_loss.shape[1:])
    fractions = np.array([0.1, 0.5, 0.9])
    t_threshold = np.array(
        [crossing_time(t, group_loss[:, g], levels[g]) for g in range(group_loss.shape[1])]
    )
    drops = np.array([drop_times(t, group_loss[:, g], fractions) for g in range(len(levels))])
    drops[np.isnan(t_threshold)] = np.nan
    t_10, t_half, t_90 = drops.T
    return {
        "t_threshold": t_threshold,
        "t_half": t_half,
        "t_10": t_10,
        "t_90": t_90,
        "width": (t_90 - t_10) / t_half,
    }


def accuracy_emergence(
    t: np.ndarray,
    group_accuracy: np.ndarray,
    chance: float = 0.5,
    fractions: tuple[float, float, float] = (0.2, 0.5, 0.8),
) -> dict[str, np.ndarray]:
    """Per-group rise of accuracy (T, G) from ``chance`` to 1; each entry (G,).

    ``t_lo``, ``t_mid``, ``t_hi``: first times the accuracy reaches chance + f·(1 − chance)
    for the three ``fractions`` (default 0.6, 0.75, 0.9 for a binary task), interpolated
    linearly between samples; ``width`` = (t_hi − t_lo)/t_mid. NaN where never reached.
    The loss width of a cross-entropy task includes the slow growth of the margin after the
    task is solved (ℓ ∝ e^{−margin}); the accuracy width measures the transition itself.
    Fractions 0.2 and 0.8 rather than 0.1 and 0.9 keep an evaluation set's sampling noise
    (sd 0.03 at 256 examples) from triggering a crossing.
    """

    def first(curve: np.ndarray, level: float) -> float:
        above = np.flatnonzero(curve >= level)
        if above.size == 0:
            return float("nan")
        i = above[0]
        if i == 0:
            return float(t[0])
        frac = (level - curve[i - 1]) / (curve[i] - curve[i - 1])
        return float(t[i - 1] + frac * (t[i] - t[i - 1]))

    levels = [chance + f * (1 - chance) for f in fractions]
    times = np.array(
        [[first(group_accuracy[:, g], level) for level in levels]
         for g in range(group_accuracy.shape[1])]
    ).reshape(-1, 3)  # fmt: skip
    t_lo, t_mid, t_hi = times.T
    return {"t_lo": t_lo, "t_mid": t_mid, "t_hi": t_hi, "width": (t_hi - t_lo) / t_mid}


def emergence_spread(times: np.ndarray) -> dict[str, float]:
    """Spread of emergence times across groups (NaNs, i.e. groups not emerged, ignored).

    ``ratio`` = max/min, ``sd_log`` = standard deviation of ln t (population, ddof 0);
    both NaN with fewer than two finite positive times.
    """
    finite = times[np.isfinite(times) & (times > 0)]
    if finite.size < 2:
        return {"ratio": float("nan"), "sd_log": float("nan")}
    return {"ratio": float(finite.max() / finite.min()), "sd_log": float(np.log(finite).std())}


def worst_group_loss(group_loss: np.ndarray) -> np.ndarray:
    """max_g ℓ_g at each sample, (T,)."""
    return group_loss.max(axis=1)


def loss_dispersion(group_loss: np.ndarray) -> np.ndarray:
    """Standard deviation over groups of ln ℓ_g at each sample, (T,) (ℓ clipped at 1e-300)."""
    return np.log(np.clip(group_loss, 1e-300, None)).std(axis=1)


def adjusted_rand(found: np.ndarray, true: np.ndarray) -> float:
    """Adjusted Rand index of found group labels against the true ones (1 = identical)."""
    return float(adjusted_rand_score(true, found))


def summarize_run(
    t: np.ndarray,
    group_loss: np.ndarray,
    threshold: float | np.ndarray,
    group_accuracy: np.ndarray | None = None,
    chance: float = 0.5,
) -> dict[str, float]:
    """Scalar emergence summary of one run.

    ``t_first``/``t_last`` (earliest and latest half-drop times), ``spread`` (their ratio),
    ``sd_log_t``, ``width`` (median over groups of (t_90 − t_10)/t_half), ``emerged``
    (fraction of groups that reached the threshold), ``worst_final`` (max_g ℓ_g at the end),
    ``dispersion_final`` (sd of ln ℓ_g at the end). With ``group_accuracy`` also
    ``acc_width`` (median width of the accuracy rise, :func:`accuracy_emergence`) and
    ``acc_spread`` (max/min of its mid times); NaN without.
    """
    per_group = group_emergence(t, group_loss, threshold)
    spread = emergence_spread(per_group["t_half"])
    widths = per_group["width"][np.isfinite(per_group["width"])]
    emerged = np.isfinite(per_group["t_threshold"])
    acc_width = acc_spread = float("nan")
    if group_accuracy is not None:
        rise = accuracy_emergence(t, group_accuracy, chance)
        finite = rise["width"][np.isfinite(rise["width"])]
        acc_width = float(np.median(finite)) if finite.size else float("nan")
        acc_spread = emergence_spread(rise["t_mid"])["ratio"]
    return {
        "t_first": float(np.nanmin(per_group["t_half"])) if emerged.any() else float("nan"),
        "t_last": float(np.nanmax(per_group["t_half"])) if emerged.any() else float("nan"),
        "spread": spread["ratio"],
        "sd_log_t": spread["sd_log"],
        "width": float(np.median(widths)) if widths.size else float("nan"),
        "emerged": float(emerged.mean()),
        "worst_final": float(worst_group_loss(group_loss)[-1]),
        "dispersion_final": float(loss_dispersion(group_loss)[-1]),
        "acc_width": acc_width,
        "acc_spread": acc_spread,
    }
