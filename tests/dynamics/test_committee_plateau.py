"""Issue 20's N-law: which symmetric fixed point is the plateau (K = M = 2, erf, online ODE).

At η > 0 the path from a small random start first passes a fixed point where the students
coincide (Q11 = Q12), which has a second unstable direction inside the symmetric subspace; the
plateau proper has Q12 < Q11 and only the specialisation direction unstable. The oracle for "the
plateau" is the ODE itself run from an exactly symmetric start (Q = σ²I, R = 0) for a long time:
that path stays symmetric (no asymmetry to grow but rounding) and comes to rest on it."""

import numpy as np
import pytest

from dynamics.models import committee as cm


@pytest.fixture(scope="module")
def setup():
    spec = cm.sample(2, 2, 500, "erf", init=0.1, seed=0)
    return spec, cm.integrate(spec, 300, "online", lr=1.0, points=600)


def _spectrum(spec, y, lr):
    f = cm.vector_field(spec, lr)
    return np.sort(np.linalg.eigvals(cm._jacobian(f, y)).real)[::-1]


def test_plateau_from_a_curve_is_where_the_symmetric_path_rests(setup):
    spec, curve = setup
    p = cm.plateau(spec, curve, lr=1.0)
    sym = cm.integrate(spec, 400, "online", lr=1.0, y0=np.array([0.01, 0, 0.01, 0, 0, 0, 0.0]),
                       points=3)
    # by t = 400 the symmetric path is within e^{-0.0094·400} ≈ 0.02 of its end (slowest rate)
    np.testing.assert_allclose(sym.y[-1], p.y, atol=2e-3)
    q11, q12, q22 = p.y[:3]
    assert q11 == pytest.approx(q22, abs=1e-10) and q12 < q11 - 0.1  # students differ
    np.testing.assert_allclose(p.y[3:], p.y[3], atol=1e-10)  # every R_km equal
    spectrum = _spectrum(spec, p.y, 1.0)
    assert spectrum[0] == pytest.approx(p.rate) and spectrum[1] < 0  # one way out
    assert np.linalg.norm(cm.vector_field(spec, 1.0)(p.y)) < 1e-9


def test_the_coinciding_students_point_is_unstable_inside_the_symmetric_subspace(setup):
    spec, curve = setup
    d = cm.plateau(spec, np.array([0.35, 0.35, 0.35, 0.41, 0.41, 0.41, 0.41]), lr=1.0)
    assert d.y[0] == pytest.approx(d.y[1], abs=1e-9)  # Q11 = Q12: w1 = w2
    spectrum = _spectrum(spec, d.y, 1.0)
    assert spectrum[1] > 0.01  # a second unstable direction
    assert d.rate > cm.plateau(spec, curve, lr=1.0).rate  # faster than at the plateau


def test_symmetrize_is_the_group_average():
    """The Reynolds average over S_2 × S_2, written out by hand."""
    model = cm.model_of("erf", 2, 2)
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # Q11 Q12 Q22 R11 R12 R21 R22
    np.testing.assert_allclose(cm.symmetrize(model, y), [2.0, 2.0, 2.0, 5.5, 5.5, 5.5, 5.5])
    spec = cm.sample(2, 2, 50, "erf", seed=1)
    assert cm.is_symmetric(spec)
    assert not cm.is_symmetric(cm.CommitteeSpec("erf", spec.Wt, np.array([1.0, 2.0]),
                                                spec.W0, spec.v0))


def test_sample_state_has_the_moments_of_gaussian_rows():
    """Q, R of rows i.i.d. N(0, σ²I_N) against orthonormal teacher directions (closed forms):
    Q_kk = σ²χ²_N/N (mean σ², variance 2σ⁴/N), E[Q_12] = 0, E[Q_12²] = σ⁴/N, R_km ~ N(0, σ²/N),
    and E[Q_11 R_11²] = σ⁴(N + 2)/N² (the coupling of Q to R). 40 000 draws: every check at
    5 standard errors of its Monte-Carlo estimate."""
    n, s, draws = 30, 0.3, 40_000
    rng = np.random.default_rng(4)
    qs, rs = zip(*(cm.sample_state(2, 2, n, s, rng) for _ in range(draws)), strict=True)
    q, r = np.array(qs), np.array(rs)

    def near(values, expected):
        se = values.std() / np.sqrt(draws)
        assert abs(values.mean() - expected) < 5 * se, (values.mean(), expected, se)

    near(q[:, 0, 0], s**2)
    near((q[:, 1, 1] - s**2) ** 2, 2 * s**4 / n)
    near(q[:, 0, 1], 0.0)
    near(q[:, 0, 1] ** 2, s**4 / n)
    near(r[:, 0, 1] ** 2, s**2 / n)
    near(q[:, 0, 0] * r[:, 0, 0] ** 2, s**4 * (n + 2) / n**2)
    # a given z fixes R exactly: R = σz/√N
    z = np.array([[1.0, -2.0], [0.5, 0.0]])
    np.testing.assert_allclose(cm.sample_state(2, 2, 400, s, rng, z=z)[1], s * z / 20, rtol=1e-14)


