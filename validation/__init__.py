"""Experiment: batched PyTorch training of the same problems and theory vs experiment;
grouped losses, their tasks and their emergence metrics.

Never imports matplotlib.

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

from dynamics.exports import lazy_exports

_EXPORTS = {
    "ClusterGroupedLoss": "grouped",
    "Comparison": "comparison",
    "GradientClusterer": "grouped",
    "ObjectiveLoss": "grouped",
    "SVDGroupedLoss": "grouped",
    "TrainConfig": "training",
    "TrainResult": "training",
    "compare": "comparison",
    "train": "training",
    "TrainingDiverged": "comparison",
    "compare_methods": "tasks",
    "emergence_table": "tasks",
    "grouped_runs": "tasks",
    "make_method": "tasks",
    "make_task": "tasks",
    "per_example_grads": "grouped",
    "predict_task": "tasks",
    "SpecTask": "tasks",
    "plateau_to_drop": "emergence",
    "summarize_run": "emergence",
    "train_task": "tasks",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
