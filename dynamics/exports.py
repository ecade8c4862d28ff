"""Lazy re-export of a package's public names (PEP 562), shared by every package.

Importing ``dynamics`` must not pay for SymPy, nor ``validation`` for torch, until a name that
needs them is used: each package's ``__init__`` maps its public names to their modules and
hands this module's :func:`lazy_exports` the mapping.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``; ``exports`` maps each public name
    to the submodule (relative to ``package``) that defines it."""
    namespace = importlib.import_module(package).__dict__

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return sorted(exports), getattr_, dir_
