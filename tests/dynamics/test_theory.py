"""Closed forms of dynamics.theory: exact identities, derived constants, and each law checked
against the integrated reduced flow (``predict(spec, Flow())``) with its measured error range.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.special import k0e, polygamma

from dynamics import theory as th
from dynamics.integrate import predict
from dynamics.methods import Flow
from dynamics.problems import AttentionHead, Factorization, Vector

# ------------------------------------------------------------------------------------------
# Helpers: specs with a known exact solution


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def aligned_factorization(n: int, s: float, w0: float, lam: float = 0.0) -> Factorization:
    """Rank 1, X0 = √w₀ u, Y0 = √w₀ v: the logistic w(t) is the exact solution."""
    rng = np.random.default_rng(0)
    u, v = _unit(rng, n)[:, None], _unit(rng, n)[:, None]
    return Factorization(A=u * math.sqrt(s), B=v * math.sqrt(s), X0=u * math.sqrt(w0),
                         Y0=v * math.sqrt(w0), weight_decay=lam)


def aligned_head(d: int, s_m: float, s_n: float, p0: float) -> AttentionHead:
    """Rank-1 head with all four learned vectors p₀·(their unit target direction)."""
    rng = np.random.default_rng(1)
    units = [_unit(rng, d)[:, None] for _ in range(4)]
    roots = [math.sqrt(s_m)] * 2 + [math.sqrt(s_n)] * 2
    targets = [e * r for e, r in zip(units, roots, strict=True)]
    return AttentionHead(*targets, *[e * p0 for e in units])


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------------------------
# Rank-1 logistic: exact identities (no ODE solver)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 1.5])
def test_logistic_solves_its_ode(lam):
    s, w0 = 1.0, 1e-3
    t = np.linspace(0, 20, 2001)
    w = th.logistic_w(t, s, w0, lam)
    h = 1e-6
    dw = (th.logistic_w(t + h, s, w0, lam) - th.logistic_w(t - h, s, w0, lam)) / (2 * h)
    np.testing.assert_allclose(dw, 2 * w * (s - lam - w), rtol=1e-6, atol=1e-8)
    assert w[0] == pytest.approx(w0)
    np.testing.assert_allclose(th.logistic_loss(t, s, w0, lam), 0.5 * (s - w) ** 2, rtol=1e-9,
                               atol=1e-16)


@pytest.mark.parametrize("f", [0.5, 0.1, 0.01])
@pytest.mark.parametrize("w0", [1e-6, 1e-2, 3.5])
def test_logistic_crossing_hits_the_level(f, w0):
    s, lam = 2.0, 0.01
    t_f = th.logistic_crossing(f, s, w0, lam)
    if w0 > s * (1 + math.sqrt(f)) and s - lam < s * (1 + math.sqrt(f)):
        assert t_f > 0  # falling from above
    assert th.logistic_loss(t_f, s, w0, lam) == pytest.approx(f * 0.5 * s**2, rel=1e-9)


def test_logistic_half_time_is_designs_formula():
    s, w0 = 1.5, 1e-5
    design = math.log((math.sqrt(2) - 1) * (s / w0 - 1)) / (2 * s)
    assert th.logistic_crossing(0.5, s, w0) == pytest.approx(design, rel=1e-12)


def test_no_learning_when_decay_exceeds_signal():
    """λ ≥ s: w decays to 0; and s − λ ≤ w_f: the level is out of reach."""
    assert th.logistic_crossing(0.5, 1.0, 1e-3, weight_decay=1.0) == math.inf
    assert th.logistic_crossing(0.5, 1.0, 1e-3, weight_decay=1.2) == math.inf
    assert th.logistic_crossing(0.5, 1.0, 1e-3, weight_decay=0.75) == math.inf  # 0.25 < 0.29
    assert th.logistic_crossing(0.5, 1.0, 1e-3, weight_decay=0.5) < math.inf
    assert th.plateau_time(1.0, 1e-3, weight_decay=1.0) == math.inf
    t = np.linspace(0, 50, 11)
    assert th.logistic_w(t, 1.0, 1e-3, weight_decay=1.0)[-1] == pytest.approx(1e-3 / 1.1)
    assert th.logistic_w(t, 1.0, 1e-3, weight_decay=1.2)[-1] < 1e-3 * math.exp(-0.4 * 50)


# ------------------------------------------------------------------------------------------
# The random-init plateau law: constants derived from the initial overlap distribution


def test_plateau_constant_is_designs_039_and_seed_sd_111():
    assert th.PLATEAU_CONSTANT == pytest.approx(0.38899, abs=1e-5)
    assert th.plateau_constant(0.5, 1) == pytest.approx(th.PLATEAU_CONSTANT, rel=1e-12)
    assert th.SEED_SD == pytest.approx(1.11072, abs=1e-5)
    assert th.plateau_time_sd(1.0) == pytest.approx(th.SEED_SD, rel=1e-12)
    assert th.plateau_time_sd(2.0, 1, weight_decay=0.5) == pytest.approx(th.SEED_SD / 1.5)
    s, sigma = 2.0, 1e-3
    expected = (math.log(2 * s / sigma**2) + th.PLATEAU_CONSTANT) / (2 * s)
    assert th.plateau_time(s, sigma) == pytest.approx(expected, rel=1e-12)
    n, eps = 400, 0.02
    fixed = (math.log(2 * n * s / eps**2) + th.PLATEAU_CONSTANT) / (2 * s)
    assert th.plateau_time_fixed_norm(s, eps, n) == pytest.approx(fixed, rel=2 * eps**2 / s)


@pytest.mark.parametrize("k", [1, 3])
def test_plateau_law_from_overlap_distribution(k):
    """The law is the seed average of the logistic time with w₀ = |m|², m ~ N(0, σ²/2 I_k).

    Monte Carlo of the derivation itself (no ODE): mean and sd of t_½ over 2·10⁵ draws.
    """
    rng = np.random.default_rng(0)
    s, sigma = 1.0, 1e-4
    m = rng.standard_normal((200_000, k)) * sigma / math.sqrt(2)
    w0 = np.sum(m**2, axis=1)
    t = np.log((math.sqrt(2) - 1) * (s / w0 - 1)) / (2 * s)
    se = t.std() / math.sqrt(t.size)
    assert abs(t.mean() - th.plateau_time(s, sigma, model_rank=k)) < 4 * se
    assert t.std() == pytest.approx(math.sqrt(polygamma(1, k / 2)) / (2 * s), rel=0.01)


def test_staircase_times_reduce_to_rank_one_law():
    """Mode midpoint (level ½) = plateau law with ln((1 − √f)/√f) replaced by 0."""
    s, sigma = 1.3, 1e-3
    mid = th.staircase_times([s], sigma, level=0.5)[0]
    shift = math.log(math.sqrt(2) - 1) / (2 * s)
    assert mid + shift == pytest.approx(th.plateau_time(s, sigma), rel=1e-12)
    times = th.staircase_times([1.0, 4.0, 2.0], 1e-3)
    assert times[1] < times[2] < times[0]
    assert th.staircase_times([1.0, 4.0], 1e-3, model_rank=1)[0] == math.inf


# ------------------------------------------------------------------------------------------
# Attention head: constants and the small-init blow-up (no predict)


def test_attention_constant_is_the_bessel_integral():
    def integrand(x: float) -> float:  # cosh(4x) K_0(x)^4 = ½(1 + e^{-8x}) (e^x K_0(x))^4
        return 0.5 * (1 + math.exp(-8 * x)) * k0e(x) ** 4

    value = sum(quad(integrand, a, b, limit=400)[0] for a, b in [(0, 1), (1, math.inf)])
    assert 2 / math.pi**2 * value == pytest.approx(th.ATTENTION_CONSTANT, rel=1e-9)


def test_attention_blowup_balanced_is_designs_law():
    S, p0 = 3.0, 0.02
    assert th.attention_blowup_time([p0] * 4, S) == pytest.approx(1 / (2 * S * p0**2), rel=1e-9)
    exact = th.attention_balanced_crossing(0.5, S, p0)
    shift = (math.atanh(math.sqrt(1 - math.sqrt(0.5))) - 1 / math.sqrt(1 - math.sqrt(0.5)))
    assert exact == pytest.approx(1 / (2 * S * p0**2) + shift / (2 * S**1.5), abs=p0**2)


@pytest.mark.parametrize("overlaps", [[0.3, 1.0, -0.7, 1.4], [0.9, 1.2, 0.5, -0.05],
                                      [1.0, 0.4, 0.6, 2.0]])
def test_attention_blowup_matches_the_cubic_ode(overlaps):
    """T from the quadrature = blow-up time of da/dt = S·bcd (cyclic), integrated directly."""
    S = 2.0

    def rhs(_t: float, a: np.ndarray) -> np.ndarray:
        return S * np.array([np.prod(np.delete(a, i)) for i in range(4)])

    def big(_t: float, a: np.ndarray) -> float:
        return float(np.max(np.abs(a))) - 1e4

    big.terminal = True  # type: ignore[attr-defined]
    sol = solve_ivp(rhs, (0, 100), np.array(overlaps), method="DOP853", rtol=1e-12,
                    atol=1e-14, events=big)
    expected = th.attention_blowup_time(overlaps, S)
    assert sol.t[-1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_attention_constant_by_monte_carlo():
    """E[τ]σ² over Gaussian overlaps = κ; median 2.93. (Var τ is log-divergent: wide CI.)"""
    rng = np.random.default_rng(0)
    tau = np.array([2 * th.attention_blowup_time(g, 1.0) for g in rng.standard_normal((20000, 4))])
    assert tau.mean() == pytest.approx(th.ATTENTION_CONSTANT, rel=0.03)
    assert np.median(tau) == pytest.approx(th.ATTENTION_MEDIAN, rel=0.03)


# ------------------------------------------------------------------------------------------
# Depth-D chain: the balanced aligned mode du/dt = D u^{2−2/D}(s − u), against solve_ivp of
# the scalar ODE written here (rtol 1e-10, DOP853)

CHAIN_CASES = [(2, 1.0, 1e-4), (3, 1.0, 1e-4), (3, 2.5, 1e-6), (4, 0.7, 1e-3), (5, 1.3, 1e-2),
               (6, 1.0, 0.05)]


def _chain_rhs(depth: int, s: float):
    def rhs(_t: float, u: np.ndarray) -> np.ndarray:
        return depth * np.abs(u) ** (2 - 2 / depth) * (s - u)

    return rhs


def _logit_rhs(depth: int, s: float):
    """The same ODE for z = ln(u/(s − u)): dz/dt = D s u^{1−2/D}, u = s/(1 + e^{−z}); the
    residual s − u = s e^{−z}/(1 + e^{−z}) keeps its digits in the tail, where u ≈ s."""
    def rhs(_t: float, z: np.ndarray) -> np.ndarray:
        return depth * s * (s / (1 + np.exp(-z))) ** (1 - 2 / depth)

    return rhs


def _level_event(level: float):
    def event(_t: float, u: np.ndarray) -> float:
        return float(u[0]) - level

    return event


@pytest.mark.parametrize(("depth", "s", "u0"), CHAIN_CASES)
def test_chain_crossings_match_the_ode(depth, s, u0):
    """t_f for f = 0.9, 0.5, 0.1, 0.01 (u_f = s(1 − √f)) = the ODE's event times, 1e-8 rel."""
    fractions = (0.9, 0.5, 0.1, 0.01)
    events = [_level_event(s * (1 - math.sqrt(f))) for f in fractions]
    t_end = 2 * th.chain_crossing(0.01, s, u0, depth)
    sol = solve_ivp(_chain_rhs(depth, s), (0, t_end), [u0], method="DOP853", rtol=1e-10,
                    atol=1e-14 * u0, events=events)
    for f, hits in zip(fractions, sol.t_events, strict=True):
        assert th.chain_crossing(f, s, u0, depth) == pytest.approx(hits[0], rel=1e-8)
        level = s * (1 - math.sqrt(f))
        assert th.chain_time(u0, level, s, depth) == pytest.approx(hits[0], rel=1e-8)


