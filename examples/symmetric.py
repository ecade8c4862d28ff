"""Symmetric matrix factorization (README "Your own model").

    L = ½‖A Aᵀ − X Xᵀ‖²

X (n × k) is learned, A (n × r) the target factor; the target A Aᵀ is symmetric positive
semi-definite of rank r. It closes in the order parameters AᵀA, AᵀX and XᵀX (state size
r·k + k·k, whatever n).

    scurve sample --model examples/symmetric.py --dims n=50,r=2,k=2 --init 0.01 -o spec.npz
    scurve predict spec.npz --model examples/symmetric.py

Spec keys: ``A`` (target factor), ``X0`` (initial value).
"""

import sympy as sp

from dynamics.model import Model

n, r, k = sp.symbols("n r k", integer=True, positive=True)
A = sp.MatrixSymbol("A", n, r)
X = sp.MatrixSymbol("X", n, k)

E = A * A.T - X * X.T
MODEL = Model(
    "symmetric",
    loss=sp.Trace(E.T * E) / 2,
    learned=[X],
    constants=[A],
    large=[n],
    targets={"X": "A"},
    description="½‖A Aᵀ − X Xᵀ‖²: symmetric factorization",
)
