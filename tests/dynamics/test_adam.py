"""The Adam(W) ODE (dynamics.adam) against torch.optim.Adam/AdamW (float64, same initial weights,
losses written by hand in ``adam_oracle``), against a tight-tolerance integration of itself, and
against the sign flow as η → 0.

Measured (``python tests/benchmarks/adam_error_table.py`` prints the whole table; README
"Adam as an ODE"): with the defaults (K = 10 exact Adam steps, then the ODE with the half-step
correction) the ODE's t_0.5 and t_0.1 are within 0.1 % of torch.optim.Adam/AdamW everywhere on
the acceptance grid at η = 1e-3 and within 0.6 % at η = 1e-2. The first-order ODE from t = 0
(``exact_steps=0, half_step=False``) missed rank 3 at σ ≤ 1e-2 by up to 24.5 %, rank 10 at
σ = 1e-2 by 4.1 % and rank 1 at σ = 0.1 (η = 1e-2) by 7.5 %: errors of the first steps
(test_exact_start_removes_the_rank_3_miss, dynamics.adam "Start").
The default tests check representative cases; the full grid is ``slow`` and asserts the
issue's bounds (3 % at η = 1e-3, 6 % at η = 1e-2).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from dynamics.adam import RTOL, run_adam
from dynamics.integrate import IntegrationError, predict
from dynamics.methods import Adam, Sign, method_from_name
from dynamics.model import load_file
from dynamics.problems import sample_model

sys.path.insert(0, str(Path(__file__).parent))
from adam_oracle import torch_adam, torch_crossings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
F = (0.5, 0.1)


def _fact(r: int, sigma: float, n: int = 100, seed: int = 0, lam: float = 0.0):
    return sample_model("factorization", {"n": n, "r": r, "k": r}, init=sigma, seed=seed,
                        weight_decay=lam)


def _attention():
    return sample_model("attention", {"n": 10, "r": 2, "k": 2}, init=0.1, seed=0)


def _symmetric():
    return sample_model(load_file(EXAMPLES / "symmetric.py"), {"n": 50, "r": 2, "k": 2},
                        init=0.01, seed=0)


def _errors(spec, lr: float, **options) -> dict[float, float]:
    """Relative errors of the ODE's t_f against torch.optim at the same η (``options``: Adam's,
    ``exact_steps`` and ``half_step`` included; the torch run takes the optimizer's own)."""
    ode = run_adam(spec, Adam(lr, **options), t_max=2.0).crossing_times(F)
    options = {k: w for k, w in options.items() if k not in ("exact_steps", "half_step")}
    exp = torch_crossings(spec, lr, 1.3 * (ode[0.1] or 2.0), F, **options)
    return {f: (0.0 if ode[f] is exp[f] is None  # neither reaches f·L_ref by t = 2
                else math.inf if ode[f] is None or exp[f] is None
                else abs(ode[f] - exp[f]) / exp[f]) for f in F}


# ----------------------------------------------------------------------------- method object


@pytest.mark.parametrize("kwargs, field", [
    ({"lr": 0.0}, "lr"), ({"lr": -1e-3}, "lr"), ({"lr": 1e-3, "betas": (1.0, 0.999)}, "betas"),
    ({"lr": 1e-3, "betas": (0.9, -0.1)}, "betas"), ({"lr": 1e-3, "betas": (0.9,)}, "betas"),
    ({"lr": 1e-3, "eps": 0.0}, "eps"), ({"lr": 1e-3, "weight_decay": -0.1}, "weight_decay"),
    ({"lr": 1e-3, "decoupled": 1}, "decoupled"),
    ({"lr": 1e-3, "exact_steps": -1}, "exact_steps"),
    ({"lr": 1e-3, "exact_steps": 2.5}, "exact_steps"),
    ({"lr": 1e-3, "exact_steps": True}, "exact_steps"), ({"lr": 1e-3, "half_step": 1}, "half_step"),
])
def test_bad_options_are_one_line_value_errors(kwargs, field):
    with pytest.raises(ValueError, match=f"Adam: {field}") as info:
        Adam(**kwargs)
    assert "\n" not in str(info.value)


def test_method_from_name_builds_adam():
    method = method_from_name("adam", lr=1e-3, betas=(0.8, 0.99), eps=None, decoupled=True)
    assert method == Adam(1e-3, betas=(0.8, 0.99), decoupled=True)
    # the exact start's default: the first moment's window 1/(1 − β₁) steps, rounded up
    assert method.exact_steps == 5 and Adam(1e-3).exact_steps == 10
    assert Adam(1e-3, betas=(0.0, 0.9)).exact_steps == 1
    assert Adam(1e-3, betas=(0.95, 0.9)).exact_steps == 20


