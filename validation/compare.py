"""Compare: train a spec for real and set its crossing times against each applicable theory.

For SGD the theories are ``discrete`` (the exact reduced GD map: should agree to rounding),
``modified`` (modified equation, O(η²) error) and ``flow`` (gradient flow, O(η) error: GD lags
by about η·s/2 relative, DESIGN §3); with momentum only ``discrete`` models the iteration
exactly; for Adam/AdamW the small-step ``sign`` flow dθ/dt = −g/(|g| + ε). All times are
continuous time t = η·step.

The verdict of a theory, from the crossing times t_f (f = 0.5, 0.1, 0.01) of experiment and
theory (relative error |t_theory − t_exp| / t_exp):

* ``agrees``: every level reached by both agrees within the theory's tolerance
  (:func:`tolerance`), and no level is reached by one only;
* ``disagrees``: some relative error is above the tolerance, or one of the two reaches a
  level at a time t the other covers without reaching it;
* ``inconclusive``: no level could be compared (neither reached any, or only beyond the other
  one's end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dynamics.integrate import predict
from dynamics.problems import Problem
from dynamics.trajectory import Trajectory

from .train import TrainConfig, TrainResult, _prepare, train

__all__ = ["FRACTIONS", "TOLERANCE", "Comparison", "compare", "theories_for", "tolerance",
           "verdict"]

FRACTIONS = (0.5, 0.1, 0.01)
#: relative-error tolerance on crossing times for the verdict, per theory (float64 training).
TOLERANCE = {"discrete": 1e-6, "modified": 0.01, "flow": 0.1, "sign": 0.1}
#: float32 training resolves the loss to ~1e-7·L_ref: the exact map agrees only to ~1e-6.
FLOAT32_TOLERANCE = {"discrete": 1e-4}


def tolerance(theory: str, dtype: str = "float64") -> float:
    """The relative-error tolerance of ``theory`` for training in ``dtype``."""
    if dtype == "float32" and theory in FLOAT32_TOLERANCE:
        return FLOAT32_TOLERANCE[theory]
    return TOLERANCE[theory]


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
        """JSON-ready summary (crossing keys as strings, times in t; no NaN or inf)."""

        def keyed(d: dict[float, float | None]) -> dict[str, float | None]:
            return {f"{f:g}": v for f, v in d.items()}

        return {
            "crossings": {k: keyed(v) for k, v in self.crossings.items()},
            "relative_errors": {k: keyed(v) for k, v in self.relative_errors.items()},
            "verdicts": self.verdicts,
            "tolerances": {k: tolerance(k, self.train_result.dtype) for k in self.theories},
            "phases": {"experiment": self.experiment.phases().to_dict(),
                       **{k: v.phases().to_dict() for k, v in self.theories.items()}},
            "final_loss": float(self.experiment.loss[-1]),
            "steps": int(self.train_result.config.steps),
            "steps_per_second": self.train_result.steps_per_second,
            "notes": self.notes,
        }


def _relative_errors(
    exp: dict[float, float | None], theory: dict[float, float | None]
) -> dict[float, float | None]:
    """|t_theory − t_exp| / t_exp per level; None where either is missing (or t_exp = 0)."""
    out: dict[float, float | None] = {}
    for f, t_exp in exp.items():
        t_th = theory.get(f)
        if t_exp is None or t_th is None or (t_exp == 0 and t_th != 0):
            out[f] = None
        else:
            out[f] = 0.0 if t_th == t_exp else abs(t_th - t_exp) / t_exp
    return out


def verdict(
    experiment: Trajectory, theory: Trajectory, tol: float,
    fractions: tuple[float, ...] = FRACTIONS,
) -> tuple[str, dict[float, float | None], list[str]]:
    """Verdict (module docstring), relative errors of t_f and notes on one-sided levels."""
    curves = {"experiment": experiment, theory.method or "theory": theory}
    times = {name: c.crossing_times(fractions) for name, c in curves.items()}
    errors = _relative_errors(*times.values())
    notes = []
    pairs = list(times.items())
    for f in fractions:
        for (name, t), (other, t_other) in (pairs, pairs[::-1]):
            end = float(curves[other].t[-1])
            if t[f] is not None and t_other[f] is None and end >= t[f]:
                notes.append(f"{name} reaches {f:g}·L_ref at t = {t[f]:.4g}, {other} has not "
                             f"by its end t = {end:.4g}")
    compared = [e for e in errors.values() if e is not None]
    if notes or any(e > tol for e in compared):
        return "disagrees", errors, notes
    return ("agrees" if compared else "inconclusive"), errors, notes


def compare(
    spec: Problem,
    config: TrainConfig,
    steps: int | None = None,
) -> Comparison:
    """Train ``spec`` with ``config`` and compare with every theory of :func:`theories_for`.

    If ``steps`` is None it is chosen from the predictions: enough steps to pass the first
    available theory's t_0.01 (``discrete``, else ``flow``, else ``sign``) by 20 % (capped at
    200 000). Training records every step (exact crossing times). Raises ``ValueError`` if
    ``config.lr`` is not one number or the training diverges.
    """
    if np.ndim(config.lr) != 0:
        raise ValueError(f"lr: compare trains one spec with one step size, got {config.lr!r}")
    lr = float(config.lr)
    loss = config.loss or getattr(spec, "loss", "mse")
    spec = _prepare([spec], config)[0]  # with the config's λ and loss: the spec trained
    names = theories_for(config.optimizer, config.momentum, loss)
    theories: dict[str, Trajectory] = {}
    for name in names:
        theories[name] = predict(
            spec,
            method=name,
            lr=lr if name in ("discrete", "modified") else None,
            momentum=config.momentum if name == "discrete" else 0.0,
            eps=config.eps,
            decoupled=config.optimizer == "adamw",
        )
    notes = []
    if steps is None:
        reference = next((theories[n] for n in ("discrete", "flow", "sign") if n in theories),
                          None) or predict(spec, method="flow")
        t_stop = reference.crossing_times((0.01,))[0.01] or float(reference.t[-1])
        steps = int(min(200_000, math.ceil(1.2 * t_stop / lr) + 1))
        notes.append(f"steps chosen from the {reference.method or 'flow'} prediction: {steps}")
    run_config = TrainConfig(**{**config.__dict__, "steps": steps, "record": "all"})
    result = train(spec, run_config)
    if result.diverged:
        seed, step, value = result.diverged[0]
        raise ValueError(f"training diverged (seed {seed}, step {step}, loss {value:.3g})")
    experiment = result.trajectories[0]
    crossings = {"experiment": experiment.crossing_times(FRACTIONS)}
    errors, verdicts = {}, {}
    for name, traj in theories.items():
        crossings[name] = traj.crossing_times(FRACTIONS)
        verdicts[name], errors[name], more = verdict(experiment, traj,
                                                     tolerance(name, config.dtype))
        notes.extend(more)
    if not np.isfinite(experiment.loss).all():
        notes.append("experiment loss has non-finite values")
    return Comparison(experiment, theories, crossings, errors, verdicts, result, notes)

