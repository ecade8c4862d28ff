"""Matrix factorization with an extra regulariser written into the loss (README "Your own model").

    L = ½‖A Bᵀ − X Yᵀ‖² + (β/2) tr(XᵀX YᵀY),   β = 1/10

The extra term (β/2)‖X Yᵀ‖² shrinks the learned product towards 0 (weight decay on the product
rather than on the factors; the spec's ``weight_decay`` still adds ½λ(‖X‖² + ‖Y‖²) on top).
Any number works for β (scalars in a loss must be numbers; put a parameter you want to vary in
a 1 × 1 constant instead). It closes in the same order parameters as the factorization.

    scurve sample --model examples/regularised.py --dims n=50,r=2,k=2 --init 0.01 -o spec.npz
    scurve predict spec.npz --model examples/regularised.py

Spec keys: ``A``, ``B`` (target factors), ``X0``, ``Y0`` (initial values).
"""

import sympy as sp

from dynamics.model import Model

BETA = sp.Rational(1, 10)

n, r, k = sp.symbols("n r k", integer=True, positive=True)
A, B = sp.MatrixSymbol("A", n, r), sp.MatrixSymbol("B", n, r)
X, Y = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("Y", n, k)

E = A * B.T - X * Y.T
MODEL = Model(
    "regularised",
    loss=sp.Trace(E.T * E) / 2 + BETA / 2 * sp.Trace(X.T * X * Y.T * Y),
    learned=[X, Y],
    constants=[A, B],
    large=[n],
    targets={"X": "A", "Y": "B"},
    description="½‖A Bᵀ − X Yᵀ‖² + (β/2)‖X Yᵀ‖², β = 1/10",
)
