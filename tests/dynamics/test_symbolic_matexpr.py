"""Unit tests of :mod:`dynamics.matexpr`: expansion, reduction rules, directional derivative,
canonical traces and the multi_dot printer."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, Trace, Transpose

from dynamics.matexpr import (
    MultiDotPrinter,
    PairReducer,
    ReductionError,
    directional,
    expand_terms,
    normalize,
    termwise_gradient,
)

n, r, k = sp.symbols("n r k", integer=True, positive=True)
A, B = MatrixSymbol("A", n, r), MatrixSymbol("B", n, r)
X, Y = MatrixSymbol("X", n, k), MatrixSymbol("Y", n, k)
C = MatrixSymbol("C", n, n)
# the order parameters PairReducer names by their contraction
PX, PY = MatrixSymbol("At_X", r, k), MatrixSymbol("Bt_Y", r, k)
UX, UY = MatrixSymbol("Xt_X", k, k), MatrixSymbol("Yt_Y", k, k)
GA, GB = MatrixSymbol("At_A", r, r), MatrixSymbol("Bt_B", r, r)


def contract(expr):
    """``expr`` reduced over n by a fresh :class:`PairReducer`."""
    return PairReducer([n], names=["A", "B", "C", "X", "Y"])(expr)


def test_expand_terms_pushes_transposes_to_leaves():
    terms = expand_terms(Transpose(MatMul(2, MatAdd(A * B.T, X * Y.T), Y)))
    assert terms == [(2, (Y.T, B, A.T)), (2, (Y.T, Y, X.T))]


def test_contraction_pairs_families_into_order_parameters():
    assert contract(MatMul(X.T, A, B.T, Y)) == MatMul(PX.T, PY)
    assert contract(Trace(B * A.T * X * Y.T)) == Trace(PX * PY.T)  # rotated, then paired
    design_loss = contract(Trace((A * B.T - X * Y.T).T * (A * B.T - X * Y.T)) / 2)
    assert design_loss == Trace(GA * GB) / 2 - Trace(PX * PY.T) + Trace(UX * UY) / 2


@pytest.mark.parametrize(
    "expr",
    [MatMul(X.T, C, X), MatMul(A.T, C), Trace(C), Trace(X * X.T * C)],
    ids=["n x n between factors", "pair itself large", "all-large trace", "rotated trace"],
)
def test_uncontracted_n_dimension_raises(expr):
    with pytest.raises(ReductionError):
        contract(expr)


def test_canonical_traces_merge_rotations_and_transposes():
    expr = Trace(X * Y.T * Y * X.T) - Trace(Y.T * Y * X.T * X) + Trace((X.T * X * Y.T * Y).T)
    assert normalize(expr, big=(n,)) == Trace(X.T * X * Y.T * Y)
    assert contract(Trace(UX * UY) - Trace(UY * UX)) == 0


def test_termwise_gradient_of_sum_of_products_of_traces():
    """SymPy 1.14's trap: the attention-like loss is a sum of products of traces."""
    loss = Trace(X.T * X) * Trace(Y.T * Y) - 2 * Trace(X.T * A * A.T * X) * Trace(Y.T * B * B.T * Y)
    grad = termwise_gradient(loss, X)
    rng = np.random.default_rng(0)
    vals = {s: rng.standard_normal((5, 2 + (s in (X, Y)))) for s in (A, B, X, Y)}
    f = sp.lambdify(list(vals), grad, printer=MultiDotPrinter)
    a, b, x, y = vals.values()
    want = 2 * x * np.sum(y * y) - 4 * a @ a.T @ x * np.sum((b.T @ y) ** 2)
    np.testing.assert_allclose(f(*vals.values()), want, rtol=1e-13)


def test_directional_derivative_matches_finite_difference():
    expr = MatMul(X, Y.T, Y) * Trace(X.T * A * A.T * X)
    dx, dy = MatrixSymbol("dX", n, k), MatrixSymbol("dY", n, k)
    deriv = directional(expr, {X: dx, Y: dy})
    rng = np.random.default_rng(1)
    a, x, y, ddx, ddy = (rng.standard_normal((6, 2 + (i > 0))) for i in range(5))
    f = sp.lambdify([A, X, Y], expr, printer=MultiDotPrinter)
    d = sp.lambdify([A, X, Y, dx, dy], deriv, printer=MultiDotPrinter)
    h = 1e-6
    fd = (f(a, x + h * ddx, y + h * ddy) - f(a, x - h * ddx, y - h * ddy)) / (2 * h)
    np.testing.assert_allclose(d(a, x, y, ddx, ddy), fd, rtol=1e-8)


def test_printer_uses_multi_dot_and_transpose_attribute():
    code = MultiDotPrinter().doprint(MatMul(-2, A, B.T, Y) + Trace(X.T * Y) * X)
    assert "numpy.linalg.multi_dot([A, B.T, Y])" in code
    assert "numpy.trace(numpy.linalg.multi_dot([X.T, Y]))" in code
