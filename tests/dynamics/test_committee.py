"""Committee machines: the reduced flow against the full-parameter population flow (autograd),
linear committees against scurve's own linear machinery, the online ODE's η-term against
Monte-Carlo, the escape law, and bad specs."""

import numpy as np
import pytest
from committee_oracle import full_flow_losses

from dynamics.gaussian import ActivationError
from dynamics.models import committee as cm


def _full_flow_losses(spec, times):
    """Oracle: dJ/dt = −∇_J ε(J) in the N·K weights, ∇ by torch autograd of ε written here from
    g(x) = erf(x/√2)'s I2 = (2/π) arcsin(C_ab/√((1+C_aa)(1+C_bb))), or ReLU's arc-cosine kernel
    √(C_aa C_bb)/(2π)(√(1−ρ²) + (π − arccos ρ)ρ) off the diagonal and C_aa/2 on it (float64)."""
    torch = pytest.importorskip("torch")
    wt = torch.tensor(spec.Wt / np.sqrt(spec.N))
    a = torch.tensor(spec.a)
    v = torch.tensor(spec.v0)

    def eps(j):
        f = torch.cat([j, wt])
        c = f @ f.T
        if spec.activation == "erf":
            d = torch.sqrt(1 + torch.diagonal(c))
            i2 = 2 / np.pi * torch.asin(c / torch.outer(d, d))
        else:
            n = c.shape[0]
            off = ~torch.eye(n, dtype=torch.bool)
            d = torch.sqrt(torch.diagonal(c))
            s = torch.outer(d, d)[off]
            rho = c[off] / s
            i2 = torch.diag(torch.diagonal(c) / 2)
            i2 = i2.masked_scatter(off, s / (2 * np.pi) * (torch.sqrt(1 - rho**2)
                                                           + (np.pi - torch.acos(rho)) * rho))
        coef = torch.cat([v, -a])
        return coef @ i2 @ coef / 2

    return full_flow_losses(spec, times, eps)


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_reduced_flow_equals_full_parameter_flow(act):
    spec = cm.sample(2, 2, 50, act, init=0.3, seed=4)
    times = np.linspace(0, 40, 41)
    full = _full_flow_losses(spec, times)
    red = cm.integrate(spec, 40, "flow", rtol=1e-12, times=times).loss
    assert full[-1] < 0.5 * full[0]  # it moved
    np.testing.assert_allclose(red, full, rtol=1e-7)


def test_linear_committee_equals_scurve_linear_model():
    """Linear g, trained second layer: ε = ½‖J*ᵀa − Jᵀv‖², i.e. scurve's Model ½‖A b − X y‖²
    with X = Jᵀ, y = v (learned), A = J*ᵀ, b = a, reduced by scurve's own machinery."""
    import sympy as sp

    from dynamics.integrate import predict
    from dynamics.methods import Flow
    from dynamics.model import Model, register
    from dynamics.problems import ModelSpec

    n, m, k = sp.symbols("n m k", integer=True, positive=True)
    A, b = sp.MatrixSymbol("A", n, m), sp.MatrixSymbol("b", m, 1)
    X, y = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("y", k, 1)
    e = A * b - X * y
    register(Model("lincommittee_test", sp.Trace(e.T * e) / 2, [X, y], [A, b], [n]))
    spec = cm.sample(3, 2, 40, "linear", init=0.2, seed=1, second_layer="trained")
    spec = cm.CommitteeSpec("linear", spec.Wt, np.array([1.0, 0.7]), spec.W0,
                            np.array([0.5, -0.2, 0.3]), second_layer="trained")
    s = np.sqrt(spec.N)
    ms = ModelSpec("lincommittee_test", {"A": spec.Wt.T / s, "b": spec.a[:, None],
                                         "X0": spec.W0.T / s, "y0": spec.v0[:, None]})
    traj = predict(ms, Flow(), t_max=20.0)
    ours = cm.integrate(spec, float(traj.t[-1]), "flow", rtol=1e-13, times=traj.t)
    assert traj.loss[-1] < 0.1 * traj.loss[0]
    assert ours.loss[0] == pytest.approx(traj.loss[0], rel=1e-13)
    # the reference integrates at rtol 1e-10 (DOP853): its accumulated error reaches ~1e-10·L(0)
    # (measured 1.3e-10 absolute, 1.8e-10·L(0)), so the curves agree to 1e-9·L(0) absolute
    np.testing.assert_allclose(ours.loss, traj.loss, rtol=0, atol=1e-9 * traj.loss[0])


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_online_term_against_monte_carlo(act):
    """The η bracket v_k v_l E[Δ² g′(λ_k) g′(λ_l)] (+σ² J2) by sampling the fields directly
    (ReLU: its semi-analytic I4, dynamics.gaussian._relu_i4)."""
    from scipy.special import erf

    rng = np.random.default_rng(0)
    spec = cm.sample(2, 2, 30, act, init=0.5, seed=2, noise=0.3)
    model = spec.model
    y = spec.initial_state()
    got = model.online_term(y, spec.T, spec.a, spec.v0, spec.noise)
    q, r, _ = model.unpack(y, spec.v0)
    c = np.block([[q, r], [r.T, spec.T]])
    lam = rng.normal(size=(1_000_000, 4)) @ np.linalg.cholesky(c).T
    if act == "erf":
        g = erf(lam / np.sqrt(2))
        dg = np.sqrt(2 / np.pi) * np.exp(-lam**2 / 2)
    else:
        g, dg = np.maximum(lam, 0), (lam > 0).astype(float)
    delta = g[:, 2:] @ spec.a - g[:, :2] @ spec.v0 + spec.noise * rng.normal(size=len(lam))
    for i, (kk, ll) in enumerate([(0, 0), (0, 1), (1, 1)]):
        v = spec.v0[kk] * spec.v0[ll] * delta**2 * dg[:, kk] * dg[:, ll]
        se = v.std() / np.sqrt(len(v))
        assert abs(got[i] - v.mean()) < 4 * se, (i, got[i], v.mean(), se)
    assert np.all(got[3:] == 0)


