"""The reduced flow of a quadrature-only activation (tanh: ε and its gradient by Price's
theorem and Gauss–Hermite, dynamics.models.committee) against the full-parameter population
gradient flow in J = W/√N (N = 50), its gradient by torch autograd of ε written here with an
independent 2-d Gauss–Hermite rule (Cholesky factor, 40 nodes a dimension, float64).
Slow (about a minute: autograd through 16 quadratures per step of DOP853).

Errors: both quadratures are ≲ 1e-9 at the variances met here (C_aa ≲ 1; measured against
160 nodes, dynamics/gaussian.py), the integrations run at rtol 1e-10; tolerance 1e-7 in ε.
"""

import numpy as np
import pytest
from committee_oracle import full_flow_losses

from dynamics.models import committee as cm


def _full_flow_losses(spec, times):
    torch = pytest.importorskip("torch")
    z, w = np.polynomial.hermite_e.hermegauss(40)
    zz = torch.tensor(np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2))
    ww = torch.tensor(np.outer(w, w).ravel() / (2 * np.pi))
    wt = torch.tensor(spec.Wt / np.sqrt(spec.N))
    a, v = torch.tensor(spec.a), torch.tensor(spec.v0)

    def i2(caa, cab, cbb):  # E[tanh(λ_a) tanh(λ_b)], λ = L z, L the Cholesky factor
        l11 = torch.sqrt(caa)
        l21 = cab / l11
        l22 = torch.sqrt(torch.clamp(cbb - l21**2, min=0.0))
        la = l11 * zz[:, 0]
        lb = l21 * zz[:, 0] + l22 * zz[:, 1]
        return torch.sum(ww * torch.tanh(la) * torch.tanh(lb))

    def eps(j):
        f = torch.cat([j, wt])
        c = f @ f.T
        coef = torch.cat([v, -a])
        n = c.shape[0]
        return 0.5 * sum(coef[p] * coef[q] * i2(c[p, p], c[p, q], c[q, q])
                         for p in range(n) for q in range(n))

    return full_flow_losses(spec, times, eps, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_tanh_reduced_flow_equals_full_parameter_flow():
    spec = cm.sample(2, 2, 50, "tanh", init=0.3, seed=4)
    times = np.linspace(0, 2, 3)
    reduced = cm.integrate(spec, times[-1], "flow", times=times, rtol=1e-10).loss
    full = _full_flow_losses(spec, times)
    assert reduced[-1] < 0.9 * reduced[0]  # it moved
    np.testing.assert_allclose(reduced, full, rtol=1e-7)
