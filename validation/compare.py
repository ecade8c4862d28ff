"""Compare: train a spec for real and set its crossing times against each applicable theory.

For SGD the theories are ``discrete`` (the exact reduced GD map: should agree to rounding),
``modified`` (modified equation, O(η²) error) and ``flow`` (gradient flow, O(η) error: GD lags
by about η·s/2 relative, DESIGN §3); with momentum only ``discrete`` models the iteration
exactly; for Adam/AdamW the small-step ``sign`` flow dθ/dt = −g/(|g| + ε). All times are
continuous time t = η·step.

The verdict of a theory is ``agrees`` when the relative error of every reached crossing time
t_f (f = 0.5, 0.1, 0.01) is within its tolerance (:data:`TOLERANCE`), ``disagrees`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dynamics.integrate import predict
from dynamics.problems import Problem
from dynamics.trajectory import Trajectory

from .train import TrainConfig, TrainResult, train

__all__ = ["TOLERANCE", "Comparison", "compare", "theories_for"]

#: relative-error tolerance on crossing times for the verdict, per theory (float64 training).
TOLERANCE = {"discrete": 1e-6, "modified": 0.01, "flow": 0.1, "sign": 0.1}


def theories_for(optimizer: str, momentum: float = 0.0, loss: str = "mse") -> tuple[str, ...]:
    """The theories that model ``optimizer`` (cross-entropy has only full-parameter flows)."""
    if optimizer in ("adam", "adamw"):
        return ("sign",)
    if optimizer == "momentum" or momentum:
        return ("discrete",) if loss == "mse" else ()
    return ("discrete", "modified", "flow") if loss == "mse" else ("flow",)


@dataclass
class Comparison:
    """Experiment vs theories: crossing times (t) and relative errors per theory."""

    experiment: Trajectory
    theories: dict[str, Trajectory]
    crossings: dict[str, dict[float, float | None]]
    relative_errors: dict[str, dict[float, float | None]]
    verdicts: dict[str, str]
    train_result: TrainResult
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (crossing keys as strings, times in t)."""

        def keyed(d: dict[float, float | None]) -> dict[str, float | None]:
            return {f"{f:g}": v for f, v in d.items()}

        return {
            "crossings": {k: keyed(v) for k, v in self.crossings.items()},
            "relative_errors": {k: keyed(v) for k, v in self.relative_errors.items()},
            "verdicts": self.verdicts,
            "phases": {"experiment": self.experiment.phases().to_dict(),
                       **{k: v.phases().to_dict() for k, v in self.theories.items()}},
            "final_loss": float(self.experiment.loss[-1]),
            "steps_per_second": self.train_result.steps_per_second,
            "notes": self.notes,
        }


def _relative_errors(
    exp: dict[float, float | None], theory: dict[float, float | None]
) -> dict[float, float | None]:
    out: dict[float, float | None] = {}
    for f, t_exp in exp.items():
        t_th = theory.get(f)
        out[f] = None if t_exp is None or t_th is None else abs(t_th - t_exp) / t_exp
    return out


def compare(
    spec: Problem,
    config: TrainConfig,
    steps: int | None = None,
) -> Comparison:
    """Train ``spec`` with ``config`` and compare with every theory of :func:`theories_for`.

    If ``steps`` is None it is chosen from the flow prediction: enough steps to pass t_0.01
    by 20 % (capped at 200 000). Training records every step (exact crossing times).
    """
    loss = config.loss or getattr(spec, "loss", "mse")
    names = theories_for(config.optimizer, config.momentum, loss)
    theories: dict[str, Trajectory] = {}
    for name in names:
        theories[name] = predict(
            spec,
            method=name,
            lr=config.lr if name in ("discrete", "modified") else None,
            momentum=config.momentum if name == "discrete" else 0.0,
            eps=config.eps,
            decoupled=config.optimizer == "adamw",
        )
    notes = []
    if steps is None:
        reference = theories.get("flow") or predict(spec, method="flow")
        t_stop = reference.crossing_times((0.01,))[0.01] or float(reference.t[-1])
        steps = int(min(200_000, math.ceil(1.2 * t_stop / config.lr) + 1))
        notes.append(f"steps chosen from the flow prediction: {steps}")
    run_config = TrainConfig(**{**config.__dict__, "steps": steps, "record": "all"})
    result = train(spec, run_config)
    if result.diverged:
        seed, step, value = result.diverged[0]
        raise ValueError(f"training diverged (seed {seed}, step {step}, loss {value:.3g})")
    experiment = result.trajectories[0]
    crossings = {"experiment": experiment.crossing_times()}
    errors, verdicts = {}, {}
    for name, traj in theories.items():
        crossings[name] = traj.crossing_times()
        errors[name] = _relative_errors(crossings["experiment"], crossings[name])
        reached = [e for e in errors[name].values() if e is not None]
        ok = bool(reached) and max(reached) <= TOLERANCE[name]
        verdicts[name] = "agrees" if ok else "disagrees"
    if not np.isfinite(experiment.loss).all():
        notes.append("experiment loss has non-finite values")
    return Comparison(experiment, theories, crossings, errors, verdicts, result, notes)
