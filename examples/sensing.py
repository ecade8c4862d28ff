"""Matrix sensing (depth 2): y_n = ⟨X_n, W₀W₁⟩, L = ½ Σ_n (⟨X_n, W₀W₁⟩ − y_n)².

X (N × d × d, one sensing matrix per sample) and y (N × 1 × 1) are per-sample constants; the
loss reaches them through S = Σ_n z_n z_nᵀ, z_n = [vec X_n, y_n], so the state is W₀, W₁ at any
N (README "Your own model", "Per-sample forms"). ``scurve sample`` draws random labels; put
your own (e.g. y_n = ⟨X_n, M⋆⟩) in the spec.

    scurve sample --model examples/sensing.py --dims d=10,h=10,N=60 -o spec.npz
"""

import sympy as sp

from dynamics.model import Model

d, h, N = sp.symbols("d h N", integer=True, positive=True)
X, y = sp.MatrixSymbol("X", d, d), sp.MatrixSymbol("y", 1, 1)
W0, W1 = sp.MatrixSymbol("W0", d, h), sp.MatrixSymbol("W1", h, d)
MODEL = Model("sensing", loss=None, learned=[W0, W1], constants=[X, y], large=[N],
              residual=sp.Trace(X.T * W0 * W1) - sp.Trace(y), per_sample=[X, y], samples=N,
              keys={"W0": "W00", "W1": "W10"},
              description="½Σ_n(⟨X_n, W₀W₁⟩ − y_n)²: depth-2 matrix sensing (N samples)")
