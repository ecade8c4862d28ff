"""Tests of validation.training: torch.optim semantics, batching, divergence, losses, records."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.special import log_softmax

from dynamics.integrate import predict
from dynamics.methods import Discrete
from dynamics.model import Model, register
from dynamics.phases import crossing_times
from dynamics.problems import AttentionHead, Chain, Factorization, Vector, sample_model
from dynamics.schedules import CosineAnnealingLR, ExponentialLR, LinearLR, StepLR, times
from dynamics.trajectory import cosines_and_norms
from validation.training import DIVERGENCE, TrainConfig, _Objective, record_steps, train

TORCH_OPTIM = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD,
               "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def specs_of(kind: str, seed: int = 0, **kw) -> Vector | Factorization | AttentionHead:
    """Small specs of every kind with a moderate init (no long plateau in 200 steps)."""
    if kind == "vector":
        return Vector.sample(7, init=0.3, seed=seed, **kw)
    if kind == "attention":
        return AttentionHead.sample(4, 2, model_rank=3, init=0.3, seed=seed, **kw)
    loss = "ce" if kind == "ce" else "mse"
    scale = 20.0 if loss == "ce" else 1.0
    return Factorization.sample(8, 2, model_rank=3, init=0.3, scale=scale, loss=loss,
                                seed=seed, **kw)


def direct_loss(kind: str, targets: list, params: list):
    """The loss written directly from the spec's definition (torch or numpy arrays)."""
    xp = torch if isinstance(params[0], torch.Tensor) else np
    if kind == "vector":
        return 0.5 * ((targets[0] - params[0]) ** 2).sum()
    if kind == "attention":
        q, k, o, v = targets
        qm, km, om, vm = params
        diff = xp.kron(q @ k.T, o @ v.T) - xp.kron(qm @ km.T, om @ vm.T)
        return 0.5 * (diff**2).sum()
    c, z = targets[0] @ targets[1].T, params[0] @ params[1].T
    if kind == "factorization":
        return 0.5 * ((c - z) ** 2).sum()
    if xp is np:
        log_p, log_q = log_softmax(c.ravel()), log_softmax(z.ravel())
    else:
        log_p, log_q = torch.log_softmax(c.flatten(), 0), torch.log_softmax(z.flatten(), 0)
    return (xp.exp(log_p) * (log_p - log_q)).sum()


def torch_optim_run(spec, kind: str, config: TrainConfig,
                    dtype: torch.dtype = torch.float64) -> tuple[list, np.ndarray]:
    """The per-seed loop by hand: nn.Parameters, torch.optim (float64), the config's schedule
    as the torch.optim.lr_scheduler class of the same name stepped after every step; loss at
    every step."""
    factors = spec.factors()
    targets = [torch.tensor(t, dtype=dtype) for t, _ in factors.values()]
    params = [torch.nn.Parameter(torch.tensor(w, dtype=dtype)) for _, w in factors.values()]
    kwargs = {"lr": config.lr, "weight_decay": spec.weight_decay}
    if config.optimizer in ("sgd", "momentum"):
        kwargs["momentum"] = config.momentum
    else:
        kwargs.update(betas=config.betas, eps=config.eps)
    opt = TORCH_OPTIM[config.optimizer](params, **kwargs)
    scheduler = None if config.schedule is None else getattr(
        torch.optim.lr_scheduler, type(config.schedule).__name__)(opt, **vars(config.schedule))
    losses = []
    for _ in range(config.steps):
        opt.zero_grad()
        loss = direct_loss(kind, targets, params)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    losses.append(direct_loss(kind, targets, params).item())
    return [p.detach().numpy() for p in params], np.array(losses)


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(
    ("kind", "optimizer", "lr", "momentum", "decay"),
    [
        ("factorization", "sgd", 0.1, 0.0, 0.0),
        ("factorization", "sgd", 0.1, 0.0, 0.05),
        ("factorization", "momentum", 0.05, 0.8, 0.05),
        ("factorization", "adam", 0.01, 0.0, 0.05),
        ("factorization", "adamw", 0.01, 0.0, 0.05),
        ("attention", "momentum", 0.05, 0.5, 0.01),
        ("attention", "adamw", 0.01, 0.0, 0.1),
        ("vector", "adam", 0.01, 0.0, 0.1),
        ("factorization", "sgd", 0.05, 0.6, 0.0),  # optimizer "sgd" with μ > 0: heavy ball
        ("attention", "sgd", 0.05, 0.0, 0.02),
        ("vector", "momentum", 0.1, 0.7, 0.1),
        ("vector", "sgd", 0.1, 0.0, 0.0),
        ("ce", "sgd", 0.5, 0.0, 0.01),
        ("ce", "momentum", 0.2, 0.9, 0.0),
        ("ce", "adam", 0.01, 0.0, 0.01),
        ("ce", "adamw", 0.01, 0.0, 0.05),
    ],
)
def test_optimizers_equal_torch_optim(kind, optimizer, lr, momentum, decay):
    spec = specs_of(kind, weight_decay=decay)
    config = TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, steps=200,
                         dtype="float64", device="cpu")
    result = train(spec, config)
    params, losses = torch_optim_run(spec, kind, config)
    for name, want in zip(spec.factors(), params, strict=True):
        assert rel(result.params[name][0], want) < 1e-12
    assert rel(result.loss[0], losses) < 1e-12
    assert result.diverged == []


