"""Matrix-expression algebra behind :mod:`dynamics.symbolic`: expand, differentiate, reduce, print.

SymPy writes the losses and their gradients as trees of ``MatAdd`` / ``MatMul`` / ``Transpose``
/ ``Trace`` over ``MatrixSymbol`` leaves. This module works on the *expanded* form of such a
tree, a sum of terms ``coefficient x chain`` where the chain is a product of leaves (a
``MatrixSymbol`` or its transpose) and the coefficient a scalar that may hold traces of chains:

* :func:`expand_terms` / :func:`normalize` — distribute every product over every sum and every
  trace over its argument, merge equal terms (traces brought to a canonical cyclic rotation);
* :func:`termwise_gradient` — ``sp.diff`` one term at a time (SymPy 1.14 returns 0 for the
  derivative of a *sum of products of traces*; each product alone is right);
* :func:`directional` — the directional derivative D(e)[Δ] by the product rule over the tree;
* :func:`latex_form` — negative terms as "- c X" for LaTeX (printing only);
* :class:`PairReducer` — the reduction to order parameters, for any model: every large inner
  dimension of a chain summed by a pair of leaves, which becomes an order parameter created on
  first use (``AᵀX -> At_X``); a term that pairs do not reduce raises :class:`ReductionError`;
* :class:`TorchChainPrinter` — the same programs as PyTorch source batched over seeds;
* :class:`MultiDotPrinter` — NumPy code in which every matrix chain is one
  ``numpy.linalg.multi_dot`` call (optimal contraction order: ``A Bᵀ Y`` with n-row A, B, Y is
  evaluated as ``A (Bᵀ Y)`` and never forms an n×n matrix); :class:`ChainPrinter` the same for
  programs of small matrices only (the reduced ones), chains as left-to-right ``@``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from functools import reduce

import sympy as sp
from sympy.matrices.expressions import (
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Trace,
    Transpose,
)
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

__all__ = [
    "ChainPrinter",
    "MultiDotPrinter",
    "PairReducer",
    "ReductionError",
    "TorchChainPrinter",
    "canonical_trace",
    "chain_str",
    "directional",
    "expand_terms",
    "latex_form",
    "normalize",
    "product",
    "termwise_gradient",
]

Chain = tuple[MatrixExpr, ...]
Term = tuple[sp.Expr, Chain]


class ReductionError(ValueError):
    """A chain of n-row families does not contract pairwise into order parameters."""


def _transpose_leaf(leaf: MatrixExpr, symmetric: frozenset = frozenset()) -> MatrixExpr:
    if isinstance(leaf, Transpose):
        return leaf.arg
    return leaf if leaf in symmetric else Transpose(leaf)


def _base(leaf: MatrixExpr) -> MatrixExpr:
    return leaf.arg if isinstance(leaf, Transpose) else leaf


def product(coeff: sp.Expr, chain: Chain) -> MatrixExpr:
    """``coeff * chain[0] * chain[1] * ...`` built without ``doit`` (no ``MatPow`` folding)."""
    factors = chain if coeff == 1 else (coeff, *chain)
    return factors[0] if len(factors) == 1 else MatMul(*factors)


def latex_form(expr: sp.Basic) -> sp.Basic:
    """``expr`` with each negative matrix term as ``MatMul(-1, c, ...)`` so LaTeX reads "- c X".

    For printing only: SymPy's ``cse`` mishandles such two-coefficient products (seen in 1.14).
    """
    if isinstance(expr, MatAdd):
        return MatAdd(*(latex_form(arg) for arg in expr.args))
    if isinstance(expr, MatMul):
        coeff, *rest = expr.args
        if not coeff.is_Matrix and not coeff.is_Number and coeff.could_extract_minus_sign():
            return MatMul(sp.S.NegativeOne, -coeff, *rest)
    return expr


def expand_terms(expr: MatrixExpr) -> list[Term]:
    """``expr`` as a list of ``(scalar coefficient, chain of leaves)``, products distributed.

    Leaves are ``MatrixSymbol``s and their transposes; transposes of products are pushed to the
    leaves. Scalar coefficients are returned as they occur (traces inside are not expanded).
    """
    if isinstance(expr, MatrixSymbol):
        return [(sp.S.One, (expr,))]
    if isinstance(expr, MatAdd):
        return [term for arg in expr.args for term in expand_terms(arg)]
    if isinstance(expr, Transpose):
        return [
            (coeff, tuple(_transpose_leaf(leaf) for leaf in reversed(chain)))
            for coeff, chain in expand_terms(expr.arg)
        ]
    if isinstance(expr, MatMul):
        terms: list[Term] = [(sp.S.One, ())]
        for arg in expr.args:
            if arg.is_Matrix:
                terms = [(c1 * c2, ch1 + ch2) for c1, ch1 in terms for c2, ch2 in expand_terms(arg)]
            else:
                terms = [(coeff * arg, chain) for coeff, chain in terms]
        return terms
    if isinstance(expr, MatPow) and expr.exp.is_Integer and expr.exp > 0:
        # SymPy folds tr(EᵀE) of a symmetric E (e.g. A Aᵀ − X Xᵀ) into tr(E²)
        return expand_terms(MatMul(*[expr.base] * int(expr.exp)))
    if isinstance(expr, sp.ZeroMatrix):
        return []
    raise TypeError(f"cannot expand matrix expression of type {type(expr).__name__}: {expr}")


def termwise_gradient(loss: sp.Expr, wrt: MatrixSymbol) -> MatrixExpr:
    """∂loss/∂wrt by ``sp.diff`` of each term of the trace-expanded loss, summed.

    Differentiating the whole sum at once returns 0 in SymPy 1.14 when the terms are products
    of traces (the attention loss); each product alone is differentiated correctly.
    """
    terms = sp.Add.make_args(normalize(loss))
    parts = [sp.diff(term, wrt) for term in terms if wrt in term.free_symbols]
    return normalize(MatAdd(*parts)) if parts else sp.ZeroMatrix(*wrt.shape)


def directional(expr: sp.Basic, direction: Mapping[MatrixSymbol, MatrixExpr]) -> sp.Basic:
    """D(expr)[Δ]: the derivative of ``expr`` along ``direction[W] = ΔW`` (product rule).

    Equals d/dε expr(W + εΔW) at ε = 0; symbols absent from ``direction`` are constants.
    """
    if not expr.free_symbols & direction.keys():
        return sp.ZeroMatrix(*expr.shape) if expr.is_Matrix else sp.S.Zero
    if isinstance(expr, MatrixSymbol):
        return direction[expr]
    if isinstance(expr, (Transpose, Trace)):
        return expr.func(directional(expr.arg, direction))
    if isinstance(expr, (MatAdd, sp.Add)):
        return expr.func(*(directional(arg, direction) for arg in expr.args))
    if isinstance(expr, (MatMul, sp.Mul)):
        args = expr.args
        return (MatAdd if expr.is_Matrix else sp.Add)(
            *(
                expr.func(*args[:i], directional(arg, direction), *args[i + 1 :])
                for i, arg in enumerate(args)
                if arg.free_symbols & direction.keys()
            )
        )
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer:
        return expr.exp * expr.base ** (expr.exp - 1) * directional(expr.base, direction)
    raise TypeError(f"no directional derivative for {type(expr).__name__}: {expr}")


def canonical_trace(
    chain: Chain, big: Iterable[sp.Expr] = (), symmetric: frozenset = frozenset()
) -> Trace:
    """Tr(chain) in a canonical form among its cyclic rotations and its transpose's.

    Rotations whose first factor has a row dimension in ``big`` (n) come last, so a trace of
    n-row families starts with a k×n factor and evaluates without an n×n intermediate.
    """
    big = frozenset(big)
    flipped = tuple(_transpose_leaf(leaf, symmetric) for leaf in reversed(chain))
    candidates = [c[i:] + c[:i] for c in (chain, flipped) for i in range(len(c))]
    best = min(candidates, key=lambda c: (c[0].shape[0] in big, tuple(map(sp.srepr, c))))
    return Trace(product(sp.S.One, best))


def _identity_chain(chain: Chain) -> Chain:
    return chain


def normalize(
    expr: sp.Basic, contraction: PairReducer | None = None, big: Iterable[sp.Expr] = ()
) -> sp.Basic:
    """Expanded canonical form of a matrix or scalar expression; reduced by ``contraction``.

    Every product is distributed, every trace expanded and brought to :func:`canonical_trace`
    form (``big``: the dimensions a trace should not start with), equal chains merged. Without
    ``contraction`` the chains are kept as they are.
    """
    if contraction is None:
        chain_map: Callable[[Chain], Chain] = _identity_chain
        trace_map: Callable[[Chain], Chain] = _identity_chain
    else:
        chain_map, trace_map = contraction.chain, contraction.trace_chain
        big = contraction.large

    def symmetric() -> frozenset:  # read after the chain's contraction (pairs appear lazily)
        return frozenset() if contraction is None else contraction.symmetric

    def scalar(e: sp.Expr) -> sp.Expr:
        if isinstance(e, Trace):
            terms = []
            for c, ch in expand_terms(e.arg):
                reduced = trace_map(ch)
                terms.append(scalar(c) * canonical_trace(reduced, big, symmetric()))
            return sp.Add(*terms)
        if e.args:
            return e.func(*(scalar(arg) for arg in e.args))
        return e

    if not expr.is_Matrix:
        return sp.expand(scalar(expr))
    collected: dict[Chain, sp.Expr] = {}
    for coeff, chain in expand_terms(expr):
        key = chain_map(chain)
        collected[key] = collected.get(key, sp.S.Zero) + scalar(coeff)
    terms = [(sp.expand(c), ch) for ch, c in collected.items()]
    terms = [product(c, ch) for c, ch in terms if c != 0]
    if not terms:
        return sp.ZeroMatrix(*expr.shape)
    return terms[0] if len(terms) == 1 else MatAdd(*terms)


class MultiDotPrinter(NumPyPrinter):
    """NumPy printer: matrix chains as ``numpy.linalg.multi_dot``, ``Xᵀ`` as ``X.T``."""

    transpose = ".T"

    def _chain(self, mats: list[str]) -> str:
        return f"{self._module_format('numpy.linalg.multi_dot')}([{', '.join(mats)}])"

    def _print_MatMul(self, expr: MatMul) -> str:
        scalars = [a for a in expr.args if not a.is_Matrix]
        mats = [self._print(a) for a in expr.args if a.is_Matrix]
        body = mats[0] if len(mats) == 1 else self._chain(mats)
        if not scalars:
            return body
        return f"{self.parenthesize(reduce(operator.mul, scalars), 50)}*{body}"

    def _print_Transpose(self, expr: Transpose) -> str:
        return f"{self.parenthesize(expr.arg, PRECEDENCE['Atom'], strict=True)}{self.transpose}"

    def _print_Trace(self, expr: Trace) -> str:
        return f"{self._module_format('numpy.trace')}({self._print(expr.arg)})"


class ChainPrinter(MultiDotPrinter):
    """NumPy printer for programs of small matrices (the reduced ones): a chain of leaves as a
    left-to-right ``@`` product. ``multi_dot``'s ordering search pays off only when some
    dimension is large; on G×k and k×k matrices it costs more than the products (the modes
    task's exact GD map: 5x slower with ``multi_dot``)."""

    def _chain(self, mats: list[str]) -> str:
        return f"({' @ '.join(mats)})"


def _leaf_name(leaf: MatrixExpr) -> str:
    return f"{leaf.arg.name}t" if isinstance(leaf, Transpose) else leaf.name


def chain_str(chain: Chain) -> str:
    """A chain as text, ``A.T*X`` (for messages)."""
    return "*".join(f"{leaf.arg.name}.T" if isinstance(leaf, Transpose) else leaf.name
                    for leaf in chain)


class PairReducer:
    """Contraction of every large inner dimension of a chain into an order parameter.

    In a chain of leaves ``l_0 l_1 ⋯`` (``MatrixSymbol``s or their transposes), each inner
    dimension between ``l_i`` and ``l_{i+1}`` that is one of ``large`` is summed over by the
    pair ``l_i l_{i+1}``, which becomes one symbol, the *order parameter* (``Aᵀ X`` -> ``At_X``,
    ``X_d X_dᵀ`` -> ``Xd_Xdt``), created on first use. A pair and its transpose are one symbol
    (the canonical orientation orders the two (matrix, contracted axis) entries by name); a pair
    of a matrix with itself along one axis (``XᵀX``) is symmetric. A trace is rotated to start
    after a small dimension first. A chain in which two large dimensions meet in one leaf
    (``Xᵀ C X`` with C n×n), a pair that would itself be large, or a trace with no small
    dimension, raises :class:`ReductionError` naming the chain: its value then depends on more
    than pairwise contractions and the reduction does not close.

    ``defs[s] = (left leaf, right leaf)`` defines each created symbol ``s`` = left · right.
    """

    def __init__(self, large: Iterable[sp.Expr], names: Iterable[str] = ()) -> None:
        self.large = tuple(large)
        self._large = frozenset(self.large)
        self.defs: dict[MatrixSymbol, tuple[MatrixExpr, MatrixExpr]] = {}
        self._by_key: dict[tuple, MatrixSymbol] = {}
        self._symmetric: set[MatrixSymbol] = set()
        self._taken = set(names)

    @property
    def symmetric(self) -> frozenset:
        return frozenset(self._symmetric)

    def is_large(self, dim: sp.Expr) -> bool:
        return dim in self._large

    def pair(self, left: MatrixExpr, right: MatrixExpr) -> MatrixExpr:
        """The order parameter ``left · right`` (a symbol or its transpose)."""
        e1 = (_base(left).name, 0 if isinstance(left, Transpose) else 1, _base(left))
        e2 = (_base(right).name, 1 if isinstance(right, Transpose) else 0, _base(right))
        flip = e1[:2] > e2[:2]
        a, b = (e2, e1) if flip else (e1, e2)
        key = (a[:2], b[:2])
        sym = self._by_key.get(key)
        if sym is None:
            lhs = Transpose(a[2]) if a[1] == 0 else a[2]
            rhs = b[2] if b[1] == 0 else Transpose(b[2])
            name = f"{_leaf_name(lhs)}_{_leaf_name(rhs)}"
            while name in self._taken:
                name += "_"
            self._taken.add(name)
            sym = MatrixSymbol(name, lhs.shape[0], rhs.shape[1])
            self._by_key[key] = sym
            self.defs[sym] = (lhs, rhs)
            if a[:2] == b[:2]:
                self._symmetric.add(sym)
        return Transpose(sym) if flip and sym not in self._symmetric else sym

    def chain(self, chain: Chain) -> Chain:
        """Every large inner dimension of ``chain`` contracted (see the class docstring)."""
        out: list[MatrixExpr] = []
        last = len(chain) - 1
        i = 0
        while i <= last:
            if i < last and self.is_large(chain[i].shape[1]):
                left, right = chain[i], chain[i + 1]
                twice = right if i + 1 < last and self.is_large(right.shape[1]) else None
                if twice is None and self.is_large(left.shape[0]):
                    twice = left
                if twice is not None or self.is_large(right.shape[1]):
                    raise ReductionError(
                        f"term {chain_str(chain)}: {_leaf_name(twice or right)} carries a large "
                        "dimension on both sides, so it does not reduce to pairwise contractions")
                out.append(self.pair(left, right))
                i += 2
            else:
                out.append(chain[i])
                i += 1
        return tuple(out)

    def trace_chain(self, chain: Chain) -> Chain:
        """Rotate a trace's chain to start after a small dimension, then contract it."""
        start = next((i for i, leaf in enumerate(chain) if not self.is_large(leaf.shape[0])),
                     None)
        if start is None:
            raise ReductionError(f"term tr({chain_str(chain)}): every dimension of the trace is "
                                 "large, so it does not reduce to pairwise contractions")
        return self.chain(chain[start:] + chain[:start])

    def __call__(self, expr: sp.Basic) -> sp.Basic:
        """The reduced form of a matrix or scalar expression (expanded, equal terms merged)."""
        return normalize(expr, self)


class TorchChainPrinter(MultiDotPrinter):
    """PyTorch source for tensors batched over a leading seed axis.

    A matrix is a tensor (S, rows, cols), a scalar one of shape (S, 1, 1) (so products of
    scalars and matrices broadcast per seed). Chains print as ``_chain(a, b, ...)`` (the
    runtime picks the cheapest multiplication order from the shapes, as ``multi_dot`` does),
    ``Xᵀ`` as ``X.mT``, ``tr(a b ⋯ z)`` as ``_trace(a, b, ..., z)`` (Σ of (a b ⋯)⊙zᵀ, no
    square product formed), elementary functions as ``torch.exp`` etc. The helpers ``_chain``,
    ``_trace`` and ``_entry_sum`` (Σ of the entries of each seed's matrix, shape (S, 1, 1))
    are supplied by the runtime (:mod:`validation.programs`).
    """

    _module = "torch"  # NumPyPrinter: printmethod "_torchcode", module prefix

    def _module_format(self, fqn: str, register: bool = True) -> str:
        if fqn.startswith("numpy."):
            fqn = "torch." + fqn.removeprefix("numpy.")
        return super()._module_format(fqn, register)

    transpose = ".mT"

    def _chain(self, mats: list[str]) -> str:
        return f"_chain({', '.join(mats)})"

    def _print_Trace(self, expr: Trace) -> str:
        arg = expr.arg
        if isinstance(arg, MatMul) and all(a.is_Matrix for a in arg.args):
            return f"_trace({', '.join(self._print(a) for a in arg.args)})"
        return f"_trace({self._print(arg)})"
