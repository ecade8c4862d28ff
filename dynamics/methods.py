"""The methods of :func:`dynamics.integrate.predict`, one small frozen object each.

A method object names the process to integrate and carries exactly the options that process
has, each checked when the object is made (a ``ValueError`` of one line naming the field), in
the manner of diffrax's solvers: ``predict(spec, Discrete(lr=0.05, momentum=0.9))``. All run
in continuous time t (a gradient step of rate η advances t by η, README "Conventions"):

``Flow()``                  gradient flow dθ/dt = −∇L(θ) − λθ (reduced when the model closes).
``Modified(lr)``            GD's first-order modified equation for step η = ``lr``.
``Discrete(lr, momentum=0.0, schedule=None)``
                            the exact GD map (heavy-ball μ = ``momentum``), step k of rate η_k
                            (η_k = η, or the ``schedule``'s, :mod:`dynamics.schedules`) at
                            t_k = Σ_{j<k} η_j (= η·k without a schedule).
``Full()``                  the gradient flow of the full parameters (never reduced).
``Sign(eps=1e-8, decoupled=False)``
                            Adam's small-step limit dθ/dt = −g/(|g| + ε); ``decoupled``: AdamW's.
``Adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=None, decoupled=False,
exact_steps=None, half_step=True)``
                            Adam(W) at step η as an ODE in (θ, m, v) (:mod:`dynamics.adam`).

No NumPy, SciPy or SymPy here: the CLI builds its parser from :data:`METHODS` at no cost.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from .schedules import Schedule

if TYPE_CHECKING:
    from .problems import Problem
    from .record import SaveAt, Stop
    from .trajectory import Trajectory

__all__ = ["METHODS", "Adam", "Discrete", "Flow", "Full", "Method", "Modified", "Sign",
           "method_from_name"]


def _rate(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Method:
    """Base of the method objects; ``name`` is the method's name in :data:`METHODS`."""

    name: ClassVar[str] = ""
    #: whether the method integrates the reduced order-parameter dynamics when the model
    #: closes (``Full`` and ``Sign`` always integrate the full parameters)
    reducible: ClassVar[bool] = True

    def check(self, spec: Problem) -> None:
        """Refuse (one-line ``ValueError``) a spec this method cannot integrate."""

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        """Integrate ``spec`` from its initial point until ``stop`` says (its ``t_max``, in
        continuous time t = η·step, is always set; ``loss`` and ``stall`` may be None: the
        method's defaults), keeping the samples ``saveat`` asks for (None: the method's
        default); ``s_max`` is the spec's largest rate scale (1/t: first step size). All three
        come from :func:`dynamics.integrate.predict`, which checks them. A new method is one
        subclass with its options, ``name`` and this ``run``."""
        raise NotImplementedError(f"method {self.name!r} has no run")


def _no_cross_entropy(spec: Problem, what: str) -> None:
    if spec.model.cross_entropy():
        raise ValueError(f"cross-entropy has no {what}: use --method flow|full|sign, or train "
                         "it with 'scurve train'")


@dataclass(frozen=True)
class Flow(Method):
    """Gradient flow dθ/dt = −∇L − λθ; through the reduced order-parameter ODE when the
    model's dynamics close (MSE), the full parameters otherwise (with a note).

    ``lr`` (optional) is read only by a group objective whose own state moves per training
    step, Group DRO: its weights' logits move by c·ℓ_g per step of rate η, dz/dt = (c/η)ℓ_g."""

    lr: float | None = None
    name: ClassVar[str] = "flow"

    def __post_init__(self) -> None:
        if self.lr is not None:
            _rate("Flow", "lr", self.lr)

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .integrate import _continuous

        return _continuous(spec, self.name, self.lr or 0.0, saveat, stop, s_max)


@dataclass(frozen=True)
class Full(Method):
    """Gradient flow of all parameters (the check of the reduced flow; cross-entropy)."""

    name: ClassVar[str] = "full"
    reducible: ClassVar[bool] = False

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .integrate import _continuous

        return _continuous(spec, self.name, 0.0, saveat, stop, s_max)


@dataclass(frozen=True)
class Modified(Method):
    """GD's first-order modified equation dθ/dt = −∇L − (η/2)∇²L∇L, η = ``lr``."""

    lr: float
    name: ClassVar[str] = "modified"

    def __post_init__(self) -> None:
        _rate("Modified", "lr", self.lr)

    def check(self, spec: Problem) -> None:
        _no_cross_entropy(spec, "modified equation")
        objective = spec.group_objective
        if objective is not None and not objective.constant_slopes:
            raise ValueError(f"objective {objective.label}: the modified equation is derived "
                             "for a fixed loss; use --method flow or discrete")

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .integrate import _continuous

        return _continuous(spec, self.name, self.lr, saveat, stop, s_max)


