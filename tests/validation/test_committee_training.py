"""Committee online SGD in torch: one step against torch.optim.SGD on the per-sample loss, and
the seed-mean population ε against the online ODE (theory), fast at N = 200 and as the issue's
acceptance run (N = 2000, η = 0.5, 8 seeds) under ``slow``."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dynamics.models import committee as cm  # noqa: E402
from validation.committee import train  # noqa: E402


@pytest.mark.parametrize("act, trained", [("erf", False), ("relu", True), ("tanh", False)])
def test_one_step_equals_torch_optim_sgd(act, trained):
    """Same inputs: the trainer's hand-written update equals autograd + torch.optim.SGD on
    mean_b ½(φ* − φ)² (v with its own rate η/N)."""
    spec = cm.CommitteeSpec(act, *(lambda s: (s.Wt, s.a, s.W0, s.v0))(
        cm.sample(3, 2, 40, "erf", init=0.5, seed=1)), second_layer="trained" if trained
        else "fixed")
    lr, batch = 0.3, 4
    run = train(spec, lr, 1, seeds=1, batch=batch, dtype=torch.float64, seed=7, chunk=1)
    gen = torch.Generator().manual_seed(7)
    xb = torch.randn(1, 1, batch, 40, generator=gen, dtype=torch.float64)[0, 0]
    f = {"erf": lambda z: torch.erf(z / np.sqrt(2)), "relu": torch.relu, "tanh": torch.tanh}[act]
    w = torch.tensor(spec.W0, requires_grad=True)
    v = torch.tensor(spec.v0, requires_grad=True)
    wt, a = torch.tensor(spec.Wt), torch.tensor(spec.a)
    groups = [{"params": [w], "lr": lr}]
    if trained:
        groups.append({"params": [v], "lr": lr / 40})
    opt = torch.optim.SGD(groups)
    phi = f(xb @ w.T / np.sqrt(40)) @ v
    target = f(xb @ wt.T / np.sqrt(40)) @ a
    (0.5 * (target - phi) ** 2).mean().backward()
    opt.step()
    wd = w.detach().numpy()
    np.testing.assert_allclose(run.Q[0, -1], wd @ wd.T / 40, rtol=1e-12)
    np.testing.assert_allclose(run.v[0, -1], v.detach().numpy(), rtol=1e-12)


def _against_ode(n, lr, t_end, seeds, init=1e-3):
    spec = cm.sample(2, 2, n, "erf", init=init, seed=0)
    steps = round(t_end * n / lr)
    run = train(spec, lr, steps, seeds=seeds, every=max(1, steps // 200), seed=3)
    ode = cm.integrate(spec, run.t[-1], "online", lr=lr, times=run.t)
    return spec, run, ode


def test_training_follows_online_ode_onto_the_plateau():
    """N = 200, η = 0.5, 8 seeds, up to t = 20 (on the plateau): seed mean within 5 %."""
    _, run, ode = _against_ode(200, 0.5, 20.0, 8)
    assert ode.loss[-1] < 0.1 * ode.loss[0]  # reached the plateau
    np.testing.assert_allclose(run.mean(), ode.loss, rtol=0.05)


@pytest.mark.slow
def test_acceptance_online_sgd_n2000():
    """Issue 20: N = 2000, η = 0.5, K = M = 2, erf, 8 seeds: within 5 % up to and on the plateau;
    the ODE's plateau level within 0.1 % of the fixed point's ε; training's within 3 %."""
    spec, run, ode = _against_ode(2000, 0.5, 60.0, 8)
    p = cm.plateau(spec, ode.y[-1], lr=0.5)
    np.testing.assert_allclose(run.mean(), ode.loss, rtol=0.05)
    on = run.t > 20
    assert ode.loss[on].mean() == pytest.approx(p.level, rel=1e-3)
    assert run.mean()[on].mean() == pytest.approx(p.level, rel=0.03)


@pytest.mark.slow
@pytest.mark.xfail(reason="measured disagreement (issue 20, open): fitted slope ≈ 10 ± 3 against "
                   "1/(2λ) = 6.68 over N = 250…2000, 16 seeds", strict=False)
def test_plateau_length_grows_as_log_n_over_two_lambda():
    """Issue 20: training over N = 250…4000 (fixed init σ, so δ₀ ∝ N^{-1/2}): the fitted slope of
    the seed-mean plateau length against ln N is within 20 % of 1/(2λ) (λ of the online ODE).

    Measured (η = 1, 16 seeds, each its own start, init σ = 0.1; 2026-12-05): plateau lengths
    74.5 ± 3.6, 78.2 ± 3.1, 77.8 ± 2.2, 98.6 ± 5.2 at N = 250, 500, 1000, 2000 (N = 4000 not
    finished): fitted slope ≈ 10 ± 3 against 1/(2λ) = 6.68 — not yet within 20 %; more seeds
    are needed to decide (the seed sd of an escape time is ≈ 1/λ ≈ 13).

    Theory isolated (tests/benchmarks/nsweep_committee_ode.py, 2026-12-05): the online ODE alone,
    started from each seed's own initial order parameters (no finite-N noise after t = 0), gives
    the same excess: slope 8.30 ± 1.0 (64 seeds; 9.33 ± 1.7 with 16) against 6.68, i.e. +24 %,
    1.6 SE. So the excess is not finite-N SGD noise; it is in the ODE from the random start
    (pre-asymptotic, or statistical at 1.6 SE) — open."""
    lr, seeds, ns = 1.0, 16, (250, 500, 1000, 2000, 4000)
    lengths = []
    for n in ns:
        spec = cm.sample(2, 2, n, "erf", init=0.1, seed=0)
        p = cm.plateau(spec, cm.integrate(spec, 800, "online", lr=lr, points=2000), lr=lr)
        steps = round(200 * n / lr)
        # each seed its own random start, so the mean is over draws of δ₀ as well
        w0 = np.stack([cm.sample(2, 2, n, "erf", init=0.1, seed=s).W0 for s in range(seeds)])
        run = train(spec, lr, steps, seeds=seeds, every=max(1, steps // 500), seed=5, w0=w0)
        esc = [cm.Curve(run.t, run.loss[s], run.t[:, None], "sgd").escape_time(p.level)
               for s in range(seeds)]
        assert all(e is not None for e in esc), (n, esc)
        lengths.append(np.mean(esc))
    slope = np.polyfit(np.log(ns), lengths, 1)[0]
    print("plateau lengths", dict(zip(ns, lengths, strict=True)), "slope", slope,
          "1/(2λ)", 1 / (2 * p.rate))
    assert slope == pytest.approx(1 / (2 * p.rate), rel=0.2)
