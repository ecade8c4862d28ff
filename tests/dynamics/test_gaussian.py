"""Gaussian integrals I2, J2, I3, I4 of each activation against Monte-Carlo (independent oracle:
sampled fields λ = L z with L the Cholesky factor, the integrand evaluated with numpy/scipy)."""

import numpy as np
import pytest
from scipy.special import erf

from dynamics.gaussian import ActivationError, activation, gaussian_moment, x

# the integrands, written here independently of dynamics.gaussian
G = {
    "erf": (lambda v: erf(v / np.sqrt(2)), lambda v: np.sqrt(2 / np.pi) * np.exp(-v * v / 2)),
    "relu": (lambda v: np.maximum(v, 0), lambda v: (v > 0).astype(float)),
    "linear": (lambda v: v, lambda v: np.ones_like(v)),
    "tanh": (np.tanh, lambda v: 1 / np.cosh(v) ** 2),
    "cubic": (lambda v: v**3 - v, lambda v: 3 * v**2 - 1),
    "user": (lambda v: np.sin(v) + v / 2, lambda v: np.cos(v) + 0.5),  # a user's, by quadrature
}
# every integral is checked at n_se standard errors (relu's I4 is semi-analytic, test_relu_i4.py)
REL_TOL_QUAD: dict = {}


def _act(name):
    if name == "user":
        import sympy as sp

        return activation(sp.sin(x) + x / 2, "user")
    return activation(x**3 - x, "cubic") if name == "cubic" else activation(name)


def _check(name, samples, n_se, seed):
    rng = np.random.default_rng(seed)
    g, dg = G[name]
    act = _act(name)
    cases = {
        "i2": (2, lambda l: g(l[0]) * g(l[1])),
        "j2": (2, lambda l: dg(l[0]) * dg(l[1])),
        "i3": (3, lambda l: dg(l[0]) * l[1] * g(l[2])),
        "i4": (4, lambda l: dg(l[0]) * dg(l[1]) * g(l[2]) * g(l[3])),
    }
    for which, (n, integrand) in cases.items():
        a = rng.normal(size=(n, n)) * 0.6
        c = a @ a.T + 0.3 * np.eye(n)
        lam = rng.normal(size=(samples, n)) @ np.linalg.cholesky(c).T
        v = integrand(lam.T)
        mean, se = v.mean(), v.std() / np.sqrt(samples)
        got = float(getattr(act, which)(c))
        tol = max(n_se * se, REL_TOL_QUAD.get((name, which), 0) * abs(mean))
        assert abs(got - mean) <= tol, (name, which, got, mean, se)


@pytest.mark.parametrize("name", list(G))
def test_integrals_against_monte_carlo(name):
    _check(name, 200_000, 4.0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(G))
@pytest.mark.parametrize("seed", [2, 3])
def test_integrals_against_monte_carlo_1e6(name, seed):
    _check(name, 1_000_000, 3.0, seed)


def test_integrals_vectorised_and_coinciding_fields():
    """Batched covariances give the per-matrix values; a singular C (λ_a = λ_c) is fine.
    E[g′(λ) λ g(λ)] for relu is E[relu(λ)²] = C/2; for erf I2(a,a) = (2/π) arcsin(C/(1+C))."""
    c = np.full((3, 3), 0.7)
    assert activation("relu").i3(c) == pytest.approx(0.35, rel=1e-12)
    c2 = np.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.5], [0.5, 0.5]]])
    erf_act = activation("erf")
    got = erf_act.i2(c2)
    assert got[0] == pytest.approx(float(erf_act.i2(c2[0])))
    assert got[1] == pytest.approx(2 / np.pi * np.arcsin(0.5 / 1.5), rel=1e-12)


def test_isserlis_moments():
    """E[λ⁴] = 3σ⁴, E[λ_1²λ_2²] = C11 C22 + 2 C12² (closed forms)."""
    import sympy as sp

    c = sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 3]])
    assert gaussian_moment((4, 0), c) == 12
    assert gaussian_moment((2, 2), c) == 2 * 3 + 2 * sp.Rational(1, 4)
    assert gaussian_moment((1, 2), c) == 0


@pytest.mark.parametrize("bad", ["softplus2", "sigmoid"])
def test_unknown_activation(bad):
    with pytest.raises(ActivationError, match="unknown activation"):
        activation(bad)


def test_divergent_activation():
    import sympy as sp

    with pytest.raises(ActivationError, match="do not converge"):
        activation(sp.exp(x**2), "wild")
