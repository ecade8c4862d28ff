"""Emergence metrics of per-group loss curves: when, how sharply, and how together.

numpy (and sklearn's ARI). Curves are sampled at times ``t`` (T,) (continuous time t = η·step,
or steps, whichever the run reports) with per-group losses ``group_loss`` (T, G). Every
crossing time is :func:`dynamics.phases.crossing_times` (linear interpolation in ln ℓ between
samples, README "Conventions"), with the level expressed relative to the curve's own start.

* per group: emergence (:func:`group_emergence`: t_half, t_10, t_90, width), plateau against
  drop (:func:`plateau_to_drop`), the accuracy rise (:func:`accuracy_emergence`);
* across groups: :func:`emergence_spread`, :func:`worst_group_loss`, :func:`mean_final`,
  :func:`loss_dispersion`, :func:`summarize_run`;
* gradient groups against the true ones: :func:`adjusted_rand`, :func:`group_f1`,
  :func:`recovery_times`, :func:`recovery_relation`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from dynamics.phases import crossing_times

__all__ = [
    "DROP_LEVEL",
    "PLATEAU_LEVEL",
    "RECOVERY_F1",
    "accuracy_emergence",
    "adjusted_rand",
    "emergence_spread",
    "group_emergence",
    "group_f1",
    "loss_dispersion",
    "mean_final",
    "plateau_to_drop",
    "recovery_relation",
    "recovery_times",
    "relative_width",
    "summarize_run",
    "worst_group_loss",
]


def _times(t: np.ndarray, y: np.ndarray, start: float, levels: np.ndarray) -> np.ndarray:
    """First times y ≤ each level (levels relative to ``start`` > 0), NaN for never:
    :func:`dynamics.phases.crossing_times` with L_ref = start, f = level (linear in ln y)."""
    if not (np.isfinite(start) and start > 0):
        return np.full(len(levels), np.nan)
    times = crossing_times(t, y, start, tuple(float(f) for f in levels))
    return np.array([np.nan if times[float(f)] is None else times[float(f)] for f in levels])


def relative_width(early: np.ndarray, middle: np.ndarray, late: np.ndarray) -> np.ndarray:
    """The relative width of a drop (or rise), (t_late − t_early)/t_middle: its duration in units
    of its own time, the one definition behind every "width" of the emergence tables and the
    power-family law (the absolute drop width of a curve is :attr:`dynamics.phases.Drop.width`)."""
    return (np.asarray(late) - np.asarray(early)) / np.asarray(middle)


def group_emergence(
    t: np.ndarray, group_loss: np.ndarray, threshold: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Per-group emergence of ``group_loss`` (T, G); each entry of the result is (G,).

    * ``t_threshold``: first time ℓ_g ≤ threshold (scalar or per group).
    * ``t_half``, ``t_10``, ``t_90``: times when 50 %, 10 %, 90 % of the group's own drop
      ℓ_g(t₀) − ℓ_g(t_end) is done, i.e. ℓ_g first ≤ ℓ_g(t₀) − f·(ℓ_g(t₀) − ℓ_g(t_end));
      t_half is "the" emergence time.
    * ``width``: (t_90 − t_10) / t_half, the duration of the drop relative to its time.

    Drop times are NaN for a group that never reaches the threshold (it has not emerged,
    and its "own drop" is then noise).
    """
    levels = np.broadcast_to(np.asarray(threshold, dtype=float), group_loss.shape[1:])
    fractions = np.array([0.1, 0.5, 0.9])
    t_threshold = np.array([_times(t, group_loss[:, g], levels[g], np.ones(1))[0]
                            for g in range(len(levels))])
    drops = np.full((len(levels), 3), np.nan)
    for g in range(len(levels)):
        start, end = group_loss[0, g], group_loss[-1, g]
        if np.isfinite(t_threshold[g]) and end < start:
            drops[g] = _times(t, group_loss[:, g], start, 1 - fractions * (1 - end / start))
    t_10, t_half, t_90 = drops.T
    return {
        "t_threshold": t_threshold,
        "t_half": t_half,
        "t_10": t_10,
        "t_90": t_90,
        "width": relative_width(t_10, t_half, t_90),
    }


def accuracy_emergence(
    t: np.ndarray,
    group_accuracy: np.ndarray,
    chance: float = 0.5,
    fractions: tuple[float, float, float] = (0.2, 0.5, 0.8),
) -> dict[str, np.ndarray]:
    """Per-group rise of accuracy (T, G) from ``chance`` to 1; each entry (G,).

    ``t_lo``, ``t_mid``, ``t_hi``: first times the accuracy reaches chance + f·(1 − chance)
    for the three ``fractions`` (default 0.6, 0.75, 0.9 for a binary task), i.e. the error
    1 − accuracy first ≤ (1 − f)·(1 − chance) (the crossing times of the error, linear in
    its logarithm); ``width`` = (t_hi − t_lo)/t_mid. NaN where never reached.
    The loss width of a cross-entropy task includes the slow growth of the margin after the
    task is solved (ℓ ∝ e^{−margin}); the accuracy width measures the transition itself.
    Fractions 0.2 and 0.8 rather than 0.1 and 0.9 keep an evaluation set's sampling noise
    (sd 0.03 at 256 examples) from triggering a crossing.
    """
    error = 1.0 - np.asarray(group_accuracy, dtype=float)
    levels = 1.0 - np.asarray(fractions, dtype=float)
    times = np.array([_times(t, error[:, g], 1.0 - chance, levels)
                      for g in range(error.shape[1])]).reshape(-1, 3)
    t_lo, t_mid, t_hi = times.T
    return {"t_lo": t_lo, "t_mid": t_mid, "t_hi": t_hi,
            "width": relative_width(t_lo, t_mid, t_hi)}


