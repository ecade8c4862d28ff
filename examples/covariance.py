"""Linear regression with an n × n input covariance: a model that does *not* close.

    L = ½ tr((W − W⋆)ᵀ Σ (W − W⋆)),   Σ = C Cᵀ

W (n × k) is learned; W⋆ (n × k, the teacher) and C (n × n) are constants. Σ = C Cᵀ is the
input covariance, written through C so that it is symmetric and positive semi-definite for any
spec (``scurve sample`` draws C with i.i.d. N(0, 1/n²) entries, so Σ has eigenvalues of order
1/n and a slow tail; put your own C, e.g. a Cholesky factor of your Σ, in the spec for other
spectra). The gradient flow is linear,
dW/dt = −Σ (W − W⋆), with the exact solution W(t) = W⋆ + e^{−Σt}(W₀ − W⋆).

The large dimension n sits on *both* sides of C, so Wᵀ C Cᵀ W does not reduce to contractions
of pairs of n-row matrices: there are no order parameters. ``scurve predict`` says so in one
line (naming the term) and integrates the full flow of the n × k entries of W instead —
correct, just not dimension-free.

    scurve sample --model examples/covariance.py --dims n=20,k=2 -o spec.npz
    scurve predict spec.npz --model examples/covariance.py

Spec keys: ``C``, ``Wstar`` (constants), ``W0`` (initial weights).
"""

import sympy as sp

from dynamics.model import Model

n, k = sp.symbols("n k", integer=True, positive=True)
W = sp.MatrixSymbol("W", n, k)
Wstar = sp.MatrixSymbol("Wstar", n, k)
C = sp.MatrixSymbol("C", n, n)

D = C.T * (W - Wstar)  # ½‖Cᵀ(W − W⋆)‖² = ½ tr((W − W⋆)ᵀ C Cᵀ (W − W⋆))
MODEL = Model(
    "covariance",
    loss=sp.Trace(D.T * D) / 2,
    learned=[W],
    constants=[C, Wstar],
    large=[n],
    targets={"W": "Wstar"},
    latex={"Wstar": r"W^{\star}"},
    description="½ tr((W − W⋆)ᵀ C Cᵀ (W − W⋆)): regression with an n x n covariance (no closure)",
)
