"""The reduced flow of a quadrature-only activation (tanh: ε and its gradient by Price's
theorem and Gauss–Hermite, dynamics.models.committee) against the full-parameter population
gradient flow in J = W/√N (N = 50), its gradient by torch autograd of ε written here with an
independent 2-d Gauss–Hermite rule (Cholesky factor, 160 nodes a dimension, float64).
Slow (about a minute: autograd through 16 quadratures per step of DOP853).

Errors: the 60-node rule of dynamics.gaussian has E[tanh(z)²] off by 5.7e-9 (160 nodes:
< 1e-12; 40 nodes: 3.8e-7), so ε under test carries ≲ 2e-8 absolute; tolerance 2e-7 absolute
(10×) plus 1e-7 relative. Integrations at rtol 1e-10.
"""

import numpy as np
import pytest
from committee_oracle import full_flow_losses

from dynamics.models import committee as cm


def _full_flow_losses(spec, times):
    torch = pytest.importorskip("torch")
    z, w = np.polynomial.hermite_e.hermegauss(160)
    zz = torch.tensor(np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2))
    ww = torch.tensor(np.outer(w, w).ravel() / (2 * np.pi))
    wt = torch.tensor(spec.Wt / np.sqrt(spec.N))
    a, v = torch.tensor(spec.a), torch.tensor(spec.v0)

    def eps(j):  # ½ Σ_pq c_p c_q E[tanh(λ_p) tanh(λ_q)], λ = L z per pair, L its Cholesky
        f = torch.cat([j, wt])
        c = f @ f.T
        d = torch.diagonal(c)
        l11 = torch.sqrt(d)[:, None, None]
        l21 = (c / torch.sqrt(d)[:, None])[:, :, None]
        eye = torch.eye(len(d), dtype=c.dtype)[:, :, None]  # λ_q = λ_p on the diagonal
        l22 = torch.sqrt(torch.clamp(d[None, :, None] - l21**2, min=0.0) + eye) * (1 - eye)
        i2 = torch.sum(ww * torch.tanh(l11 * zz[:, 0]) * torch.tanh(l21 * zz[:, 0]
                                                                   + l22 * zz[:, 1]), -1)
        coef = torch.cat([v, -a])
        return 0.5 * coef @ i2 @ coef

    return full_flow_losses(spec, times, eps, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_tanh_reduced_flow_equals_full_parameter_flow():
    spec = cm.sample(2, 2, 50, "tanh", init=0.3, seed=4)
    times = np.linspace(0, 2, 3)
    reduced = cm.integrate(spec, times[-1], "flow", times=times, rtol=1e-10).loss
    full = _full_flow_losses(spec, times)
    assert reduced[-1] < 0.9 * reduced[0]  # it moved
    np.testing.assert_allclose(reduced, full, rtol=1e-7, atol=2e-7)
