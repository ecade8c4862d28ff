"""Tests of validation.planning: the choice of binary products (costs counted by hand)."""

from __future__ import annotations

from types import SimpleNamespace

from validation.planning import Products, flip, word


def leaf(i: int, rows: int, cols: int, const: bool = False) -> SimpleNamespace:
    return SimpleNamespace(id=i, shape=(rows, cols), const=const)


def test_chain_cost_is_the_cheapest_order_and_planned_products_are_free():
    a, b, c = leaf(0, 100, 2), leaf(1, 2, 100), leaf(2, 100, 3)
    products = Products()
    split, cost = products.best([(a, False), (b, False), (c, False)])
    # (ab)c = 100·2·100 + 100·100·3 = 50 000; a(bc) = 2·100·3 + 100·2·3 = 1 200
    assert cost == 2 * 100 * 3 + 100 * 2 * 3 and split[0, 2] == 0
    products.plan([(a, False), (b, False), (c, False)])
    assert word([(b, False), (c, False)]) in products.plans
    # a chain that needs bc again (here transposed: cᵀbᵀ) pays only for the rest
    d = leaf(3, 3, 4)
    _, cost = products.best([(d, True), (c, True), (b, True)])
    assert cost == 4 * 3 * 2
    assert flip(word([(c, True), (b, True)])) == word([(b, False), (c, False)])


def test_trace_is_split_at_its_cheapest_rotation():
    x, y = leaf(0, 100, 5), leaf(1, 100, 5)
    products = Products()
    # tr(X Yᵀ) = Σ(X ⊙ Y): no product at all at split 1 (100·5/4) against a 100x100 product
    _, s = products.plan_trace([(x, False), (y, True)])
    assert s == 1 and not products.plans
    left, right = products.split([(x, True), (y, False)])
    assert left == [(x, True)] and right == [(y, False)]
