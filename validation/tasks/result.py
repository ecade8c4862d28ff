"""What one task run returns: :class:`TaskResult`, per-group curves and their emergence summary.

Times are in the task's ``time_unit``: t = η·step (``"t"``, :func:`dynamics.schedules.step_times`)
or the step itself (``"step"``) — :func:`clock`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dynamics.schedules import step_times
from validation.emergence import (
    emergence_spread,
    group_emergence,
    mean_final,
    plateau_to_drop,
    recovery_relation,
    recovery_times,
    summarize_run,
)

__all__ = ["RECOVERY_RULE", "TaskResult", "clock"]


def clock(time_unit: str, lr: float, steps: np.ndarray) -> np.ndarray:
    """The time of training steps ``steps`` in ``time_unit``: t = η·step for ``"t"``
    (:func:`dynamics.schedules.step_times`), the step itself (float) for ``"step"``."""
    steps = np.asarray(steps)
    return step_times(lr, steps) if time_unit == "t" else steps.astype(float)


RECOVERY_RULE = (
    "recovered: from the first re-clustering after which the group's best-matching cluster "
    "has F1 >= 0.8 at every re-clustering; before = while still on its plateau (loss > 0.9 of "
    "its start), at = during its drop (0.9 to 0.2 of its start), after = later"
)


@dataclass
class TaskResult:
    """Per-group curves of one training run (numpy arrays, one row per recorded step).

    ``time`` is t = η·step when ``time_unit == "t"`` (modes) and the step when ``"step"``
    (parity). ``group_loss`` (T, G) is ℓ_g before the update of that step;
    ``group_accuracy`` (T, G) for classification, else None. ``ari`` holds the adjusted
    Rand index of the found groups against the true ones at each re-clustering
    (``ari_steps``), empty for methods without found groups; ``clusterings`` one record per
    re-clustering (of the method, or of the side probe when ``probe``): ``step``, ``t``,
    ``k``, ``k_rule``, ``ari``, ``f1`` (per true group, :func:`~validation.emergence.group_f1`),
    ``examples``, ``parameters``, ``seconds_gradients``, ``seconds_clustering``,
    ``peak_bytes``, ``gradient_bytes``. ``frequencies``: the share of each group among all
    training examples seen (the weights of ``mean_final``). ``seconds_per_step``: the
    method's update, loss, backward and optimizer step, averaged over the run (batch
    drawing, evaluation, the side probe and the reference steps excluded); ``overhead``: that
    over the seconds per step of the mean loss timed in the same run (``reference_every`` of
    :func:`train_task`; None without). ``params``: the method's parameters.
    """

    task: str
    method: str
    seed: int
    lr: float
    time_unit: str
    steps: np.ndarray
    time: np.ndarray
    group_loss: np.ndarray
    group_accuracy: np.ndarray | None
    threshold: np.ndarray
    ari_steps: np.ndarray
    ari: np.ndarray
    wall_seconds: float
    params: dict[str, float] = field(default_factory=dict)
    frequencies: np.ndarray | None = None
    seconds_per_step: float = float("nan")
    clusterings: list[dict[str, Any]] = field(default_factory=list)
    probe: bool = False
    overhead: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready emergence summary (plain floats and lists; NaN for "never").

        ``emergence_times``: per group, t_half (half of its own drop); ``threshold_times``:
        first ℓ_g ≤ threshold; ``widths``: (t_90 − t_10)/t_half per group; ``spread``:
        max/min of ``emergence_times``; ``plateau_to_drop`` (with ``plateau`` and ``drop``):
        :func:`~validation.emergence.plateau_to_drop` per group; ``worst_group_final``:
        max_g ℓ_g at the end; ``mean_final``: Σ_g p_g ℓ_g at the end (p = ``frequencies``);
        ``seconds``: wall time; ``seconds_per_step``, ``overhead``; ``ari``: ``{"t", "ari"}``
        at each re-clustering and ``ari_steps`` their steps; ``gradient_groups`` (runs with
        clusterings): k per re-clustering, F1 per group, when each group is recovered and
        how that relates to its emergence (:data:`RECOVERY_RULE`), and the cost per
        re-clustering; ``summary``: :func:`~validation.emergence.summarize_run`.
        Times in ``time_unit``.
        """
        per_group = group_emergence(self.time, self.group_loss, self.threshold)
        plateau = plateau_to_drop(self.time, self.group_loss)
        out: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "params": dict(self.params),
            "seed": self.seed,
            "lr": self.lr,
            "time_unit": self.time_unit,
            "steps": int(self.steps[-1]),
            "emergence_times": per_group["t_half"].tolist(),
            "threshold_times": per_group["t_threshold"].tolist(),
            "widths": per_group["width"].tolist(),
            "spread": emergence_spread(per_group["t_half"])["ratio"],
            "plateau_to_drop": plateau["ratio"].tolist(),
            "plateau": plateau["plateau"].tolist(),
            "drop": plateau["drop"].tolist(),
            "worst_group_final": float(self.group_loss[-1].max()),
            "mean_final": (float("nan") if self.frequencies is None
                           else mean_final(self.group_loss, self.frequencies)),
            "seconds": self.wall_seconds,
            "seconds_per_step": self.seconds_per_step,
            "overhead": self.overhead,
            "ari": [{"t": float(t), "ari": float(a)} for t, a in zip(
                self._clock(self.ari_steps), self.ari, strict=True)],
            "ari_steps": self.ari_steps.tolist(),
            "summary": summarize_run(
                self.time, self.group_loss, self.threshold, self.group_accuracy
            ),
        }
        if self.clusterings:
            out["gradient_groups"] = self.gradient_groups(per_group["t_half"], plateau)
        return out

    def _clock(self, steps: np.ndarray) -> np.ndarray:
        return clock(self.time_unit, self.lr, steps)

    def gradient_groups(
        self, emergence: np.ndarray, plateau: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """Recovery of the true groups by the clusterings, and their cost (see ``summary``).

        ``recovered_at`` (per group, :func:`~validation.emergence.recovery_times`),
        ``lead`` = emergence time − ``recovered_at`` (> 0: found before it emerged),
        ``relation`` (:func:`~validation.emergence.recovery_relation`); ``cost``: mean
        seconds of the per-example gradients and of the clustering per re-clustering, the
        largest peak memory added (bytes, None if not measured) and gradient matrix size.
        """
        records = self.clusterings
        t = np.array([r["t"] for r in records])
        f1 = np.array([r["f1"] for r in records], dtype=float)
        recovered = recovery_times(t, f1)
        peaks = [r["peak_bytes"] for r in records if r["peak_bytes"] is not None]
        seconds_g = float(np.mean([r["seconds_gradients"] for r in records]))
        seconds_c = float(np.mean([r["seconds_clustering"] for r in records]))
        return {
            "source": "probe" if self.probe else self.method,
            "k": [r["k"] for r in records],
            "k_rule": records[0]["k_rule"],
            "t": t.tolist(),
            "f1": f1.tolist(),
            "recovered_at": recovered.tolist(),
            "lead": (emergence - recovered).tolist(),
            "relation": recovery_relation(recovered, plateau["t_plateau_end"],
                                          plateau["t_drop_end"]),
            "rule": RECOVERY_RULE,
            "cost": {
                "seconds_gradients": seconds_g,
                "seconds_clustering": seconds_c,
                "seconds_per_reclustering": seconds_g + seconds_c,
                "peak_bytes": max(peaks) if peaks else None,
                "gradient_bytes": max(r["gradient_bytes"] for r in records),
                "examples": records[0]["examples"],
                "parameters": records[0]["parameters"],
                "reclusterings": len(records),
            },
        }
