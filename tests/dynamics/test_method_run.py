"""Methods own their algorithm (issue 17, Build 3): ``predict`` calls ``method.run`` and
``method.check``; adding a method is one subclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from dynamics.integrate import predict
from dynamics.methods import Flow, Method
from dynamics.problems import Vector


@dataclass(frozen=True)
class Halved(Method):
    """Gradient flow on ½ L: the same path at half speed, x(t) = x_flow(t/2)."""

    name: ClassVar[str] = "halved"

    def run(self, spec, saveat, stop, s_max):
        traj = Flow().run(spec, saveat, dataclasses.replace(stop, t_max=stop.t_max / 2), s_max)
        return dataclasses.replace(traj, t=2 * traj.t)


@dataclass(frozen=True)
class Refusing(Method):
    name: ClassVar[str] = "refusing"

    def check(self, spec):
        raise ValueError("refusing: not this spec")


def test_a_new_method_is_one_class() -> None:
    spec = Vector.sample(5, init=1e-2, seed=0)
    traj = predict(spec, Halved(), t_max=8.0)
    # oracle: the vector flow's closed form at half speed, L(t) = ½‖a − x(t/2)‖²,
    # x(τ) = a + (x0 − a) e^{−τ} (λ = 0)
    a, x0 = spec.a[:, 0], spec.x0[:, 0]
    x = a + np.outer(np.exp(-traj.t / 2), x0 - a)
    exact = 0.5 * np.sum((a - x) ** 2, axis=1)
    assert traj.t[-1] == pytest.approx(8.0)
    np.testing.assert_allclose(traj.loss, exact, rtol=1e-4, atol=1e-10)


def test_predict_calls_check() -> None:
    with pytest.raises(ValueError, match="refusing"):
        predict(Vector.sample(3, init=1e-2, seed=0), Refusing())
