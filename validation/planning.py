"""Planning: which binary products compute a program's matrix chains and traces.

The first half of compiling a :class:`validation.programs.Graph` (the second, the emission of
the step's source, is :class:`validation.programs.Plan`). Every matrix chain of the program is
split into binary products by the ``numpy.linalg.multi_dot`` dynamic programme, where a
product that another chain already needs (or its transpose) or one of constants only costs
nothing, so chains share their products; a trace tr(f₁ ⋯ f_m) is taken at its cheapest
rotation and split, Σ(W₁ ⊙ W₂ᵀ). Cost: multiply-adds per seed (an elementwise product counts
¼). Pure bookkeeping on graph nodes (``id``, ``shape``, ``const``): no tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["Factor", "Products", "Word", "flip", "flip_factors", "shape", "word"]

Factor = tuple[Any, bool]  # (graph node, transposed)
Word = tuple[tuple[int, bool], ...]  # a product of factors (node id, transposed)


def flip(key: Word) -> Word:
    """The word of the transposed product: (a b)ᵀ = bᵀ aᵀ."""
    return tuple((i, not t) for i, t in reversed(key))


def flip_factors(factors: Sequence[Factor]) -> list[Factor]:
    """The factors of the transposed product."""
    return [(f, not t) for f, t in reversed(factors)]


def shape(f: Factor) -> tuple[int, int]:
    """(rows, cols) of a factor (transposed where it says so)."""
    node, t = f
    return node.shape[::-1] if t else node.shape


def word(factors: Sequence[Factor]) -> Word:
    """The key of a product: its factors' (node id, transposed)."""
    return tuple((f.id, t) for f, t in factors)


class Products:
    """The chosen products: ``plans[word] = (factors, top split)`` for every binary product the
    step computes, ``traces[node id] = (rotation, split)`` (None: a single factor)."""

    def __init__(self) -> None:
        self.plans: dict[Word, tuple[tuple, int]] = {}
        self.traces: dict[int, tuple[int, int] | None] = {}

    def snapshot(self) -> tuple[dict[Word, int], dict[int, tuple[int, int] | None]]:
        """The choices as plain data (node ids): ({word: top split}, traces)."""
        return {k: s for k, (_, s) in self.plans.items()}, dict(self.traces)

    def load(self, snapshot: tuple[dict[Word, int], dict], nodes: Sequence[Any]) -> None:
        """Take the choices of :meth:`snapshot` for a graph of the same structure (``nodes``
        by id)."""
        plans, traces = snapshot
        self.plans.update({k: (tuple((nodes[i], t) for i, t in k), s) for k, s in plans.items()})
        self.traces.update(traces)

    def best(self, factors: Sequence[Factor]) -> tuple[dict, float]:
        """The multi_dot programme over ``factors`` where planned products cost nothing:
        ({(i, j): split or None (free)}, multiply-adds)."""
        m = len(factors)
        dims = [shape(factors[0])[0]] + [shape(f)[1] for f in factors]
        key, const = word(factors), [f.const for f, _ in factors]
        flipped = flip(key)  # flip(key[i:j + 1]) = flipped[m − 1 − j : m − i]
        cost: dict[tuple[int, int], float] = {}
        split: dict[tuple[int, int], int | None] = {}
        for length in range(1, m + 1):
            for i in range(m - length + 1):
                j = i + length - 1
                if length == 1 or key[i:j + 1] in self.plans \
                        or flipped[m - 1 - j:m - i] in self.plans or all(const[i:j + 1]):
                    cost[i, j], split[i, j] = 0, None
                    continue
                best, where = math.inf, None
                for s in range(i, j):
                    c = cost[i, s] + cost[s + 1, j] + dims[i] * dims[s + 1] * dims[j + 1]
                    if c < best:
                        best, where = c, s
                cost[i, j], split[i, j] = best, where
        return split, cost[0, m - 1]

    def plan(self, factors: Sequence[Factor]) -> None:
        """Choose the products of ``factors`` (those not free yet) and record each one's top
        split, so that every later chain may reuse them."""
        split, _ = self.best(factors)

        def mark(i: int, j: int) -> None:
            s = split[i, j]
            if s is None:
                return
            self.plans.setdefault(word(factors[i:j + 1]),
                                   (tuple(factors[i:j + 1]), s - i))
            mark(i, s)
            mark(s + 1, j)

        mark(0, len(factors) - 1)

    def plan_trace(self, factors: Sequence[Factor]) -> tuple[int, int] | None:
        """tr(f₁ ⋯ f_m) = Σ(W₁ ⊙ W₂ᵀ) at the cheapest rotation and split: (rotation, split)."""
        m = len(factors)
        if m == 1:
            return None
        best = None
        for rot in range(m):
            fs = list(factors[rot:]) + list(factors[:rot])
            for s in range(1, m):
                c1 = self.best(fs[:s])[1] if s > 1 else 0
                c2 = self.best(fs[s:])[1] if m - s > 1 else 0
                rows, cols = shape(fs[0])[0], shape(fs[s - 1])[1]
                c = c1 + c2 + rows * cols / 4  # an elementwise product is cheaper than a MAC
                if best is None or c < best[0]:
                    best = (c, rot, s)
        _, rot, s = best
        fs = list(factors[rot:]) + list(factors[:rot])
        self.plan(fs[:s])
        self.plan([(f, not t) for f, t in reversed(fs[s:])])  # W₂ᵀ is what the product reads
        return rot, s

    def split(self, factors: Sequence[Factor]
                       ) -> tuple[list[Factor], list[Factor]]:
        """The planned top split of the product ``factors``: (left factors, right factors)."""
        key = word(factors)
        if key not in self.plans and flip(key) not in self.plans:
            self.plan(factors)
        if key in self.plans:
            fs, s = self.plans[key]
            return list(fs[:s + 1]), list(fs[s + 1:])
        fs, s = self.plans[flip(key)]  # (a b)ᵀ = bᵀ aᵀ
        return flip_factors(fs[s + 1:]), flip_factors(fs[:s + 1])
