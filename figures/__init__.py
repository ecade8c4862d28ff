"""Presentation: matplotlib figures, the HTML report and the ``scurve`` CLI.

Public names are imported lazily on first use, so importing the package is cheap.
"""

from __future__ import annotations

from dynamics.exports import lazy_exports

_EXPORTS = {
    "Series": "plots",
    "main": "cli",
    "plot_groups": "plots",
    "plot_scaling": "plots",
    "plot_trajectories": "plots",
    "report": "reporting",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
