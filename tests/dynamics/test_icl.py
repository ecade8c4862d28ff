"""In-context linear regression with merged linear attention (dynamics/models/icl.py).

Oracles: the linear-attention forward pass on the tokens [x; y] in torch (autograd, full-batch
GD, float64; validation.icl, independent of the SymPy derivation), and, written here, torch
autograd of ½‖y − vWZ‖², an explicit numpy GD of the two-layer network on z, and the paper's
saddle-loss recursion.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynamics import symbolic as S
from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.model import get
from dynamics.models.icl import (
    IclError,
    covariance,
    features,
    saddle_levels,
    sample_icl,
    sequences,
)
from dynamics.phases import analyze
from dynamics.problems import load, save


def test_covariance_has_unit_trace_and_eigenvalues_proportional_to_1_to_d():
    cov = covariance(5, seed=3)
    assert np.trace(cov) == pytest.approx(1.0, rel=1e-14)
    assert np.allclose(np.linalg.eigvalsh(cov), np.arange(1, 6) / 15, rtol=0, atol=1e-14)
    assert not np.allclose(cov, np.diag(np.diag(cov)))  # a random basis, not the axes
    assert np.array_equal(cov, covariance(5, seed=3))


def test_sequences_draw_fresh_w_per_sequence():
    """yₙ = w_pᵀxₙ with one w_p per sequence: each sequence's y lies in the span of its x
    (least squares recovers w_p exactly), and w differs between sequences."""
    x, y = sequences(covariance(3, seed=0), context=8, count=50, seed=1)
    w = np.array([np.linalg.lstsq(x[p], y[p], rcond=None)[0] for p in range(50)])
    assert np.allclose(np.einsum("pnd,pd->pn", x, w), y, atol=1e-12)
    assert np.std(w, axis=0).min() > 0.5
    emp = np.einsum("pni,pnj->ij", x, x) / (50 * 9)  # sample covariance ≈ Λ (450 draws)
    assert np.abs(emp - covariance(3, seed=0)).max() < 0.1


def test_merged_attention_equals_its_mlp_twin_at_every_gd_step():
    """Full-batch GD (float64) of linear attention computed on the tokens, through torch
    autograd (validation.icl, which shares nothing with the derivation), against scurve's exact
    reduced GD map of ½‖y − vWZ‖² from the same initialisation: the loss at every one of 300
    steps to 1e-12 relative."""
    from validation.icl import attention_gd

    dim, context, count, heads = 3, 7, 200, 2
    spec = sample_icl(dim, context, count, heads, init=0.3, seed=4)
    lr, steps = 2e-4, 300
    traj = predict(spec, Discrete(lr), t_max=lr * steps)
    x, y = sequences(covariance(dim, seed=4), context, count, seed=5)  # sample_icl's draws
    v = spec.values()
    assert np.allclose(features(x, y)[0], v["Z"], rtol=0, atol=0)
    want = attention_gd(x, y, v["W"], v["v"], lr, steps)[traj.steps]
    assert want[-1] < 0.5 * want[0]  # it learned: the comparison covers the drop
    assert np.max(np.abs(traj.loss / want - 1)) < 1e-12


def test_derived_gradient_equals_autograd():
    """The derived gradient of ½‖y − vWZ‖² against torch autograd at a random point, 1e-12."""
    spec = sample_icl(3, 5, 40, 4, init=0.5, seed=0)
    values = spec.values()
    grad = S.full_flow(get("icl")).grad(values, 0.0)
    t = {k: torch.tensor(a, requires_grad=True) for k, a in values.items()}
    loss = 0.5 * torch.sum((t["y"] - t["v"] @ t["W"] @ t["Z"]) ** 2)
    gw, gv = torch.autograd.grad(loss, [t["W"], t["v"]])
    assert np.abs(grad["W"] - gw.numpy()).max() < 1e-12 * np.abs(gw.numpy()).max()
    assert np.abs(grad["v"] - gv.numpy()).max() < 1e-12 * np.abs(gv.numpy()).max()


def test_reduced_gd_and_trainer_equal_numpy_gd():
    """The reduced GD map and the generated torch trainer (float64) against explicit numpy GD
    on the raw features, every step to 1e-9 relative."""
    from validation.training import TrainConfig, train

    spec = sample_icl(3, 6, 150, 3, init=0.2, seed=1)
    lr, steps = 3e-4, 200
    v = spec.values()
    z, y, w, vv = v["Z"], v["y"], v["W"].copy(), v["v"].copy()
    losses = []
    for _ in range(steps + 1):
        e = y - vv @ w @ z
        losses.append(0.5 * float(np.sum(e**2)))
        w, vv = w + lr * vv.T @ e @ z.T, vv + lr * e @ (w @ z).T
    losses = np.array(losses)
    assert losses[-1] < 0.5 * losses[0]
    traj = predict(spec, Discrete(lr), t_max=lr * steps)
    assert np.max(np.abs(traj.loss / losses[traj.steps] - 1)) < 1e-9
    run = train(spec, TrainConfig(lr=lr, steps=steps, dtype="float64", device="cpu"))
    assert np.max(np.abs(run.loss[0] / losses - 1)) < 1e-9


def test_state_does_not_grow_with_the_sequence_count():
    """The sequences enter through Z Zᵀ and y Zᵀ: the same reduced state at P = 1 000 and
    100 000 (the weights W, v: H·D² + H numbers)."""
    sizes = []
    for count in (1_000, 100_000):
        spec = sample_icl(2, 4, count, 2, init=0.1, seed=0)
        sizes.append(predict(spec, Discrete(1e-6), t_max=1e-6).state_size)
    assert sizes == [2 * 4 + 2] * 2


def _paper_levels(lam, n):
    """𝓛₀ = tr Λ, 𝓛ₘ₊₁ = 𝓛ₘ − λₘ/(1 + (1 + tr Λ/λₘ)/N), λ decreasing (written out here)."""
    lam = sorted(lam, reverse=True)
    out = [sum(lam)]
    for m in lam:
        out.append(out[-1] - m / (1 + (1 + sum(lam) / m) / n))
    return np.array(out)


def test_saddle_levels_match_the_paper_numbers():
    """The issue's 𝓛₁..𝓛₄/𝓛₀ = 0.6406, 0.3774, 0.2098, 0.1360 for D = 4, N = 31."""
    want = _paper_levels([0.1, 0.2, 0.3, 0.4], 31)
    assert np.allclose(want[1:] / want[0], [0.6406, 0.3774, 0.2098, 0.1360], atol=6e-5)
    assert np.allclose(saddle_levels(np.array([0.3, 0.1, 0.4, 0.2]), 31), want, rtol=1e-14)


