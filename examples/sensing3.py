"""Matrix sensing at depth 3: L = ½ Σ_n (⟨X_n, W₀W₁W₂⟩ − y_n)² (as examples/sensing.py).

    scurve sample --model examples/sensing3.py --dims d=10,h=10,N=60 --init 0.1 -o spec.npz
    scurve predict spec.npz --model examples/sensing3.py
"""

import sympy as sp

from dynamics.model import Model

d, h, N = sp.symbols("d h N", integer=True, positive=True)
X, y = sp.MatrixSymbol("X", d, d), sp.MatrixSymbol("y", 1, 1)
W0, W1, W2 = (sp.MatrixSymbol("W0", d, h), sp.MatrixSymbol("W1", h, h),
              sp.MatrixSymbol("W2", h, d))
MODEL = Model("sensing3", loss=None, learned=[W0, W1, W2], constants=[X, y], large=[N],
              residual=sp.Trace(X.T * W0 * W1 * W2) - sp.Trace(y), per_sample=[X, y], samples=N,
              description="½Σ_n(⟨X_n, W₀W₁W₂⟩ − y_n)²: depth-3 matrix sensing (N samples)")
