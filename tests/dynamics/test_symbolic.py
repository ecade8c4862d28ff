"""Acceptance tests of :mod:`dynamics.symbolic`: derived flows and maps against independent
torch autograd / torch.optim.SGD computations and against each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from dynamics import symbolic as S
from dynamics.problems import AttentionHead, Factorization, Vector

# solve_ivp tolerance: at rtol 1e-10 the two integrations differ by ~1e-10 L_ref in L (measured),
# i.e. by 1e-2 relative at L = 1e-8 L_ref; at 1e-13 the difference is ~1e-13 L_ref.
RTOL = 1e-13
ROOT = Path(__file__).resolve().parents[2]
TARGET_NAMES = {"vector": ("x",), "factorization": ("X", "Y"), "attention": tuple("QKOV")}


# ----------------------------------------------------------------------------- torch reference


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small float64 ops: with 2 intra-op threads torch is ~100x slower on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_loss(kind: str, loss: str, params: dict, targets: dict, kron: bool = False):
    """The data loss written directly in torch (DESIGN §2, §3), no SymPy involved.

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
    rng = np.random.default_rng(seed)
    names = TARGET_NAMES[kind]
    targets = {f: rng.standard_normal((n, r)) * scale for f in names}
    params = {f: rng.standard_normal((n, k)) * scale for f in names}
    return params, targets


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


@pytest.mark.parametrize(("kind", "loss", "n", "r", "k"), GRAD_CASES)
def test_gradient_and_loss_match_autograd(kind, loss, n, r, k):
    lam = 0.3
    params, targets = random_point(kind, n, r, k, seed=n + 10 * r + k)
    flow = S.full_flow(kind, loss)
    g_torch, _ = torch_grad_and_hvp(kind, loss, params, targets, lam)
    assert rel_err(flow.grad(params, targets, lam), g_torch) < 1e-12
    rhs = flow.rhs(params, targets, lam)
    assert rel_err({f: -v for f, v in rhs.items()}, g_torch) < 1e-12
    tp = {f: torch.tensor(v) for f, v in params.items()}
    tt = {f: torch.tensor(v) for f, v in targets.items()}
    want = float(torch_loss(kind, loss, tp, tt, kron=True))
    assert float(torch_loss(kind, loss, tp, tt)) == pytest.approx(want, rel=1e-12)
    assert flow.loss_value(params, targets, lam) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    ("kind", "r", "k"), [("vector", 1, 1), ("factorization", 2, 3), ("attention", 2, 2)]
)
def test_modified_rhs_matches_autograd_hessian_vector_product(kind, r, k):
    lam, eta = 0.2, 0.05
    params, targets = random_point(kind, 6, r, k, seed=3)
    g, hg = torch_grad_and_hvp(kind, "mse", params, targets, lam)
    want = {f: -g[f] - eta / 2 * hg[f] for f in g}
    got = S.full_flow(kind, modified=True).rhs(params, targets, lam, lr=eta)
    assert rel_err(got, want) < 1e-12


def test_full_programs_never_form_n_by_n():
    """multi_dot chains: at n = 3000 an n×n float64 matrix would take 72 MB."""
    params, targets = random_point("factorization", 3000, 2, 2, seed=0)
    plain, modified = S.full_flow("factorization"), S.full_flow("factorization", modified=True)
    plain.grad(params, targets, 0.1)  # warm up (first-call allocations)
    tracemalloc.start()
    plain.loss_value(params, targets)
    plain.grad(params, targets, 0.1)
    modified.rhs(params, targets, 0.1, lr=0.05)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4e6


# ----------------------------------------------------------------------------- flows


def integrate(flow, y0: dict, fixed: dict, lam: float, t_eval, lr: float = 0.0):
    """Integrate a FullFlow (fixed = targets) or ReducedFlow (fixed = gram); loss at t_eval."""
    shapes = {key: v.shape for key, v in y0.items()}

    def fun(_t, y):
        return flow.pack(flow.rhs(flow.unpack(y, shapes), fixed, lam, lr))

    sol = solve_ivp(
        fun, (0.0, t_eval[-1]), flow.pack(y0), method="DOP853", t_eval=t_eval, rtol=RTOL, atol=1e-16
    )
    assert sol.success
    states = [flow.unpack(y, shapes) for y in sol.y.T]
    return np.array([flow.loss_value(s, fixed) for s in states]), states