@pytest.mark.parametrize(
    ("kind", "optimizer", "betas", "eps"),
    [
        ("factorization", "adam", (0.8, 0.99), 1e-3),
        ("attention", "adamw", (0.5, 0.9), 1e-6),
        ("ce", "adam", (0.0, 0.5), 0.1),
    ],
)
def test_adam_hyperparameters_equal_torch_optim(kind, optimizer, betas, eps):
    spec = specs_of(kind, weight_decay=0.03)
    config = TrainConfig(optimizer=optimizer, lr=0.02, betas=betas, eps=eps, steps=150,
                         dtype="float64", device="cpu")
    result = train(spec, config)
    params, losses = torch_optim_run(spec, kind, config)
    # m/(√v + ε) turns the rounding of a near-zero gradient entry into an O(1) change of its
    # step, so the two gradient formulas agree a little less closely than for SGD
    for name, want in zip(spec.factors(), params, strict=True):
        assert rel(result.params[name][0], want) < 1e-10
    assert rel(result.loss[0], losses) < 1e-10


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_float32_follows_torch_optim_in_float32(optimizer):
    """The default dtype: parameters, gradients and state in float32 (rounding-level agreement
    with torch.optim run in float32, far closer than to a float64 run would allow if not)."""
    spec = specs_of("factorization", weight_decay=0.01)
    config = TrainConfig(optimizer=optimizer, lr=0.05 if optimizer in ("sgd", "momentum")
                         else 0.01, steps=200, device="cpu")
    assert config.dtype == "float32"
    result = train(spec, config)
    params, losses = torch_optim_run(spec, "factorization", config, torch.float32)
    for name, want in zip(spec.factors(), params, strict=True):
        assert want.dtype == np.float32 and rel(result.params[name][0], want) < 1e-5
    assert rel(result.loss[0], losses) < 1e-5


@pytest.mark.parametrize("kind", ["vector", "factorization", "ce", "attention"])
def test_gradient_equals_autograd(kind):
    spec = specs_of(kind, seed=3)
    objective = _Objective([spec], torch.device("cpu"), torch.float64)
    loss, grad = objective.evaluate()
    targets = [torch.tensor(t) for t, _ in spec.factors().values()]
    params = [torch.tensor(w, requires_grad=True) for _, w in spec.factors().values()]
    want = direct_loss(kind, targets, params)
    want_grads = torch.autograd.grad(want, params)
    assert abs(loss.item() - want.item()) <= 1e-12 * spec.l_ref
    for name, g in zip(spec.factors(), want_grads, strict=True):
        assert rel(grad[name][0], g) < 1e-12


@pytest.mark.parametrize("kind", ["vector", "factorization", "ce", "attention"])
def test_losses_equal_numpy_formulas(kind):
    spec = specs_of(kind, seed=5)
    result = train(spec, TrainConfig(lr=0.01, steps=20, dtype="float64", device="cpu"))
    targets = [t for t, _ in spec.factors().values()]
    start = direct_loss(kind, targets, [w for _, w in spec.factors().values()])
    end = direct_loss(kind, targets, [result.params[name][0] for name in spec.factors()])
    assert result.loss[0, 0] == pytest.approx(start, rel=1e-12)
    assert result.loss[0, -1] == pytest.approx(end, rel=1e-12)
    assert result.final_loss[0] == result.loss[0, -1]


def test_float32_loss_is_measured_in_float64():
    spec = specs_of("factorization")
    result = train(spec, TrainConfig(lr=0.1, steps=3000, device="cpu"))
    targets = [t for t, _ in spec.factors().values()]
    end = direct_loss("factorization", targets, [result.params[n][0] for n in spec.factors()])
    assert result.dtype == "float32"
    assert 0 < result.final_loss[0] < 1e-10 * spec.l_ref  # far below float32 cancellation
    assert result.final_loss[0] == pytest.approx(end, rel=1e-6)


