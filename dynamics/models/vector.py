"""The vector baseline (no product): L = ½‖a − x‖² (+ ½λ‖x‖²), pure exponential decay.

Spec keys: target ``a`` and initial value ``x0``, both stored as n x 1 columns (the scalar
problem is n = 1). The flow dx/dt = a − x − λx has rate 1 + λ (in 1/t).
"""

from __future__ import annotations

from typing import Any

from ..registry import Entry, Option, register

__all__ = ["ENTRY", "build", "sample"]


def build() -> Any:
    """The :class:`dynamics.model.Model` ½‖a − x‖² (a, x: n x 1)."""
    from sympy import MatrixSymbol

    from ._terms import n, sq

    a, x = MatrixSymbol("a", n, 1), MatrixSymbol("x", n, 1)
    from ..model import Model

    return Model("vector", sq(a - x), [x], [a], [n], targets={"x": "a"},
                 description="½‖a − x‖²: pure exponential decay (n x 1 target a)")


def sample(n: int, init: float = 1e-3, scale: float = 1.0, weight_decay: float = 0.0,
           seed: int = 0) -> Any:
    """Target a ~ N(0, scale²/n) per entry (‖a‖ ≈ scale); init x0 ~ N(0, init²) (n x 1)."""
    import numpy as np

    from ..problems import Spec, check_int, check_nonneg, check_positive

    n = check_int("n", n)
    check_positive("scale", scale)
    init = check_nonneg("init", init)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 1)) * scale / np.sqrt(n)
    return Spec("vector", {"a": a, "x0": rng.standard_normal((n, 1)) * init},
                weight_decay=weight_decay, checked=True)


def _normalize(data: dict) -> dict:
    """``a`` and ``x0`` as n x 1 columns (a flat vector is accepted)."""
    import numpy as np

    return {k: (np.reshape(v, (-1, 1)) if k in ("a", "x0") and np.ndim(v) == 1 else v)
            for k, v in data.items()}


def crossing_time(spec: Any, f: float) -> float:
    """The closed-form t_f (:func:`dynamics.theory.vector_crossing_time`), read by
    ``theory.crossing_time``."""
    from ..theory import vector_crossing_time

    return vector_crossing_time(spec, f)


ENTRY = register(Entry(
    "vector", build, sample,
    options=(
        Option("n", "posint", None, "dimension n", required=True),
        Option("init", "nonneg", 1e-3, "init std σ per coordinate (default 1e-3)"),
        Option("scale", "posfloat", 1.0, "target norm ‖a‖ ≈ scale (default 1)"),
        Option("weight_decay", "nonneg", 0.0, "λ (default 0)"),
    ),
    hooks={"grouped": False, "rate_scale": lambda spec: (1.0, 1.0), "closed_form": True,
           "crossing_time": crossing_time,
           "normalize": _normalize, "dims": {"n": ("a", 0)},
           "zero_loss": lambda spec: 0.5 * float((spec.a**2).sum()),
           "describe": lambda spec: f"vector n={spec.n} λ={spec.weight_decay:g}"},
    description="½‖a − x‖²: pure exponential decay (n x 1 target a)",
))