def spec_parts(spec):
    factors = spec.factors()
    return {f: w for f, (_, w) in factors.items()}, {f: t for f, (t, _) in factors.items()}


def compare_full_and_reduced(kind, spec, lam, t_end, modified=False, lr=0.0, samples=201):
    t = np.linspace(0.0, t_end, samples)
    params, targets = spec_parts(spec)
    full, _ = integrate(S.full_flow(kind, modified=modified), params, targets, lam, t, lr)
    state, gram = S.state_from_spec(spec)
    red, _ = integrate(S.reduced_flow(kind, modified), state, gram, lam, t, lr)
    live = full > 1e-6 * spec.l_ref
    assert live.sum() > samples // 4
    # Below 1e-6 L_ref both losses (½[tr(G_A G_B) − 2tr(P_X P_Yᵀ) + tr(U_X U_Y)] and its
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
    """XᵀX − YᵀY is conserved by the λ = 0 flow (full), and U_X − U_Y by the reduced flow."""
    spec = Factorization.sample(
        n=100, rank=2, model_rank=2, init=0.1, singular_values=[2.0, 1.0], seed=4
    )
    t = np.linspace(0.0, 10.0, 51)
    params, targets = spec_parts(spec)
    loss, states = integrate(S.full_flow("factorization"), params, targets, 0.0, t)
    assert loss[-1] < 1e-3 * spec.l_ref
    balance = [s["X"].T @ s["X"] - s["Y"].T @ s["Y"] for s in states]
    assert np.max(np.abs(balance[0])) > 0.1
    assert max(np.max(np.abs(b - balance[0])) for b in balance) < 1e-9
    state, gram = S.state_from_spec(spec)
    _, states = integrate(S.reduced_flow("factorization"), state, gram, 0.0, t)
    drift = max(np.max(np.abs(s["U_X"] - s["U_Y"] - balance[0])) for s in states)
    assert drift < 1e-9


# ----------------------------------------------------------------------------- GD maps


def reduced_gd_losses(kind, spec, lr, lam, mu, steps):
    gd = S.reduced_gd(kind, momentum=mu != 0.0)
    state, gram = S.state_from_spec(spec)
    losses = [gd.loss_value(state, gram)]
    for _ in range(steps):
        state = gd.step(state, gram, lr, lam, mu)
        losses.append(gd.loss_value(state, gram))
    return np.array(losses)


def torch_sgd_losses(kind, spec, lr, lam, mu, steps):
    """Full-parameter GD with torch.optim.SGD (float64) on the torch-written loss."""
    params, targets = spec_parts(spec)
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
    # 1e-9 relative down to L = 1e-5 L_ref; below, the reduced loss ½[tr(G_A G_B) − 2tr(P_X P_Yᵀ)
    # + tr(U_X U_Y)] cancels to an absolute rounding floor of a few 1e-15 L_ref.
    live = ref > 1e-5 * spec.l_ref
    assert live.sum() > 50
    assert np.max(np.abs(red[live] / ref[live] - 1)) < 1e-9
    assert np.max(np.abs(red - ref)) < 1e-13 * spec.l_ref


def test_reduced_gd_momentum_without_velocity_is_first_torch_step():
    """A state with no velocity keys starts from buf = g (torch's first step)."""
    spec = Factorization.sample(n=30, rank=2, init=0.1, seed=0)
    state, gram = S.state_from_spec(spec)
    with_mu = S.reduced_gd("factorization", momentum=True).step(state, gram, 0.1, 0.0, 0.9)
    plain = S.reduced_gd("factorization").step(state, gram, 0.1, 0.0)
    for key in plain:
        np.testing.assert_allclose(with_mu[key], plain[key], rtol=1e-14, atol=1e-16)
    zero, _ = S.state_from_spec(spec, momentum=True)
    assert not np.any(zero["R_X"]) and zero["S_Y"].shape == zero["N_Y"].shape == (2, 2)
    explicit = S.reduced_gd("factorization", momentum=True).step(zero, gram, 0.1, 0.0, 0.9)
    for key in with_mu:
        np.testing.assert_array_equal(explicit[key], with_mu[key])
    with pytest.raises(ValueError, match="momentum"):
        S.reduced_gd("factorization").step(state, gram, 0.1, 0.0, 0.5)