def test_merged_model_drops_once_to_the_last_saddle_level():
    """Merged heads learn every component at once: one drop, from L_ref to the last level
    𝓛_D/𝓛₀ of the paper's recursion (0.1360 at D = 4, N = 31), found by the phase analysis
    of the predicted curve within 3 % (finite P = 3 000 fits the training set a little
    better than the population optimum)."""
    spec = sample_icl(4, 31, 3000, 2, init=1e-3, seed=0)
    traj = predict(spec, Discrete(5e-6), t_max=0.01)
    phases = analyze(traj.t, traj.loss, spec.l_ref)
    want = _paper_levels([0.1, 0.2, 0.3, 0.4], 31)
    assert len(phases.drops) == 1
    assert phases.drops[0].level_after / spec.l_ref == pytest.approx(want[-1] / want[0],
                                                                     rel=0.03)


@pytest.mark.parametrize("kwargs, match", [
    ({"context": 0}, "context"),
    ({"rank": 6}, "rank"),
    ({"cov": np.diag([1.0, 0.0, 1.0, 1.0])}, "positive definite"),
    ({"cov": np.eye(3)}, "shape"),
])
def test_bad_settings_raise_one_line(kwargs, match):
    args = {"dim": 4, "context": 5, "sequences_count": 10, "heads": 1} | kwargs
    with pytest.raises(IclError, match=match) as err:
        sample_icl(**args)
    assert "\n" not in str(err.value)


def test_spec_round_trip(tmp_path):
    spec = sample_icl(2, 3, 20, 2, seed=0)
    got = load(save(spec, tmp_path / "icl.npz"))
    assert got.kind == "icl" and np.array_equal(got.values()["Z"], spec.values()["Z"])


# ------------------------------------------------------------------ separate rank-one heads


