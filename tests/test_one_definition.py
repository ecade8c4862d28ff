"""One definition per concept (issue 17): a grep over the package for re-implementations.

Each check names the one place that owns the concept and fails if its formula is written again
elsewhere (a second copy is how two answers to one question appear)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dynamics", "validation", "figures")


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for pkg in PACKAGES
            for p in (ROOT / pkg).rglob("*.py")}


def test_group_dro_update_is_written_once() -> None:
    """z ← z + c·ℓ lives in GroupObjective.dro_increment; nobody else multiplies by the DRO
    step c (the GD map, the flow and both torch trainers call it)."""
    offenders = [path for path, text in _sources().items()
                 if path != "dynamics/groups.py" and re.search(r"dro_step\s*[*/]|alpha=self\.dro",
                                                                text)]
    assert offenders == []
    text = (ROOT / "dynamics/groups.py").read_text()
    assert len(re.findall(r"dro_step\s*\*", text)) == 1


def test_time_from_steps_is_computed_by_schedules() -> None:
    """t_k from a step count comes from dynamics.schedules (η·k only without a schedule, and
    that too is schedules.times); no `lr * np.arange` elsewhere in the package."""
    offenders = [path for path, text in _sources().items()
                 if path != "dynamics/schedules.py"
                 and re.search(r"lr\s*\*\s*np\.arange|np\.arange\([^)]*\)\s*\*\s*lr", text)]
    assert offenders == []


def test_no_branch_on_a_model_name_outside_its_module() -> None:
    """What differs per model is a hook its module registers (closed-form crossing times, mode
    strengths, rate scales, ...): no `spec.kind == "..."` outside dynamics/models/."""
    offenders = [path for path, text in _sources().items()
                 if not path.startswith("dynamics/models/")
                 and re.search(r"\bspec\.kind\s*(==|!=|in)\s*[\"'(]", text)]
    assert offenders == []
