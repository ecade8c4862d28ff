"""Tests of validation.programs: the runtime of the generated torch programs.

Every expected value is computed here independently: numpy products, and torch.autograd of
losses written out in this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from dynamics import symbolic
from dynamics.catalog import ATTENTION, FACTORIZATION, FACTORIZATION_CE, VECTOR, chain
from dynamics.model import Model
from validation import graph as G
from validation import programs as P

F64 = torch.float64
S = 3  # seeds


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ----------------------------------------------------------------------------- helpers


def test_chain_order_and_value_equal_multi_dot():
    rng = np.random.default_rng(0)
    shapes = [(30, 2), (2, 40), (40, 3), (3, 5)]
    mats = [rng.standard_normal((S, *sh)) for sh in shapes]
    got = G._chain(*(torch.tensor(m) for m in mats)).numpy()
    for s in range(S):
        assert rel(got[s], np.linalg.multi_dot([m[s] for m in mats])) < 1e-13
    tree, cost = G._order((30, 2, 40, 3, 5))
    # the cheapest order of 30x2 · 2x40 · 40x3 · 3x5, by enumeration of all five trees
    d = (30, 2, 40, 3, 5)
    candidates = {
        ((0, 1), (2, 3)): d[0] * d[1] * d[2] + d[2] * d[3] * d[4] + d[0] * d[2] * d[4],
        (((0, 1), 2), 3): d[0] * d[1] * d[2] + d[0] * d[2] * d[3] + d[0] * d[3] * d[4],
        ((0, (1, 2)), 3): d[1] * d[2] * d[3] + d[0] * d[1] * d[3] + d[0] * d[3] * d[4],
        (0, ((1, 2), 3)): d[1] * d[2] * d[3] + d[1] * d[3] * d[4] + d[0] * d[1] * d[4],
        (0, (1, (2, 3))): d[2] * d[3] * d[4] + d[1] * d[2] * d[4] + d[0] * d[1] * d[4],
    }
    assert cost == min(candidates.values()) and candidates[tree] == cost
    assert G._order.cache_info().hits >= 0  # memoised per tuple of shapes
    before = G._order.cache_info().hits
    G._chain(*(torch.tensor(m) for m in mats))
    assert G._order.cache_info().hits == before + 1


def test_trace_and_entry_sum():
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal((S, 4, 6)), rng.standard_normal((S, 6, 5)), \
        rng.standard_normal((S, 5, 4))
    t = G._trace(torch.tensor(a), torch.tensor(b), torch.tensor(c))
    assert t.shape == (S, 1, 1)
    for s in range(S):
        assert rel(t[s, 0, 0], np.trace(a[s] @ b[s] @ c[s])) < 1e-13
    sq = rng.standard_normal((S, 4, 4))
    assert rel(G._trace(torch.tensor(sq))[:, 0, 0], np.trace(sq, axis1=1, axis2=2)) < 1e-14
    e = G._entry_sum(torch.tensor(a))
    assert e.shape == (S, 1, 1) and rel(e[:, 0, 0], a.sum((1, 2))) < 1e-14


# ----------------------------------------------------------------------------- models

n, r, k = sp.symbols("n r k", integer=True, positive=True)
_A, _B = sp.MatrixSymbol("A", n, r), sp.MatrixSymbol("B", n, r)
_X = sp.MatrixSymbol("X", n, k)
_G = sp.MatrixSymbol("G", k, k)
_E = _A * _A.T - _X * _G * _X.T
# a model none of the built-ins is: a symmetric factorization with a learned k x k middle and
# a product-of-traces penalty
SYMMETRIC = Model("symmetric_test", loss=sp.Trace(_E.T * _E) / 2
                  + sp.Trace(_X.T * _X) * sp.Trace(_G.T * _G) / 10,
                  learned=[_X, _G], constants=[_A], large=[n])


def torch_loss(name: str, v: dict) -> torch.Tensor:
    """Each model's loss written directly, per seed summed (autograd target)."""
    if name == "vector":
        return 0.5 * ((v["a"] - v["x"]) ** 2).sum()
    if name == "factorization":
        return 0.5 * ((v["A"] @ v["B"].mT - v["X"] @ v["Y"].mT) ** 2).sum()
    if name == "factorization_ce":
        z, c = v["X"] @ v["Y"].mT, v["A"] @ v["B"].mT
        log_q = torch.log_softmax(z.flatten(1), 1)
        log_p = torch.log_softmax(c.flatten(1), 1)
        return (log_p.exp() * (log_p - log_q)).sum()
    if name == "attention":
        total = 0
        for s in range(v["Q"].shape[0]):
            m, nn = v["Qs"][s] @ v["Ks"][s].T, v["Os"][s] @ v["Vs"][s].T
            mt, nt = v["Q"][s] @ v["K"][s].T, v["O"][s] @ v["V"][s].T
            total = total + 0.5 * ((torch.kron(m, nn) - torch.kron(mt, nt)) ** 2).sum()
        return total
    if name == "chain3":
        return 0.5 * ((v["A"] @ v["B"].mT - v["X"] @ v["M1"] @ v["Y"].mT) ** 2).sum()
    if name == "symmetric_test":
        e = v["A"] @ v["A"].mT - v["X"] @ v["G"] @ v["X"].mT
        penalty = (v["X"] ** 2).sum((1, 2)) * (v["G"] ** 2).sum((1, 2))
        return 0.5 * (e**2).sum() + penalty.sum() / 10
    raise KeyError(name)


