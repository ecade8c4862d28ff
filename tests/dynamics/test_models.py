"""Acceptance of the model mechanism (issue #10) for every built-in and every example model.

Every expected value is computed here, independently of :mod:`dynamics.symbolic`:

1. derived gradients (and losses) equal ``torch.autograd`` of the same loss written in torch
   below, at random float64 points, to 1e-12 relative;
2. the reduced flow equals the full flow (both integrated here with ``solve_ivp``, DOP853,
   rtol 1e-13 — see :data:`RTOL` for why not 1e-10 — on one t grid) to 1e-7 relative in loss
   while L > 1e-8 L_ref (not for cross-entropy and the model that does not close);
3. the reduced GD map, plain and with heavy-ball momentum, equals explicit GD written here in
   NumPy (torch.optim.SGD semantics, gradients by autograd) to 1e-9 relative over 50 steps;
4. ``predict(spec, Flow()).state_size`` of a reducible model is the same at n = 40 and 4000;
5. the model that does not close: one warning naming the term, full flow, exact solution;
6. one-line ``ModelError``s / ``SpecError``s for malformed models, model files and specs.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp

from dynamics import catalog
from dynamics import symbolic as S
from dynamics.integrate import NotReducedWarning, predict
from dynamics.matexpr import ReductionError
from dynamics.methods import Discrete, Flow
from dynamics.model import Model, ModelError, load_file, register
from dynamics.problems import Chain, Factorization, ModelSpec, SpecError, sample_model

try:  # the tests against torch skip where it is not installed; the others run without it
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares against torch")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# solve_ivp tolerance of the flow comparison. Both flows' losses carry an absolute integration
# error ~ (1-10)·rtol·L_ref (an error rtol·|θ| in the state moves L by ~rtol·L_ref), so at the
# issue's rtol 1e-10 a 1e-7 *relative* agreement only holds while L > ~1e-2 L_ref (measured:
# 6e-6 relative at L = 6e-5 L_ref, attention). At 1e-13 it holds down to ~1e-6 L_ref, below
# the floors the weight decay sets in these windows (the test asserts L > 1e-8 L_ref).
RTOL = 1e-13

# every tensor below comes from a float64 numpy array (torch keeps its dtype)


@cache
def example(name: str) -> Model:
    return load_file(EXAMPLES / f"{name}.py")


# ----------------------------------------------------------------------------- the losses in torch


def _sq(e):
    return 0.5 * (e**2).sum()


def _fact(v):
    return v["A"] @ v["B"].T - v["X"] @ v["Y"].T


def _chain(v, depth):
    z = v["X"]
    for i in range(1, depth - 1):
        z = z @ v[f"M{i}"]
    return _sq(v["A"] @ v["B"].T - z @ v["Y"].T)


def _ce(v):
    c, z = (v["A"] @ v["B"].T).flatten(), (v["X"] @ v["Y"].T).flatten()
    return (torch.softmax(c, 0) * (torch.log_softmax(c, 0) - torch.log_softmax(z, 0))).sum()


def _attention(v):
    """½‖M⊗N − M̃⊗Ñ‖² with the Kronecker products formed (small d only)."""
    m, nn = v["Qs"] @ v["Ks"].T, v["Os"] @ v["Vs"].T
    mt, nt = v["Q"] @ v["K"].T, v["O"] @ v["V"].T
    return _sq(torch.kron(m, nn) - torch.kron(mt, nt))


def _covariance(v):
    d = v["W"] - v["Wstar"]
    sigma = v["C"] @ v["C"].T
    return 0.5 * torch.trace(d.T @ sigma @ d)


LOSSES = {
    "vector": lambda v: _sq(v["a"] - v["x"]),
    "factorization": lambda v: _sq(_fact(v)),
    "factorization_ce": _ce,
    "attention": _attention,
    "chain3": lambda v: _chain(v, 3),
    "chain4": lambda v: _chain(v, 4),
    "two_layer": lambda v: _sq(v["Yd"] - v["W2"] @ v["W1"] @ v["Xd"]),
    "covariance": _covariance,
    "symmetric": lambda v: _sq(v["A"] @ v["A"].T - v["X"] @ v["X"].T),
    "regularised": lambda v: _sq(_fact(v)) + 0.05 * ((v["X"] @ v["Y"].T) ** 2).sum(),
}

MODELS = {
    "vector": lambda: catalog.VECTOR,
    "factorization": lambda: catalog.FACTORIZATION,
    "factorization_ce": lambda: catalog.FACTORIZATION_CE,
    "attention": lambda: catalog.ATTENTION,
    "chain3": lambda: catalog.chain(3),
    "chain4": lambda: catalog.chain(4),
    "two_layer": lambda: example("two_layer"),
    "covariance": lambda: example("covariance"),
    "symmetric": lambda: example("symmetric"),
    "regularised": lambda: example("regularised"),
}
ALL = list(MODELS)
NOT_CLOSING = {"factorization_ce", "covariance"}
REDUCIBLE = [c for c in ALL if c not in NOT_CLOSING]

# small dimensions for the gradient checks, and (flow) a plateau-and-drop setting
DIMS = {
    "vector": {"n": 7},
    "attention": {"n": 4, "r": 2, "k": 2},
    "two_layer": {"d_in": 5, "d_out": 3, "h": 2, "N": 9},
    "covariance": {"n": 6, "k": 2},
}
FLOW = {  # case -> (dims, init σ, constant scale, t_end)
    "vector": ({"n": 12}, 0.1, 1.0, 12.0),
    "factorization": ({"n": 20, "r": 2, "k": 3}, 0.05, 1.5, 12.0),
    "attention": ({"n": 8, "r": 2, "k": 2}, 0.2, 1.2, 25.0),
    "chain3": ({"n": 20, "r": 2, "k": 2}, 0.3, 1.5, 12.0),
    "chain4": ({"n": 20, "r": 2, "k": 2}, 0.3, 2.0, 8.0),
    "two_layer": ({"d_in": 5, "d_out": 3, "h": 2, "N": 60}, 0.05, 1.0, 25.0),
    "symmetric": ({"n": 20, "r": 2, "k": 2}, 0.05, 1.5, 12.0),
    "regularised": ({"n": 20, "r": 2, "k": 3}, 0.05, 1.5, 12.0),
}


def dims_of(case: str) -> dict[str, int]:
    return DIMS.get(case, {"n": 6, "r": 2, "k": 3})


def shape(sym, dims) -> tuple[int, ...]:
    return tuple(int(d) if d.is_Integer else dims[str(d)] for d in sym.shape)


def random_point(case: str, dims: dict, seed: int, init: float = 0.7, scale: float = 0.7):
    """Every symbol of the model by name: learned ~ N(0, init²), constants ~ N(0, scale²/m),
    m the product of the model's large dimensions in the constant's shape; for the two-layer
    network non-whitened inputs (covariance eigenvalues ≈ 0.3..3) and outputs a linear map of
    them plus noise."""
    model = MODELS[case]()
    rng = np.random.default_rng(seed)
    out = {}
    for name, sym in model.symbols.items():
        size = shape(sym, dims)
        if name in model.learned_names:
            out[name] = rng.standard_normal(size) * init
        else:
            m = math.prod(dims[str(d)] for d in sym.shape if d in model.large) or 1
            out[name] = rng.standard_normal(size) * scale / math.sqrt(m)
    if case == "two_layer":
        d_in, d_out, n = dims["d_in"], dims["d_out"], dims["N"]
        q, _ = np.linalg.qr(rng.standard_normal((d_in, d_in)))
        mix = q @ np.diag(np.sqrt(np.linspace(0.3, 3.0, d_in)))  # input covariance ≈ mix mixᵀ
        out["Xd"] = mix @ rng.standard_normal((d_in, n)) / math.sqrt(n)
        teacher = rng.standard_normal((d_out, d_in)) * scale
        out["Yd"] = teacher @ out["Xd"] + 0.1 * rng.standard_normal((d_out, n)) / math.sqrt(n)
    return out


def torch_objective(case: str, values: dict, lam: float):
    """(data loss, loss + ½λ Σ_W ‖W‖², learned tensors) at ``values`` by torch."""
    model = MODELS[case]()
    tv = {k: torch.tensor(v, requires_grad=k in model.learned_names) for k, v in values.items()}
    loss = LOSSES[case](tv)
    learned = [tv[w] for w in model.learned_names]
    return loss, loss + 0.5 * lam * sum((w**2).sum() for w in learned), learned


def autograd(case: str, values: dict, lam: float) -> tuple[float, dict[str, np.ndarray]]:
    model = MODELS[case]()
    loss, objective, learned = torch_objective(case, values, lam)
    grads = torch.autograd.grad(objective, learned)
    names = model.learned_names
    return float(loss.detach()), {w: g.numpy() for w, g in zip(names, grads, strict=True)}


def torch_loss(case: str, values: dict) -> float:
    with torch.no_grad():
        return float(LOSSES[case]({k: torch.tensor(v) for k, v in values.items()}))


def l_ref(case: str, values: dict) -> float:
    model = MODELS[case]()
    return torch_loss(case, {k: (0 * v if k in model.learned_names else v)
                             for k, v in values.items()})


def rel_err(got: dict, want: dict) -> float:
    assert set(got) == set(want)
    scale = max(np.max(np.abs(v)) for v in want.values())
    return max(float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in want) / scale


# ----------------------------------------------------------------------------- 1. gradients


@needs_torch
@pytest.mark.parametrize("case", ALL)
def test_gradient_and_loss_match_autograd(case):
    lam = 0.3
    values = random_point(case, dims_of(case), seed=len(case))
    flow = S.full_flow(MODELS[case]())
    want_loss, want = autograd(case, values, lam)
    assert rel_err(flow.grad(values, lam), want) < 1e-12
    assert rel_err({w: -g for w, g in flow.rhs(values, lam=lam).items()}, want) < 1e-12
    assert flow.loss_value(values) == pytest.approx(want_loss, rel=1e-12)


MSE = [c for c in ALL if c != "factorization_ce"]


def contract(pairs: dict, values: dict, rates: dict) -> dict:
    """d(left·right)/dt = d(left)·right + left·d(right) for every pair definition
    ``[left base, transposed?, right base, transposed?]``, from the full-parameter rates."""
    out = {}
    for key, (b1, t1, b2, t2) in pairs.items():
        left, right = (values[b].T if t else values[b] for b, t in ((b1, t1), (b2, t2)))
        dleft, dright = ((rates[b].T if t else rates[b]) if b in rates else 0 * m
                         for (b, t), m in (((b1, t1), left), ((b2, t2), right)))
        out[key] = dleft @ right + left @ dright
    return out


@needs_torch
@pytest.mark.parametrize("case", MSE)
def test_modified_equation_matches_autograd_and_its_reduction(case):
    """dθ/dt = −g − (η/2)∇²(L + ½λ‖θ‖²)g against autograd (double backward), to 1e-12; the
    reduced modified flow is its contraction (d(MᵀN)/dt from the full rates), to 1e-12."""
    lam, eta = 0.2, 0.05
    model = MODELS[case]()
    values = random_point(case, dims_of(case), seed=7)
    _, objective, learned = torch_objective(case, values, lam)
    grads = torch.autograd.grad(objective, learned, create_graph=True)
    hvp = torch.autograd.grad(sum((g * g.detach()).sum() for g in grads), learned)
    want = {w: -g.detach().numpy() - eta / 2 * h.numpy()
            for w, g, h in zip(model.learned_names, grads, hvp, strict=True)}
    full = S.full_flow(model, modified=True).rhs(values, lam=lam, lr=eta)
    assert rel_err(full, want) < 1e-12
    if case in NOT_CLOSING:
        return
    red = S.reduced_flow(model, modified=True)
    state, consts = red.initial(values)
    got = red.rhs(state, consts, lam=lam, lr=eta)
    expect = {k: v for k, v in contract(red.pairs, values, want).items() if k in got}
    expect |= {w: want[w] for w in got if w in want}  # small learned matrices: their own rate
    assert set(expect) == set(got)
    for key in got:
        scale = np.max(np.abs(expect[key])) or 1.0
        assert np.max(np.abs(got[key] - expect[key])) < 1e-12 * scale, key


@needs_torch
def test_matrix_power_in_the_loss_is_expanded():
    """tr(EᵀE) of a symmetric E is folded by SymPy into tr(E²) (a MatPow); it must still
    differentiate and reduce (regression: "cannot expand matrix expression of type MatPow")."""
    model = example("symmetric")
    assert model.loss.has(sp.MatPow)
    values = random_point("symmetric", dims_of("symmetric"), seed=1)
    _, want = autograd("symmetric", values, 0.0)
    assert rel_err(S.full_flow(model).grad(values, 0.0), want) < 1e-12
    assert set(S.reduced_flow(model).keys) == {"At_X", "Xt_X"}


# ----------------------------------------------------------------------------- 2. flows


def integrate(rhs, y0: dict, t: np.ndarray) -> list[dict]:
    """solve_ivp (DOP853, rtol 1e-10, atol 1e-14) of d(y)/dt = rhs(y) for a dict of arrays."""
    keys, shapes = list(y0), [np.shape(y0[k]) for k in y0]
    sizes = [math.prod(s) for s in shapes]

    def unpack(y):
        parts = np.split(y, np.cumsum(sizes)[:-1])
        return {k: p.reshape(s) for k, p, s in zip(keys, parts, shapes, strict=True)}

    def pack(d):
        return np.concatenate([np.ravel(d[k]) for k in keys])

    sol = solve_ivp(lambda _t, y: pack(rhs(unpack(y))), (0.0, t[-1]), pack(y0), method="DOP853",
                    t_eval=t, rtol=RTOL, atol=1e-14)
    assert sol.success
    return [unpack(y) for y in sol.y.T]


@needs_torch
@pytest.mark.parametrize("case", list(FLOW))
def test_reduced_flow_matches_full_flow(case):
    dims, init, scale, t_end = FLOW[case]
    lam = 0.05  # the decay keeps L above ~1e-3 L_ref (see the module docstring)
    model = MODELS[case]()
    values = random_point(case, dims, seed=3, init=init, scale=scale)
    ref = l_ref(case, values)
    t = np.linspace(0.0, t_end, 121)
    full = S.full_flow(model)
    fixed = {c: values[c] for c in model.constant_names}
    start = {w: values[w] for w in model.learned_names}
    full_loss = np.array([torch_loss(case, s | fixed) for s in
                          integrate(lambda s: full.rhs(s | fixed, lam=lam), start, t)])
    red = S.reduced_flow(model)
    state, consts = red.initial(values)
    red_loss = np.array([red.loss_value(s, consts) for s in
                         integrate(lambda s: red.rhs(s, consts, lam=lam), state, t)])
    live = full_loss > 1e-8 * ref
    assert full_loss[-1] < 0.5 * ref  # a plateau ended inside the window
    assert live.sum() > 60
    err = float(np.max(np.abs(red_loss[live] / full_loss[live] - 1)))
    print(f"{case}: max rel loss error {err:.2e}, L_end/L_ref {full_loss[-1] / ref:.2e}")
    assert err < 1e-7


# ----------------------------------------------------------------------------- 3. GD maps


def numpy_gd(case: str, values: dict, lr: float, lam: float, mu: float, steps: int) -> np.ndarray:
    """Explicit full-batch GD, torch.optim.SGD semantics: b = g (first step), b' = μb + g,
    W' = W − ηb'; g = ∇L + λW by autograd. The loss before each step and after the last."""
    model = MODELS[case]()
    fixed = {c: values[c] for c in model.constant_names}
    params = {w: np.array(values[w]) for w in model.learned_names}
    bufs: dict[str, np.ndarray] = {}
    losses = []
    for _ in range(steps):
        loss, grads = autograd(case, params | fixed, lam)
        losses.append(loss)
        for w, g in grads.items():
            bufs[w] = mu * bufs[w] + g if w in bufs else g
            params[w] = params[w] - lr * bufs[w]
    losses.append(torch_loss(case, params | fixed))
    return np.array(losses)


@needs_torch
@pytest.mark.parametrize("mu", [0.0, 0.6])
@pytest.mark.parametrize("case", REDUCIBLE)
def test_reduced_gd_matches_numpy_gd(case, mu):
    steps, lr, lam = 50, 0.1, 0.02
    dims, init, scale, _ = FLOW[case]
    values = random_point(case, dims, seed=5, init=max(init, 0.2), scale=min(scale, 1.5))
    gd = S.reduced_gd(MODELS[case](), momentum=mu > 0)
    state, consts = gd.initial(values)
    red = [gd.loss_value(state, consts)]
    for _ in range(steps):
        state = gd.step(state, consts, lam=lam, lr=lr, mu=mu)
        red.append(gd.loss_value(state, consts))
    want = numpy_gd(case, values, lr, lam, mu, steps)
    assert np.all(np.isfinite(want)) and want[-1] < want[0]
    err = float(np.max(np.abs(np.array(red) / want - 1)))
    print(f"{case} mu={mu}: max rel loss error {err:.2e}, L_end/L_0 {want[-1] / want[0]:.2e}")
    assert err < 1e-9


def spec_of(case: str, values: dict):
    """The spec file a user would write for ``values``: constants and initial values under the
    model's spec keys (stacked keys stacked), as the built-in's class or a ModelSpec."""
    from dynamics.problems import KINDS

    model = MODELS[case]()
    data: dict[str, object] = {}
    for name, value in values.items():
        key = model.key(name)
        if isinstance(key, tuple):
            data.setdefault(key[0], []).append(value)  # type: ignore[union-attr]
        else:
            data[key] = value
    data = {k: np.asarray(v) for k, v in data.items()}
    if model.name in KINDS:
        extra = {"loss": "ce"} if model.cross_entropy() else {}
        return KINDS[model.name](**data, **extra)
    return ModelSpec(model.name, data)


@needs_torch
@pytest.mark.parametrize("case", ALL)
def test_generated_trainer_matches_numpy_gd(case):
    """The batched torch trainer (code generated from the same loss; SGD, float64) against the
    explicit GD above, every step's loss, to 1e-9 relative."""
    from validation.training import TrainConfig, train

    steps, lr, lam = 40, 0.05, 0.02
    values = random_point(case, dims_of(case), seed=11, init=0.5, scale=1.0)
    want = numpy_gd(case, values, lr, lam, 0.0, steps)
    run = train(spec_of(case, values), TrainConfig(optimizer="sgd", lr=lr, steps=steps,
                                                   weight_decay=lam, dtype="float64",
                                                   record="all", device="cpu"))
    assert np.all(np.isfinite(want))
    err = float(np.max(np.abs(run.loss[0] / want - 1)))
    print(f"{case}: max rel loss error {err:.2e}")
    assert err < 1e-9


