"""The report: every experiment of the project, run (or read from the cache) and shown offline.

``scurve report [--out DIR] [--quick] [--only SECTION]`` (:func:`report`) builds the sections
(:data:`SECTIONS`, :mod:`figures.reporting.sections`). Each one defines its experiments as
jobs (:mod:`figures.reporting.jobs`; cached on disk by configuration and run on any executor,
:mod:`figures.sweeps`), draws its figures with :mod:`figures.plots`, writes every number it
shows to ``DIR/data/`` (CSV and JSON) and judges the seeds' claims it backs
(:data:`figures.claims.CLAIMS`, whose rules live in :mod:`figures.claims`).
``DIR/index.html`` (:mod:`figures.reporting.page`) is self-contained: figures are embedded as
base64 PNGs, equations typeset by matplotlib, no external CSS or JavaScript.

Theory and experiment share their initialisation: the same spec (same seed) is integrated
(gradient flow, float64) and trained (full-batch SGD, float64, step η, t = η·step) unless a
section says otherwise. All times are continuous time t (README "Conventions").

Public names are imported lazily, so a worker process that imports the jobs does not load the
sections and matplotlib.
"""

from __future__ import annotations

from dynamics.exports import lazy_exports

_EXPORTS = {
    "SECTIONS": "sections",
    "report": "page",
    "resolve_sections": "sections",
    "write_readme": "page",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