def test_plateau_without_a_start_is_the_symmetric_one():
    spec = cm.sample(2, 2, 300, "erf", init=0.1, seed=2)
    p = cm.plateau(spec, None, lr=1.0)
    assert p.y[0] > p.y[1] + 0.1 and np.ptp(p.y[3:]) < 1e-10
    with pytest.raises(cm.CommitteeError, match="symmetric"):
        cm.plateau(cm.CommitteeSpec("erf", spec.Wt, np.array([1.0, 0.5]), spec.W0, spec.v0))


def test_sample_with_z_sets_the_teacher_projections():
    z = np.array([[0.3, -1.2], [2.0, 0.1]])
    spec = cm.sample(2, 2, 300, "erf", init=0.2, seed=5, z=z)
    _, r, t = spec.order_parameters()
    np.testing.assert_allclose(t, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(r, 0.2 * z / np.sqrt(300), rtol=1e-10)
    with pytest.raises(cm.CommitteeError, match="shape"):
        cm.sample(2, 2, 300, z=np.zeros((2, 3)))


def test_ode_plateau_length_against_ln_n_within_20_percent_of_the_law():
    """Issue 20's N-law in the online ODE (η = 1, σ = 0.1): starts drawn exactly at
    N = 250…4000 with the same z per seed (δ₀ ∝ N^{-1/2} exactly). The fitted slope is within
    20 % of 1/(2λ) of the plateau (measured 7.46 ± 0.04 with 24 seeds, −12 %), and above
    1/(2λ) of the coinciding-students point the path passes first (6.68): the asymmetry grows
    at a rate between the two at these N."""
    ref = cm.sample(2, 2, 50, "erf", init=0.1, seed=0)
    p = cm.plateau(ref, lr=1.0)
    d = cm.plateau(ref, np.array([0.353, 0.353, 0.353, 0.414, 0.414, 0.414, 0.414]), lr=1.0)
    rng = np.random.default_rng(3)
    ns = np.array([250, 500, 1000, 2000, 4000])
    slopes = []
    for z in rng.normal(size=(2, 2, 2)):
        esc = []
        for n in ns:
            q, r = cm.sample_state(2, 2, n, 0.1, rng, z=z)
            c = cm.integrate(ref, 180, "online", lr=1.0, y0=ref.model.pack(q, r, ref.v0),
                             points=360)
            esc.append(c.escape_time(p.level))
        slopes.append(np.polyfit(np.log(ns), esc, 1)[0])
    slope = np.mean(slopes)
    assert slope == pytest.approx(1 / (2 * p.rate), rel=0.2)
    assert 1 / (2 * d.rate) < slope < 1 / (2 * p.rate)


def test_newton_stays_inside_the_domain_of_the_integrals():
    """From the slowest point of a large-init curve (σ = 1, N = 40; a spec just off symmetric,
    so Newton starts from the curve) a full Newton step used to leave the domain of erf's I4
    (a correlation beyond ±1: 'invalid value encountered in arcsin', test_sweep_committee);
    the step is now halved until the vector field is defined there."""
    import warnings

    s = cm.sample(2, 2, 40, "erf", init=1.0, seed=0)
    spec = cm.CommitteeSpec("erf", s.Wt, np.array([1.0, 1.0 + 1e-9]), s.W0, s.v0)
    assert not cm.is_symmetric(spec)
    curve = cm.integrate(spec, 15, "online", lr=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        p = cm.plateau(spec, curve, lr=0.5)
    assert np.linalg.norm(cm.vector_field(spec, 0.5)(p.y)) < 1e-9 and p.level > 0.01


def test_a_tiny_init_rests_where_the_students_coincide():
    """σ = 10⁻³, η = 0.5: the path arrives within ~10⁻⁶ of the point where the students coincide
    and sits there (it is unstable inside the symmetric subspace only at rate 0.008): the
    curve's plateau is that point, and plateau() finds it — the ODE's ε at t = 40 equals its
    level to 1e-4 (the plateau proper, where Q12 < Q11, is 0.2 % lower)."""
    spec = cm.sample(2, 2, 1000, "erf", init=1e-3, seed=0)
    p = cm.plateau(spec, lr=0.5)
    assert p.y[0] == pytest.approx(p.y[1], abs=1e-9)
    curve = cm.integrate(spec, 40, "online", lr=0.5, points=5)
    assert curve.loss[-1] == pytest.approx(p.level, rel=1e-4)
    assert _spectrum(spec, p.y, 0.5)[1] > 0.005  # the second, symmetric, unstable direction