def test_batched_seeds_equal_separate_runs():
    specs = [specs_of("factorization", seed=s) for s in range(4)]
    config = TrainConfig(optimizer="adam", lr=[0.01, 0.02, 0.005, 0.01], steps=150,
                         dtype="float64", device="cpu")
    batched = train(specs, config)
    for s, spec in enumerate(specs):
        alone = train(spec, TrainConfig(**{**config.__dict__, "lr": config.lr[s]}))
        assert rel(batched.loss[s], alone.loss[0]) < 1e-12
        for name in spec.factors():
            assert rel(batched.params[name][s], alone.params[name][0]) < 1e-12
            assert rel(batched.order[name][0][s], alone.order[name][0][0]) < 1e-12
        np.testing.assert_allclose(batched.trajectories[s].t, alone.trajectories[0].t * 1.0)
        assert np.array_equal(batched.trajectories[s].t, config.lr[s] * batched.steps)


@pytest.mark.parametrize(("dtype", "optimizer", "kind", "big"), [
    ("float32", "sgd", "factorization", 40.0),
    ("float64", "sgd", "factorization", 40.0),
    ("float32", "momentum", "factorization", 40.0),
    ("float32", "adam", "factorization", 30.0),
    ("float64", "sgd", "attention", 40.0),
    ("float32", "sgd", "ce", 1e5),
])
def test_divergence_stops_one_seed_only(dtype, optimizer, kind, big):
    specs = [specs_of(kind, seed=s) for s in range(3)]
    lr = 0.01 if optimizer == "adam" else 0.05
    base = TrainConfig(optimizer=optimizer, lr=lr, steps=300, dtype=dtype, device="cpu")
    healthy = train(specs, base)
    assert healthy.diverged == [] and healthy.messages == []
    with pytest.warns(RuntimeWarning, match="seed 1 diverged at step"):
        result = train(specs, TrainConfig(**{**base.__dict__, "lr": [lr, big, lr]}))
    [(seed, step, value)] = result.diverged
    assert seed == 1 and 0 < step < 300
    assert not value <= DIVERGENCE * specs[1].l_ref
    assert np.all(result.loss[1, :step] <= DIVERGENCE * specs[1].l_ref)
    assert np.isnan(result.loss[1, step + 1:]).all() and result.final_loss[1] == value
    assert result.trajectories[1].steps.max() < step
    assert "seed 1" in result.messages[0] and f"step {step}" in result.messages[0]
    assert f"loss {value:.4g}" in result.messages[0]
    for s in (0, 2):  # the others: bitwise what they do without the diverging seed
        assert np.array_equal(result.loss[s], healthy.loss[s])
        for name in healthy.params:
            assert np.array_equal(result.params[name][s], healthy.params[name][s])


@pytest.mark.parametrize(("kind", "optimizer", "dtype"), [
    ("attention", "adamw", "float32"),
    ("factorization", "sgd", "float32"),
    ("ce", "momentum", "float64"),
])
def test_runs_are_bitwise_deterministic(kind, optimizer, dtype):
    specs = [specs_of(kind, seed=s) for s in range(3)]
    config = TrainConfig(optimizer=optimizer, lr=0.01, steps=100, weight_decay=0.01,
                         dtype=dtype, device="cpu")
    a, b = train(specs, config), train(specs, config)
    assert np.array_equal(a.loss, b.loss)
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name])
        assert np.array_equal(a.order[name][0], b.order[name][0])