@dataclass(frozen=True)
class Discrete(Method):
    """The exact GD map (torch.optim.SGD): b_{k+1} = μb_k + ∇L + λθ_k, θ_{k+1} = θ_k − η_k
    b_{k+1} (b_1 = the first gradient), at t_k = Σ_{j<k} η_j; η_k = ``lr`` or the
    ``schedule``'s rate of step k for base rate ``lr``."""

    lr: float
    momentum: float = 0.0
    schedule: Schedule | None = None
    name: ClassVar[str] = "discrete"

    def __post_init__(self) -> None:
        _rate("Discrete", "lr", self.lr)
        mu = self.momentum
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < 1:
            raise ValueError(f"Discrete: momentum must be in [0, 1), got {mu!r}")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ValueError(f"Discrete: schedule must be a dynamics.schedules schedule "
                             f"(StepLR, ...), got {self.schedule!r}")

    def check(self, spec: Problem) -> None:
        _no_cross_entropy(spec, "reduced GD map")

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .integrate import _discrete

        return _discrete(spec, self, saveat, stop)


@dataclass(frozen=True)
class Sign(Method):
    """Adam's small-step limit dθ/dt = −g/(|g| + ε), g = ∇L + λθ; ``decoupled`` (AdamW):
    dθ/dt = −g/(|g| + ε) − λθ with g = ∇L."""

    eps: float = 1e-8
    decoupled: bool = False
    name: ClassVar[str] = "sign"
    reducible: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _rate("Sign", "eps", self.eps)
        if not isinstance(self.decoupled, bool):
            raise ValueError(f"Sign: decoupled must be True or False, got {self.decoupled!r}")

    def check(self, spec: Problem) -> None:
        objective = spec.group_objective
        if objective is not None:
            raise ValueError(f"objective {objective.label}: the sign flow is not modelled for "
                             "group objectives; use --method flow or discrete")

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .integrate import _sign

        return _sign(spec, self.eps, self.decoupled, saveat, stop)


@dataclass(frozen=True)
class Adam(Method):
    """torch.optim.Adam (``decoupled``: AdamW) at step η = ``lr`` as an ODE in continuous time
    t = η·step for θ and the moments m, v (:func:`dynamics.adam.run_adam`): with
    c_i = −ln(β_i)/η, ṁ = c₁(g − m), v̇ = c₂(g ⊙ g − v),
    θ̇ = −m̂/(√v̂ + ε) − λ_d θ, m̂ = m/(1 − β₁^{t/η}), v̂ = v/(1 − β₂^{t/η}),
    g = ∇L + λ_c θ (Adam: λ_c = λ, λ_d = 0; AdamW: λ_c = 0, λ_d = λ). λ = ``weight_decay``, or
    the spec's own λ when it is ``None``. ``exact_steps``: the first K steps are Adam's exact map
    and the ODE starts from their (θ, m, v) at t = Kη (None: K = ⌈1/(1 − β₁)⌉, 10 at β₁ = 0.9;
    0: the ODE from t = 0); ``half_step``: the O(η) correction, the moments' clocks η/2 ahead
    of θ's (:mod:`dynamics.adam`, "Start" and "Modified equation")."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float | None = None
    decoupled: bool = False
    exact_steps: int | None = None
    half_step: bool = True
    name: ClassVar[str] = "adam"
    reducible: ClassVar[bool] = False  # per coordinate: the full parameters (θ, m, v)

    def __post_init__(self) -> None:
        _rate("Adam", "lr", self.lr)
        betas = self.betas
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2 or any(
                isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1
                for b in betas)):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        _rate("Adam", "eps", self.eps)
        lam = self.weight_decay
        if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float))
                                or not (math.isfinite(lam) and lam >= 0)):
            raise ValueError(f"Adam: weight_decay must be a finite number >= 0, got {lam!r}")
        if not isinstance(self.decoupled, bool):
            raise ValueError(f"Adam: decoupled must be True or False, got {self.decoupled!r}")
        start = self.exact_steps
        if start is None:  # the first moment's window, 1/(1 − β₁) steps (10 at β₁ = 0.9)
            start = math.ceil(1.0 / (1.0 - self.betas[0]) - 1e-9)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"Adam: exact_steps must be an integer >= 0, got {start!r}")
        object.__setattr__(self, "exact_steps", start)
        if not isinstance(self.half_step, bool):
            raise ValueError(f"Adam: half_step must be True or False, got {self.half_step!r}")

    def run(self, spec: Problem, saveat: SaveAt | None, stop: Stop, s_max: float
            ) -> Trajectory:
        from .adam import run_adam  # the Adam ODE's own module (it imports integrate)

        return run_adam(spec, self, stop=stop, saveat=saveat)


_CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (Flow, Modified, Discrete, Full, Sign, Adam)}
#: the method names, in the order the CLI lists them
METHODS = tuple(_CLASSES)


def method_from_name(name: str, **options: object) -> Method:
    """The method object called ``name`` with ``options`` (``None`` values are left out, so
    a CLI can pass every option it has); an option the method does not take is an error.

    >>> method_from_name("discrete", lr=0.05, momentum=None)
    Discrete(lr=0.05, momentum=0.0, schedule=None)
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown method {name!r} (expected one of {', '.join(METHODS)})")
    cls = _CLASSES[name]
    given = {k: v for k, v in options.items() if v is not None}
    accepted = [f.name for f in fields(cls)]
    extra = [k for k in given if k not in accepted]
    if extra:
        takes = ", ".join(accepted) or "no options"
        raise ValueError(f"method {name!r} does not take {', '.join(extra)} (it takes: "
                         f"{takes})")
    missing = [f.name for f in fields(cls) if f.name not in given
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"method {name!r} needs {', '.join(missing)}")
    return cls(**given)