# ----------------------------------------------------------------------------- 4. state size


def _state_sizes(make) -> tuple[int, int]:
    return tuple(predict(make(n), Flow(), t_max=2.0).state_size for n in (40, 4000))


def test_state_size_does_not_grow_factorization():
    small, large = _state_sizes(lambda n: Factorization.sample(n=n, rank=2, model_rank=3,
                                                               init=0.01, seed=0))
    assert small == large == 2 * 2 * 3 + 2 * 3 * 3  # Aᵀ X, Bᵀ Y (2x3), Xᵀ X, Yᵀ Y (3x3)


def test_state_size_does_not_grow_chain():
    small, large = _state_sizes(lambda n: Chain.sample(n=n, rank=2, model_rank=2, depth=4,
                                                       init=0.01, seed=0))
    assert small == large == 2 * 2 * 2 + 2 * 2 * 2 + 2 * 2 * 2  # pairs, then M1, M2


def test_state_size_does_not_grow_two_layer():
    """Reduced over the samples: state W1, W2; constants X_d X_dᵀ, X_d Y_dᵀ, Y_d Y_dᵀ."""
    model = example("two_layer")
    values = random_point("two_layer", DIMS["two_layer"], seed=0)
    state, consts = S.reduced_flow(model).initial(values)
    assert set(state) == {"W1", "W2"}
    x, y = values["Xd"], values["Yd"]
    want = {"Xd_Xdt": x @ x.T, "Xd_Ydt": x @ y.T, "Yd_Ydt": y @ y.T}
    assert set(consts) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(consts[key], value, rtol=1e-14)
    dims = {"d_in": 5, "d_out": 3, "h": 2}
    small, large = _state_sizes(lambda n: sample_model(model, dims | {"N": n}, init=0.01, seed=0))
    assert small == large == 2 * 5 + 3 * 2  # W1 (h x d_in), W2 (d_out x h): their own state


