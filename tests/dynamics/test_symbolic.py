"""Acceptance tests of :mod:`dynamics.symbolic`: derived flows and maps against independent
torch autograd / torch.optim.SGD computations and against each other.

The API under test: ``full_flow(model)`` / ``reduced_flow`` / ``reduced_gd`` of a
:class:`dynamics.model.Model` or registered kind; values are dicts by symbol name (learned and
constants together; the attention head's targets are ``Qs``, ``Ks``, ``Os``, ``Vs``); a reduced
object's ``initial(values)`` gives ``(state, consts)``, the order parameters named by their
contraction (``At_X`` = AᵀX, ``Xt_X`` = XᵀX, ``At_A`` = AᵀA, velocities ``b_X``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dynamics import symbolic as S
from dynamics.problems import AttentionHead, Factorization, Vector

try:  # the tests against torch skip where it is not installed; the others run without it
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares against torch")

# solve_ivp tolerance: at rtol 1e-10 the two integrations differ by ~1e-10 L_ref in L (measured),
# i.e. by 1e-2 relative at L = 1e-8 L_ref; at 1e-13 the difference is ~1e-13 L_ref.
RTOL = 1e-13
ROOT = Path(__file__).resolve().parents[2]
FACTORS = {"vector": {"x": "a"}, "factorization": {"X": "A", "Y": "B"},
           "attention": {f: f"{f}s" for f in "QKOV"}}  # learned -> its target, by symbol name


# ----------------------------------------------------------------------------- torch reference


def torch_loss(kind: str, loss: str, params: dict, targets: dict, kron: bool = False):
    """The data loss written directly in torch (README "Conventions"), no SymPy involved.

    ``params`` by learned name, ``targets`` by *the learned name they are the target of*.
    Attention: ½‖M⊗N − M̃⊗Ñ‖² with ``kron`` (d² x d² matrices, small d only), else the
    inner-product form ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²].
    """
    if kind == "vector":
        return 0.5 * ((targets["x"] - params["x"]) ** 2).sum()
    if kind == "factorization":
        c = targets["X"] @ targets["Y"].T
        z = params["X"] @ params["Y"].T
        if loss == "ce":
            c, z = c.flatten(), z.flatten()
            return (torch.softmax(c, 0) * (torch.log_softmax(c, 0) - torch.log_softmax(z, 0))).sum()
        return 0.5 * ((c - z) ** 2).sum()
    m, n = targets["Q"] @ targets["K"].T, targets["O"] @ targets["V"].T
    mt, nt = params["Q"] @ params["K"].T, params["O"] @ params["V"].T
    if kron:
        return 0.5 * ((torch.kron(m, n) - torch.kron(mt, nt)) ** 2).sum()
    return 0.5 * (
        (m * m).sum() * (n * n).sum()
        - 2 * (m * mt).sum() * (n * nt).sum()
        + (mt * mt).sum() * (nt * nt).sum()
    )


def torch_objective(kind, loss, params, targets, lam):
    decay = sum((w**2).sum() for w in params.values())
    return torch_loss(kind, loss, params, targets, kron=True) + 0.5 * lam * decay


def random_point(kind: str, n: int, r: int, k: int, seed: int, scale: float = 0.7):
    """(params, targets) by learned name (see :func:`torch_loss`)."""
    rng = np.random.default_rng(seed)
    names = FACTORS[kind]
    targets = {f: rng.standard_normal((n, r)) * scale for f in names}
    params = {f: rng.standard_normal((n, k)) * scale for f in names}
    return params, targets


def values(kind: str, params: dict, targets: dict) -> dict:
    """The symbol-name dict the derived programs take: learned, and targets by their own name."""
    return dict(params) | {FACTORS[kind][f]: t for f, t in targets.items()}


def torch_grad_and_hvp(kind, loss, params, targets, lam):
    """(∇(L + ½λ‖θ‖²), ∇²(L + ½λ‖θ‖²)·∇(...)) by autograd (double backward)."""
    tp = {f: torch.tensor(w, requires_grad=True) for f, w in params.items()}
    tt = {f: torch.tensor(t) for f, t in targets.items()}
    grads = torch.autograd.grad(
        torch_objective(kind, loss, tp, tt, lam), list(tp.values()), create_graph=True
    )
    gdotg = sum((g * g.detach()).sum() for g in grads)
    hvp = torch.autograd.grad(gdotg, list(tp.values()))
    names = list(tp)
    return (
        {f: g.detach().numpy() for f, g in zip(names, grads, strict=True)},
        {f: h.numpy() for f, h in zip(names, hvp, strict=True)},
    )


def rel_err(a: dict, b: dict) -> float:
    scale = max(np.max(np.abs(v)) for v in b.values())
    return max(np.max(np.abs(a[f] - b[f])) for f in b) / scale


GRAD_CASES = [
    ("vector", "mse", 7, 1, 1),
    *[("factorization", "mse", 6, r, k) for r in (1, 3) for k in (1, 3)],
    ("attention", "mse", 5, 1, 1),
    ("attention", "mse", 5, 2, 2),
    ("attention", "mse", 5, 2, 3),
    ("factorization", "ce", 6, 2, 3),
]


@needs_torch
@pytest.mark.parametrize(("kind", "loss", "n", "r", "k"), GRAD_CASES)
def test_gradient_and_loss_match_autograd(kind, loss, n, r, k):
    lam = 0.3
    params, targets = random_point(kind, n, r, k, seed=n + 10 * r + k)
    flow = S.full_flow(kind, loss)
    g_torch, _ = torch_grad_and_hvp(kind, loss, params, targets, lam)
    point = values(kind, params, targets)
    assert rel_err(flow.grad(point, lam), g_torch) < 1e-12
    rhs = flow.rhs(point, lam=lam)
    assert rel_err({f: -v for f, v in rhs.items()}, g_torch) < 1e-12
    tp = {f: torch.tensor(v) for f, v in params.items()}
    tt = {f: torch.tensor(v) for f, v in targets.items()}
    want = float(torch_loss(kind, loss, tp, tt, kron=True))
    assert float(torch_loss(kind, loss, tp, tt)) == pytest.approx(want, rel=1e-12)
    assert flow.loss_value(point) == pytest.approx(want, rel=1e-12)


@needs_torch
@pytest.mark.parametrize(
    ("kind", "r", "k"), [("vector", 1, 1), ("factorization", 2, 3), ("attention", 2, 2)]
)
def test_modified_rhs_matches_autograd_hessian_vector_product(kind, r, k):
    lam, eta = 0.2, 0.05
    params, targets = random_point(kind, 6, r, k, seed=3)
    g, hg = torch_grad_and_hvp(kind, "mse", params, targets, lam)
    want = {f: -g[f] - eta / 2 * hg[f] for f in g}
    got = S.full_flow(kind, modified=True).rhs(values(kind, params, targets), lam=lam, lr=eta)
    assert rel_err(got, want) < 1e-12


def test_full_programs_never_form_n_by_n():
    """multi_dot chains: at n = 3000 an n×n float64 matrix would take 72 MB."""
    point = values("factorization", *random_point("factorization", 3000, 2, 2, seed=0))
    plain, modified = S.full_flow("factorization"), S.full_flow("factorization", modified=True)
    plain.grad(point, 0.1)  # warm up (first-call allocations)
    modified.rhs(point, lam=0.1, lr=0.05)
    tracemalloc.start()
    plain.loss_value(point)
    plain.grad(point, 0.1)
    modified.rhs(point, lam=0.1, lr=0.05)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4e6


# ----------------------------------------------------------------------------- flows


def integrate(flow, y0: dict, fixed: dict, lam: float, t_eval, lr: float = 0.0):
    """Integrate a FullFlow (y0 = learned, fixed = constants, by symbol name) or a ReducedFlow
    (y0, fixed = its ``initial(values)``); the loss and the state at t_eval."""
    shapes = {key: v.shape for key, v in y0.items()}
    full = isinstance(flow, S.FullFlow)

    def rhs(state):
        if full:
            return flow.rhs(state | fixed, lam=lam, lr=lr)
        return flow.rhs(state, fixed, lam=lam, lr=lr)

    def fun(_t, y):
        return flow.pack(rhs(flow.unpack(y, shapes)))

    sol = solve_ivp(
        fun, (0.0, t_eval[-1]), flow.pack(y0), method="DOP853", t_eval=t_eval, rtol=RTOL, atol=1e-16
    )
    assert sol.success
    states = [flow.unpack(y, shapes) for y in sol.y.T]
    loss = [flow.loss_value(s | fixed) if full else flow.loss_value(s, fixed) for s in states]
    return np.array(loss), states


def spec_parts(spec):
    """(learned, constants) of a spec, by symbol name."""
    model, point = spec.model, spec.values()
    return ({w: point[w] for w in model.learned_names},
            {c: point[c] for c in model.constant_names})


def compare_full_and_reduced(kind, spec, lam, t_end, modified=False, lr=0.0, samples=201):
    t = np.linspace(0.0, t_end, samples)
    params, consts = spec_parts(spec)
    full, _ = integrate(S.full_flow(kind, modified=modified), params, consts, lam, t, lr)
    flow = S.reduced_flow(kind, modified)
    state, gram = flow.initial(spec.values())
    red, _ = integrate(flow, state, gram, lam, t, lr)
    live = full > 1e-6 * spec.l_ref
    assert live.sum() > samples // 4
    # Below 1e-6 L_ref both losses (½[tr(AᵀA BᵀB) − 2tr(AᵀX (BᵀY)ᵀ) + tr(XᵀX YᵀY)] and its
    # full-parameter twin) are limited by cancellation, ~1e-15 L_ref: check absolute there.
    assert np.max(np.abs(red - full)) < 1e-11 * spec.l_ref
    return np.max(np.abs(red[live] / full[live] - 1)), full


def test_reduced_flow_matches_full_flow_vector():
    spec = Vector.sample(n=40, init=0.1, seed=3)
    err, _ = compare_full_and_reduced("vector", spec, 0.1, 10.0)
    assert err < 1e-7


@pytest.mark.parametrize(("k", "lam"), [(1, 0.0), (2, 0.05), (10, 0.0)])
def test_reduced_flow_matches_full_flow_factorization(k, lam):
    spec = Factorization.sample(
        n=100, rank=3, model_rank=k, init=0.01, singular_values=[2.0, 1.0, 0.5], seed=k
    )
    err, full = compare_full_and_reduced("factorization", spec, lam, 25.0)
    assert full[-1] < 0.3 * spec.l_ref  # the first plateau ended inside the window
    assert err < 1e-7


def test_reduced_flow_matches_full_flow_attention():
    spec = AttentionHead.sample(d=20, rank=2, init=0.1, singular_values=[1.0, 0.7], seed=1)
    err, full = compare_full_and_reduced("attention", spec, 0.002, 60.0)
    assert full[-1] < 1e-3 * spec.l_ref
    assert err < 1e-7


def test_balance_conserved_without_decay():
    """XᵀX − YᵀY is conserved by the λ = 0 flow (full), and Xt_X − Yt_Y by the reduced flow."""
    spec = Factorization.sample(
        n=100, rank=2, model_rank=2, init=0.1, singular_values=[2.0, 1.0], seed=4
    )
    t = np.linspace(0.0, 10.0, 51)
    params, consts = spec_parts(spec)
    loss, states = integrate(S.full_flow("factorization"), params, consts, 0.0, t)
    assert loss[-1] < 1e-3 * spec.l_ref
    balance = [s["X"].T @ s["X"] - s["Y"].T @ s["Y"] for s in states]
    assert np.max(np.abs(balance[0])) > 0.1
    assert max(np.max(np.abs(b - balance[0])) for b in balance) < 1e-9
    flow = S.reduced_flow("factorization")
    state, gram = flow.initial(spec.values())
    _, states = integrate(flow, state, gram, 0.0, t)
    drift = max(np.max(np.abs(s["Xt_X"] - s["Yt_Y"] - balance[0])) for s in states)
    assert drift < 1e-9


# ----------------------------------------------------------------------------- GD maps


def reduced_gd_losses(kind, spec, lr, lam, mu, steps):
    gd = S.reduced_gd(kind, momentum=mu != 0.0)
    state, gram = gd.initial(spec.values())
    losses = [gd.loss_value(state, gram)]
    for _ in range(steps):
        state = gd.step(state, gram, lam=lam, lr=lr, mu=mu)
        losses.append(gd.loss_value(state, gram))
    return np.array(losses)


def torch_sgd_losses(kind, spec, lr, lam, mu, steps):
    """Full-parameter GD with torch.optim.SGD (float64) on the torch-written loss."""
    params, consts = spec_parts(spec)
    targets = {f: consts[t] for f, t in FACTORS[kind].items()}
    tp = {f: torch.tensor(w, requires_grad=True) for f, w in params.items()}
    tt = {f: torch.tensor(t) for f, t in targets.items()}
    opt = torch.optim.SGD(tp.values(), lr=lr, momentum=mu, weight_decay=lam)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        value = torch_loss(kind, "mse", tp, tt)
        losses.append(value.item())
        value.backward()
        opt.step()
    losses.append(torch_loss(kind, "mse", tp, tt).item())
    return np.array(losses)


GD_CASES = [
    ("factorization", 0.0, 0.0),
    pytest.param("factorization", 0.05, 0.0, marks=pytest.mark.slow),
    ("factorization", 0.02, 0.5),
    ("attention", 0.0, 0.0),
    pytest.param("attention", 0.01, 0.5, marks=pytest.mark.slow),
    pytest.param("vector", 0.0, 0.0, marks=pytest.mark.slow),
    ("vector", 0.1, 0.9),
]


@needs_torch
@pytest.mark.parametrize(("kind", "lam", "mu"), GD_CASES)
def test_reduced_gd_matches_torch_sgd(kind, lam, mu):
    steps, lr = 2000, 0.1
    if kind == "attention":
        spec = AttentionHead.sample(d=20, rank=2, init=0.1, singular_values=[1.0, 0.7], seed=1)
    elif kind == "vector":
        spec = Vector.sample(n=50, init=0.1, seed=2)
    else:
        spec = Factorization.sample(
            n=100, rank=2, model_rank=3, init=0.01, singular_values=[2.0, 1.0], seed=5
        )
    red = reduced_gd_losses(kind, spec, lr, lam, mu, steps)
    ref = torch_sgd_losses(kind, spec, lr, lam, mu, steps)
    assert red[-1] < 0.5 * spec.l_ref  # the plateau ended inside the window
    # 1e-9 relative down to L = 1e-5 L_ref; below, the reduced loss ½[tr(AᵀA BᵀB)
    # − 2tr(AᵀX (BᵀY)ᵀ) + tr(XᵀX YᵀY)] cancels to an absolute rounding floor of ~1e-15 L_ref.
    live = ref > 1e-5 * spec.l_ref
    assert live.sum() > 50
    assert np.max(np.abs(red[live] / ref[live] - 1)) < 1e-9
    assert np.max(np.abs(red - ref)) < 1e-13 * spec.l_ref


def test_reduced_gd_momentum_starts_from_zero_velocity_as_torch():
    """``initial`` starts every velocity pair at 0, so the first momentum step is b' = g, the
    plain GD step (torch's first step sets buf = g)."""
    spec = Factorization.sample(n=30, rank=2, init=0.1, seed=0)
    momentum, plain = S.reduced_gd("factorization", momentum=True), S.reduced_gd("factorization")
    zero, gram = momentum.initial(spec.values())
    state, gram_plain = plain.initial(spec.values())
    assert set(momentum.velocity) == {"b_X", "b_Y"}
    velocity = [key for key in zero if "b_" in key]
    assert set(velocity) == {"At_b_X", "Bt_b_Y", "Xt_b_X", "Yt_b_Y", "b_Xt_b_X", "b_Yt_b_Y"}
    assert all(not np.any(zero[key]) for key in velocity)
    assert zero["At_b_X"].shape == (2, 2) and zero["b_Yt_b_Y"].shape == (2, 2)
    for key in gram:
        np.testing.assert_array_equal(gram[key], gram_plain[key])
    with_mu = momentum.step(zero, gram, lam=0.0, lr=0.1, mu=0.9)
    without = plain.step(state, gram, lam=0.0, lr=0.1)
    for key in without:
        np.testing.assert_allclose(with_mu[key], without[key], rtol=1e-14, atol=1e-16)
    with pytest.raises(ValueError, match="momentum"):
        plain.step(state, gram, lam=0.0, lr=0.1, mu=0.5)


# ----------------------------------------------------------------------------- modified equation


def crossing_time(t: np.ndarray, loss: np.ndarray, level: float) -> float:
    """First t with loss ≤ level, interpolated linearly in log loss (README "Conventions")."""
    i = int(np.argmax(loss <= level))
    assert loss[i] <= level and i > 0
    a, b = np.log(loss[i - 1]), np.log(loss[i])
    return float(t[i - 1] + (np.log(level) - a) / (b - a) * (t[i] - t[i - 1]))


def test_modified_equation_tracks_gd():
    """Reduced modified flow = full modified flow; modified t_0.5 ≈ GD's, plain flow's is off."""
    lr, steps = 0.05, 400
    spec = Factorization.sample(
        n=50, rank=2, model_rank=2, init=0.01, singular_values=[2.0, 1.0], seed=6
    )
    t = lr * np.arange(steps + 1)
    err, modified = compare_full_and_reduced(
        "factorization", spec, 0.0, t[-1], modified=True, lr=lr, samples=steps + 1
    )
    assert err < 1e-7
    flow = S.reduced_flow("factorization")
    state, gram = flow.initial(spec.values())
    plain, _ = integrate(flow, state, gram, 0.0, t)
    gd = reduced_gd_losses("factorization", spec, lr, 0.0, 0.0, steps)
    half = 0.5 * spec.l_ref
    t_gd, t_mod, t_plain = (crossing_time(t, x, half) for x in (gd, modified, plain))
    err_plain, err_mod = abs(t_plain - t_gd) / t_gd, abs(t_mod - t_gd) / t_gd
    print(
        f"t_0.5: GD {t_gd:.5f}  plain flow {t_plain:.5f} ({err_plain:.2e})  "
        f"modified {t_mod:.5f} ({err_mod:.2e})"
    )
    assert err_plain > 0.01
    assert err_mod < 0.1 * err_plain


@pytest.mark.slow
def test_reduced_modified_flow_matches_full_attention():
    spec = AttentionHead.sample(d=20, rank=2, init=0.1, singular_values=[1.0, 0.7], seed=1)
    err, full = compare_full_and_reduced("attention", spec, 0.002, 60.0, modified=True, lr=0.05)
    assert full[-1] < 1e-3 * spec.l_ref
    assert err < 1e-7


# ----------------------------------------------------------------------------- LaTeX, cache, API


def test_latex_names_the_order_parameters():
    """Order parameters print as their contraction, (Aᵀ X); velocities as b_X."""
    fact = S.reduced_flow("factorization").latex()
    assert fact[0].startswith("L = ") and r"A^{\top} A B^{\top} B" in fact[0]
    assert any(line.startswith(r"\frac{d(A^{\top} X)}{dt} = ")
               and r"A^{\top} A B^{\top} Y" in line for line in fact)
    assert any(line.startswith(r"\frac{d(Y^{\top} Y)}{dt} = ") for line in fact)
    assert r"Q^{\star}" in "".join(S.reduced_flow("attention").latex())
    assert any(
        line.startswith(r"(A^{\top} b_{X})' = ") and r"\mu" in line
        for line in S.reduced_gd("factorization", momentum=True).latex()
    )
    assert any(
        r"\frac{dX}{dt} = " in line and r"\eta" in line
        for line in S.full_flow("factorization", modified=True).latex()
    )
    ce = S.full_flow("factorization", "ce").latex()
    assert r"\frac{\partial L}{\partial z_{i}}" in ce[1] and r"\log" in ce[0]
    for obj in (S.full_flow("vector"), S.reduced_gd("vector"), S.reduced_flow("vector", True)):
        assert obj.latex() and all(len(line) > 4 for line in obj.latex())


def test_latex_has_no_double_superscript():
    r"""A name with a superscript (Q^{\star}) transposed must be braced, {Q^{\star}}^{\top}:
    ``Q^{\star}^{\top}`` is a LaTeX error ("Double superscript")."""
    lines = [*S.reduced_flow("attention").latex(), *S.reduced_gd("attention", True).latex(),
             *S.full_flow("attention").latex()]
    text = "".join(lines)
    assert r"{Q^{\star}}^{\top}" in text
    assert not re.search(r"\^\{[^{}]*\}\^", text)


def test_reduced_factorization_equations_match_design():
    """The factorization's order-parameter flow, P = AᵀX, Q = BᵀY, U = XᵀX, V = YᵀY, G_A = AᵀA,
    G_B = BᵀB:
    dP/dt = G_A Q − P V − λP, dU/dt = PᵀQ + QᵀP − UV − VU − 2λU."""
    rng = np.random.default_rng(0)
    p, q = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    u, v = (m @ m.T for m in rng.standard_normal((2, 3, 3)))
    ga, gb = (m @ m.T for m in rng.standard_normal((2, 2, 2)))
    lam = 0.3
    flow = S.reduced_flow("factorization")
    assert set(flow.keys) == {"At_X", "Bt_Y", "Xt_X", "Yt_Y"}
    assert set(flow.constants) == {"At_A", "Bt_B"}
    out = flow.rhs({"At_X": p, "Xt_X": u, "Bt_Y": q, "Yt_Y": v}, {"At_A": ga, "Bt_B": gb}, lam=lam)
    np.testing.assert_allclose(out["At_X"], ga @ q - p @ v - lam * p, rtol=1e-13)
    np.testing.assert_allclose(out["Bt_Y"], gb @ p - q @ u - lam * q, rtol=1e-13)
    np.testing.assert_allclose(
        out["Xt_X"], p.T @ q + q.T @ p - u @ v - v @ u - 2 * lam * u, rtol=1e-13
    )
    np.testing.assert_allclose(
        out["Yt_Y"], q.T @ p + p.T @ q - v @ u - u @ v - 2 * lam * v, rtol=1e-13
    )


def test_initial_state_is_the_contractions():
    spec = Factorization.sample(n=10, rank=2, model_rank=3, seed=0)
    v = spec.values()
    state, consts = S.reduced_flow("factorization").initial(v)
    want = {"At_X": v["A"].T @ v["X"], "Bt_Y": v["B"].T @ v["Y"], "Xt_X": v["X"].T @ v["X"],
            "Yt_Y": v["Y"].T @ v["Y"], "At_A": v["A"].T @ v["A"], "Bt_B": v["B"].T @ v["B"]}
    for key, value in (state | consts).items():
        np.testing.assert_allclose(value, want[key], rtol=1e-15, atol=1e-15)


def test_pack_unpack_round_trip_and_errors():
    flow = S.reduced_flow("factorization")
    state, _ = flow.initial(Factorization.sample(n=10, rank=2, model_rank=3, seed=0).values())
    shapes = {key: v.shape for key, v in state.items()}
    back = flow.unpack(flow.pack(state), shapes)
    assert list(back) == list(flow.keys) == ["At_X", "Bt_Y", "Xt_X", "Yt_Y"]
    for key in state:
        np.testing.assert_array_equal(back[key], state[key])
    with pytest.raises(ValueError, match="does not match"):
        flow.unpack(np.zeros(3), shapes)
    with pytest.raises(ValueError, match="kind"):
        S.reduced_flow("mlp")
    with pytest.raises(ValueError, match="ce"):
        S.full_flow("attention", "ce")  # the attention head has no cross-entropy loss
    with pytest.raises(S.ReductionError, match="cross-entropy"):
        S.reduced_flow(S.resolve("factorization", "ce"))


CACHE_SCRIPT = """
import json, numpy as np
from dynamics.symbolic import reduced_flow
flow = reduced_flow("factorization")
rng = np.random.default_rng(0)
state = {"At_X": rng.standard_normal((2, 2)), "Xt_X": np.eye(2),
         "Bt_Y": rng.standard_normal((2, 2)), "Yt_Y": np.eye(2)}
out = flow.rhs(state, {"At_A": np.eye(2), "Bt_B": 2 * np.eye(2)}, lam=0.1)
print(json.dumps({"derived": flow.derived, "rhs": {k: v.tolist() for k, v in out.items()},
                  "latex": flow.latex()}))
"""


def run_fresh(cache: Path) -> dict:
    env = dict(os.environ, SCURVE_CACHE=str(cache), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", CACHE_SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_disk_cache_in_fresh_processes(tmp_path):
    first = run_fresh(tmp_path)
    assert first["derived"] is True
    files = list(tmp_path.glob("reduced-plain-*.json"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    second = run_fresh(tmp_path)
    assert second["derived"] is False
    assert second["rhs"] == first["rhs"] and second["latex"] == first["latex"]
    files[0].write_text("{not json")
    third = run_fresh(tmp_path)
    assert third["derived"] is True and third["rhs"] == first["rhs"]
