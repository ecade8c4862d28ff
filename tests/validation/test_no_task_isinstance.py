"""No code branches on a task's class: tasks carry their behaviour as hooks (issue 17)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_isinstance_on_spec_task():
    hits = [f"{p.relative_to(ROOT)}:{i}" for pkg in ("dynamics", "validation", "figures")
            for p in (ROOT / pkg).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if "isinstance(task, SpecTask)" in line]
    assert not hits, hits
