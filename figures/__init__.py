"""Presentation: matplotlib figures, the HTML report and the ``scurve`` CLI.

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Series": "plots",
    "plot_trajectories": "plots",
    "plot_scaling": "plots",
    "plot_groups": "plots",
    "build_report": "report",
    "main": "cli",
}

__all__ = [
    "Series",
    "build_report",
    "main",
    "plot_groups",
    "plot_scaling",
    "plot_trajectories",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