@pytest.mark.parametrize(("depth", "s", "u0"), CHAIN_CASES)
def test_chain_curve_matches_the_ode(depth, s, u0):
    """u(t) and the loss ½(s − u)² from the inversion = the ODE's solution to 1e-8 relative,
    out to 3·t_0.01 (the loss there is ~1e-8·L_ref or far below).

    The oracle is the ODE in the logit z = ln(u/(s − u)) at rtol 1e-12: u = s/(1 + e^{−z}) and
    s − u keep their digits where u ≈ s (integrating u itself at rtol 1e-10 is off by ~1e-8
    relative there, as much as the tolerance). Measured error of this oracle ≤ 4e-11 on every
    case (u and loss), so 1e-8 has a ≥ 250x margin."""
    t_end = 3 * th.chain_crossing(0.01, s, u0, depth)
    t = np.linspace(0, t_end, 400)
    z = solve_ivp(_logit_rhs(depth, s), (0, t_end), [math.log(u0 / (s - u0))], method="DOP853",
                  rtol=1e-12, atol=1e-14, t_eval=t).y[0]
    np.testing.assert_allclose(th.chain_u(t, s, u0, depth), s / (1 + np.exp(-z)), rtol=1e-8)
    residual = s * np.exp(-z) / (1 + np.exp(-z))  # s − u
    np.testing.assert_allclose(th.chain_loss(t, s, u0, depth), 0.5 * residual**2, rtol=1e-8)


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_chain_from_above_matches_the_ode(depth):
    """Starting above s (u0 = 3s): u falls to s; time, curve and t_f (level s(1 + √f))."""
    s, u0 = 0.8, 2.4
    t = np.linspace(0, 4.0, 200)
    u = solve_ivp(_chain_rhs(depth, s), (0, 4.0), [u0], method="DOP853", rtol=1e-10,
                  atol=1e-14, t_eval=t, events=_level_event(s * (1 + math.sqrt(0.5))))
    np.testing.assert_allclose(th.chain_u(t, s, u0, depth), u.y[0], rtol=1e-8)
    assert th.chain_crossing(0.5, s, u0, depth) == pytest.approx(u.t_events[0][0], rel=1e-8)
    assert th.chain_time(u0, 1.2 * s, s, depth) == pytest.approx(
        quad(lambda x: 1 / (depth * x ** (2 - 2 / depth) * (s - x)), u0, 1.2 * s,
             epsabs=0, epsrel=1e-13)[0], rel=1e-10)


