"""Registration of the committee machines (:mod:`dynamics.models.committee`): the sampler's
``scurve sample committee`` options as data, its spec loader and its command module, kept
apart so that the registry imports no SymPy or SciPy.

A committee spec is a :class:`dynamics.models.committee.CommitteeSpec` (its theory is the
Gaussian-integral ODE of that module, not a SymPy loss), so the entry names its own command
module (hook ``cli``: ``figures.committee_cli``) and its loader (hook ``load``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Entry, Option, register

__all__ = ["ENTRY", "OPTIONS"]

# plain numbers: the sampler checks them (one-line CommitteeError naming the option)
OPTIONS = (
    Option("n", "posint", None, "committee: input dimension N", required=True),
    Option("students", "int", 2, "committee: K student units (default 2; student rows "
           "i.i.d. N(0, init²), v0 = 1)"),
    Option("teachers", "int", 2, "committee: M teacher units (default 2; rows with "
           "w*·w*'/N = δ, a = 1)"),
    Option("activation", "str", "erf",
           "committee: erf (= erf(x/√2), default), relu, linear, tanh"),
    Option("noise", "float", 0.0, "committee: output noise σ_ζ ≥ 0"),
    Option("second_layer", "str", "fixed", "committee: fixed (soft committee, default) or "
           "trained", choices=("fixed", "trained")),
    Option("init", "nonneg", 1e-3, "init std σ per coordinate (default 1e-3)"),
)


def build() -> Any:
    """No SymPy model: a committee's theory is :mod:`dynamics.models.committee`."""
    from ..errors import ModelError

    raise ModelError("committee: not a SymPy loss (its theory is the Gaussian-integral ODE of "
                     "dynamics.models.committee; use scurve predict/train/compare on its spec)")


def sample(n: int, students: int = 2, teachers: int = 2, activation: str = "erf",
           noise: float = 0.0, second_layer: str = "fixed", init: float = 1e-3,
           seed: int = 0) -> Any:
    """:func:`dynamics.models.committee.sample` with the declared options."""
    from .committee import sample as draw

    return draw(students, teachers, n, activation, init, seed, noise, second_layer)


def load(content: Mapping[str, Any]) -> Any:
    """The committee spec of a ``.npz`` file's entries."""
    from .committee import from_arrays

    return from_arrays(content)


ENTRY = register(Entry("committee", build, sample, options=OPTIONS,
                       hooks={"cli": "figures.committee_cli", "load": load,
                              "sweep": "figures.committee_cli"},
                       description="soft committee machine (Saad & Solla): ODE of Q, R, v"))
