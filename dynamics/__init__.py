"""Theory: problem specs, SymPy-derived dynamics, integration, phases and closed forms.

NumPy, SciPy and SymPy only (never torch or matplotlib).

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

from .exports import lazy_exports

_EXPORTS = {
    "AttentionHead": "problems",
    "Chain": "problems",
    "Factorization": "problems",
    "Model": "model",
    "ModelError": "model",
    "ModelSpec": "problems",
    "NotReducedWarning": "integrate",
    "ReductionError": "symbolic",
    "IntegrationError": "integrate",
    "MechanisticPhases": "phases",
    "METHODS": "methods",
    "Discrete": "methods",
    "Flow": "methods",
    "Full": "methods",
    "Modified": "methods",
    "Sign": "methods",
    "Adam": "methods",
    "run_adam": "adam",
    "method_from_name": "methods",
    "CosineAnnealingLR": "schedules",
    "ExponentialLR": "schedules",
    "LinearLR": "schedules",
    "StepLR": "schedules",
    "Phases": "phases",
    "Problem": "problems",
    "Spec": "problems",
    "SpecError": "problems",
    "Trajectory": "trajectory",
    "Vector": "problems",
    "analyze": "phases",
    "component_equations": "symbolic",
    "crossing_times": "phases",
    "full_flow": "symbolic",
    "load": "problems",
    "mechanistic_phases": "phases",
    "load_file": "model",
    "predict": "integrate",
    "reduced_flow": "symbolic",
    "reduced_gd": "symbolic",
    "sample_model": "problems",
    "sample_modes": "problems",
    "objective": "groups",
    "GroupObjective": "groups",
    "save": "problems",
    "training_program": "symbolic",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