@pytest.mark.parametrize("depth", [3, 4, 7])
def test_chain_time_is_the_integral(depth):
    """Closed form (roots of unity) = scipy quad of ∫du/(D u^{2−2/D}(s − u)), 1e-10 rel."""
    s = 1.7
    for u0, u1 in [(1e-6, 0.5 * s), (1e-3, 0.99 * s), (0.3, 1 - 1e-9), (0.6 * s, 0.61 * s)]:
        pieces = np.geomspace(u0, u1, 12)
        expected = sum(quad(lambda x: 1 / (depth * x ** (2 - 2 / depth) * (s - x)), a, b,
                            epsabs=0, epsrel=1e-13)[0] for a, b in itertools.pairwise(pieces))
        assert th.chain_time(u0, u1, s, depth) == pytest.approx(expected, rel=1e-10)


def test_chain_depth_3_and_4_closed_forms():
    """The partial fractions by hand: D = 3 (atan) and D = 4 (atanh), from u → 0 to u_½."""
    s, u0 = 1.0, 1e-4
    for depth, j in [
        (3, lambda y: (-math.log(1 - y) + 0.5 * math.log(1 + y + y * y)
                       - math.sqrt(3) * (math.atan((2 * y + 1) / math.sqrt(3)) - math.pi / 6)) / 3),
        (4, lambda y: 0.5 * math.atanh(y * y)),
    ]:
        def antiderivative(y: float, depth: int = depth, j=j) -> float:
            return -1 / ((depth - 2) * y ** (depth - 2)) + j(y)

        y0, y_half = u0 ** (1 / depth), (1 - math.sqrt(0.5)) ** (1 / depth)
        expected = antiderivative(y_half) - antiderivative(y0)
        assert th.chain_crossing(0.5, s, u0, depth) == pytest.approx(expected, rel=1e-12)