def _separate_attention_loss(tokens_x, tokens_y, k, q, v):
    """½ Σ_p (ŷ_p − y_q)² of separate rank-one heads on the tokens [x; y] (query y = 0):
    ŷ = Σ_h Σₙ (κ_hᵀeₙ)(ρ_hᵀe_q) ω_hᵀeₙ, κ_h = [k_h; 0], ρ_h = [q_h; 0], ω_h = v_h e_{D+1}."""
    target = tokens_y[:, -1]
    y_in = tokens_y.clone()
    y_in[:, -1] = 0.0
    e = torch.cat([tokens_x, y_in[..., None]], dim=-1)
    pad = torch.zeros(k.shape[0], 1, dtype=torch.float64)
    kappa, rho = torch.cat([k, pad], 1), torch.cat([q, pad], 1)  # (H, D+1)
    omega = torch.cat([torch.zeros_like(k), v[:, None]], 1)
    keys = torch.einsum("pni,hi->phn", e, kappa)
    query = torch.einsum("pi,hi->ph", e[:, -1], rho)
    vals = torch.einsum("pni,hi->phn", e, omega)
    out = torch.einsum("phn,ph,phn->p", keys, query, vals)
    return 0.5 * torch.sum((out - target) ** 2)


def test_separate_heads_reduced_gd_equals_attention_on_tokens():
    """Rank-one keys and queries: scurve's reduced GD map (per-sample forms through
    Σ_p z_p z_pᵀ) against GD of the attention computed on the tokens (torch autograd,
    float64), the loss at every one of 300 steps to 1e-9 relative."""
    dim, context, count, heads = 3, 6, 150, 2
    spec = sample_icl(dim, context, count, heads, init=0.4, seed=2, separate=True)
    lr, steps = 3e-4, 300
    traj = predict(spec, Discrete(lr), t_max=lr * steps)
    x, y = sequences(covariance(dim, seed=2), context, count, seed=3)
    data = spec.arrays()
    k = torch.tensor(data["K0"][..., 0], requires_grad=True)
    q = torch.tensor(data["Q0"][..., 0], requires_grad=True)
    v = torch.tensor(data["v0"][:, 0, 0], requires_grad=True)
    tx, ty = torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(steps + 1):
        loss = _separate_attention_loss(tx, ty, k, q, v)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, [k, q, v])
        with torch.no_grad():
            for p, g in zip((k, q, v), grads, strict=True):
                p -= lr * g
    want = np.array(losses)[traj.steps]
    assert want[-1] < 0.7 * want[0]
    assert np.max(np.abs(traj.loss / want - 1)) < 1e-9


def _empirical_levels(spec, cov, m_max):
    """The loss of the best Γ = Σ_{i≤m} c_i u_i u_iᵀ (u_i: Λ's eigenvectors, decreasing λ) on
    the spec's own sequences, by least squares: the saddle the m-th plateau rests on."""
    v = spec.arrays()
    z, y = v["Zs"], v["ys"][:, 0, 0]
    u = np.linalg.eigh(cov)[1][:, ::-1]
    out = []
    for m in range(m_max + 1):
        f = np.stack([np.einsum("pij,i,j->p", z, u[:, i], u[:, i]) for i in range(m)], 1) \
            if m else np.zeros((y.size, 0))
        c = np.linalg.lstsq(f, y, rcond=None)[0] if m else np.zeros(0)
        out.append(0.5 * np.sum((y - f @ c) ** 2))
    return np.array(out)


@pytest.mark.slow
def test_separate_heads_rest_on_the_saddle_levels():
    """D = 4, N = 31, P = 100 000, H = 4 rank-one heads: every plateau the phase analysis finds
    on the predicted curve rests on an empirical saddle (least squares on the top-m
    eigen-directions of Λ, decreasing eigenvalue: the components are learned in that order)
    within 1 %, the drops go down the levels in order, and the paper's population levels
    𝓛ₘ/𝓛₀ (recursion written in this file) are met within 3 % (loss per ½P tr Λ)."""
    dim, context, count = 4, 31, 100_000
    spec = sample_icl(dim, context, count, 4, init=1e-2, seed=0, separate=True)
    traj = predict(spec, Discrete(2e-7), t_max=0.006)  # η ∝ 1/P: the same curve in t·P
    phases = analyze(traj.t, traj.loss, spec.l_ref)
    print([p.level / spec.l_ref for p in phases.plateaus], [d.time for d in phases.drops])
    emp = _empirical_levels(spec, covariance(dim, seed=0), dim)
    levels = [p.level for p in phases.plateaus] + [phases.drops[-1].level_after]
    idx = [int(np.argmin(np.abs(emp / lv - 1))) for lv in levels]
    assert idx == sorted(idx) and idx[-1] == dim and len(set(idx)) == len(idx) >= 3
    for lv, i in zip(levels, idx, strict=True):
        assert lv == pytest.approx(emp[i], rel=0.01)
    paper = _paper_levels([0.1, 0.2, 0.3, 0.4], context)
    for lv, i in zip(levels, idx, strict=True):
        assert lv / (count / 2) == pytest.approx(paper[i], rel=0.03)


