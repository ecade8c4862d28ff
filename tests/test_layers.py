"""Layer rules (README "Conventions"): dynamics never imports torch or matplotlib; validation never
imports matplotlib; nothing lower imports anything higher. Every module of a package counts,
subpackages included. And the CLI module itself loads only the standard library and the
torch-free name lists its parser is built from (``tests/figures/test_cli_startup.py`` checks
what each command then imports)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "dynamics": {"torch", "matplotlib", "validation", "figures"},
    "validation": {"matplotlib", "figures"},
}
#: what figures/cli.py may import at module level (the rest inside the subcommands)
CLI_MODULE_LEVEL = {"__future__", "argparse", "json", "sys", "warnings", "collections",
                    "pathlib", "typing"}


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The top-level package of every absolute import in ``path`` (``top_level_only``: only
    those executed when the module loads, not inside functions or ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = ast.walk(tree) if not top_level_only else (
        n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _violations(folder: Path, forbidden: set[str]) -> dict[str, list[str]]:
    """Module (relative path) -> the forbidden packages it imports, for every ``*.py`` under
    ``folder`` (subpackages too)."""
    bad = {str(f.relative_to(folder)): sorted(_imports(f) & forbidden)
           for f in sorted(folder.rglob("*.py"))}
    return {k: v for k, v in bad.items() if v}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_layer(package):
    assert list((ROOT / package).rglob("*.py"))
    assert _violations(ROOT / package, FORBIDDEN[package]) == {}


def test_the_walk_reaches_subpackages(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "top.py").write_text("import numpy\n")
    (tmp_path / "sub" / "deeper" / "mod.py").write_text("from torch import nn\n")
    assert _violations(tmp_path, {"torch"}) == {"sub/deeper/mod.py": ["torch"]}


def test_cli_module_level_imports_are_light():
    loaded = _imports(ROOT / "figures" / "cli.py", top_level_only=True)
    assert loaded <= CLI_MODULE_LEVEL, sorted(loaded - CLI_MODULE_LEVEL)
    assert CLI_MODULE_LEVEL - {"__future__"} <= set(sys.stdlib_module_names)


@pytest.mark.parametrize("package", ["dynamics", "validation", "figures"])
def test_every_public_name_resolves(package):
    """Each package's ``__all__`` names the objects users call (``from validation import
    train`` is the function, not the module)."""
    import importlib

    # resolving validation's / figures' names loads torch (and matplotlib): without them
    # this check skips rather than fails (the AST checks above need neither)
    for needed in {"dynamics": (), "validation": ("torch",),
                   "figures": ("torch", "matplotlib")}[package]:
        pytest.importorskip(needed)
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert callable(getattr(module, {"dynamics": "predict", "validation": "train",
                                     "figures": "report"}[package]))