MODELS = {"vector": VECTOR, "factorization": FACTORIZATION, "factorization_ce": FACTORIZATION_CE,
          "attention": ATTENTION, "chain3": chain(3), "symmetric_test": SYMMETRIC}
DIMS = {"n": 7, "r": 2, "k": 3}


def point(model: Model, seed: int = 0, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """Random float64 values (S, rows, cols) of every matrix of ``model``."""
    rng = np.random.default_rng(seed)
    out = {}
    for sym in (*model.learned, *model.constants):
        shape = tuple(int(d) if d.is_Integer else DIMS[str(d)] for d in sym.shape)
        out[sym.name] = torch.tensor(rng.standard_normal((S, *shape)) * scale)
    return out


def autograd(name: str, model: Model, values: dict, lam: np.ndarray):
    params = {w: values[w].clone().requires_grad_(True) for w in model.learned_names}
    loss_seeds = [torch_loss(name, {**values, **{w: p[s:s + 1] for w, p in params.items()},
                                    **{c: values[c][s:s + 1] for c in model.constant_names}})
                  for s in range(S)]
    total = sum(loss_seeds)
    grads = torch.autograd.grad(total, list(params.values()))
    return (np.array([float(x.detach()) for x in loss_seeds]),
            {w: (g + torch.tensor(lam).view(-1, 1, 1) * values[w]).numpy()
             for w, g in zip(params, grads, strict=True)})


def zero_loss(name: str, model: Model, values: dict) -> np.ndarray:
    zero = {**values, **{w: torch.zeros_like(values[w]) for w in model.learned_names}}
    return np.array([float(torch_loss(name, {k2: v[s:s + 1] for k2, v in zero.items()}))
                     for s in range(S)])


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_plan_equals_autograd_and_eager(name, decay):
    """The compiled plan, and the generated source run as written, both equal autograd of the
    loss written here (+ λW), per seed, at a random float64 point."""
    model = MODELS[name]
    values = point(model, seed=3)
    lam = np.array([decay, decay / 2, 0.0])[:S]
    want_loss, want_grads = autograd(name, model, values, lam)
    shapes = {w: tuple(values[w].shape[1:]) for w in model.learned_names}
    consts = {c: values[c] for c in model.constant_names}
    lam_t = torch.tensor(lam, dtype=F64)
    inputs = {w: values[w].clone() for w in model.learned_names}
    cross_entropy = model.cross_entropy()
    offset = None if cross_entropy else torch.tensor(zero_loss(name, model, values))
    graph, outputs = P.objective(model, shapes, consts, lam_t, offset=offset)
    plan = P.Plan(graph, outputs, inputs)
    got = plan()
    assert rel(got["L"][:, 0, 0], want_loss) < 1e-12
    for w in model.learned_names:
        assert rel(got[w], want_grads[w]) < 1e-12, w
    if not cross_entropy:  # the eager run of the same source: L − L(0) and g_W
        fn = P.function(symbolic.training_program(model).programs["train"])
        eager = fn({**values, "lam": lam_t.view(-1, 1, 1)})
        assert rel(eager["L"][:, 0, 0] + offset, want_loss) < 1e-12
        for w in model.learned_names:
            assert rel(eager[w], want_grads[w]) < 1e-12


@pytest.mark.parametrize("name", ["factorization", "attention", "chain3", "symmetric_test",
                                  "factorization_ce"])
def test_out_buffers_scale_and_rows(name):
    """Outputs into caller buffers, times a per-seed factor from ``between``; learned matrices
    that lie one after another in memory (a row of panels, one matmul) give the same numbers
    as separate tensors."""
    model = MODELS[name]
    values = point(model, seed=5)
    shapes = {w: tuple(values[w].shape[1:]) for w in model.learned_names}
    consts = {c: values[c] for c in model.constant_names}
    lam = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    graph, outputs = P.objective(model, shapes, consts, lam)
    plain = P.Plan(graph, outputs, {w: values[w].clone() for w in model.learned_names})()
    flat = torch.cat([values[w].flatten() for w in model.learned_names])
    views, offset = {}, 0
    for w in model.learned_names:
        views[w] = flat[offset:offset + values[w].numel()].view_as(values[w])
        offset += values[w].numel()
    grads = {w: torch.full_like(values[w], np.nan) for w in model.learned_names}
    factor = torch.tensor([-0.5, 2.0, 0.0], dtype=F64).view(-1, 1, 1)
    seen = []

    def between(loss):
        seen.append(loss.clone())
        return factor

    graph, outputs = P.objective(model, shapes, consts, lam)
    plan = P.Plan(graph, outputs, views, out=grads, scaled=True)
    for _ in range(2):  # a second call reuses every buffer
        got = plan(between)
        assert rel(got["L"], plain["L"]) < 1e-13 and rel(seen[-1], plain["L"]) < 1e-13
        for w in model.learned_names:
            assert rel(grads[w], factor * plain[w]) < 1e-12
    assert plan.macs > 0 and "_between" in plan.source


def test_constant_folding_and_zero_decay():
    """λ = 0 for every seed drops the decay terms; constant-only values (C's softmax) are
    computed once before the run, not in the step."""
    values = point(FACTORIZATION_CE, seed=2)
    shapes = {w: tuple(values[w].shape[1:]) for w in ("X", "Y")}
    consts = {c: values[c] for c in ("A", "B")}
    graph, outputs = P.objective(FACTORIZATION_CE, shapes, consts, torch.zeros(S, dtype=F64))
    plan = P.Plan(graph, outputs, {w: values[w] for w in ("X", "Y")})
    assert plan.source.count("torch.exp") == 1  # exp(z) only; exp(c) is folded
    assert "lam" not in plan.source and "addcmul" not in plan.source
    want_loss, want_grads = autograd("factorization_ce", FACTORIZATION_CE, values, np.zeros(S))
    got = plan()
    assert rel(got["L"][:, 0, 0], want_loss) < 1e-12
    for w in ("X", "Y"):
        assert rel(got[w], want_grads[w]) < 1e-12


def test_graph_sharing_and_errors():
    g = P.Graph()
    x, y = g.input("X", (5, 2)), g.input("Y", (5, 2))
    assert g.chain(g.transpose(x), y) is g.chain(g.transpose(x), y)  # one node
    assert g.transpose(g.chain(g.transpose(x), y)) is g.chain(g.transpose(y), x)
    assert g.add(x, g.num(0)) is x and g.mul(g.num(1), x) is x
    assert g.mul(g.num(0), x).op == "num"
    with pytest.raises(ValueError, match="mismatched shapes"):
        g.chain(x, y)
    with pytest.raises(ValueError, match="non-square"):
        g.trace(x)
    with pytest.raises(ValueError, match="elementwise"):
        g.add(x, g.transpose(y))


def owned_plan(name: str, seed: int) -> tuple[Model, dict, P.Plan]:
    """A plan of ``name``'s objective (λ = 0) at ``point(seed)`` that owns its inputs."""
    model = MODELS[name]
    values = point(model, seed=seed)
    shapes = {w: tuple(values[w].shape[1:]) for w in model.learned_names}
    consts = {c: values[c] for c in model.constant_names}
    offset = None if model.cross_entropy() else torch.tensor(zero_loss(name, model, values))
    graph, outputs = P.objective(model, shapes, consts, None, offset=offset)
    return model, values, P.Plan(graph, outputs, seeds=S, device="cpu")


def assert_equals_autograd(name: str, model: Model, values: dict, plan: P.Plan) -> None:
    """The plan run at ``values`` (λ = 0) against autograd, loss and gradients to 1e-12."""
    for w in model.learned_names:
        plan.inputs[w].copy_(values[w])
    want_loss, want_grads = autograd(name, model, values, np.zeros(S))
    got = plan()
    assert rel(got["L"][:, 0, 0], want_loss) < 1e-12
    for w in model.learned_names:
        assert rel(got[w], want_grads[w]) < 1e-12


@pytest.mark.parametrize("name", ["factorization", "attention", "chain3", "vector",
                                  "factorization_ce"])
def test_owned_inputs_live_in_groups(name):
    """A plan that places the learned matrices itself: every input in exactly one group, the
    inputs are views of the groups' storage, and the values equal autograd."""
    model, values, plan = owned_plan(name, seed=7)
    names = [n for group in plan.groups for n in group[0]]
    assert sorted(names) == sorted(model.learned_names)
    for group_names, storage, transposed in plan.groups:
        assert storage.shape[:2] == (len(group_names), S)
        for i, w in enumerate(group_names):
            view = storage[i].mT if transposed else storage[i]
            assert view.data_ptr() == plan.inputs[w].data_ptr()
    assert_equals_autograd(name, model, values, plan)
    if name == "factorization":  # X and Y live beside A and B: one contraction, no copies
        contractions = [line for line in plan.source.splitlines() if "_bmm(rowr" in line]
        assert len(contractions) == 1 and ".copy_(" not in plan.source


@pytest.mark.parametrize("dtype, spec, plans", [
    ("float64", "factorization", 1),  # the step (its float64 loss is the measurement)
    ("float32", "factorization", 2),  # the step, and the float64 loss that measures it
    ("float64", "dro", 2),  # the step (D an input), and the group losses ℓ_g
])
def test_one_train_compiles_each_program_once(dtype, spec, plans):
    """One ``train`` compiles each program it runs exactly once: no layout pass, no
    recompilation (``Plan.compiled`` counts every compilation)."""
    from dynamics.problems import Factorization, sample_modes
    from validation.training import TrainConfig, train

    specs = [Factorization.sample(6, 2, init=0.1, seed=s) for s in range(2)] \
        if spec == "factorization" else \
        [sample_modes([1.0, 2.0], [0.7, 0.3], n=6, hidden=3, seed=s, objective="dro")
         for s in range(2)]
    before = P.Plan.compiled
    result = train(specs, TrainConfig(steps=5, lr=0.05, dtype=dtype, progress=False))
    assert P.Plan.compiled - before == plans
    assert np.all(np.isfinite(result.loss))


@pytest.mark.parametrize("name", ["chain3", "factorization_ce"])
def test_product_choices_are_reused_for_the_same_structure(name):
    """A second plan of the same program structure (other constants and learned values) takes
    the product choices of the first (no planning), emits the same step, and is still right
    (against autograd at its own values)."""
    P._PLANNED.clear()
    sources = []
    for seed in (3, 4):
        model, values, plan = owned_plan(name, seed)
        assert len(P._PLANNED) == 1
        assert_equals_autograd(name, model, values, plan)
        sources.append(plan.source)
    assert sources[0] == sources[1]


def test_cpu_products_into_buffers_run_on_numpy_views_unless_large():
    """Small products into a plan's own buffers are numpy.matmul on views of the same memory
    (checked right by the autograd tests above, which all run on the CPU); a product large
    enough for OpenBLAS to thread (m·k·n > 2¹⁸) stays torch.bmm."""
    *_, plan = owned_plan("factorization", seed=5)
    host = [line for line in plan.source.splitlines() if "_mm(" in line]
    assert host and all("# _bmm(" in line for line in host)
    n, r, k = 1400, 10, 10  # the panel product: (k x n) @ (n x (r + k)): 10·1400·20 > 2¹⁸
    rng = np.random.default_rng(0)
    consts = {c: torch.tensor(rng.standard_normal((S, n, r))) for c in ("A", "B")}
    big = P.Plan(*P.objective(FACTORIZATION, {"X": (n, k), "Y": (n, k)}, consts, None),
                 seeds=S, device="cpu")
    assert "_bmm(" in big.source and "_mm(" not in big.source.replace("_bmm(", "")


def test_offset_fused_into_baddbmm_only_where_the_product_is_not_used_again():
    lines = ["v1 = _bmm(a, b)", "v2 = c + v1"]
    assert P._fuse_offsets(lines, "'L': v2") == ["v2 = torch.baddbmm(c, a, b)"]
    assert P._fuse_offsets(lines, "'L': v2, 'P': v1") == lines  # v1 is returned
    assert P._fuse_offsets([*lines, "v3 = v1 * 2"], "'L': v3") == [*lines, "v3 = v1 * 2"]
    a, b, c = torch.randn(3, 1, 4), torch.randn(3, 4, 1), torch.randn(3, 1, 1)
    assert torch.allclose(torch.baddbmm(c, a, b), c + torch.bmm(a, b), rtol=1e-6, atol=1e-6)