PLATEAU_LEVEL = 0.9
"""A group is on its plateau while ℓ_g > 0.9·ℓ_g(t₀) (within 10 % of its start)."""
DROP_LEVEL = 0.2
"""A group's drop ends when ℓ_g ≤ 0.2·ℓ_g(t₀)."""


def plateau_to_drop(t: np.ndarray, group_loss: np.ndarray) -> dict[str, np.ndarray]:
    """How long each group sits on its plateau against how long its drop then takes; (G,).

    ``plateau`` = t_0.9 − t₀, with t_0.9 the first time ℓ_g ≤ 0.9·ℓ_g(t₀) (the loss leaves the
    band within 10 % of its start); ``drop`` = t_0.2 − t_0.9, with t_0.2 the first time
    ℓ_g ≤ 0.2·ℓ_g(t₀); ``ratio`` = plateau / drop (≥ 1: the group waits at least as long as
    it then takes to fall). Crossings interpolated in ln ℓ (:func:`dynamics.phases.crossing_times`);
    NaN where the group never reaches 0.2·ℓ_g(t₀). Times in the units of ``t``.
    """
    levels = np.array([PLATEAU_LEVEL, DROP_LEVEL])
    times = np.array([_times(t, group_loss[:, g], group_loss[0, g], levels)
                      for g in range(group_loss.shape[1])]).reshape(-1, 2)
    plateau = times[:, 0] - t[0]
    drop = times[:, 1] - times[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(drop > 0, plateau / drop, np.inf)
    ratio[np.isnan(drop)] = np.nan
    return {"t_plateau_end": times[:, 0], "t_drop_end": times[:, 1], "plateau": plateau,
            "drop": drop, "ratio": ratio}


def mean_final(group_loss: np.ndarray, frequencies: np.ndarray) -> float:
    """Frequency-weighted mean of the final group losses, Σ_g p_g ℓ_g(t_end) / Σ_g p_g."""
    p = np.asarray(frequencies, dtype=float)
    return float(p @ group_loss[-1] / p.sum())


def group_f1(found: np.ndarray, true: np.ndarray, num_groups: int) -> np.ndarray:
    """For each true group g, the F1 score of its best-matching found cluster, (G,):
    max_c 2|g ∩ c| / (|g| + |c|) (NaN for a group with no example)."""
    found, true = np.asarray(found), np.asarray(true)
    scores = np.full(num_groups, np.nan)
    for g in range(num_groups):
        members = true == g
        if not members.any():
            continue
        clusters, overlap = np.unique(found[members], return_counts=True)
        sizes = np.array([np.count_nonzero(found == c) for c in clusters])
        scores[g] = float(np.max(2 * overlap / (members.sum() + sizes)))
    return scores


RECOVERY_F1 = 0.8
"""A group is recovered by a clustering when its best-matching cluster has F1 ≥ 0.8."""


def recovery_times(t: np.ndarray, f1: np.ndarray, level: float = RECOVERY_F1) -> np.ndarray:
    """Per group, the time of the first re-clustering from which on the group stays recovered:
    F1 ≥ ``level`` there and at every later re-clustering (``t`` (R,), ``f1`` (R, G)); NaN if
    never (including a group recovered early and lost at the end)."""
    f1 = np.asarray(f1, dtype=float).reshape(len(t), -1)
    out = np.full(f1.shape[1], np.nan)
    for g in range(f1.shape[1]):
        ok = f1[:, g] >= level
        if ok.size and ok[-1]:
            failed = np.flatnonzero(~ok)
            out[g] = t[failed[-1] + 1] if failed.size else t[0]
    return out


def recovery_relation(
    recovered: np.ndarray, plateau_end: np.ndarray, drop_end: np.ndarray
) -> list[str]:
    """Where each group's recovery falls relative to its own emergence: ``"before"`` (while it
    is still on its plateau, t < t_0.9), ``"at"`` (during its drop, t_0.9 ≤ t ≤ t_0.2),
    ``"after"`` (t > t_0.2, or the group never completes its drop), ``"never"`` (not
    recovered); see :func:`plateau_to_drop` and :func:`recovery_times`."""
    out = []
    for r, start, end in zip(recovered, plateau_end, drop_end, strict=True):
        if np.isnan(r):
            out.append("never")
        elif np.isfinite(start) and r < start:
            out.append("before")
        elif np.isfinite(start) and np.isfinite(end) and r <= end:
            out.append("at")
        else:
            out.append("after")
    return out


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
