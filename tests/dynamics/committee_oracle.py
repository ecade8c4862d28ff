"""Oracle shared by the committee tests: the full-parameter population gradient flow
dJ/dt = −∇_J ε(J) in the K·N normalised weights J = W/√N, ∇ by torch autograd of the ε a
test writes, integrated by DOP853; ε along it at ``times``."""

import numpy as np
from scipy.integrate import solve_ivp


def full_flow_losses(spec, times, eps, rtol: float = 1e-12, atol: float = 1e-14) -> np.ndarray:
    import torch

    def rhs(_, y):
        j = torch.tensor(y.reshape(spec.K, spec.N), requires_grad=True)
        (g,) = torch.autograd.grad(eps(j), j)
        return -g.numpy().ravel()

    sol = solve_ivp(rhs, (0, times[-1]), (spec.W0 / np.sqrt(spec.N)).ravel(), t_eval=times,
                    method="DOP853", rtol=rtol, atol=atol)
    return np.array([float(eps(torch.tensor(y.reshape(spec.K, spec.N)))) for y in sol.y.T])
