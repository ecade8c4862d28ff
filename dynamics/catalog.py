"""The built-in models under their former names (each is defined in its module of
:mod:`dynamics.models`: vector, factorization, attention, chain, modes, icl).

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
"""

from __future__ import annotations

from .model import entry
from .models import chain as _chain
from .models import factorization as _factorization

__all__ = ["ATTENTION", "BUILTINS", "FACTORIZATION", "FACTORIZATION_CE", "MODES", "VECTOR",
           "chain"]

VECTOR = entry("vector")
FACTORIZATION = _factorization.mse()
FACTORIZATION_CE = _factorization.cross_entropy()
ATTENTION = entry("attention")
MODES = entry("modes")
chain = _chain.chain

BUILTINS = ("vector", "factorization", "attention", "modes", "chain", "icl")