def test_two_large_dimensions_and_an_unregistered_model():
    """A rectangular factorization with rows n and columns m both large ("two large
    spaces"), passed to ``sample_model`` as a Model object that was never registered: the spec
    works, and the state size is the same at (n, m) = (30, 15) and (3000, 1005)."""
    nn, mm = sp.symbols("n m", integer=True, positive=True)
    a, b = sp.MatrixSymbol("A", nn, r), sp.MatrixSymbol("B", mm, r)
    x, y = sp.MatrixSymbol("X", nn, k), sp.MatrixSymbol("Y", mm, k)
    e = a * b.T - x * y.T
    model = Model("rectangular_test", sp.Trace(e.T * e) / 2, [x, y], [a, b], [nn, mm])
    sizes = []
    for size in (30, 3000):
        spec = sample_model(model, {"n": size, "m": size // 3 + 5, "r": 2, "k": 2}, init=0.1)
        assert spec.model is model
        sizes.append(predict(spec, Flow(), t_max=2.0).state_size)
    assert sizes == [4 * 2 * 2] * 2  # Aᵀ X, Bᵀ Y, Xᵀ X, Yᵀ Y (2 x 2 each)


# ----------------------------------------------------------------------------- 5. no closure


def covariance_spec(n: int = 8, k: int = 2, seed: int = 0) -> tuple[ModelSpec, dict]:
    """C with Σ = CCᵀ of eigenvalues in [0.3, 2] (random eigenvectors); W⋆, W0 Gaussian."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.linspace(0.3, 2.0, n)
    c = q @ np.diag(np.sqrt(eig)) @ np.linalg.qr(rng.standard_normal((n, n)))[0]
    data = {"C": c, "Wstar": rng.standard_normal((n, k)), "W0": 0.1 * rng.standard_normal((n, k))}
    return ModelSpec("covariance", data), data


def test_non_closing_model_falls_back_to_the_exact_full_flow():
    model = example("covariance")
    with pytest.raises(ReductionError, match="C"):
        S.reduced_flow(model)
    spec, data = covariance_spec()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = predict(spec, Flow())
    notices = [w for w in caught if issubclass(w.category, NotReducedWarning)]
    assert len(notices) == 1, [str(w.message) for w in caught]
    message = str(notices[0].message)
    assert "\n" not in message and "covariance" in message
    assert "term" in message and "C" in message  # names the term that does not close
    assert traj.state_size == data["W0"].size  # the full flow: every entry of W
    # exact: W(t) = W⋆ + e^{−Σt}(W0 − W⋆), Σ = CCᵀ = V diag(λ) Vᵀ
    sigma = data["C"] @ data["C"].T
    lam, vec = np.linalg.eigh(sigma)
    d0 = vec.T @ (data["W0"] - data["Wstar"])

    def exact(t: float) -> float:
        d = vec @ (np.exp(-lam * t)[:, None] * d0)
        return 0.5 * float(np.trace(d.T @ sigma @ d))

    ref = exact(0.0)
    want = np.array([exact(t) for t in traj.t])
    live = want > 1e-8 * ref
    assert want[-1] < 1e-5 * ref and live.sum() > 100
    err = float(np.max(np.abs(traj.loss[live] / want[live] - 1)))
    print(f"covariance: max rel loss error {err:.2e} over {live.sum()} samples")
    assert err < 1e-7


def test_non_closing_model_gd_falls_back_to_full_gd():
    spec, data = covariance_spec(seed=1)
    lr, steps = 0.2, 40
    with pytest.warns(NotReducedWarning, match="term"):
        traj = predict(spec, Discrete(lr), t_max=lr * steps)
    sigma = data["C"] @ data["C"].T
    w, want = data["W0"].copy(), []
    for _ in range(steps + 1):  # gradient Σ(W − W⋆) by hand
        d = w - data["Wstar"]
        want.append(0.5 * float(np.trace(d.T @ sigma @ d)))
        w = w - lr * sigma @ d
    assert traj.steps[-1] == steps
    assert np.max(np.abs(traj.loss / np.array(want)[traj.steps] - 1)) < 1e-9


# ----------------------------------------------------------------------------- 6. errors

n, r, k = sp.symbols("n r k", integer=True, positive=True)
A, B = sp.MatrixSymbol("A", n, r), sp.MatrixSymbol("B", n, r)
X, Y, Z = (sp.MatrixSymbol(s, n, k) for s in "XYZ")
E = A * B.T - X * Y.T
GOOD = sp.Trace(E.T * E) / 2


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"loss": E.T * E}, r"loss is a k?x?.*matrix, not a scalar"),
    ({"constants": [A]}, r"loss mentions 'B', declared neither learned nor constant"),
    ({"learned": [X, Y, Z]}, r"does not depend on learned matrix 'Z'"),
    ({"learned": []}, r"at least one learned"),
    ({"loss": GOOD * sp.Symbol("beta")}, r"scalar symbol 'beta'"),
    # a mean over n: the derived programs are not given the sizes (was a NameError at run time)
    ({"loss": GOOD / n}, r"dimension 'n' as a number"),
])
def test_malformed_model_is_a_one_line_model_error(kwargs, pattern):
    args = {"loss": GOOD, "learned": [X, Y], "constants": [A, B], "large": [n]} | kwargs
    with pytest.raises(ModelError, match=pattern) as exc:
        Model("mine", **args)
    one_line(exc)


def test_model_file_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import sympy as sp\n\nx = 1 / 0\n")
    with pytest.raises(ModelError) as exc:
        load_file(broken)
    message = one_line(exc)
    assert str(broken) in message and "line 3" in message and "ZeroDivisionError" in message
    empty = tmp_path / "empty.py"
    empty.write_text("import sympy as sp\n")
    with pytest.raises(ModelError, match="defines no MODEL") as exc:
        load_file(empty)
    assert str(empty) in one_line(exc)
    bad = tmp_path / "bad.py"
    bad.write_text("import sympy as sp\nfrom dynamics.model import Model\n"
                   "n = sp.Symbol('n')\nX = sp.MatrixSymbol('X', n, 1)\n"
                   "MODEL = Model('bad', loss=X, learned=[X], constants=[], large=[n])\n")
    with pytest.raises(ModelError, match="not a scalar") as exc:
        load_file(bad)
    assert str(bad) in one_line(exc)
    with pytest.raises(ModelError, match="no such model file"):
        load_file(tmp_path / "missing.py")


def test_model_spec_errors_name_the_key_and_both_shapes():
    register(Model("mine", GOOD, [X, Y], [A, B], [n]))
    rng = np.random.default_rng(0)
    data = {"A": rng.standard_normal((5, 2)), "B": rng.standard_normal((5, 2)),
            "X0": rng.standard_normal((5, 3)), "Y0": rng.standard_normal((5, 3))}
    spec = ModelSpec("mine", data)
    assert spec.model.name == "mine" and set(spec.values()) == {"A", "B", "X", "Y"}
    with pytest.raises(SpecError, match="missing key 'Y0'") as exc:
        ModelSpec("mine", {k: v for k, v in data.items() if k != "Y0"})
    one_line(exc)
    with pytest.raises(SpecError) as exc:
        ModelSpec("mine", data | {"Y0": rng.standard_normal((6, 3))})
    message = one_line(exc)
    assert message.startswith("Y0") and "(6, 3)" in message and "(5, 3)" in message
    with pytest.raises(SpecError) as exc:
        ModelSpec("mine", data | {"B": rng.standard_normal((5, 4))})
    message = one_line(exc)
    assert "B" in message and "(5, 4)" in message and "(5, 2)" in message
    with pytest.raises(SpecError, match="unknown kind 'nosuch'") as exc:
        ModelSpec("nosuch", data)
    one_line(exc)
