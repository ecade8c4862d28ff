"""Shared SymPy pieces of the built-in models (imported only when a model is built)."""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions import Trace

n, r, k, G = sp.symbols("n r k G", integer=True, positive=True)


def sq(e: sp.MatrixExpr) -> sp.Expr:
    """½‖e‖² = ½ tr(eᵀe)."""
    return Trace(e.T * e) / 2


def inner(a: sp.MatrixExpr, b: sp.MatrixExpr) -> sp.Expr:
    """Frobenius inner product ⟨a, b⟩ = tr(aᵀb)."""
    return Trace(a.T * b)
