"""The built-in models, each a :class:`dynamics.model.Model` written once.

Conventions and the model mechanism: README "Conventions" and "Your own model".

=================  ==========================================  ===============================
kind               loss (½ × sum of squares; + ½λ Σ‖W‖²)         learned <- constants (spec keys)
=================  ==========================================  ===============================
``vector``         ½‖a − x‖²                                    x (``x0``) <- a
``factorization``  ½‖A Bᵀ − X Yᵀ‖², or KL(softmax ABᵀ ‖ XYᵀ)    X, Y (``X0``, ``Y0``) <- A, B
``attention``      ½‖M⊗N − M̃⊗Ñ‖² = ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩   Q, K, O, V (``Q0``…) <- Q⋆, K⋆,
                   + ‖M̃‖²‖Ñ‖²], M = Q⋆K⋆ᵀ, M̃ = QKᵀ, …          O⋆, V⋆ (keys ``Q``, ``K``, …)
``chain``          ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖²                   X, Y, M_i (``X0``, ``Y0``, ``M0``
                                                                 stacked (D−2)×k×k) <- A, B
``modes``          ½tr(R D Rᵀ), R = XYᵀB − AS: capability g's   X, Y (``X0``, ``Y0``) <- A, B;
                   loss ℓ_g = ½‖XYᵀb_g − s_g a_g‖² weighted by   S, D diagonal G×G (grouped:
                   D_gg (the mean loss: D = diag(p̂))             ``group_weights`` D)
=================  ==========================================  ===============================

Dimensions: n (large) rows of every target and learned factor, r the target rank, k the model
rank, G the number of capability groups (modes). The factorization's cross-entropy loss and
the chain's depth are members of a :class:`dynamics.model.Family` chosen from the spec (its
``loss``; the length of ``M0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import numpy as np
import sympy as sp
from sympy.matrices.expressions import MatrixSymbol, Trace

from .model import Family, Model, ModelError, register

__all__ = ["ATTENTION", "BUILTINS", "FACTORIZATION", "FACTORIZATION_CE", "MODES", "VECTOR",
           "chain"]

n, r, k, G = sp.symbols("n r k G", integer=True, positive=True)


def _sq(e: sp.MatrixExpr) -> sp.Expr:
    """½‖e‖² = ½ tr(eᵀe)."""
    return Trace(e.T * e) / 2


def _inner(a: sp.MatrixExpr, b: sp.MatrixExpr) -> sp.Expr:
    """Frobenius inner product ⟨a, b⟩ = tr(aᵀb)."""
    return Trace(a.T * b)


_a, _x = MatrixSymbol("a", n, 1), MatrixSymbol("x", n, 1)
VECTOR = Model("vector", _sq(_a - _x), [_x], [_a], [n], targets={"x": "a"},
               description="½‖a − x‖²: pure exponential decay (n x 1 target a)")

_A, _B = MatrixSymbol("A", n, r), MatrixSymbol("B", n, r)
_X, _Y = MatrixSymbol("X", n, k), MatrixSymbol("Y", n, k)
FACTORIZATION = Model("factorization", _sq(_A * _B.T - _X * _Y.T), [_X, _Y], [_A, _B], [n],
                      targets={"X": "A", "Y": "B"},
                      description="½‖A Bᵀ − X Yᵀ‖² (targets A, B n x r; learned X, Y n x k)")
FACTORIZATION_CE = Model("factorization", None, [_X, _Y], [_A, _B], [n],
                         targets={"X": "A", "Y": "B"}, logits=(_X * _Y.T, _A * _B.T),
                         description="KL(softmax(vec ABᵀ) ‖ softmax(vec XYᵀ))")

_NAMES = ("Q", "K", "O", "V")
_T = {f: MatrixSymbol(f"{f}s", n, r) for f in _NAMES}
_W = {f: MatrixSymbol(f, n, k) for f in _NAMES}
_M, _N = _T["Q"] * _T["K"].T, _T["O"] * _T["V"].T
_Mt, _Nt = _W["Q"] * _W["K"].T, _W["O"] * _W["V"].T
ATTENTION = Model(
    "attention",
    (_inner(_M, _M) * _inner(_N, _N) - 2 * _inner(_M, _Mt) * _inner(_N, _Nt)
     + _inner(_Mt, _Mt) * _inner(_Nt, _Nt)) / 2,
    list(_W.values()), list(_T.values()), [n],
    keys={f"{f}s": f for f in _NAMES},
    targets={f: f"{f}s" for f in _NAMES},
    latex={f"{f}s": rf"{f}^{{\star}}" for f in _NAMES},
    description="½‖(Q⋆K⋆ᵀ)⊗(O⋆V⋆ᵀ) − (QKᵀ)⊗(OVᵀ)‖² (linear attention head, d x h factors)",
)


_Am, _Bm = MatrixSymbol("A", n, G), MatrixSymbol("B", n, G)
_S, _D = MatrixSymbol("S", G, G), MatrixSymbol("D", G, G)
_R = _X * _Y.T * _Bm - _Am * _S
MODES = Model(
    "modes", Trace(_R * _D * _R.T) / 2, [_X, _Y], [_Am, _Bm, _S, _D], [n],
    targets={"X": "A", "Y": "B"}, group_weights=_D,
    description="capability modes: ½tr(R D Rᵀ), R = XYᵀB − AS (A, B n x G orthonormal; S, D "
                "diagonal G x G: scales s_g, group weights)",
)
"""A deep linear network y = XYᵀx fitting y = Cx, C = A S Bᵀ = Σ_g s_g a_g b_gᵀ, on examples
x = b_g (capability g) with frequencies p̂_g = D_gg: the mean loss Σ_g p̂_g ℓ_g with
ℓ_g = ½‖XYᵀb_g − s_g a_g‖² = (∂L/∂D)_gg. X is the second layer W₂, Y the first layer's
transpose W₁ᵀ."""


@cache
def chain(depth: int) -> Model:
    """The depth-D chain ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² (D = 2 is the factorization's loss)."""
    if isinstance(depth, bool) or int(depth) != depth or depth < 2:
        raise ModelError(f"chain depth must be an integer >= 2, got {depth!r}")
    depth = int(depth)
    middle = [MatrixSymbol(f"M{i}", k, k) for i in range(1, depth - 1)]
    product = _X
    for m in middle:
        product = product * m
    return Model(
        "chain", _sq(_A * _B.T - product * _Y.T), [_X, *middle, _Y], [_A, _B], [n],
        keys={m.name: ("M0", i) for i, m in enumerate(middle)},
        targets={"X": "A", "Y": "B"},
        latex={m.name: f"M_{{{i}}}" for i, m in enumerate(middle, 1)},
        description=f"depth-{depth} chain ½‖A Bᵀ − X M₁⋯M_{{D−2}} Yᵀ‖²",
    )


def _select_factorization(spec: Mapping[str, object]) -> Model:
    loss = str(spec.get("loss", "mse"))
    if loss not in ("mse", "ce"):
        raise ModelError(f"loss: unknown loss {loss!r} (expected 'mse' or 'ce')")
    return FACTORIZATION_CE if loss == "ce" else FACTORIZATION


def _select_chain(spec: Mapping[str, object]) -> Model:
    m0 = spec.get("M0")
    if m0 is None:
        return chain(int(spec.get("depth") or 3))  # type: ignore[call-overload]
    m0 = np.asarray(m0)
    if m0.ndim != 3:
        raise ModelError(f"M0: expected a (D-2) x k x k array, got shape {m0.shape}")
    return chain(m0.shape[0] + 2)


register(VECTOR)
register(Family("factorization", _select_factorization,
                (("mean squared error", {"loss": "mse"}), ("KL of softmaxes", {"loss": "ce"})),
                FACTORIZATION.description))
register(ATTENTION)
register(MODES)
register(Family("chain", _select_chain, (("depth 3", {"depth": 3}),),
                "depth-D chain ½‖A Bᵀ − X M₁⋯M_{D−2} Yᵀ‖² (M0 stacked (D−2) x k x k)"))

from .models import icl as _icl  # noqa: E402,F401  (registers "icl")

BUILTINS = ("vector", "factorization", "attention", "modes", "chain", "icl")  # registered above
