"""Report sections run in threads and matplotlib's text layout (mathtext tick labels of a log
axis) is not thread-safe: two sections laying out text at once raised pyparsing errors in a
report. Every figure a section builds itself must be built inside ``plots.drawing()``."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import figures.reporting.sections as sections
from figures import plots

SECTIONS = Path(sections.__file__).parent


def _drawing(node: ast.With) -> bool:
    return any(isinstance(item.context_expr, ast.Call)
               and ast.unparse(item.context_expr.func) == "plots.drawing"
               for item in node.items)


def _unguarded(tree: ast.AST) -> list[int]:
    """Lines of ``plt.…(…)`` calls not lexically inside a ``with plots.drawing():``."""
    found: list[int] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.With) and _drawing(node):
            guarded = True
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("plt.") \
                and not guarded:
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def test_sections_build_their_own_figures_under_the_drawing_lock():
    bad = {path.name: lines for path in sorted(SECTIONS.glob("*.py"))
           if (lines := _unguarded(ast.parse(path.read_text())))}
    assert bad == {}


def test_the_check_finds_an_unguarded_figure():
    code = ("def f():\n    fig, ax = plt.subplots()\n"
            "def g():\n    with plots.drawing():\n        fig, ax = plt.subplots()\n")
    assert _unguarded(ast.parse(code)) == [2]


def test_drawing_excludes_other_threads():
    entered = threading.Event()

    def grab() -> None:
        with plots.drawing():
            entered.set()

    with plots.drawing():
        other = threading.Thread(target=grab, daemon=True)
        other.start()
        assert not entered.wait(0.2)  # blocked while this thread draws
    assert entered.wait(5)
    other.join(5)
