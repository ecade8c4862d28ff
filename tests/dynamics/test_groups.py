"""Group objectives: slopes against finite differences, the families' special cases, the
escape-rate law λ_g ∝ s_g^{1+2q}."""

from __future__ import annotations

import numpy as np
import pytest

from dynamics.groups import NAMES, escape_rates, objective

CASES = [("mean", {}), ("grouped", {}), ("root", {}), ("power", {"q": 1.0}),
         ("power", {"q": -0.5}), ("power", {"q": -1.0}), ("power", {"q": 2.0}),
         ("tilted", {"tau": 3.0}), ("tilted", {"tau": -2.0}), ("dro", {})]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_slopes_are_the_gradient_of_the_value(name, params):
    obj = objective(name, **params)
    rng = np.random.default_rng(0)
    ell, w = rng.uniform(0.05, 1.0, 5), rng.dirichlet(np.ones(5))
    h = 1e-6
    numeric = [(obj.value(ell + h * e, w) - obj.value(ell - h * e, w)) / (2 * h)
               for e in np.eye(5)]
    np.testing.assert_allclose(obj.slopes(ell, w), numeric, rtol=1e-7)


def test_family_special_cases():
    ell, w = np.array([0.3, 0.7, 1.1]), np.array([0.5, 0.3, 0.2])
    assert objective("mean").value(ell, w) == pytest.approx(w @ ell, rel=1e-15)
    assert objective("power", q=0).value(ell, w) == pytest.approx(ell.sum(), rel=1e-15)
    assert objective("power", q=1).value(ell, w) == pytest.approx((ell**2).sum() / 2, rel=1e-15)
    assert objective("grouped").value(ell, w) == pytest.approx((ell**2).sum(), rel=1e-15)
    assert objective("power", q=-1, eps=1e-3).value(ell, w) == pytest.approx(
        np.log(ell + 1e-3).sum(), rel=1e-15)
    tilt = objective("tilted", tau=1e-6)
    np.testing.assert_allclose(tilt.slopes(ell, w), w, rtol=1e-5)  # τ → 0: the mean loss
    hot = objective("tilted", tau=200.0).slopes(ell, w)
    assert hot[2] == pytest.approx(1.0, abs=1e-12)  # τ → ∞: the worst group


def test_escape_rate_power_law():
    s = np.array([1.0, 1.5, 2.0])
    for q in (-0.5, 0.0, 0.5, 1.0):
        rates = escape_rates(objective("power", q=q, eps=0.0), s, np.ones(3) / 3)
        np.testing.assert_allclose(rates / rates[0], s ** (1 + 2 * q), rtol=1e-12)
    mean = escape_rates(objective("mean"), s, [0.5, 0.3, 0.2])
    np.testing.assert_allclose(mean, 2 * np.array([0.5, 0.3, 0.2]) * s, rtol=1e-15)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("nope", {}, "unknown group objective"), ("power", {}, "needs a finite q"),
    ("mean", {"q": 1.0}, "takes no q"), ("tilted", {"tau": 0.0}, "tau != 0"),
    ("power", {"q": -1.0, "eps": 0.0}, "needs eps > 0"), ("dro", {"step": -1.0}, "step"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(ValueError, match=message) as info:
        objective(name, **params)
    assert "\n" not in str(info.value)
    assert set(NAMES) >= {"mean", "power", "tilted"}


def test_dro_increment_is_c_times_the_losses_on_numpy_and_torch():
    """Δz = c·ℓ (Sagawa et al.'s q ← q e^{cℓ}): one definition for numpy and torch arrays."""

    obj = objective("dro", step=0.25)
    losses = np.array([0.5, 2.0, 0.0])
    np.testing.assert_array_equal(obj.dro_increment(losses), [0.125, 0.5, 0.0])
    torch = pytest.importorskip("torch")
    got = obj.dro_increment(torch.tensor(losses))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), [0.125, 0.5, 0.0])
    with pytest.raises(ValueError, match="not Group DRO"):
        objective("mean").dro_increment(losses)
