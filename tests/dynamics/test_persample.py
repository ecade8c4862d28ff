"""Per-sample forms (dynamics.persample) on matrix sensing, against explicit numpy GD."""

from pathlib import Path

import numpy as np
import pytest

from dynamics import methods, model, problems
from dynamics.integrate import predict
from dynamics.phases import crossing_times

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sensing() -> model.Model:
    return model.load_file(ROOT / "examples" / "sensing.py")


def _spec(m: model.Model, d: int, h: int, n: int, seed: int = 0, init: float = 0.1):
    """Planted rank-2 target M⋆ = AAᵀ (trace-normalised), y_n = ⟨X_n, M⋆⟩, X_n ~ N(0, 1/N)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d, d)) / np.sqrt(n)
    a = rng.standard_normal((d, 2))
    target = a @ a.T / np.sqrt(d)
    y = np.einsum("nij,ij->n", x, target).reshape(n, 1, 1)
    arrays = {"X": x, "y": y, "W00": rng.standard_normal((d, h)) * init,
              "W10": rng.standard_normal((h, d)) * init}
    return problems.ModelSpec(m.name, arrays)


def _numpy_gd(arrays: dict, lr: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain GD on L = ½Σ_n(⟨X_n, W₀W₁⟩ − y_n)² written out by hand; t = η·step."""
    x, y = arrays["X"], arrays["y"].ravel()
    w0, w1 = arrays["W00"].copy(), arrays["W10"].copy()
    losses = []
    for _ in range(steps + 1):
        r = np.einsum("nij,ij->n", x, w0 @ w1) - y
        losses.append(0.5 * r @ r)
        g = np.einsum("n,nij->ij", r, x)
        w0, w1 = w0 - lr * g @ w1.T, w1 - lr * w0.T @ g
    return lr * np.arange(steps + 1), np.array(losses)


@pytest.mark.parametrize("n", [60, 500])
def test_sensing_gd_equals_numpy(sensing: model.Model, n: int) -> None:
    spec = _spec(sensing, d=10, h=10, n=n)
    lr = 0.05
    traj = predict(spec, methods.Discrete(lr=lr), t_max=40.0)
    steps = len(traj.t) - 1
    t, loss = _numpy_gd(spec.data, lr, steps)
    l_ref = 0.5 * float(np.sum(spec.data["y"] ** 2))
    assert traj.l_ref == pytest.approx(l_ref, rel=1e-12)
    np.testing.assert_allclose(traj.loss, loss, rtol=1e-9, atol=1e-14 * l_ref)
    ours, theirs = traj.crossing_times(), crossing_times(t, loss, l_ref)
    assert theirs[0.5] is not None and theirs[0.1] is not None  # the test sees a drop
    for f in (0.5, 0.1):
        assert abs(ours[f] - theirs[f]) <= 1e-12 * theirs[f]


def test_state_size_independent_of_n(sensing: model.Model) -> None:
    sizes = [predict(_spec(sensing, d=10, h=10, n=n), methods.Discrete(lr=0.05),
                     t_max=0.2).state_size for n in (60, 6000)]
    assert sizes[0] == sizes[1] == 2 * 10 * 10


def test_flow_reduced_equals_full(sensing: model.Model) -> None:
    spec = _spec(sensing, d=6, h=3, n=40)
    a = predict(spec, methods.Flow(), t_max=5.0)
    b = predict(spec, methods.Full(), t_max=5.0)
    tb = np.interp(a.t, b.t, b.loss)
    np.testing.assert_allclose(a.loss, tb, rtol=1e-4)


def test_modified_hessian_vector_matches_finite_difference(sensing: model.Model) -> None:
    """The modified rhs −g − (η/2)Hg against H g by central differences of the numpy gradient."""
    from dynamics import symbolic

    spec = _spec(sensing, d=5, h=3, n=30)
    vals = spec.values()
    flow, mod = symbolic.full_flow(sensing), symbolic.full_flow(sensing, modified=True)
    g = flow.grad(vals, 0.0)
    eps = 1e-6
    plus = flow.grad(vals | {k: vals[k] + eps * g[k] for k in g}, 0.0)
    minus = flow.grad(vals | {k: vals[k] - eps * g[k] for k in g}, 0.0)
    eta = 0.1
    rhs = mod.rhs(vals, lam=0.0, lr=eta)
    for k in g:
        hg = (plus[k] - minus[k]) / (2 * eps)
        np.testing.assert_allclose(rhs[k], -g[k] - 0.5 * eta * hg, rtol=1e-6, atol=1e-9)


def test_leading_dimensions_must_agree(sensing: model.Model) -> None:
    spec = _spec(sensing, d=4, h=2, n=20)
    arrays = dict(spec.data) | {"y": spec.data["y"][:15]}
    with pytest.raises(problems.SpecError, match=r"^y: 15 samples, but X has 20"):
        problems.check_arrays(sensing, arrays)