def test_recorded_order_parameters_equal_numpy():
    spec = specs_of("attention", seed=2)
    result = train(spec, TrainConfig(lr=0.02, steps=50, dtype="float64", device="cpu"))
    for name, (t, w0) in spec.factors().items():
        p, u = result.order[name]
        w = result.params[name][0]
        np.testing.assert_allclose(p[0, 0], t.T @ w0, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(u[0, 0], w0.T @ w0, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(p[0, -1], t.T @ w, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(u[0, -1], w.T @ w, rtol=1e-13, atol=1e-15)
        cos, norms = cosines_and_norms(p[0], u[0], t.T @ t)
        np.testing.assert_array_equal(result.trajectories[0].cosines[name], cos)
        np.testing.assert_array_equal(result.trajectories[0].norms[name], norms)


def test_record_steps():
    steps = record_steps(10_000)
    assert steps[0] == 0 and steps[-1] == 10_000
    assert np.all(np.diff(steps) > 0) and set(range(101)) <= set(steps)
    assert 300 < steps.size <= 501
    assert np.array_equal(record_steps(5), np.arange(6))
    assert np.array_equal(record_steps(300, "all"), np.arange(301))


def test_record_all_gives_every_step_and_exact_crossings():
    spec = specs_of("factorization", seed=4)
    config = TrainConfig(lr=0.05, steps=400, dtype="float64", device="cpu")
    logged = train(spec, config)
    full = train(spec, TrainConfig(**{**config.__dict__, "record": "all"}))
    traj = full.trajectories[0]
    assert np.array_equal(traj.steps, np.arange(401)) and np.array_equal(traj.t, 0.05 * traj.steps)
    assert np.array_equal(traj.loss, full.loss[0])
    exact = crossing_times(traj.t, traj.loss, spec.l_ref)
    assert logged.crossing_times()[0] == exact == traj.crossing_times()
    assert np.array_equal(logged.trajectories[0].steps, record_steps(400))


def test_config_and_specs_validation():
    spec = specs_of("factorization")
    for bad in ({"optimizer": "rmsprop"}, {"steps": 0}, {"lr": 0.0}, {"lr": -1.0},
                {"lr": float("nan")}, {"dtype": "float16"}, {"record": "some"},
                {"device": "tpu"}, {"momentum": 1.0}, {"optimizer": "adam", "momentum": 0.9},
                {"betas": (0.9, 1.0)}, {"eps": 0.0}, {"weight_decay": -1.0}, {"loss": "l1"}):
        with pytest.raises(ValueError, match=list(bad)[-1]):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="cross-entropy"):
        train(specs_of("attention"), TrainConfig(loss="ce", steps=1))
    with pytest.raises(ValueError, match="does not match"):
        train([spec, Factorization.sample(8, 2, model_rank=2, seed=1)], TrainConfig(steps=1))
    with pytest.raises(ValueError, match="does not match"):
        train([spec, specs_of("ce")], TrainConfig(steps=1))
    with pytest.raises(ValueError, match="step sizes"):
        train([spec, spec], TrainConfig(lr=[0.1, 0.1, 0.1], steps=1))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            train(spec, TrainConfig(device="cuda", steps=1))
    assert TrainConfig(optimizer="momentum").momentum == 0.9


def test_overrides_and_defaults():
    spec = specs_of("factorization", weight_decay=0.3)
    config = TrainConfig(lr=0.1, steps=10, weight_decay=0.0, loss="ce", dtype="float64")
    result = train(spec, config)
    ce_spec = Factorization(spec.A, spec.B, spec.X0, spec.Y0, weight_decay=0.0, loss="ce")
    assert result.trajectories[0].l_ref == ce_spec.l_ref
    assert np.array_equal(result.loss, train(ce_spec, TrainConfig(lr=0.1, steps=10,
                                                                  dtype="float64")).loss)
    assert result.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert result.trajectories[0].method == "sgd"


def test_progress_bar_is_silent_off_a_terminal(capfd):
    train(specs_of("vector"), TrainConfig(steps=200, progress=True, device="cpu"))
    assert capfd.readouterr().err == ""


def test_progress_bar_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    train(specs_of("factorization"), TrainConfig(steps=300, progress=True, device="cpu"))
    err = capsys.readouterr().err
    assert "step/s" in err and "loss=" in err and "300/300" in err
    train(specs_of("factorization"), TrainConfig(steps=300, progress=False, device="cpu"))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["factorization", "ce"])
def test_float32_every_step_loss_and_thread_count(kind):
    """Between record steps the loss is the float32 one: close to a float64 run's; the run
    leaves torch's thread setting as it found it."""
    threads = torch.get_num_threads()
    spec = specs_of(kind, seed=8)
    config = TrainConfig(lr=0.2 if kind == "ce" else 0.05, steps=1000, device="cpu")
    result = train(spec, config)
    assert torch.get_num_threads() == threads
    assert np.setdiff1d(np.arange(1001), result.steps).size > 400
    again = train(spec, TrainConfig(**{**config.__dict__, "dtype": "float64"}))
    np.testing.assert_allclose(result.loss[0], again.loss[0], rtol=1e-4, atol=1e-6 * spec.l_ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["factorization", "ce", "attention"])
def test_cuda_equals_cpu(kind):
    specs = [specs_of(kind, seed=s, weight_decay=0.01) for s in range(3)]
    config = TrainConfig(optimizer="adamw", lr=[0.01, 0.02, 0.03], steps=100, dtype="float64",
                         device="cpu")
    cpu = train(specs, config)
    gpu = train(specs, TrainConfig(**{**config.__dict__, "device": "cuda"}))
    assert gpu.device.startswith("cuda")
    assert rel(gpu.loss, cpu.loss) < 1e-10
    for name in cpu.params:
        assert rel(gpu.params[name], cpu.params[name]) < 1e-10


# ----------------------------------------------------------------------------- any model
# The trainer runs the programs generated from each model's loss; here it is checked against
# gradient descent written out in numpy (gradients by hand), and against autograd / torch.optim
# of losses written out in this file.

_n, _r, _k = sp.symbols("n r k", integer=True, positive=True)
_A, _B = sp.MatrixSymbol("A", _n, _r), sp.MatrixSymbol("B", _n, _r)
_X, _Y = sp.MatrixSymbol("X", _n, _k), sp.MatrixSymbol("Y", _n, _k)
_G = sp.MatrixSymbol("G", _k, _k)
_E = _A * _B.T - _X * _Y.T
MINE = register(Model("mine_trainer", loss=sp.Trace(_E.T * _E) / 2, learned=[_X, _Y],
                      constants=[_A, _B], large=[_n]))  # the example
_S = _A * _A.T - _X * _G * _X.T
SYMMETRIC = register(Model(  # not a built-in in disguise: k x k middle, product of traces
    "symmetric_trainer",
    loss=sp.Trace(_S.T * _S) / 2 + sp.Trace(_X.T * _X) * sp.Trace(_G.T * _G) / 10,
    learned=[_X, _G], constants=[_A], large=[_n], targets={"X": "A"}))


def any_spec(kind: str, seed: int = 0, weight_decay: float = 0.0):
    if kind == "chain3":
        return Chain.sample(8, 2, model_rank=3, depth=3, init=0.4, seed=seed,
                            weight_decay=weight_decay)
    if kind in ("mine_trainer", "symmetric_trainer"):
        model = MINE if kind == "mine_trainer" else SYMMETRIC
        return sample_model(model, {"n": 30, "r": 2, "k": 2}, init=0.1, seed=seed,
                            weight_decay=weight_decay)
    return specs_of(kind, seed=seed, weight_decay=weight_decay)


def torch_model_loss(kind: str, v: dict) -> torch.Tensor:
    """The loss of ``kind`` written directly (one seed, torch float64)."""
    if kind == "chain3":
        return 0.5 * ((v["A"] @ v["B"].T - v["X"] @ v["M1"] @ v["Y"].T) ** 2).sum()
    if kind == "mine_trainer":
        return 0.5 * ((v["A"] @ v["B"].T - v["X"] @ v["Y"].T) ** 2).sum()
    if kind == "symmetric_trainer":
        e = v["A"] @ v["A"].T - v["X"] @ v["G"] @ v["X"].T
        return 0.5 * (e**2).sum() + (v["X"] ** 2).sum() * (v["G"] ** 2).sum() / 10
    raise KeyError(kind)


def hand_gradient(kind: str, v: dict) -> tuple[float, dict]:
    """(L, ∂L/∂W) by hand in numpy for the built-ins; by autograd of the loss above else."""
    if kind == "vector":
        return 0.5 * float(((v["a"] - v["x"]) ** 2).sum()), {"x": v["x"] - v["a"]}
    if kind == "factorization":
        e = v["A"] @ v["B"].T - v["X"] @ v["Y"].T
        return 0.5 * float((e**2).sum()), {"X": -e @ v["Y"], "Y": -e.T @ v["X"]}
    if kind == "attention":
        m, nn = v["Qs"] @ v["Ks"].T, v["Os"] @ v["Vs"].T
        mt, nt = v["Q"] @ v["K"].T, v["O"] @ v["V"].T
        loss = 0.5 * float(((np.kron(m, nn) - np.kron(mt, nt)) ** 2).sum())
        d_mt = -np.sum(nn * nt) * m + np.sum(nt * nt) * mt  # ∂L/∂M̃
        d_nt = -np.sum(m * mt) * nn + np.sum(mt * mt) * nt  # ∂L/∂Ñ
        return loss, {"Q": d_mt @ v["K"], "K": d_mt.T @ v["Q"], "O": d_nt @ v["V"],
                      "V": d_nt.T @ v["O"]}
    t = {key: torch.tensor(x, requires_grad=True) for key, x in v.items()}
    loss = torch_model_loss(kind, t)
    learned = [w for w in t if w in LEARNED[kind]]
    grads = torch.autograd.grad(loss, [t[w] for w in learned])
    return float(loss.detach()), {w: g.numpy() for w, g in zip(learned, grads, strict=True)}


LEARNED = {"chain3": ("X", "M1", "Y"), "mine_trainer": ("X", "Y"),
           "symmetric_trainer": ("X", "G")}


def numpy_gd(kind: str, spec, lr: float, steps: int) -> tuple[dict, np.ndarray]:
    """W ← W − η(∂L/∂W + λW) from the spec's initial point, numpy float64."""
    v = dict(spec.values())
    learned = list(spec.model.learned_names)
    losses = []
    for _ in range(steps):
        loss, grads = hand_gradient(kind, v)
        losses.append(loss)
        for w in learned:
            v[w] = v[w] - lr * (grads[w] + spec.weight_decay * v[w])
    losses.append(hand_gradient(kind, v)[0])
    return {w: v[w] for w in learned}, np.array(losses)


@pytest.mark.parametrize(("kind", "decay"), [
    ("factorization", 0.05), ("attention", 0.02), ("vector", 0.1), ("chain3", 0.01),
    ("mine_trainer", 0.0), ("symmetric_trainer", 0.05),
])
def test_generated_sgd_equals_numpy_gd(kind, decay):
    """The generated trainer (SGD, float64) is gradient descent written out in numpy, to 1e-9,
    for the built-ins, a depth-3 chain and user models; two seeds trained at once."""
    specs = [any_spec(kind, seed=s, weight_decay=decay) for s in range(2)]
    lr, steps = 0.05, 150
    result = train(specs, TrainConfig(lr=lr, steps=steps, dtype="float64", device="cpu"))
    assert result.diverged == []
    for s, spec in enumerate(specs):
        params, losses = numpy_gd(kind, spec, lr, steps)
        assert set(result.params) == set(spec.model.learned_names)
        for w, want in params.items():
            assert rel(result.params[w][s], want) < 1e-9, w
        assert rel(result.loss[s], losses) < 1e-9


@pytest.mark.parametrize("kind", ["chain3", "mine_trainer", "symmetric_trainer"])
@pytest.mark.parametrize(("optimizer", "lr", "momentum"), [
    ("momentum", 0.05, 0.8), ("adam", 0.01, 0.0), ("adamw", 0.01, 0.0)])
def test_any_model_follows_torch_optim(kind, optimizer, lr, momentum):
    """Momentum and Adam(W) on the generated gradient equal torch.optim on autograd of the
    loss written in the test."""
    spec = any_spec(kind, seed=1, weight_decay=0.03)
    config = TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, steps=120,
                         dtype="float64", device="cpu")
    result = train(spec, config)
    values = {key: torch.tensor(x) for key, x in spec.values().items()}
    params = {w: torch.nn.Parameter(values[w].clone()) for w in spec.model.learned_names}
    kwargs = {"lr": lr, "weight_decay": spec.weight_decay}
    kwargs |= {"momentum": momentum} if optimizer == "momentum" else {}
    opt = TORCH_OPTIM[optimizer](list(params.values()), **kwargs)
    losses = []
    for _ in range(config.steps):
        opt.zero_grad()
        loss = torch_model_loss(kind, values | params)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    losses.append(torch_model_loss(kind, values | params).item())
    for w, p in params.items():
        assert rel(result.params[w][0], p.detach().numpy()) < 1e-10, w
    assert rel(result.loss[0], losses) < 1e-10


