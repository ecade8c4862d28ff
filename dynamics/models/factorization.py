"""Matrix factorization: fit C = A Bᵀ (n x n, rank r) with Z = X Yᵀ (rank k).

L = ½‖A Bᵀ − X Yᵀ‖² + ½λ(‖X‖² + ‖Y‖²) (``loss = "mse"``), or
L = KL(softmax(vec C) ‖ softmax(vec Z)) + the same decay (``loss = "ce"``): a family of two
members picked by the spec's ``loss`` entry. Spec keys ``A``, ``B`` (n x r), ``X0``, ``Y0``
(n x k). Rate scale: the (largest, smallest nonzero) singular value of C, in 1/t.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from ..registry import Entry, Option, register

__all__ = ["ENTRY", "LOSSES", "build", "cross_entropy", "mse", "sample"]

LOSSES = ("mse", "ce")
DESCRIPTION = "½‖A Bᵀ − X Yᵀ‖² (targets A, B n x r; learned X, Y n x k)"


@cache
def _symbols() -> tuple:
    from sympy import MatrixSymbol

    from ._terms import k, n, r

    return (MatrixSymbol("A", n, r), MatrixSymbol("B", n, r), MatrixSymbol("X", n, k),
            MatrixSymbol("Y", n, k))


@cache
def mse() -> Any:
    """The model ½‖A Bᵀ − X Yᵀ‖²."""
    from ..model import Model
    from ._terms import n, sq

    a, b, x, y = _symbols()
    return Model("factorization", sq(a * b.T - x * y.T), [x, y], [a, b], [n],
                 targets={"X": "A", "Y": "B"}, description=DESCRIPTION)


@cache
def cross_entropy() -> Any:
    """The model KL(softmax(vec ABᵀ) ‖ softmax(vec XYᵀ))."""
    from ..model import Model
    from ._terms import n

    a, b, x, y = _symbols()
    return Model("factorization", None, [x, y], [a, b], [n], targets={"X": "A", "Y": "B"},
                 logits=(x * y.T, a * b.T),
                 description="KL(softmax(vec ABᵀ) ‖ softmax(vec XYᵀ))")


def _select(spec: Mapping[str, object]) -> Any:
    from ..errors import ModelError

    loss = str(spec.get("loss") or "mse")
    if loss not in LOSSES:
        raise ModelError(f"loss: unknown loss {loss!r} (expected 'mse' or 'ce')")
    return cross_entropy() if loss == "ce" else mse()


def build() -> Any:
    """The family: ``loss`` mse (default) or ce."""
    from ..model import Family

    return Family("factorization", _select,
                  (("mean squared error", {"loss": "mse"}), ("KL of softmaxes", {"loss": "ce"})),
                  DESCRIPTION)


def sample(n: int, rank: int = 1, model_rank: int | None = None, init: float = 1e-3,
           singular_values: list[float] | None = None, scale: float = 1.0,
           weight_decay: float = 0.0, loss: str = "mse", seed: int = 0) -> Any:
    """Sample a spec from ``seed``.

    Target: with ``singular_values`` (r values), C = U diag(s) Vᵀ with random orthonormal
    U, V and balanced factors A = U diag(√s), B = V diag(√s); otherwise A, B have i.i.d.
    N(0, scale/n) entries (singular values ≈ scale). Init: X0, Y0 i.i.d. N(0, init²),
    n x model_rank (default model_rank = rank).
    """
    from ..problems import Spec, sample_pair

    _, pair = sample_pair(n, rank, model_rank, init, singular_values, scale, seed)
    return Spec("factorization", pair, weight_decay=weight_decay, options={"loss": loss},
                checked=True)


def rate_scale(spec: Any) -> tuple[float, float]:
    """(largest, smallest nonzero) singular value of the target C = A Bᵀ."""
    from ..problems import product_singular_values, scale_of

    return scale_of(product_singular_values(spec.A, spec.B))


def zero_loss(spec: Any) -> float | None:
    """½‖A Bᵀ‖² = ½ tr(AᵀA BᵀB) (squared loss; None for cross-entropy: derived)."""
    if spec.options.get("loss", "mse") != "mse":
        return None
    return 0.5 * float(((spec.A.T @ spec.A) * (spec.B.T @ spec.B)).sum())


def _describe(spec: Any) -> str:
    return (f"factorization n={spec.n} r={spec.r} k={spec.k} loss={spec.loss} "
            f"λ={spec.weight_decay:g}")


def _check_loss(options: Mapping[str, object]) -> None:
    from ..errors import SpecError

    if options.get("loss") not in LOSSES:
        raise SpecError(f"loss: unknown loss {options.get('loss')!r} (expected one of {LOSSES})")


#: the sampler's options shared by the models that fit C = A Bᵀ (factorization, chain)
PAIR_OPTIONS = (
    Option("n", "posint", None, "dimension n (d for the attention head)", required=True),
    Option("rank", "posint", 1, "target rank r (head dim h)"),
    Option("model_rank", "posint", None, "model rank k (head dim h'); default: the target rank"),
    Option("init", "nonneg", 1e-3, "init std σ per coordinate (default 1e-3)"),
    Option("singular_values", "floats", None,
           "comma-separated target singular values (default: random Gaussian)"),
    Option("scale", "posfloat", 1.0,
           "typical target singular value for random targets (default 1)"),
    Option("weight_decay", "nonneg", 0.0, "λ (default 0)"),
)

#: dimension sizes from the spec keys (key, axis) of the models fitting A Bᵀ
PAIR_DIMS = {"n": ("A", 0), "r": ("A", 1), "k": ("X0", 1)}


def mode_strengths(spec: Any) -> Any:
    """s_j = ‖a_j‖‖b_j‖ of the target's columns, the strengths the mechanistic phases of a
    squared-loss run without weight decay are read against; None otherwise."""
    import numpy as np

    if spec.loss != "mse" or spec.weight_decay:
        return None
    return np.linalg.norm(spec.A, axis=0) * np.linalg.norm(spec.B, axis=0)


def _crossing_time(spec: Any, f: float) -> float:
    """The closed-form t_f of :func:`dynamics.theory.factorization_crossing_time` (imported
    on use)."""
    from ..theory import factorization_crossing_time

    return factorization_crossing_time(spec, f)


ENTRY = register(Entry(
    "factorization", build, sample,
    options=(*PAIR_OPTIONS,
             Option("loss", "str", "mse", "factorization loss (default mse)", choices=LOSSES)),
    hooks={"grouped": False, "rate_scale": rate_scale, "closed_form": _crossing_time,
           "mode_strengths": mode_strengths, "describe": _describe,
           "defaults": {"loss": "mse"}, "check": _check_loss, "dims": PAIR_DIMS,
           "zero_loss": zero_loss,
           "attributes": {"target": lambda spec: spec.A @ spec.B.T}},
    description=DESCRIPTION,
))
