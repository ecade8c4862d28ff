"""Tasks carry their behaviour: no code outside a task's own module branches on a task's
class (``isinstance(task, SpecTask)``-style); a test that it can fail is included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASK_CLASSES = ("SpecTask", "ParityTask", "SkillsTask", "SampledTask")
PATTERN = re.compile(r"isinstance\([^)]*\b(" + "|".join(TASK_CLASSES) + r")\b")


def offenders(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if PATTERN.search(line)]


def test_the_grep_finds_a_class_branch() -> None:
    assert offenders("    if isinstance(task, SpecTask):\n") == ["if isinstance(task, SpecTask):"]
    assert offenders("x = isinstance(t, (ParityTask, SkillsTask))") != []
    assert offenders("if task.spec is not None:") == []


def test_no_task_class_isinstance_in_the_package() -> None:
    found = {str(p.relative_to(ROOT)): offenders(p.read_text(encoding="utf-8"))
             for package in ("dynamics", "validation", "figures")
             for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in found.items() if v}
