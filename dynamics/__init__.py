"""Theory: problem specs, SymPy-derived dynamics, integration, phases and closed forms.

NumPy, SciPy and SymPy only (never torch or matplotlib).

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "component_equations": "symbolic",
    "modes_dynamics": "modes",
    "ModesProblem": "modes",
    "predict_groups": "modes",
    "AttentionHead": "problems",
    "Factorization": "problems",
    "Problem": "problems",
    "SpecError": "problems",
    "Vector": "problems",
    "load": "problems",
    "save": "problems",
    "full_flow": "symbolic",
    "reduced_flow": "symbolic",
    "reduced_gd": "symbolic",
    "state_from_spec": "symbolic",
    "METHODS": "integrate",
    "IntegrationError": "integrate",
    "predict": "integrate",
    "Trajectory": "trajectory",
    "Phases": "phases",
    "analyze": "phases",
    "crossing_times": "phases",
}

__all__ = [
    "METHODS",
    "AttentionHead",
    "Factorization",
    "IntegrationError",
    "ModesProblem",
    "Phases",
    "Problem",
    "SpecError",
    "Trajectory",
    "Vector",
    "analyze",
    "component_equations",
    "crossing_times",
    "full_flow",
    "load",
    "modes_dynamics",
    "predict",
    "predict_groups",
    "reduced_flow",
    "reduced_gd",
    "save",
    "state_from_spec",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
