"""Tests of dynamics.terms: SymPy expressions as a node list, checked by evaluating the nodes
with numpy here (a few lines below) against the same formulas written out with numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

from dynamics.terms import dag

n, k = sp.symbols("n k", integer=True, positive=True)
X, Y, A = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("Y", n, k), sp.MatrixSymbol("A", n, n)
lam = sp.Symbol("lam")


def run(terms: dict, values: dict) -> dict:
    """The nodes evaluated with numpy (one seed; scalars as floats)."""
    out: list = []
    for op, value, children in terms["nodes"]:
        xs = [out[i] for i in children]
        if op == "arg":
            out.append(values[value])
        elif op == "num":
            out.append(value)
        elif op == "add":
            out.append(sum(xs[1:], xs[0]))
        elif op in ("mul", "chain"):
            acc = xs[0]
            for x in xs[1:]:
                acc = acc @ x if np.ndim(acc) == 2 and np.ndim(x) == 2 else acc * x
            out.append(acc)
        elif op == "T":
            out.append(xs[0].T)
        elif op == "trace":
            out.append(np.trace(np.linalg.multi_dot(xs) if len(xs) > 1 else xs[0]))
        elif op == "pow":
            out.append(xs[0] ** value)
        elif op == "fn":
            out.append(getattr(np, value)(xs[0]))
        elif op == "esum":
            out.append(np.sum(xs[0]))
    return {name: out[i] for name, i in zip(terms["outs"], terms["roots"], strict=True)}


def test_loss_and_gradient_terms_evaluate_to_the_formulas():
    rng = np.random.default_rng(0)
    v = {"X": rng.standard_normal((5, 2)), "Y": rng.standard_normal((5, 2)),
         "A": rng.standard_normal((5, 5)), "lam": 0.3}
    loss = sp.Rational(1, 2) * sp.Trace(X.T * A * Y) ** 2 - sp.exp(sp.Trace(X.T * X) / 7)
    grad = sp.MatAdd(sp.MatMul(sp.Trace(X.T * A * Y), A, Y), sp.MatMul(lam, X),
                     sp.MatMul(-1, Y.T.T))
    terms = dag([X, Y, A, lam], {"L": loss, "g": grad})
    json.dumps(terms)  # plain data (the symbolic cache stores it)
    got = run(terms, v)
    t = np.trace(v["X"].T @ v["A"] @ v["Y"])
    want_l = 0.5 * t**2 - np.exp(np.trace(v["X"].T @ v["X"]) / 7)
    want_g = t * v["A"] @ v["Y"] + 0.3 * v["X"] - v["Y"]
    assert abs(got["L"] - want_l) < 1e-12 * abs(want_l)
    assert np.max(np.abs(got["g"] - want_g)) < 1e-12 * np.max(np.abs(want_g))


def test_equal_subexpressions_are_one_node_and_errors():
    expr = sp.Trace(X.T * Y)
    terms = dag([X, Y], {"a": expr, "b": 2 * expr})
    traces = [node for node in terms["nodes"] if node[0] == "trace"]
    assert len(traces) == 1
    with pytest.raises(ValueError, match="not an argument"):
        dag([X], {"a": expr})
    with pytest.raises(ValueError, match="no operation"):
        dag([X, Y], {"a": sp.Max(sp.Trace(X.T * Y), 0)})
