"""Spec-key collisions are refused when the model is built (issue 23): learned ``W1`` has spec
key ``W10`` (its initial value), so a constant named ``W10`` would silently share it."""

from __future__ import annotations

import pytest
import sympy as sp

from dynamics.errors import ModelError
from dynamics.model import Model

n = sp.Symbol("n", integer=True, positive=True)


def _model(learned: str, constant: str, **kw) -> Model:
    w, c = sp.MatrixSymbol(learned, n, 1), sp.MatrixSymbol(constant, n, 1)
    e = c - w
    return Model("keys_test", loss=sp.Trace(e.T * e) / 2, learned=[w], constants=[c], large=[n],
                 **kw)


def test_learned_initial_key_collides_with_constant() -> None:
    with pytest.raises(ModelError) as info:
        _model("W1", "W10")
    message = str(info.value)
    assert "W1" in message and "W10" in message and "\n" not in message


def test_reserved_key_refused() -> None:
    with pytest.raises(ModelError, match="reserved"):
        _model("X", "kind")


def test_no_collision_accepted() -> None:
    assert _model("W1", "W2").spec_keys() == ["W2", "W10"]
    # an explicit key removes the collision
    assert _model("W1", "W10", keys={"W1": "W1_init"}).spec_keys() == ["W10", "W1_init"]
