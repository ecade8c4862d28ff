"""Depth-D chain: fit C = A Bᵀ (rank r) with X M₁⋯M_{D−2} Yᵀ (X, Y n x k, M_i k x k).

L = ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² + ½λ(‖X‖² + Σ‖M_i‖² + ‖Y‖²); the spec key ``M0`` stacks the
middle factors' initial values, shape (D−2, k, k) (D = 2, an empty stack, is the
factorization's loss). A family: the member of depth D is read off ``M0`` (``spec.depth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from ..registry import Entry, Option, register
from .factorization import PAIR_DIMS, PAIR_OPTIONS, rate_scale, zero_loss

__all__ = ["ENTRY", "build", "chain", "sample"]

DESCRIPTION = "depth-D chain ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² (M0 stacked (D−2) x k x k)"


@cache
def chain(depth: int) -> Any:
    """The depth-D chain ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² (D = 2 is the factorization's loss)."""
    from ..errors import ModelError

    if isinstance(depth, bool) or int(depth) != depth or depth < 2:
        raise ModelError(f"chain depth must be an integer >= 2, got {depth!r}")
    from sympy import MatrixSymbol

    from ..model import Model
    from ._terms import k, n, r, sq

    depth = int(depth)
    a, b = MatrixSymbol("A", n, r), MatrixSymbol("B", n, r)
    x, y = MatrixSymbol("X", n, k), MatrixSymbol("Y", n, k)
    middle = [MatrixSymbol(f"M{i}", k, k) for i in range(1, depth - 1)]
    product = x
    for m in middle:
        product = product * m
    return Model(
        "chain", sq(a * b.T - product * y.T), [x, *middle, y], [a, b], [n],
        keys={m.name: ("M0", i) for i, m in enumerate(middle)},
        targets={"X": "A", "Y": "B"},
        latex={m.name: f"M_{{{i}}}" for i, m in enumerate(middle, 1)},
        description=f"depth-{depth} chain ½‖A Bᵀ − X M₁⋯M_{{D−2}} Yᵀ‖²",
    )


def _select(spec: Mapping[str, object]) -> Any:
    import numpy as np

    from ..errors import ModelError

    m0 = spec.get("M0")
    if m0 is None:
        return chain(int(spec.get("depth") or 3))  # type: ignore[call-overload]
    m0 = np.asarray(m0)
    if m0.ndim != 3:
        raise ModelError(f"M0: expected a (D-2) x k x k array, got shape {m0.shape}")
    return chain(m0.shape[0] + 2)


def build() -> Any:
    """The family of chains (depth from ``M0``)."""
    from ..model import Family

    return Family("chain", _select, (("depth 3", {"depth": 3}),), DESCRIPTION)


def sample(n: int, rank: int = 1, model_rank: int | None = None, depth: int = 3,
           init: float = 1e-2, singular_values: list[float] | None = None, scale: float = 1.0,
           weight_decay: float = 0.0, seed: int = 0) -> Any:
    """Sample a spec from ``seed``: the target as the factorization's sampler; X0, Y0 (n x k)
    and each M_i (k x k) i.i.d. N(0, init²), drawn in this order."""
    from ..problems import Spec, check_int, sample_pair

    depth = check_int("depth", depth, low=2)
    rng, pair = sample_pair(n, rank, model_rank, init, singular_values, scale, seed)
    k = pair["X0"].shape[1]
    m0 = rng.standard_normal((depth - 2, k, k)) * float(init)
    return Spec("chain", {**pair, "M0": m0}, weight_decay=weight_decay, checked=True)


def _normalize(data: dict) -> dict:
    """An empty ``M0`` (depth 2) as a (0, k, k) stack."""
    import numpy as np

    m0 = data.get("M0")
    if m0 is not None and np.size(m0) == 0 and "X0" in data:
        k = np.shape(data["X0"])[-1]
        data = {**data, "M0": np.zeros((0, k, k))}
    return data


def crossing_time(spec: Any, f: float) -> float:
    """The closed-form t_f (:func:`dynamics.theory.chain_crossing_time`), read by
    ``theory.crossing_time``."""
    from ..theory import chain_crossing_time

    return chain_crossing_time(spec, f)


ENTRY = register(Entry(
    "chain", build, sample,
    options=(*PAIR_OPTIONS,
             Option("depth", "posint", 3,
                    "chain depth D >= 2 (default 3): X M_1 ... M_{D-2} Y^T")),
    hooks={"grouped": False, "rate_scale": rate_scale, "closed_form": True,
           "crossing_time": crossing_time, "dims": PAIR_DIMS,
           "zero_loss": zero_loss,
           "normalize": _normalize, "selects": ("M0",),
           "attributes": {"depth": lambda spec: spec.M0.shape[0] + 2,
                          "target": lambda spec: spec.A @ spec.B.T},
           "describe": lambda spec: (f"chain D={spec.depth} n={spec.n} r={spec.r} k={spec.k} "
                                     f"λ={spec.weight_decay:g}")},
    description=DESCRIPTION,
))