# ----------------------------------------------------------------------------- modified equation


def crossing_time(t: np.ndarray, loss: np.ndarray, level: float) -> float:
    """First t with loss ≤ level, interpolated linearly in log loss (DESIGN §2)."""
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
    state, gram = S.state_from_spec(spec)
    plain, _ = integrate(S.reduced_flow("factorization"), state, gram, 0.0, t)
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
    fact = S.reduced_flow("factorization").latex()
    assert fact[0].startswith("L = ") and r"G_{A} G_{B}" in fact[0]
    assert any(line.startswith(r"\frac{dP_{X}}{dt} = ") and "G_{A} P_{Y}" in line for line in fact)
    assert any(line.startswith(r"\frac{dU_{Y}}{dt} = ") for line in fact)
    assert r"G_{Q^{\star}}" in "".join(S.reduced_flow("attention").latex())
    assert any(
        line.startswith("R_{X}' = ") and r"\mu" in line
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


def test_reduced_factorization_equations_match_design():
    """DESIGN §3: dP/dt = G_A Q − P V − λP, dU/dt = PᵀQ + QᵀP − UV − VU − 2λU."""
    rng = np.random.default_rng(0)
    p, q = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    u, v = (m @ m.T for m in rng.standard_normal((2, 3, 3)))
    ga, gb = (m @ m.T for m in rng.standard_normal((2, 2, 2)))
    lam = 0.3
    out = S.reduced_flow("factorization").rhs(
        {"P_X": p, "U_X": u, "P_Y": q, "U_Y": v}, {"X": ga, "Y": gb}, lam
    )
    np.testing.assert_allclose(out["P_X"], ga @ q - p @ v - lam * p, rtol=1e-13)
    np.testing.assert_allclose(
        out["U_X"], p.T @ q + q.T @ p - u @ v - v @ u - 2 * lam * u, rtol=1e-13
    )


def test_pack_unpack_round_trip_and_errors():
    flow = S.reduced_flow("factorization")
    state, _ = S.state_from_spec(Factorization.sample(n=10, rank=2, model_rank=3, seed=0))
    shapes = {key: v.shape for key, v in state.items()}
    back = flow.unpack(flow.pack(state), shapes)
    assert list(back) == ["P_X", "U_X", "P_Y", "U_Y"]
    for key in state:
        np.testing.assert_array_equal(back[key], state[key])
    with pytest.raises(ValueError, match="does not match"):
        flow.unpack(np.zeros(3), shapes)
    with pytest.raises(ValueError, match="kind"):
        S.reduced_flow("mlp")
    with pytest.raises(ValueError, match="cross-entropy"):
        S.full_flow("attention", "ce")


CACHE_SCRIPT = """
import json, numpy as np
from dynamics.symbolic import reduced_flow
flow = reduced_flow("factorization")
rng = np.random.default_rng(0)
state = {"P_X": rng.standard_normal((2, 2)), "U_X": np.eye(2),
         "P_Y": rng.standard_normal((2, 2)), "U_Y": np.eye(2)}
out = flow.rhs(state, {"X": np.eye(2), "Y": 2 * np.eye(2)}, 0.1)
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
    files = list(tmp_path.glob("reduced-factorization-plain-*.json"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    second = run_fresh(tmp_path)
    assert second["derived"] is False
    assert second["rhs"] == first["rhs"] and second["latex"] == first["latex"]
    files[0].write_text("{not json")
    third = run_fresh(tmp_path)
    assert third["derived"] is True and third["rhs"] == first["rhs"]
