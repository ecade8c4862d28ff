"""Experiment: batched PyTorch training of the same problems and theory vs experiment;
grouped losses, their tasks and their emergence metrics.

Never imports matplotlib.

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingDiverged": "compare",
    "table_markdown": "tasks",
    "emergence_table": "tasks",
    "predict_task": "tasks",
    "PowerGroupedLoss": "grouped",
    "TrainConfig": "train",
    "TrainResult": "train",
    "Comparison": "compare",
    "ClusterGroupedLoss": "grouped",
    "GroupDRO": "grouped",
    "GroupedLoss": "grouped",
    "MeanLoss": "grouped",
    "SVDGroupedLoss": "grouped",
    "per_example_grads": "grouped",
    "make_task": "tasks",
    "train_task": "tasks",
    "compare_methods": "tasks",
    "summarize_run": "emergence",
}

__all__ = [
    "ClusterGroupedLoss",
    "Comparison",
    "GroupDRO",
    "GroupedLoss",
    "MeanLoss",
    "PowerGroupedLoss",
    "SVDGroupedLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "compare_methods",
    "emergence_table",
    "make_task",
    "per_example_grads",
    "predict_task",
    "summarize_run",
    "table_markdown",
    "train_task",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