# ----------------------------------------------------------------------------- the solver


@pytest.mark.parametrize("make, lr", [
    (lambda: _fact(1, 1e-2), 1e-3),
    pytest.param(_attention, 1e-2, marks=pytest.mark.slow)])
def test_solver_error_against_a_tight_reference(make, lr):
    """Default tolerance vs rtol 1e-12 (same RK pair): ≤ 1e-4 relative in t_0.5 (the issue's
    bound; measured 8e-11 to 4e-8 against rtol 1e-11 on a rank-3 n = 100 spec, README, so the
    reference's own error is far below 1e-4)."""
    spec = make()
    default = run_adam(spec, Adam(lr)).crossing_times((0.5, 0.1, 0.01))
    tight = run_adam(spec, Adam(lr), rtol=1e-12).crossing_times((0.5, 0.1, 0.01))
    assert RTOL >= 1e-8
    for f in (0.5, 0.1, 0.01):
        assert abs(default[f] - tight[f]) <= 1e-4 * tight[f], f


def test_streamed_solver_keeps_samples_not_steps():
    """dynamics.integrate._solve_chunks streamed (``loss`` given: the Adam ODE's solver) on a
    decaying rotation in 2000 dimensions, (a, b)' = −(a, b) + ω(−b, a), L = ½‖y‖² = L₀e^{−2t}:
    crossing times against the closed form t_f = −ln(f)/2 (root-found on a step's dense
    output: 1e-9 relative, the solver's rtol 1e-12 far below); the kept samples do not grow
    with the step count (ω = 50 forces ~1400 steps; the log grid keeps 468 samples, a number
    bounded by ln(t_end/h₀)/ln(1 + 10/1500), not by the steps)."""
    from dynamics.integrate import _solve_chunks
    from dynamics.record import SaveAt

    spec = _fact(1, 1e-2, n=20)
    y0 = np.linspace(1.0, 2.0, 2000)
    steps = [0]

    def rhs(t, y):
        steps[0] += 1
        a, b = y[:1000], y[1000:]
        return np.concatenate([-a - 50.0 * b, -b + 50.0 * a])

    def loss(y):
        return 0.5 * float(y @ y)

    l0 = loss(y0)
    times, kept = _solve_chunks(spec, "test", rhs, lambda y: (loss(y), {}), y0, l0, 20.0, 1.0,
                                rtol=1e-12, stop=1e-6, first=0.1, saveat=SaveAt.grid(1500),
                                loss=loss)
    assert np.all(np.diff(times) > 0) and len(kept) == times.size
    for f in (0.5, 0.1, 0.01, 1e-6):
        t_f = -math.log(f) / 2
        hit = times[np.argmin(np.abs(times - t_f))]
        assert abs(hit - t_f) <= 1e-9 * t_f, (f, hit, t_f)
    assert times[-1] == pytest.approx(-math.log(1e-6) / 2, rel=1e-9)
    assert steps[0] > 12 * 1000, steps[0]  # DOP853: 12 evaluations a step
    assert times.size < 1000, times.size  # log-spaced (ratio 1 + 10/1500): 468 kept


def test_state_is_theta_m_v_and_blow_up_names_t():
    spec = _fact(1, 1e-2, n=20)
    traj = predict(spec, Adam(1e-3))
    assert traj.state_size == 3 * 2 * 20 * 1
    assert traj.method == "adam"
    huge = sample_model("factorization", {"n": 20, "r": 1, "k": 1}, init=1e200, seed=0)
    blew_up = r"method 'adam' failed .*gradient is not finite at t = 0 "
    with np.errstate(all="ignore"), pytest.raises(IntegrationError, match=blew_up):
        predict(huge, Adam(1e-3), t_max=1.0)


# ----------------------------------------------------------------------------- torch.optim