def test_rate_scale_is_the_spread_of_the_escape_rates():
    """The icl rate scale is (σ₁, σ_D) of B = Σ_p y_p z_p (computed here from the raw sequences),
    for merged and separate specs alike; and the default flow of separate heads — whose loss
    floor 𝓛_D > 0.01 L_ref is never crossed — ends by itself within ~100× the last drop instead of
    running for minutes towards the generic end time 10⁶/√(2 L_ref)."""
    dim, context, count = 3, 7, 400
    x, y = sequences(covariance(dim, seed=2), context, count, seed=3)
    beta = np.einsum("pn,pnd->pd", y[:, :-1], x[:, :-1])
    b = np.einsum("p,pd,pe->de", y[:, -1], beta, x[:, -1])
    want = np.linalg.svd(b, compute_uv=False)[[0, -1]]
    for separate_heads in (False, True):
        spec = sample_icl(dim, context, count, 2, init=0.1, seed=2, separate=separate_heads)
        assert np.allclose(spec.rate_scale(), want, rtol=1e-12)
    spec = sample_icl(dim, context, count, 3, init=1e-2, seed=2, separate=True)
    traj = predict(spec)  # converged: all three heads grown, the loss at its minimum 0.31 L_ref
    drops = analyze(traj.t, traj.loss, spec.l_ref).drops
    assert drops and traj.loss[-1] > 0.01 * spec.l_ref
    assert traj.t[-1] < 100 * drops[-1].time


@pytest.mark.slow
def test_separate_heads_staircase_in_training_six_seeds():
    """The staircase in float32 torch training (6 seeds, D = 4, N = 31, P = 20 000, H = 4,
    σ = 1e-2, η = 0.1/P, t·P to 2500: the last drop of seed 4 is at 1954): every plateau the
    phase analysis finds on a training curve, and its final level, rest on the run's own
    empirical saddles (least squares on the top-m eigen-directions of Λ) within 1 % (measured
    ≤ 0.5 %), in increasing m — the components are learned in decreasing eigenvalue order —
    down to m = D. (Two components may fall in one drop: a plateau can be skipped.)"""
    from validation.training import TrainConfig, train

    dim, context, count, seeds = 4, 31, 20_000, 6
    specs = [sample_icl(dim, context, count, 4, init=1e-2, seed=s, separate=True)
             for s in range(seeds)]
    run = train(specs, TrainConfig(lr=0.1 / count, steps=25_000, dtype="float32",
                                   device="cpu"))
    for s, (spec, traj) in enumerate(zip(specs, run.trajectories, strict=True)):
        phases = analyze(traj.t, traj.loss, spec.l_ref)
        levels = [p.level for p in phases.plateaus] + [float(traj.loss[-1])]
        emp = _empirical_levels(spec, covariance(dim, seed=s), dim)
        idx = [int(np.argmin(np.abs(emp / lv - 1))) for lv in levels]
        assert idx == sorted(idx) and idx[-1] == dim and len(set(idx)) == len(idx) >= 3, (s, idx)
        for lv, i in zip(levels, idx, strict=True):
            assert lv == pytest.approx(emp[i], rel=0.01), (s, i)


@pytest.mark.slow
def test_empirical_saddles_tend_to_the_paper_levels():
    """The saddles a finite training set rests on (least squares, as above) against the paper's
    population levels 𝓛ₘ (per ½P): at P = 100 000 within 3 % for 6 seeds (measured ≤ 1.3 %; the
    bound is 2.3× the error, not 10×: the deviation is sampling noise ∝ 1/√P, from the heavy
    tails of y_q² = (wᵀx_q)², and 3 % is the issue's bound); at P = 20 000 it is up to 3.8 %."""
    dim, context, count = 4, 31, 100_000
    for s in range(6):
        spec = sample_icl(dim, context, count, 1, init=1e-2, seed=s, separate=True)
        cov = covariance(dim, seed=s)
        paper = _paper_levels(np.linalg.eigvalsh(cov), context)
        emp = _empirical_levels(spec, cov, dim)
        np.testing.assert_allclose(emp / (count / 2), paper, rtol=0.03)
