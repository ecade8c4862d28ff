"""Two-layer linear network trained on raw data matrices (README "Your own model").

    L = ½‖Y_d − W₂ W₁ X_d‖²      (½ × sum of squares over the N samples)

W₁ (h × d_in) and W₂ (d_out × h) are learned; the data X_d (d_in × N, one sample per column)
and Y_d (d_out × N) are constants. Inputs need not be whitened and d_in ≠ d_out is fine. The
sample count N is the large dimension: the loss and its gradient depend on the data only
through X_d X_dᵀ (d_in × d_in), X_d Y_dᵀ (d_in × d_out) and, in the loss, Y_d Y_dᵀ (its trace
is ‖Y_d‖²), so the reduced dynamics keep W₁, W₂ themselves as the state (h·d_in + d_out·h
numbers) and its size does not grow with N.

    scurve sample --model examples/two_layer.py --dims d_in=6,d_out=4,h=3,N=500 -o spec.npz
    scurve predict spec.npz --model examples/two_layer.py

Spec keys: ``Xd``, ``Yd`` (the data), ``W10``, ``W20`` (initial weights).
"""

import sympy as sp

from dynamics.model import Model

d_in, d_out, h, N = sp.symbols("d_in d_out h N", integer=True, positive=True)
Xd = sp.MatrixSymbol("Xd", d_in, N)  # inputs, one sample per column
Yd = sp.MatrixSymbol("Yd", d_out, N)  # outputs
W1 = sp.MatrixSymbol("W1", h, d_in)
W2 = sp.MatrixSymbol("W2", d_out, h)

E = Yd - W2 * W1 * Xd
MODEL = Model(
    "two_layer",
    loss=sp.Trace(E.T * E) / 2,
    learned=[W1, W2],
    constants=[Xd, Yd],
    large=[N],
    latex={"Xd": "X_d", "Yd": "Y_d", "W1": "W_1", "W2": "W_2"},
    description="½‖Y_d − W₂W₁X_d‖²: two-layer linear network on raw data (N samples)",
)
