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
def test_plateau_length_against_ln_n_in_training():
    """Issue 20's N-law in training: N = 250…4000, η = 1, K = M = 2, erf, σ = 0.1, 12 seeds with
    coupled starts (seed s has teacher projections σz_s at every N; the rest of each row fresh).

    Two checks that can fail at this seed count, against the online ODE started from exact
    draws of the same kind of start (:func:`dynamics.models.committee.sample_state`, 48 ODE
    seeds coupled across N, its slope within 20 % of 1/(2λ) of the plateau: tests/dynamics/
    test_committee_plateau.py): at every N training's mean plateau length is within 3 s.e. of
    the ODE's, and training's fitted slope against ln N is within 3 s.e. of the ODE's.
    The issue's literal criterion (training's slope within 20 % of 1/(2λ) = 8.45) is not
    decidable here: a seed's escape time scatters by ≈ 15 (online SGD's own noise sets its
    asymmetry, so coupling the starts does not remove it) and the slope's s.e. with S seeds
    is ≈ 15·0.46/√S — 2.0 at 12 seeds, ≈ 190 seeds for 3 s.e. inside the ±1.7 band.
    Measured (tests/benchmarks/nsweep_committee_training.py, 32 seeds at N ≤ 1000, 16 above;
    2026-12-05): 78.3 ± 2.9, 86.0 ± 3.3, 87.6 ± 3.1, 100.7 ± 3.6 at N = 250…2000 against the
    ODE's 81.9, 87.0, 92.1, 97.4. This test's run (2026-12-05, 20 min wall on a loaded 2-core
    machine): training 74.0, 72.4, 81.5, 85.0, 87.8 (s.e. 2.6–5.4) against the ODE's 78.1, 83.2,
    88.2, 93.5, 98.7 (s.e. ≈ 2.6); slope 5.8 ± 2.4 against 7.42 ± 0.03 (ODE), 1/(2λ) = 8.45."""
    lr, sigma, seeds, ns = 1.0, 0.1, 12, np.array([250, 500, 1000, 2000, 4000])
    ref = cm.sample(2, 2, 50, "erf", init=sigma, seed=0)
    p = cm.plateau(ref, lr=lr)
    rng = np.random.default_rng(11)
    zs = rng.normal(size=(seeds, 2, 2))
    zs_ode = rng.normal(size=(48, 2, 2))  # the ODE's starts coupled across N as well
    train_t = np.zeros((len(ns), seeds))
    ode_t = np.zeros((len(ns), 48))
    for i, n in enumerate(ns):
        spec = cm.sample(2, 2, n, "erf", init=sigma, seed=0)
        w0 = np.stack([cm.sample(2, 2, n, "erf", init=sigma, seed=100 + s, z=z).W0
                       for s, z in enumerate(zs)])
        steps = round(180 * n / lr)
        run = train(spec, lr, steps, seeds=seeds, every=max(1, steps // 600), seed=5, w0=w0)
        esc = [cm.Curve(run.t, run.loss[s], run.t[:, None], "sgd").escape_time(p.level)
               for s in range(seeds)]
        assert all(e is not None for e in esc), (n, esc)
        train_t[i] = esc
        for j in range(ode_t.shape[1]):
            q, r = cm.sample_state(2, 2, n, sigma, rng, z=zs_ode[j])
            ode_t[i, j] = cm.integrate(ref, 250, "online", lr=lr, y0=ref.model.pack(q, r, ref.v0),
                                       points=800).escape_time(p.level)
    se_train = train_t.std(1, ddof=1) / np.sqrt(seeds)
    se_ode = ode_t.std(1, ddof=1) / np.sqrt(ode_t.shape[1])
    gap = train_t.mean(1) - ode_t.mean(1)
    print("training", train_t.mean(1), "±", se_train, "ODE", ode_t.mean(1), "±", se_ode)
    assert np.all(np.abs(gap) < 3 * np.hypot(se_train, se_ode)), gap
    x = np.log(ns)
    slopes = np.polyfit(x, train_t, 1)[0]  # per seed (paired)
    slope, slope_se = slopes.mean(), slopes.std(ddof=1) / np.sqrt(seeds)
    ode_slopes = np.polyfit(x, ode_t, 1)[0]
    ode_slope, ode_se = ode_slopes.mean(), ode_slopes.std(ddof=1) / np.sqrt(len(ode_slopes))
    print("slope training", slope, "±", slope_se, "ODE", ode_slope, "±", ode_se, "1/(2λ)",
          1 / (2 * p.rate))
    assert abs(slope - ode_slope) < 3 * np.hypot(slope_se, ode_se)


def _nlaw_escape_times(n: int, seeds: int) -> np.ndarray:
    """One N of :mod:`committee_nlaw` (a process of the pool below)."""
    import torch as th
    from committee_nlaw import escape_times, plateau, starts

    th.set_num_threads(1)
    return escape_times(n, starts(seeds), plateau().level)


@pytest.mark.slow
def test_plateau_length_slope_at_192_seeds():
    """Issue 20's literal criterion: over N = 250…4000 in training, the fitted slope of the
    plateau length against ln N within 20 % of 1/(2λ) (λ: the escape eigenvalue of the
    symmetric plateau, computed by Newton on the reduced ODE, not from these runs).

    192 seeds with coupled starts (:mod:`committee_nlaw`); the slope is the mean of the seeds'
    own fitted slopes, its s.e. from their spread. About 2 CPU-hours, the N values in 2
    processes: ≈ 90 min wall (N = 4000 alone). Not a ≥ 10×-margin test: the slope's statistical
    error is what limits it (s.e. 0.48), and the slope's distance to the band's nearer edge is
    2.5 s.e.; the seeds are fixed, so the run is deterministic on a given machine. Measured on
    these runs (2026-12-05, the benchmark ``nsweep_committee_training.py 192``): mean plateau
    lengths 73.65, 78.44, 85.34, 91.32, 94.66 at N = 250…4000, slope 7.97 ± 0.48 over 191
    seeds against 1/(2λ) = 8.45 (−5.7 %)."""
    from concurrent.futures import ProcessPoolExecutor

    from committee_nlaw import NS, plateau, slope

    seeds = 192
    with ProcessPoolExecutor(2) as pool:
        times = np.array(list(pool.map(_nlaw_escape_times, NS[::-1], [seeds] * len(NS))))[::-1]
    mean, se, kept = slope(NS, times)
    law = 1 / (2 * plateau().rate)
    print(f"slope {mean:.3f} ± {se:.3f} over {kept} seeds; 1/(2λ) = {law:.3f}")
    assert kept >= 0.9 * seeds  # nearly every seed escaped at every N
    assert abs(mean / law - 1) < 0.2, (mean, se, law)
