"""Terms: a derived program's outputs as a graph of matrix operations, read off the SymPy
expressions themselves (no printed source in between).

:func:`dag` walks the expressions of a program (the same ones :func:`dynamics.symbolic._program`
prints) and writes them as a list of nodes ``[op, value, children]`` (children: indices of
earlier nodes; equal subexpressions are one node), plain JSON data that the symbolic cache
stores beside the source. :mod:`validation.programs` builds its torch ``Graph`` from it
directly. The operations, for matrices batched over seeds (scalars broadcast per seed):

    arg    a program argument (``value``: its name)      num    a number (``value``)
    add    Σ children                                     mul    Π children (scalars · a matrix)
    chain  the product of the children (scalar factors   T      the transpose
           multiply; matrices in order, m₁ m₂ ⋯ m_k)      trace  tr(m₁ m₂ ⋯ m_k)
    pow    child ** value                                 fn     ``value``(child), elementwise
    esum   Σ of the entries of each seed's matrix

Units: none (a program is an algebraic map; time does not enter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, Trace, Transpose

__all__ = ["dag"]

_FUNCTIONS = ("exp", "log", "sin", "cos", "tanh", "sqrt", "Abs")  # elementwise, torch's names
_TORCH_NAME = {"Abs": "abs"}


def dag(args: Sequence[sp.Basic], outs: Mapping[str, sp.Basic]) -> dict[str, Any]:
    """The nodes of ``outs`` as functions of ``args``: ``{"args", "outs", "nodes", "roots"}``,
    ``roots[i]`` the node of output ``outs[i]``. Raises ``ValueError`` on an expression type
    it has no operation for."""
    names = {a: str(a) for a in args}
    nodes: list[list] = []
    index: dict[tuple, int] = {}
    memo: dict[sp.Basic, int] = {}

    def node(op: str, value: Any, children: Sequence[int]) -> int:
        key = (op, value, tuple(children))
        if key not in index:
            index[key] = len(nodes)
            nodes.append([op, value, list(children)])
        return index[key]

    def walk(e: sp.Basic) -> int:
        if e in memo:
            return memo[e]
        if e in names:
            out = node("arg", names[e], ())
        elif isinstance(e, (MatrixSymbol, sp.Symbol)):
            raise ValueError(f"terms: {e} is not an argument of the program")
        elif e.is_Number:
            out = node("num", float(e), ())
        elif isinstance(e, (sp.ZeroMatrix, sp.Identity)) and e.shape == (1, 1):
            out = node("num", 0.0 if isinstance(e, sp.ZeroMatrix) else 1.0, ())  # 1 x 1
        elif isinstance(e, (MatAdd, sp.Add)):
            out = node("add", None, [walk(a) for a in e.args])
        elif isinstance(e, MatMul):
            out = node("chain", None, [walk(a) for a in e.args])
        elif isinstance(e, sp.Mul):
            out = node("mul", None, [walk(a) for a in e.args])
        elif isinstance(e, Transpose):
            out = node("T", None, [walk(e.arg)])
        elif isinstance(e, Trace):
            arg = e.arg
            factors = arg.args if isinstance(arg, MatMul) and all(a.is_Matrix
                                                                  for a in arg.args) else (arg,)
            out = node("trace", None, [walk(a) for a in factors])
        elif isinstance(e, sp.Pow):
            if not e.exp.is_Number:
                raise ValueError(f"terms: power with a non-numeric exponent in {e}")
            out = node("pow", float(e.exp), [walk(e.base)])
        elif type(e).__name__ == "_EntrySum":
            out = node("esum", None, [walk(e.args[0])])
        elif isinstance(e, sp.Function) and type(e).__name__ in _FUNCTIONS and len(e.args) == 1:
            name = type(e).__name__
            out = node("fn", _TORCH_NAME.get(name, name), [walk(e.args[0])])
        else:
            raise ValueError(f"terms: no operation for {type(e).__name__} ({e})")
        memo[e] = out
        return out

    roots = [walk(sp.sympify(e)) for e in outs.values()]
    return {"args": list(names.values()), "outs": list(outs), "nodes": nodes, "roots": roots}
