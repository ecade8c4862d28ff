"""What differs per model reaches the report's jobs through hooks its module registers, never a
branch on the model's name (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path

from figures.reporting.jobs import job_predict

ROOT = Path(__file__).resolve().parents[2]


def test_job_predict_reads_mechanistic_phases_through_the_models_hook() -> None:
    """A squared-loss factorization gets mechanistic phases (its module registers the mode
    strengths); a factorization with weight decay or an attention head gets None."""
    base = {"n": 6, "rank": 1, "init": 1e-3, "seed": 0}
    got = job_predict({"spec": {"kind": "factorization", **base}, "method": "flow"})
    assert got["mechanistic"] is not None and got["mechanistic"]["plateaus"]
    for spec in ({"kind": "factorization", **base, "weight_decay": 0.1},
                 {"kind": "attention", **base}):
        assert job_predict({"spec": spec, "method": "flow"})["mechanistic"] is None


def test_no_branch_on_a_model_name_outside_its_module() -> None:
    """No `spec.kind == "..."` (or !=, in) outside dynamics/models/."""
    offenders = [str(p.relative_to(ROOT)) for pkg in ("dynamics", "validation", "figures")
                 for p in (ROOT / pkg).rglob("*.py")
                 if not str(p.relative_to(ROOT)).startswith("dynamics/models/")
                 and re.search(r"\bspec\.kind\s*(==|!=|in)\s*[\"'(]", p.read_text())]
    assert offenders == []