def test_online_tends_to_flow_as_lr_vanishes():
    spec = cm.sample(2, 2, 500, "erf", init=0.1, seed=0)
    flow = cm.integrate(spec, 30, "flow", points=31).loss
    gaps = [np.max(np.abs(cm.integrate(spec, 30, "online", lr=lr, points=31).loss - flow))
            for lr in (0.1, 0.01)]
    assert gaps[1] < 0.2 * gaps[0] and gaps[1] < 1e-3  # O(η)


def test_plateau_fixed_point_and_escape_law():
    """Symmetric K = M = 2 erf plateau: Q_kl = 1/3, R_km = 1/√6 (closed form from the fixed-point
    equations; Saad & Solla 1995); ln(10)/λ separates starts at δ and δ/10."""
    spec = cm.sample(2, 2, 1000, "erf", init=1e-3, seed=0)
    curve = cm.integrate(spec, 300, "flow")
    p = cm.plateau(spec, curve)
    sym = np.array([1 / 3] * 3 + [1 / np.sqrt(6)] * 4)
    # the Jacobian has two zero eigenvalues there (a line of fixed points), so Newton lands on
    # the manifold near the closed form, at the same level
    np.testing.assert_allclose(p.y, sym, atol=1e-5)
    assert p.level == pytest.approx(spec.model.loss(sym, spec.T, spec.a, spec.v0), rel=1e-9)
    assert p.rate > 0
    # starts on the symmetric manifold plus δ·(the escape direction)
    times = []
    for delta in (1e-4, 1e-5):
        y0 = p.y + delta * p.direction / np.linalg.norm(p.direction)
        c = cm.integrate(spec, 600, "flow", y0=y0, points=3000, rtol=1e-11)
        times.append(c.escape_time(p.level))
    assert times[1] - times[0] == pytest.approx(np.log(10) / p.rate, rel=0.02)


def test_state_size_independent_of_n():
    small = cm.sample(3, 2, 100, "erf", seed=0, second_layer="trained")
    big = cm.sample(3, 2, 10_000, "erf", seed=0, second_layer="trained")
    assert len(small.initial_state()) == len(big.initial_state()) == 3 * 4 // 2 + 6 + 3


@pytest.mark.parametrize("change, match", [
    (dict(activation="softsign"), "unknown activation"),
    (dict(W0=np.zeros((2, 7))), "'W0' .* 'Wt' .* disagree in N"),
    (dict(a=np.ones(3)), "'a' .* disagree in M"),
    (dict(W0=np.zeros((0, 6))), "K >= 1"),
    (dict(noise=-0.1), "'noise' must be >= 0"),
    (dict(second_layer="frozen"), "second_layer"),
])
def test_bad_specs(change, match):
    base = dict(activation="erf", Wt=np.ones((2, 6)), a=np.ones(2), W0=np.ones((2, 6)),
                v0=np.ones(2))
    with pytest.raises(ValueError, match=match):
        cm.CommitteeSpec(**{**base, **change})


def test_quadrature_activation_flow_gradient_equals_the_symbolic_one():
    """tanh's flow takes ∂ε/∂(Q, R, v) numerically (Price's theorem); the same numeric path on
    erf gives the SymPy-derived gradient (the full-parameter check of tanh is slow:
    tests/dynamics/test_committee_tanh.py)."""
    spec = cm.sample(3, 2, 60, "erf", init=0.6, seed=1, second_layer="trained")
    args = spec.model._args(spec.initial_state(), spec.T, spec.a, spec.v0)
    np.testing.assert_allclose(cm.CommitteeModel._numeric_grad(spec.model, *args),
                               spec.model._grad(*args), rtol=1e-9, atol=1e-12)
    assert cm.model_of("tanh", 2, 2).state_size == 7
    with pytest.raises(ActivationError, match="unknown activation"):
        cm.model_of("softsign", 2, 2)


def test_save_load_round_trip(tmp_path):
    spec = cm.sample(2, 3, 20, "relu", init=0.1, seed=3, noise=0.2, second_layer="trained")
    spec.save(tmp_path / "c.npz")
    back = cm.load(tmp_path / "c.npz")
    assert back.activation == "relu" and back.second_layer == "trained" and back.noise == 0.2
    np.testing.assert_array_equal(back.W0, spec.W0)
    np.testing.assert_array_equal(back.Wt, spec.Wt)


@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_numeric_epsilon_equals_derived_epsilon(act):
    spec = cm.sample(3, 2, 60, act, init=0.4, seed=5, second_layer="trained")
    y = spec.initial_state()
    q, r, v = spec.model.unpack(y)
    assert cm.epsilon(act, q, r, spec.T, v, spec.a) == pytest.approx(
        spec.model.loss(y, spec.T, spec.a), rel=1e-12)