def test_chain_depth_2_is_the_logistic():
    """D = 2 reuses the logistic closed forms: w(t), L(t) and t_f."""
    s, w0 = 1.5, 1e-5
    t = np.linspace(0, 20, 101)
    np.testing.assert_array_equal(th.chain_u(t, s, w0, 2), th.logistic_w(t, s, w0))
    np.testing.assert_array_equal(th.chain_loss(t, s, w0, 2), th.logistic_loss(t, s, w0))
    for f in (0.9, 0.5, 0.1):
        assert th.chain_crossing(f, s, w0, 2) == th.logistic_crossing(f, s, w0)
    design = math.log((math.sqrt(2) - 1) * (s / w0 - 1)) / (2 * s)  # the rank-1 logistic law
    assert th.chain_time(w0, s * (1 - math.sqrt(0.5)), s, 2) == pytest.approx(design, rel=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_chain_small_init_law(depth):
    """Per-factor init σ (u0 = σ^D): the ratio per halving of σ → 2^{D−2} (D = 2: the
    difference → ln 2/s, logarithmic); the leading constant is the blow-up time of the linear
    phase ȧ = s a^{D−1}, a(t)^{−(D−2)} = σ^{−(D−2)} − (D − 2)s t, i.e. 1/((D − 2)s σ^{D−2});
    the three-term law matches the exact t_f to O(σ^{D+2})."""
    s = 1.3
    for sigma in (1e-3, 1e-2, 0.1):
        exact = th.chain_crossing(0.5, s, sigma**depth, depth)
        law = th.chain_plateau_time(0.5, s, sigma, depth)
        assert law == pytest.approx(exact, abs=10 * sigma ** (depth + 2) + 1e-12 * exact)
    sigma = 1e-3
    t1 = th.chain_crossing(0.5, s, sigma**depth, depth)
    t2 = th.chain_crossing(0.5, s, (sigma / 2) ** depth, depth)
    if depth == 2:
        assert t2 - t1 == pytest.approx(math.log(2) / s, rel=1e-5)
        assert th.chain_law(0.5, s, 2)[0] == pytest.approx(1 / s)
    else:
        assert t2 / t1 == pytest.approx(2 ** (depth - 2), rel=10 * sigma ** (depth - 2))
        blowup = 1 / ((depth - 2) * s * sigma ** (depth - 2))
        c, k = th.chain_law(0.5, s, depth)
        assert c * sigma ** (-(depth - 2)) == pytest.approx(blowup, rel=1e-14)
        assert t1 - blowup == pytest.approx(k, abs=1e-6)  # the O(1) offset


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_chain_slopes(depth):
    """Local slope d ln t_½/d ln σ = a centred difference of the exact t_½; → −(D − 2)."""
    s, h = 1.0, 1e-4
    assert th.chain_law_slope(depth) == -(depth - 2)
    for sigma in (1e-3, 0.05, 0.3):
        def log_t(x: float) -> float:
            return math.log(th.chain_crossing(0.5, s, math.exp(x) ** depth, depth))

        numeric = (log_t(math.log(sigma) + h) - log_t(math.log(sigma) - h)) / (2 * h)
        assert th.chain_local_slope(0.5, s, sigma, depth) == pytest.approx(numeric, rel=1e-6)
    small = th.chain_local_slope(0.5, s, 1e-4, depth)
    if depth > 2:
        assert small == pytest.approx(-(depth - 2), abs=2e-4)
    else:  # logarithmic: slope −1/(s t_½) → 0 like 1/ln(1/σ), never a power
        tiny = th.chain_local_slope(0.5, s, 1e-8, depth)
        assert -0.12 < small < tiny < -0.05


@pytest.mark.parametrize("overlaps", [[0.3, 1.0, 0.7], [0.9, -1.2, 0.5], [1.0, 0.4, 0.6, 2.0, 0.8],
                                      [0.5, 0.6, -0.4, 0.5, 0.7]])
def test_chain_blowup_matches_the_linear_phase(overlaps):
    """T = blow-up time of da_i/dt = s Π_{j≠i} a_j (D = len(overlaps)), integrated directly to
    |a| = 1e9 (the time left there is ~1/((D − 2)s·1e9^{D−2})); balanced: 1/((D − 2)s a0^{D−2});
    a saddle (Π a < 0 with the two smallest |a_i| equal) is never left."""
    s = 1.5

    def rhs(_t: float, a: np.ndarray) -> np.ndarray:
        return s * np.array([np.prod(np.delete(a, i)) for i in range(a.size)])

    def big(_t: float, a: np.ndarray) -> float:
        return float(np.max(np.abs(a))) - 1e9

    big.terminal = True  # type: ignore[attr-defined]
    sol = solve_ivp(rhs, (0, 100), np.array(overlaps), method="DOP853", rtol=1e-12,
                    atol=1e-14, events=big)
    assert th.chain_blowup_time(overlaps, s) == pytest.approx(sol.t[-1], rel=1e-6)
    depth, a0 = len(overlaps), 0.2
    assert th.chain_blowup_time([a0] * depth, s) == pytest.approx(
        1 / ((depth - 2) * s * a0 ** (depth - 2)), rel=1e-9)
    assert th.chain_blowup_time([a0] * (depth - 1) + [-a0], s) == math.inf


def test_chain_bad_input():
    with pytest.raises(ValueError, match="depth"):
        th.chain_time(0.1, 0.5, 1.0, 1)
    with pytest.raises(ValueError, match="not reached"):
        th.chain_time(0.5, 0.1, 1.0, 3)
    assert th.chain_crossing(0.5, 1.0, 0.0, 3) == math.inf
    assert th.chain_crossing(0.5, 1.0, 0.5, 3) == 0.0
    np.testing.assert_array_equal(th.chain_u([0.0, 5.0], 1.0, 0.0, 4), [0.0, 0.0])


# ------------------------------------------------------------------------------------------
# Each law against the integrated flow (predict(spec, Flow()), rtol 1e-10), with the error
# range its docstring states


@pytest.fixture
def one_blas_thread():
    """Small matrices: on a shared 2-core machine multi-threaded BLAS is up to ~50x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _flow_crossings(spec) -> dict[float, float | None]:
    return predict(spec, Flow()).crossing_times()


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize(("n", "s", "w0", "lam"), [(10, 0.5, 1e-4, 0.0), (200, 2.0, 1e-6, 0.3),
                                                   (50, 1.0, 1e-3, 0.0)])
def test_logistic_is_the_exact_aligned_flow(n, s, w0, lam):
    """Balanced aligned rank-1 start: the logistic is exact (any n), crossings to 1e-9."""
    spec = aligned_factorization(n, s, w0, lam)
    traj = predict(spec, Flow())
    for f, t_f in traj.crossing_times().items():
        expected = th.logistic_crossing(f, s, w0, lam)
        if math.isinf(expected):  # s − λ below the level: never reached (λ = 0.3, f = 0.01)
            assert t_f is None
        else:
            assert t_f == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(traj.loss, th.logistic_loss(traj.t, s, w0, lam), rtol=1e-7,
                               atol=1e-9 * spec.l_ref)  # atol: solve_ivp's rtol 1e-10 on P, U


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize(("d", "s_m", "s_n", "p0"), [(10, 1.0, 2.0, 0.1), (30, 1.5, 1.5, 0.03)])
def test_attention_balanced_crossing_is_the_exact_aligned_flow(d, s_m, s_n, p0):
    crossings = _flow_crossings(aligned_head(d, s_m, s_n, p0))
    for f, t_f in crossings.items():
        assert t_f == pytest.approx(th.attention_balanced_crossing(f, s_m * s_n, p0), rel=1e-9)


def _rank_one_draws(sigma: float, count: int) -> list[Factorization]:
    """Rank 1, s ∈ [0.5, 4], n ∈ [50, 400], init σ: the range of crossing_time's docstring."""
    rng = np.random.default_rng(0 if sigma < 5e-3 else 1)
    return [Factorization.sample(int(rng.integers(50, 401)), 1, init=sigma,
                                 singular_values=[float(rng.uniform(0.5, 4))], seed=i)
            for i in range(count)]


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize("draws", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_rank_one_crossing_time_against_the_flow(draws):
    """crossing_time: |error| < 0.1 % at σ = 1e-3 (ν/s ≤ 2e-3); at σ = 1e-2 the error is
    below a quarter of ν/s (the error without the ν term), i.e. < 2 % for ν/s ≤ 0.08."""
    for spec in _rank_one_draws(1e-3, draws):
        assert rel(th.crossing_time(spec, 0.5), _flow_crossings(spec)[0.5]) < 1e-3
    for spec in _rank_one_draws(1e-2, draws):
        s, _, nu = th.initial_strengths(spec)
        error = rel(th.crossing_time(spec, 0.5), _flow_crossings(spec)[0.5])
        assert error < 0.25 * nu / s[0] + 1e-3


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize(("values", "n", "sigma", "seed"), [
    ([4.0, 2.0, 1.0], 50, 1e-4, 1),
    ([3.0, 1.0, 0.3], 200, 1e-3, 1),
    pytest.param([4.0, 2.0, 1.0], 120, 1e-3, 2, marks=pytest.mark.slow),
    pytest.param([3.0, 1.0, 0.3], 50, 1e-4, 2, marks=pytest.mark.slow),
])
def test_mode_times_against_the_flow(values, n, sigma, seed):
    """Staircase, well-separated s: each mode's z_i = u_iᵀXYᵀv_i reaches ½s_i' at the
    predicted time (measured: within 1e-4 relative)."""
    spec = Factorization.sample(n, 3, init=sigma, singular_values=values, seed=seed)
    traj = predict(spec, Flow())
    z = th.mode_strengths(traj)
    s, _, nu = th.initial_strengths(spec)
    predicted = th.mode_times(spec)
    for i, s_i in enumerate(s):
        level = 0.5 * (s_i - spec.weight_decay - nu)
        j = int(np.flatnonzero(z[:, i] >= level)[0])
        t_i = traj.t[j - 1] + (level - z[j - 1, i]) / (z[j, i] - z[j - 1, i]) * (
            traj.t[j] - traj.t[j - 1])
        assert predicted[i] == pytest.approx(t_i, rel=1e-3)
    assert np.all(np.diff(predicted) > 0)  # one after another: a staircase


@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize(("d", "sigma", "bound"), [
    (10, 1e-2, 1e-3),
    pytest.param(30, 5e-3, 1e-3, marks=pytest.mark.slow),
    pytest.param(20, 2e-2, 1e-2, marks=pytest.mark.slow),
])
def test_attention_random_init_crossing_against_the_flow(d, sigma, bound):
    """Rank-1 head, random init: blow-up time + saturation shift (crossing_time). Measured
    (4 seeds each): ≤ 3e-4 relative for d·σ² ≤ 1e-3, ≤ 5e-3 for d·σ² = 8e-3."""
    for seed in range(2):
        spec = AttentionHead.sample(d, 1, init=sigma, seed=seed)
        assert rel(th.crossing_time(spec, 0.5), _flow_crossings(spec)[0.5]) < bound


def test_vector_loss_is_the_exact_flow():
    spec = Vector.sample(30, 0.3, weight_decay=0.2, seed=1)
    traj = predict(spec, Flow())
    np.testing.assert_allclose(traj.loss, th.vector_loss(traj.t, spec), rtol=1e-7,
                               atol=1e-9 * spec.l_ref)
    assert th.crossing_time(spec, 0.5) == pytest.approx(traj.crossing_times()[0.5], rel=1e-9)