@pytest.mark.parametrize("name, make, lr, options, tol", [
    ("rank 1", lambda: _fact(1, 1e-2), 1e-3, {}, 0.03),
    ("rank 1, η = 1e-2", lambda: _fact(1, 1e-3), 1e-2, {}, 0.06),
    ("AdamW λ = 0.1", lambda: _fact(1, 1e-2), 1e-3,
     {"weight_decay": 0.1, "decoupled": True}, 0.03),
    pytest.param("rank 10", lambda: _fact(10, 1e-3), 1e-3, {}, 0.03, marks=pytest.mark.slow),
    pytest.param("attention", _attention, 1e-3, {}, 0.03, marks=pytest.mark.slow),
    pytest.param("examples/symmetric.py", _symmetric, 1e-3, {}, 0.03, marks=pytest.mark.slow),
    pytest.param("Adam, L2 λ = 0.01", lambda: _fact(1, 1e-2), 1e-3, {"weight_decay": 0.01},
                 0.03, marks=pytest.mark.slow),
])
def test_ode_follows_torch_adam(name, make, lr, options, tol):
    """t_0.5 and t_0.1 within the issue's bound (3 % at η = 1e-3, 6 % at 1e-2) of
    torch.optim.Adam/AdamW (the default set: rank 1, n = 100; the rest, and the whole grid, are
    ``slow``)."""
    errors = _errors(make(), lr, **options)
    assert max(errors.values()) <= tol, (name, errors)


def test_spec_weight_decay_is_adams_unless_overridden():
    """The spec's λ is used when the method gives none; Adam(weight_decay=0) switches it off."""
    spec = _fact(1, 1e-2, lam=0.1)
    own = predict(spec, Adam(1e-3), t_max=0.3).crossing_times(F)
    same = predict(_fact(1, 1e-2), Adam(1e-3, weight_decay=0.1), t_max=0.3).crossing_times(F)
    off = predict(spec, Adam(1e-3, weight_decay=0.0), t_max=0.3).crossing_times(F)
    assert own == same
    assert off[0.1] < own[0.1]


def test_half_step_removes_the_order_eta_offset():
    """The half-step correction alone, from t = 0 (``Adam(exact_steps=0, half_step=True)``:
    moments' clocks η/2 ahead) against torch.optim.Adam at η = 1e-2 on rank 1, σ = 0.1 (t_0.5
    ≈ 29 steps): measured −7.5 % / −5.1 % (t_0.5 / t_0.1) without it, −1.35 % / −0.90 % with
    it, and the remaining error is O(η²) (−0.48 %, −0.12 %, −0.014 % at η = 5e-3, 2.5e-3,
    1e-3). Bound: the issue's 3 %."""
    spec = _fact(1, 0.1)
    ode = run_adam(spec, Adam(1e-2, exact_steps=0, half_step=True), t_max=2.0).crossing_times(F)
    exp = torch_crossings(spec, 1e-2, 1.3 * ode[0.1], F)
    plain = run_adam(spec, Adam(1e-2, exact_steps=0, half_step=False), t_max=2.0
                     ).crossing_times(F)
    for f in F:
        assert abs(ode[f] - exp[f]) <= 0.03 * exp[f], (f, ode[f], exp[f])
        assert abs(plain[f] - exp[f]) > 3 * abs(ode[f] - exp[f]), (f, plain[f], ode[f], exp[f])


@pytest.mark.parametrize("options", [
    {}, {"weight_decay": 0.1, "decoupled": True}, {"weight_decay": 0.05},
    {"betas": (0.0, 0.99), "eps": 1e-3}])
def test_exact_start_is_torch_adam_step_for_step(options):
    """The trajectory's first K samples are torch.optim.Adam/AdamW's losses at steps 0..K, at
    t = η·k (the exact start; Adam's coupled L2 in g, AdamW's θ(1 − ηλ), β₁ = 0 and a large ε
    included). Both are float64 with the same operations up to summation order: 1e-12."""
    spec = _fact(2, 0.1, n=20)
    method = Adam(1e-2, **options)
    traj = run_adam(spec, method, t_max=0.5)
    k = method.exact_steps
    t, loss = torch_adam(spec, 1e-2, k, **options)
    assert np.allclose(traj.t[:k + 1], t, rtol=1e-14, atol=0)
    assert np.allclose(traj.loss[:k + 1], loss, rtol=1e-12, atol=0)
    assert traj.t[k + 1] > traj.t[k] and np.all(np.diff(traj.t) > 0)  # the ODE after it