@pytest.mark.parametrize("kind", ["chain3", "mine_trainer", "symmetric_trainer"])
def test_any_model_gradient_equals_autograd(kind):
    spec = any_spec(kind, seed=2, weight_decay=0.2)
    objective = _Objective([spec], torch.device("cpu"), torch.float64)
    loss, grad = objective.evaluate()
    values = {key: torch.tensor(x, requires_grad=True) for key, x in spec.values().items()}
    want = torch_model_loss(kind, values)
    learned = spec.model.learned_names
    grads = torch.autograd.grad(want, [values[w] for w in learned])
    assert abs(loss.item() - want.item()) <= 1e-12 * abs(want.item())
    for w, g in zip(learned, grads, strict=True):
        assert rel(grad[w][0], g + spec.weight_decay * values[w].detach()) < 1e-12


@pytest.mark.parametrize("kind", ["factorization", "attention"])
def test_float32_order_parameters_are_measured_in_float64(kind):
    """float32 training: P = TᵀW and U = WᵀW recorded at the float32 parameters, in float64
    (the measurement program's own products), = numpy on those parameters."""
    spec = specs_of(kind, seed=4)
    result = train(spec, TrainConfig(lr=0.02, steps=40, dtype="float32", device="cpu"))
    for name, (t, _) in spec.factors().items():
        p, u = result.order[name]
        w = result.params[name][0].astype(np.float64)
        np.testing.assert_allclose(p[0, -1], t.T @ w, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(u[0, -1], w.T @ w, rtol=1e-12, atol=1e-15)


def test_user_model_float32_measurements_and_order():
    """A user model in the default float32: the recorded loss is the float64 measurement at the
    float32 parameters, and its target-paired order parameters P = AᵀX, U = XᵀX are recorded."""
    spec = any_spec("symmetric_trainer", seed=3)
    result = train(spec, TrainConfig(lr=0.05, steps=300, device="cpu"))
    assert result.dtype == "float32" and result.diverged == []
    final = {key: torch.tensor(x) for key, x in spec.values().items()}
    final |= {w: torch.tensor(result.params[w][0]) for w in ("X", "G")}
    assert result.final_loss[0] == pytest.approx(torch_model_loss("symmetric_trainer",
                                                                  final).item(), rel=1e-12)
    assert list(result.order) == ["X"]
    p, u = result.order["X"]
    a, x = spec.values()["A"], result.params["X"][0]
    np.testing.assert_allclose(p[0, -1], a.T @ x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(u[0, -1], x.T @ x, rtol=1e-12, atol=1e-14)
    assert set(result.trajectories[0].cosines) == {"X"}
    mine = train(any_spec("mine_trainer"), TrainConfig(lr=0.05, steps=20, device="cpu"))
    assert mine.order == {} and mine.trajectories[0].cosines == {}  # a model without targets


def test_mismatched_models_and_shapes_name_the_spec():
    base = any_spec("chain3")
    cases = [
        [base, Chain.sample(8, 2, model_rank=3, depth=4, seed=1)],  # another depth
        [specs_of("factorization"), any_spec("mine_trainer")],  # another model
        [any_spec("mine_trainer"), sample_model(MINE, {"n": 20, "r": 2, "k": 2}, seed=1)],
    ]
    for specs in cases:
        with pytest.raises(ValueError, match=r"spec 1 .* does not match spec 0") as info:
            train(specs, TrainConfig(steps=1, device="cpu"))
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- schedules

SCHEDULES = {"step": StepLR(step_size=30, gamma=0.5), "exponential": ExponentialLR(0.99),
             "cosine": CosineAnnealingLR(T_max=80, eta_min=1e-3),
             "linear": LinearLR(start_factor=0.1, total_iters=50)}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize(("kind", "optimizer", "lr", "momentum"), [
    ("factorization", "sgd", 0.1, 0.0),
    ("attention", "momentum", 0.05, 0.6),
    ("factorization", "adam", 0.02, 0.0),
    ("attention", "adamw", 0.02, 0.0),
])
def test_schedules_equal_torch_optim_with_its_scheduler(schedule, kind, optimizer, lr, momentum):
    """Every optimizer with every schedule against torch.optim + torch.optim.lr_scheduler
    (float64, nn.Parameters, weight decay): parameters and the loss at every step."""
    spec = specs_of(kind, weight_decay=0.02)
    config = TrainConfig(optimizer=optimizer, lr=lr, momentum=momentum, steps=150,
                         schedule=SCHEDULES[schedule], dtype="float64", device="cpu")
    result = train(spec, config)
    params, losses = torch_optim_run(spec, kind, config)
    for name, want in zip(spec.factors(), params, strict=True):
        assert rel(result.params[name][0], want) < 1e-12  # measured <= 1.2e-15
    assert rel(result.loss[0], losses) < 1e-12


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_sgd_with_a_schedule_equals_the_gd_map_with_it(schedule, momentum):
    """float64 SGD with a schedule against the exact reduced GD map with the same schedule
    (:func:`dynamics.integrate.predict`): the loss of every step to 1e-12 relative, and the
    same times t_k = Σ_{j<k} η_j (so the same crossing times)."""
    spec = Factorization.sample(30, 2, init=1e-2, seed=5)
    lr, steps, sched = 0.05, 400, SCHEDULES[schedule]
    theory = predict(spec, Discrete(lr, momentum=momentum, schedule=sched), t_max=1e3)
    result = train(spec, TrainConfig(lr=lr, momentum=momentum, steps=steps, schedule=sched,
                                     record="all", dtype="float64", device="cpu"))
    m = min(steps + 1, theory.t.size)
    assert m >= 100  # 101 to 2614 steps to the end, depending on schedule and μ
    # (the reduced loss is a difference of O(L_ref) terms: ~1e-16·L_ref absolute)
    np.testing.assert_allclose(result.loss[0, :m], theory.loss[:m], rtol=1e-12,
                               atol=1e-14 * spec.l_ref)
    assert np.array_equal(result.t[0, :m], theory.t[:m])
    assert np.array_equal(result.trajectories[0].t, result.t[0])
    assert np.array_equal(result.t[0], times(lr, steps, sched))
    if m == theory.t.size:  # the map reached its end inside the run: the same crossings
        assert result.crossing_times()[0] == pytest.approx(theory.crossing_times(), rel=1e-9)


def test_batched_step_sizes_with_a_schedule_equal_separate_runs():
    spec = specs_of("factorization")
    sched = CosineAnnealingLR(T_max=40, eta_min=0.002)
    config = TrainConfig(lr=[0.1, 0.03], steps=100, schedule=sched, dtype="float64",
                         device="cpu")
    batched = train([spec, spec], config)
    for s, lr in enumerate(config.lr):
        alone = train(spec, TrainConfig(lr=lr, steps=100, schedule=sched, dtype="float64",
                                        device="cpu"))
        assert np.array_equal(batched.loss[s], alone.loss[0])
        assert np.array_equal(batched.t[s], alone.t[0])
        assert np.array_equal(batched.t[s], times(lr, 100, sched))


def test_a_schedule_changes_time_and_a_bad_one_is_refused():
    spec = specs_of("factorization")
    warm = train(spec, TrainConfig(lr=0.1, steps=20, schedule=LinearLR(0.5, 1.0, 10),
                                   dtype="float64", device="cpu"))
    assert warm.t[0, 1] == 0.05 and warm.t[0, -1] == pytest.approx(0.1 * 20 - 0.05 * 5.5)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")


# ------------------------------------------------------- a mean-normalised loss (README recipe)


def _mean_loss_run(spec: Factorization, optimizer: str, lr: float, steps: int,
                   eps: float = 1e-8, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> np.ndarray:
    """What another code does: torch.optim on L_mean = (1/m)Σ(residual²) (m entries, no ½),
    float64 nn.Parameters; returns ½Σ(residual²) = (m/2)·L_mean at every step."""
    a, b = torch.tensor(spec.A), torch.tensor(spec.B)
    x, y = torch.nn.Parameter(torch.tensor(spec.X0)), torch.nn.Parameter(torch.tensor(spec.Y0))
    opt = (torch.optim.SGD([x, y], lr=lr, momentum=momentum, weight_decay=weight_decay)
           if optimizer == "sgd" else torch.optim.Adam([x, y], lr=lr, eps=eps))
    m = spec.n * spec.n
    out = []
    for _ in range(steps + 1):
        opt.zero_grad()
        loss = ((a @ b.T - x @ y.T) ** 2).mean()
        out.append(m / 2 * loss.item())
        loss.backward()
        opt.step()
    return np.array(out)


def test_mean_loss_maps_onto_the_half_sum_convention():
    """README "Mapping another code's loss and learning rate": SGD on L_mean with η_mean (and
    momentum μ, decay λ_mean) takes the steps of SGD on L = ½Σ(residual²) with η = 2η_mean/m
    (μ, λ = (m/2)λ_mean); Adam on L_mean with ε takes those of Adam on L with the same η and
    ε·m/2."""
    spec = Factorization.sample(12, 2, init=0.1, seed=2)
    m, steps = spec.n * spec.n, 300
    sgd_mean = _mean_loss_run(spec, "sgd", lr=2.0, steps=steps)
    sgd = train(spec, TrainConfig(lr=2 * 2.0 / m, steps=steps, dtype="float64", device="cpu"))
    # rounding of θ (~1e-16) over a small residual late in the run: an absolute floor too
    np.testing.assert_allclose(sgd.loss[0], sgd_mean, rtol=1e-12, atol=1e-14 * spec.l_ref)
    assert sgd.loss[0, -1] < 0.1 * spec.l_ref  # it learned
    heavy_mean = _mean_loss_run(spec, "sgd", lr=1.0, steps=steps, momentum=0.5,
                                weight_decay=1e-3)
    heavy = train(spec, TrainConfig(lr=2 * 1.0 / m, momentum=0.5, weight_decay=m / 2 * 1e-3,
                                    steps=steps, dtype="float64", device="cpu"))
    np.testing.assert_allclose(heavy.loss[0], heavy_mean, rtol=1e-12, atol=1e-14 * spec.l_ref)
    # Adam: 100 steps, to L ~ 2e-4·L_ref (closer to the minimum m/(√v + ε) amplifies the
    # rounding of the two gradients, (2/m)·g vs g: 1e-12 at step 100, 1e-3 by step 300)
    adam_mean = _mean_loss_run(spec, "adam", lr=0.01, steps=100, eps=1e-4)
    adam = train(spec, TrainConfig(optimizer="adam", lr=0.01, eps=1e-4 * m / 2, steps=100,
                                   dtype="float64", device="cpu"))
    np.testing.assert_allclose(adam.loss[0], adam_mean, rtol=1e-10)
    unmapped = train(spec, TrainConfig(optimizer="adam", lr=0.01, eps=1e-4, steps=100,
                                       dtype="float64", device="cpu"))
    assert np.max(np.abs(unmapped.loss[0] / adam_mean - 1)) > 0.1  # ε matters here
