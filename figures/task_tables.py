"""Markdown of the capability-task comparison tables (:mod:`validation.tasks.tables`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["table_markdown"]


def _pm(row: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    value, sd = row.get(metric, float("nan")), row.get(f"{metric}_sd", float("nan"))
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{value:.{digits}g}"
    return text if sd is None or not np.isfinite(sd) else f"{text} ± {sd:.2g}"


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`validation.tasks.compare_methods` /
    :func:`validation.tasks.emergence_table` as a markdown table.

    Columns: task, method, seeds, spread t_last/t_first of the half-drop times (± sd over
    seeds), sd of ln t_half, median width (t_90 − t_10)/t_half of the loss, median width of
    the accuracy rise (classification), fraction emerged, worst-group final loss, wall time
    per run, final ARI of the found groups, and — for the modes tasks — the spread predicted
    by theory and the largest relative error of a predicted emergence time.
    """
    header = (
        "| task | method | seeds | spread t_last/t_first | sd ln t | width (loss) "
        "| width (accuracy) | emerged | worst-group final loss | wall s/run | ARI final "
        "| spread (theory) | max theory error |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in rows:
        theory_spread = row.get("theory_spread", float("nan"))
        error = row.get("theory_error", float("nan"))
        cells = [
            str(row["task"]), str(row["method"]), str(row["seeds"]),
            _pm(row, "spread"), _pm(row, "sd_log_t", 2), _pm(row, "width", 2),
            _pm(row, "acc_width", 2), _pm(row, "emerged", 2), _pm(row, "worst_final"),
            _pm(row, "wall_s", 2), _pm(row, "ari_final", 2),
            f"{theory_spread:.3g}" if np.isfinite(theory_spread) else "–",
            f"{100 * error:.2g} %" if np.isfinite(error) else "–",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