def test_exact_start_removes_the_rank_3_miss():
    """Rank 3 (target singular values 1.08, 1.00, 0.86), n = 100, σ = 1e-2, η = 1e-3: the ODE
    from t = 0 missed torch.optim.Adam's t_0.1 by +19.7 % (a 'shoulder' where the learned
    modes stay rotated against the target's; measured): one Adam step moves the target-aligned
    overlaps by ~η√n against their initial ~σ (58 % here), which an ODE cannot follow, and
    the competing near-degenerate modes amplify that error. Started from K = 10 exact steps
    (and the half-step correction, the defaults) it is within 0.1 % (measured −0.0 % / −0.0 %;
    bound 1 %, the issue's is 3 %)."""
    spec = _fact(3, 1e-2)
    errors = _errors(spec, 1e-3)
    assert max(errors.values()) <= 0.01, errors
    plain = _errors(spec, 1e-3, exact_steps=0, half_step=False)
    assert plain[0.1] > 0.1, plain


# ----------------------------------------------------------------------------- η → 0


@pytest.mark.slow
def test_tends_to_the_sign_flow_as_lr_shrinks():
    """At fixed β the ODE's crossing times approach the sign flow's as η → 0 (the sign flow's
    own error is ≤ 5e-4, README). β = (0.5, 0.9): windows η/(1 − β) short enough against
    t_0.5 ≈ 0.21 for the trend to show at η the explicit solver reaches in seconds (at the
    default β the windows reach 2 % of t_0.5 only at η ≈ 3e-6, README's sign table; the ODE's
    cost grows like 1/η). Measured (rank 1, n = 10, σ = 1e-2): max relative distance over
    t_0.5, t_0.1 of 0.145, 0.082, 0.033 at η = 3e-3, 1e-3, 3e-4 (~80 s in all on the
    shared CPU)."""
    spec = _fact(1, 1e-2, n=10)
    sign = predict(spec, Sign()).crossing_times(F)
    gaps = []
    for lr in (3e-3, 1e-3, 3e-4):
        ode = predict(spec, Adam(lr, betas=(0.5, 0.9)), t_max=1.3 * sign[0.1]).crossing_times(F)
        gaps.append(max(abs(ode[f] - sign[f]) / sign[f] for f in F))
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] <= 0.05, gaps


# ----------------------------------------------------------------------------- the full grid

GRID_CASES = {
    **{f"factorization r=k={r} σ={s:g}": (lambda r=r, s=s: _fact(r, s))
       for r in (1, 3, 10) for s in (1e-3, 1e-2, 0.1)},
    "attention d=10 h=2": _attention,
    "examples/symmetric.py": _symmetric,
}
VARIANTS = {"Adam": {}, "AdamW λ=0.01": {"weight_decay": 0.01, "decoupled": True},
            "AdamW λ=0.1": {"weight_decay": 0.1, "decoupled": True},
            "Adam L2 λ=0.01": {"weight_decay": 0.01}}


def grid_errors(case: str, variant: str, lr: float, **options) -> dict[float, float]:
    return _errors(GRID_CASES[case](), lr, **options, **VARIANTS[variant])


def _grid_params():
    for case in GRID_CASES:
        for variant in VARIANTS:
            for lr in (1e-3, 1e-2):
                yield pytest.param(case, variant, lr, id=f"{case}-{variant}-{lr:g}")


@pytest.mark.slow
@pytest.mark.parametrize("case, variant, lr", list(_grid_params()))
def test_acceptance_grid(case, variant, lr):
    """The issue's grid: 3 % at η = 1e-3, 6 % at 1e-2 (measured, README: ≤ 0.1 % at η = 1e-3,
    ≤ 0.6 % at η = 1e-2; the ODE from t = 0 without the half-step correction missed rank 3 at
    σ ≤ 1e-2 by up to 24.5 %, rank 10 σ = 1e-2 by 4.3 % and rank 1 σ = 0.1 by 7.5 %)."""
    bound = 0.03 if lr == 1e-3 else 0.06
    errors = grid_errors(case, variant, lr)
    assert max(errors.values()) <= bound, errors
    # A crossing inside the exact start (t ≤ K·η) is Adam's own update, which agrees by
    # construction: every cell must have a crossing past it, where the ODE decides, or none
    # by t = 2 in either (then the ODE's prediction is "no drop yet", matched by Adam). At
    # η = 1e-2, 16 of the 44 cells' t_0.5 lie inside the start; none of their t_0.1.
    spec = GRID_CASES[case]()
    ode = run_adam(spec, Adam(lr, **VARIANTS[variant]), t_max=2.0).crossing_times(F)
    start = Adam(lr).exact_steps * lr
    assert all(t is None for t in ode.values()) or \
        any(t is not None and t > start for t in ode.values()), (ode, start)
