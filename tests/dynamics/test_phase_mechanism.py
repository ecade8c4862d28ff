"""Mechanistic phases, and theory curves whose boundaries come from the mechanism.

Expected values are computed here: from closed forms of hand-made order parameters, from the
rank-1 reduced ODE integrated here with scipy (independently of dynamics.symbolic and
dynamics.integrate), or directly from a trajectory's cosines and norms.

The rank-1 problem with a balanced aligned start plus an off-target part,
x = p u + β_x e, y = q v + β_y f (e ⊥ u, f ⊥ v unit), stays in that form under the flow of
L = ½‖s u vᵀ - x yᵀ‖²:

    dp/dt = s q - p(q² + β_y²)    dβ_x/dt = -β_x(q² + β_y²)
    dq/dt = s p - q(p² + β_x²)    dβ_y/dt = -β_y(p² + β_x²)

with L_on = ½(s - pq)² and L_off = ½[(p² + β_x²)(q² + β_y²) - p²q²].
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from dynamics.integrate import predict
from dynamics.methods import Flow
from dynamics.phases import MechanisticPhases, Phases, analyze, mechanistic_phases
from dynamics.problems import Factorization

W_START, W_TIME, W_END = 1 - math.sqrt(0.9), 1 / 3, 1 - math.sqrt(0.1)


def logistic_w(t, s: float, w0: float):
    return s / (1 + (s / w0 - 1) * np.exp(-2 * s * np.asarray(t, dtype=float)))


def time_at(fraction: float, s: float, w0: float) -> float:
    return math.log((s / w0 - 1) / (1 / fraction - 1)) / (2 * s)


def synthetic(t, strengths, w0, beta, kappa):
    """Order parameters of k = r modes on orthogonal directions with off-target parts.

    x_l = √w_l u_l + b e_l, y_l = √w_l v_l + b f_l, b = β e^{-κt}, all directions orthonormal:
    cos_jl = δ_jl √(w_l/(w_l + b²)), ‖x_l‖ = √(w_l + b²); L_on = ½Σ(s_j - w_j)²,
    L_off = ½Σ_l (2 w_l b² + b⁴) (the blocks x∥y⊥ᵀ, x⊥y∥ᵀ, x⊥y⊥ᵀ are orthogonal).
    """
    w0s = np.broadcast_to(w0, (len(strengths),))  # one start per mode, or one for all
    w = np.stack([logistic_w(t, s, w) for s, w in zip(strengths, w0s, strict=True)], axis=1)
    b2 = (beta * np.exp(-kappa * t))[:, None] ** 2
    norms = np.sqrt(w + b2)
    cos = np.zeros((t.size, len(strengths), len(strengths)))
    idx = np.arange(len(strengths))
    cos[:, idx, idx] = np.sqrt(w / (w + b2))
    on = 0.5 * np.sum((np.asarray(strengths) - w) ** 2, axis=1)
    off = 0.5 * np.sum(2 * w * b2 + b2**2, axis=1)
    return {"X": cos, "Y": cos.copy()}, {"X": norms, "Y": norms.copy()}, on + off, on, off


def test_synthetic_two_modes_with_off_target_decay():
    strengths, w0, beta, kappa = (1.0, 0.4), 1e-6, 0.8, 1.5
    t = np.linspace(0.0, 40.0, 40_001)
    cosines, norms, loss, on, off = synthetic(t, strengths, w0, beta, kappa)
    m = mechanistic_phases(t, loss, cosines, norms, strengths)
    assert isinstance(m, MechanisticPhases) and isinstance(m, Phases)
    assert m.l_ref == pytest.approx(0.5 * (1 + 0.16))
    assert m.off_target == pytest.approx(off[0] / on[0], rel=1e-12)

    def l_off(x):
        w = [logistic_w(x, s, w0) for s in strengths]
        b2 = (beta * math.exp(-kappa * x)) ** 2
        return 0.5 * sum(2 * wi * b2 + b2**2 for wi in w), 0.5 * sum(
            (s - wi) ** 2 for s, wi in zip(strengths, w, strict=True)
        )

    decay_end = brentq(lambda x: l_off(x)[0] - 0.1 * l_off(x)[1], 0.0, 10.0)
    assert m.initial.start == 0.0
    assert m.initial.end == pytest.approx(decay_end, rel=1e-4)
    for mode, s in zip(m.modes, strengths, strict=True):
        assert mode.start == pytest.approx(time_at(W_START, s, w0), rel=1e-5)
        assert mode.time == pytest.approx(time_at(W_TIME, s, w0), rel=1e-5)
        assert mode.end == pytest.approx(time_at(W_END, s, w0), rel=1e-5)
        assert mode.initial == pytest.approx(w0 / s, rel=1e-9)
    assert len(m.plateaus) == len(m.drops) == 2
    (p1, p2), (d1, d2) = m.plateaus, m.drops
    assert (p1.start, p1.end) == pytest.approx((decay_end, time_at(W_START, 1.0, w0)), rel=1e-4)
    assert p2.start == pytest.approx(time_at(W_END, 1.0, w0), rel=1e-5)
    assert p2.end == pytest.approx(time_at(W_START, 0.4, w0), rel=1e-5)
    assert (p1.level, p2.level) == pytest.approx((0.58, 0.08))
    assert (d1.level_after, d2.level_after) == pytest.approx((0.08, 0.0))
    assert d2.time == pytest.approx(time_at(W_TIME, 0.4, w0), rel=1e-5)
    assert d2.width == pytest.approx(d2.end - d2.start)
    assert m.tail is not None and m.tail.start == d2.end
    d = m.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert len(d["modes"]) == 2 and set(d) >= {"plateaus", "drops", "modes", "off_target"}
    # the shape analysis of the same loss finds the same two steps
    p = analyze(t, loss, m.l_ref)
    assert len(p.plateaus) == 2
    for shape, mech in zip(p.drops, m.drops, strict=True):
        assert shape.time == pytest.approx(mech.time, rel=0.02)


def test_modes_learned_together_make_one_drop():
    strengths, w0 = (1.0, 0.9), 1e-6  # mode 2 starts (t = 6.0) before mode 1 ends (t = 7.3)
    assert time_at(W_START, 0.9, w0) < time_at(W_END, 1.0, w0)
    t = np.linspace(0.0, 20.0, 20_001)
    cosines, norms, loss, *_ = synthetic(t, strengths, w0, 1e-4, 1.0)
    m = mechanistic_phases(t, loss, cosines, norms, strengths)
    assert m.initial is None  # the off-target part is negligible from the start
    assert len(m.plateaus) == len(m.drops) == 1
    drop = m.drops[0]
    assert drop.start == pytest.approx(time_at(W_START, 1.0, w0), rel=1e-5)
    assert drop.end == pytest.approx(time_at(W_END, 0.9, w0), rel=1e-5)
    assert drop.time == pytest.approx(time_at(W_TIME, 1.0, w0), rel=1e-5)  # the stronger
    assert (drop.level_before, drop.level_after) == pytest.approx((0.5 * 1.81, 0.0))


def test_overlapping_group_ends_at_its_last_mode():
    # A (s = 0.5) learns over t = 3.3 .. 7.0; B (s = 1) starts at 4.3 and is done at 6.2;
    # C (s = 0.3) starts at 6.5, after B's end but before A's: all three make one drop
    strengths, w0 = (0.5, 1.0, 0.3), (1e-3, 1e-5, 0.3 / 915)
    starts = [time_at(W_START, s, w) for s, w in zip(strengths, w0, strict=True)]
    ends = [time_at(W_END, s, w) for s, w in zip(strengths, w0, strict=True)]
    assert ends[1] < starts[2] < ends[0]
    t = np.linspace(0.0, 25.0, 25_001)
    cosines, norms, loss, *_ = synthetic(t, strengths, w0, 1e-4, 1.0)
    m = mechanistic_phases(t, loss, cosines, norms, strengths)
    assert len(m.plateaus) == len(m.drops) == 1
    drop = m.drops[0]
    assert (drop.start, drop.end) == pytest.approx((starts[0], ends[2]), rel=1e-5)
    assert drop.time == pytest.approx(time_at(W_TIME, 1.0, 1e-5), rel=1e-5)  # the strongest


def test_large_aligned_start_has_no_plateau():
    """A low-rank multi-component task without an S-curve: w0 = s/2 on both modes."""
    strengths = (1.0, 0.5)
    t = np.linspace(0.0, 15.0, 15_001)
    cosines, norms, loss, *_ = synthetic(t, strengths, 0.5, 1e-4, 1.0)
    # w0 = 0.5 s_1 is past mode 1's start; mode 2 (w0 = s_2) is learned from t = 0
    cosines2, norms2, loss2, *_ = synthetic(t, (1.0,), 0.5, 1e-4, 1.0)
    for cos, nrm, curve, s in (
        (cosines, norms, loss, strengths),
        (cosines2, norms2, loss2, (1.0,)),
    ):
        m = mechanistic_phases(t, curve, cos, nrm, s)
        assert m.plateaus == [] and m.drops == []
        assert m.modes[0].start == 0.0
        assert analyze(t, curve, m.l_ref).plateaus == []


def test_mode_never_learned():
    t = np.linspace(0.0, 5.0, 5001)
    cosines, norms, loss, *_ = synthetic(t, (1.0,), 1e-8, 1e-4, 1.0)  # learned at t ~ 9
    m = mechanistic_phases(t, loss, cosines, norms, [1.0])
    assert m.modes[0].start is None and m.modes[0].end is None
    assert m.plateaus == [] and m.tail is None
    assert "never" in m.describe()


def test_invalid_input():
    t = np.linspace(0.0, 1.0, 11)
    cosines, norms, loss, *_ = synthetic(t, (1.0,), 0.01, 0.1, 1.0)
    with pytest.raises(ValueError, match="s must be"):
        mechanistic_phases(t, loss, cosines, norms, [0.0])
    with pytest.raises(ValueError, match="shapes"):
        mechanistic_phases(t, loss, cosines, norms, [1.0, 0.5])
    with pytest.raises(ValueError, match="factors"):
        mechanistic_phases(t, loss, cosines, norms, [1.0], factors=("X",))


# -- the rank-1 problem through the package's integrator --------------------------------------


def reduced_rank1(s, p0, q0, bx0, by0, t_end):
    def rhs(_, z):
        p, q, bx, by = z
        nx, ny = p * p + bx * bx, q * q + by * by
        return [s * q - p * ny, s * p - q * nx, -bx * ny, -by * nx]

    return solve_ivp(
        rhs,
        (0, t_end),
        [p0, q0, bx0, by0],
        dense_output=True,
        rtol=1e-11,
        atol=1e-14,
        method="DOP853",
    ).sol


@pytest.mark.parametrize(("w0", "beta"), [(1e-3, 0.9), (1e-5, 0.6), (1e-4, 1e-3)])
def test_rank1_aligned_start_with_off_target_part(w0, beta):
    n, s = 8, 0.8
    basis = np.linalg.qr(np.random.default_rng(3).standard_normal((n, n)))[0]
    u, v, e, f = basis[:, 0], basis[:, 1], basis[:, 2], basis[:, 3]
    spec = Factorization(
        A=math.sqrt(s) * u[:, None],
        B=math.sqrt(s) * v[:, None],
        X0=(math.sqrt(w0) * u + beta * e)[:, None],
        Y0=(math.sqrt(w0) * v + beta * f)[:, None],
    )
    traj = predict(spec, Flow())
    m = mechanistic_phases(traj.t, traj.loss, traj.cosines, traj.norms, [s])

    sol = reduced_rank1(s, math.sqrt(w0), math.sqrt(w0), beta, beta, traj.t[-1])

    def parts(x):
        p, q, bx, by = sol(x)
        return 0.5 * (s - p * q) ** 2, 0.5 * ((p * p + bx * bx) * (q * q + by * by) - (p * q) ** 2)

    def w_at(x):
        p, q, *_ = sol(x)
        return p * q

    on0, off0 = parts(0.0)
    assert m.off_target == pytest.approx(off0 / on0, rel=1e-6)
    if off0 > 0.1 * on0:  # first sign change of L_off - 0.1·L_on on a fine grid, then a root
        grid = np.linspace(0.0, traj.t[-1], 20_001)
        on_grid, off_grid = parts(grid)
        gap = off_grid - 0.1 * on_grid
        i = int(np.argmax(gap <= 0))
        decay_end = brentq(lambda x: parts(x)[1] - 0.1 * parts(x)[0], grid[i - 1], grid[i])
        assert m.initial.end == pytest.approx(decay_end, rel=2e-3)
    else:
        assert m.initial is None
    t_mode = {
        f: brentq(lambda x, f=f: w_at(x) - f * s, 0.0, traj.t[-1]) for f in (W_START, W_TIME, W_END)
    }
    mode = m.modes[0]
    assert (mode.start, mode.time, mode.end) == pytest.approx(
        (t_mode[W_START], t_mode[W_TIME], t_mode[W_END]), rel=2e-3
    )
    assert len(m.plateaus) == 1 and m.plateaus[0].end == mode.start

    # the shape analysis against the mechanism: one plateau near L_ref, ending where the
    # mode's residual is 90 % (to 10 %), steepest fall at w = s/3 (to 3 %); it starts
    # once the off-target part is at most 30 % of the on-target residual
    p = analyze(traj.t, traj.loss, traj.l_ref)
    assert len(p.plateaus) == 1, p.describe()
    assert p.plateaus[0].level == pytest.approx(traj.l_ref, rel=0.05)
    assert p.plateaus[0].end == pytest.approx(t_mode[W_START], rel=0.1)
    assert p.drops[0].time == pytest.approx(t_mode[W_TIME], rel=0.03)
    on, off = parts(p.plateaus[0].start)
    assert off <= 0.3 * on


# -- the user's curve: rank 1, n = 100, σ = 0.1 and 0.2 -------------------------------------


@pytest.fixture(scope="module", params=[0.1, 0.2])
def user_curve(request):
    spec = Factorization.sample(n=100, rank=1, model_rank=1, init=request.param, seed=1)
    return spec, predict(spec, Flow())


def test_user_rank1_curve_decay_plateau_drop(user_curve):
    """Decays fast, sits on a shoulder near L_ref until t ~ 2.5-3, then drops in an S."""
    spec, traj = user_curve
    s = float(np.linalg.norm(spec.A) * np.linalg.norm(spec.B))
    # the mechanism, from the trajectory's order parameters
    w = (
        traj.cosines["X"][:, 0, 0]
        * traj.norms["X"][:, 0]
        * traj.cosines["Y"][:, 0, 0]
        * traj.norms["Y"][:, 0]
    )
    on = 0.5 * (s - w) ** 2
    off = traj.loss - on

    def first(g):
        i = int(np.argmax(g >= 0))
        return traj.t[i - 1] + (traj.t[i] - traj.t[i - 1]) * -g[i - 1] / (g[i] - g[i - 1])

    decay_end, t_start, t_third = first(0.1 * on - off), first(w - W_START * s), first(w - s / 3)

    p = analyze(traj.t, traj.loss, traj.l_ref)
    assert p.initial is not None and len(p.plateaus) == len(p.drops) == 1, p.describe()
    plateau, drop = p.plateaus[0], p.drops[0]
    # a shoulder at t ~ 1: it starts within a factor 2 of the mechanism's decay end
    assert 0.5 * decay_end <= plateau.start <= 2 * decay_end
    assert 0.5 <= plateau.start <= 2.0
    assert plateau.level == pytest.approx(traj.l_ref, rel=0.05)
    assert plateau.end == pytest.approx(t_start, rel=0.1)
    assert drop.time == pytest.approx(t_third, rel=0.03)
    assert drop.level_after < 1e-4 * traj.l_ref and p.tail.kind == "exponential"

    m = mechanistic_phases(traj.t, traj.loss, traj.cosines, traj.norms, [s])
    assert m.initial.end == pytest.approx(decay_end, rel=1e-9)
    assert m.plateaus[0].end == pytest.approx(t_start, rel=1e-9)
    assert m.drops[0].time == pytest.approx(t_third, rel=1e-9)


def test_theory_staircase_rank3():
    """Rank 3, s = (1, 0.5, 0.25), small start: three plateaus at ½Σ_{i>=k} s_i²."""
    strengths = [1.0, 0.5, 0.25]
    spec = Factorization.sample(n=30, rank=3, init=1e-3, singular_values=strengths, seed=0)
    traj = predict(spec, Flow())
    s = np.linalg.norm(spec.A, axis=0) * np.linalg.norm(spec.B, axis=0)
    assert s == pytest.approx(strengths)
    p = analyze(traj.t, traj.loss, traj.l_ref)
    m = mechanistic_phases(traj.t, traj.loss, traj.cosines, traj.norms, s)
    assert len(p.plateaus) == len(m.plateaus) == 3, p.describe()
    for k, (shape, mech) in enumerate(zip(p.plateaus, m.plateaus, strict=True)):
        assert mech.level == pytest.approx(0.5 * sum(x * x for x in strengths[k:]))
        assert shape.level == pytest.approx(mech.level, rel=0.06)
        assert shape.end == pytest.approx(mech.end, rel=0.1)
    for shape, mech in zip(p.drops, m.drops, strict=True):
        assert shape.time == pytest.approx(mech.time, rel=0.02)


def test_target_rotated_into_its_singular_basis():
    """target=(A, B) with non-orthogonal columns: overlaps in the SVD basis of A Bᵀ."""
    rng = np.random.default_rng(5)
    n, r, k = 20, 3, 2
    a, b = rng.standard_normal((2, n, r))
    xs, ys = rng.standard_normal((2, 4, n, k))  # four "time samples" of X and Y
    c = a @ b.T
    u, sv, vt = np.linalg.svd(c)
    u, sv, v = u[:, :r], sv[:r], vt[:r].T

    def cos_norm(target, w):
        cos = (target.T @ w) / np.outer(np.linalg.norm(target, axis=0), np.linalg.norm(w, axis=0))
        return cos, np.linalg.norm(w, axis=0)

    cx, nx = zip(*(cos_norm(a, x) for x in xs), strict=True)
    cy, ny = zip(*(cos_norm(b, y) for y in ys), strict=True)
    cosines = {"X": np.array(cx), "Y": np.array(cy)}
    norms = {"X": np.array(nx), "Y": np.array(ny)}
    loss = np.array([0.5 * np.sum((c - x @ y.T) ** 2) for x, y in zip(xs, ys, strict=True)])
    t = np.arange(4.0)
    m = mechanistic_phases(t, loss, cosines, norms, target=(a, b))
    assert m.l_ref == pytest.approx(0.5 * np.sum(c**2), rel=1e-12)
    assert [mode.strength for mode in m.modes] == pytest.approx(sv, rel=1e-12)
    model = u.T @ xs[0] @ ys[0].T @ v  # sign-free: u_j and v_j flip together
    assert [mode.initial for mode in m.modes] == pytest.approx(np.diag(model) / sv, rel=1e-9)
    on = 0.5 * np.sum((np.diag(sv) - model) ** 2)
    assert m.off_target == pytest.approx((loss[0] - on) / on, rel=1e-9)
    with pytest.raises(ValueError, match="exactly one"):
        mechanistic_phases(t, loss, cosines, norms, sv, target=(a, b))
    with pytest.raises(ValueError, match="exactly one"):
        mechanistic_phases(t, loss, cosines, norms)


def test_theory_rank10_random_target_learns_its_weakest_mode_last():
    """n = 100, rank 10, i.i.d. N(0, 1/n) factors, σ = 1e-3: the weakest singular mode
    (s ≈ 0.55) is learned alone, well after the rest: a second plateau at ½ s_min²."""
    spec = Factorization.sample(n=100, rank=10, init=1e-3, seed=1)
    traj = predict(spec, Flow())
    sv = np.linalg.svd(spec.A @ spec.B.T, compute_uv=False)[:10]
    p = analyze(traj.t, traj.loss, traj.l_ref)
    m = mechanistic_phases(traj.t, traj.loss, traj.cosines, traj.norms, target=(spec.A, spec.B))
    assert len(p.plateaus) == len(m.plateaus) == 2, p.describe()
    assert m.plateaus[1].level == pytest.approx(0.5 * sv[-1] ** 2, rel=1e-9)
    assert p.plateaus[1].level == pytest.approx(0.5 * sv[-1] ** 2, rel=0.05)
    for shape, mech in zip(p.drops, m.drops, strict=True):
        assert shape.time == pytest.approx(mech.time, rel=0.03)
    assert p.plateaus[1].end == pytest.approx(m.plateaus[1].end, rel=0.05)