def test_training_equals_numpy_gd_two_seeds(sensing: model.Model) -> None:
    """The generated trainer (einsum over the samples; validation.training) against the same
    numpy GD, two seeds trained at once in float64, every step to 1e-9."""
    from validation.training import TrainConfig, train

    specs = [_spec(sensing, d=6, h=4, n=50, seed=s) for s in (0, 1)]
    lr, steps = 0.05, 300
    result = train(specs, TrainConfig(lr=lr, steps=steps, dtype="float64"))
    for i, spec in enumerate(specs):
        _, loss = _numpy_gd(spec.data, lr, steps)
        np.testing.assert_allclose(np.asarray(result.loss)[i], loss, rtol=1e-9,
                                   atol=1e-14 * loss[0])


def test_depth3_gradient_equals_numpy() -> None:
    """examples/sensing3.py: ∇L against the hand-written chain rule."""
    from dynamics import symbolic

    m = model.load_file(ROOT / "examples" / "sensing3.py")
    rng = np.random.default_rng(3)
    d, h, n = 5, 3, 40
    x, y = rng.standard_normal((n, d, d)), rng.standard_normal((n, 1, 1))
    w = [rng.standard_normal(s) for s in ((d, h), (h, h), (h, d))]
    vals = {"X": x, "y": y, "W0": w[0], "W1": w[1], "W2": w[2]}
    r = np.einsum("nij,ij->n", x, w[0] @ w[1] @ w[2]) - y.ravel()
    big = np.einsum("n,nij->ij", r, x)
    g = symbolic.full_flow(m).grad(vals, 0.1)
    want = {"W0": big @ (w[1] @ w[2]).T, "W1": w[0].T @ big @ w[2].T,
            "W2": (w[0] @ w[1]).T @ big}
    for k, v in want.items():
        np.testing.assert_allclose(g[k], v + 0.1 * vals[k], rtol=1e-12, atol=1e-12)


def test_too_deep_derivation_is_one_line_model_error(tmp_path, monkeypatch) -> None:
    from dynamics import symbolic

    monkeypatch.setenv("SCURVE_CACHE", str(tmp_path))

    def deep() -> dict:
        raise RecursionError("maximum recursion depth exceeded during compilation")

    with pytest.raises(model.ModelError, match=r"^gd-x derivation: .*RecursionError.*$"):
        symbolic._load_or_derive("gd-x", (), deep)


def test_compare_skips_a_method_that_cannot_be_derived(sensing, monkeypatch) -> None:
    """compare notes the method it could not derive and compares the others (rc 0 in the CLI)."""
    from validation import comparison
    from validation.training import TrainConfig

    real = comparison.predict

    def flaky(spec, method=None, **kw):
        if isinstance(method, methods.Modified):
            raise model.ModelError("gd-modified derivation: too deep (RecursionError)")
        return real(spec, method, **kw)

    monkeypatch.setattr(comparison, "predict", flaky)
    out = comparison.compare(_spec(sensing, d=4, h=2, n=30),
                             TrainConfig(lr=0.05, dtype="float64"))
    assert "modified" not in out.theories and "discrete" in out.theories
    assert any(n.startswith("modified skipped: gd-modified derivation") for n in out.notes)
    assert out.verdicts["discrete"] == "agrees"


def test_cli_sample_predict_and_bad_leading_dimension(tmp_path, capsys) -> None:
    """scurve sample/predict on the sensing example; a spec whose y has fewer samples than X
    is one line on stderr and exit code 2."""
    from figures.cli import main

    path, spec = str(ROOT / "examples" / "sensing.py"), tmp_path / "s.npz"
    assert main(["sample", "--model", path, "--dims", "d=4,h=2,N=30", "--init", "0.1",
                 "-o", str(spec)]) == 0
    assert main(["predict", str(spec), "--model", path, "--method", "discrete", "--lr", "0.05",
                 "--json"]) == 0
    capsys.readouterr()
    with np.load(spec) as data:
        arrays = dict(data)
    arrays["y"] = arrays["y"][:20]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert main(["predict", str(tmp_path / "bad.npz"), "--model", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "y: 20 samples, but X has 30" in err[0]


def test_residual_not_affine_in_per_sample_constants_is_refused() -> None:
    import sympy as sp

    from dynamics import symbolic

    d, n = sp.symbols("d N", integer=True, positive=True)
    x, w = sp.MatrixSymbol("X", d, d), sp.MatrixSymbol("W", d, d)
    quad = model.Model("quad_sample", loss=None, learned=[w], constants=[x], large=[n],
                       residual=sp.Trace(x.T * w * x), per_sample=[x], samples=n)
    with pytest.raises(model.ModelError, match=r"not affine in the per-sample constants"):
        symbolic.full_flow(quad)
    with pytest.raises(model.ModelError, match=r"residual, per_sample and samples together"):
        model.Model("half", loss=None, learned=[w], constants=[x], large=[n],
                    residual=sp.Trace(x.T * w))
