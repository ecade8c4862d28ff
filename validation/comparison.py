"""Compare: train a spec for real and set its crossing times against each applicable theory.

For SGD the theories are ``discrete`` (the exact reduced GD map: should agree to rounding),
``modified`` (modified equation, O(η²) error) and ``flow`` (gradient flow, O(η) error: GD lags
by about η·s/2 relative); with momentum only ``discrete`` models the iteration
exactly; for Adam/AdamW the ``adam`` ODE at the run's η and β (:mod:`dynamics.adam`) and the
small-step ``sign`` flow dθ/dt = −g/(|g| + ε). All times are
continuous time t = η·step. With a learning-rate schedule (``TrainConfig.schedule``) t_k =
Σ_{j<k} η_j; ``discrete`` runs the same schedule, ``flow`` and ``sign`` are the same limits in
that t, and ``modified`` (an equation for one fixed η) is left out.

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

from dynamics.errors import UsageError
from dynamics.integrate import IntegrationError, predict
from dynamics.matexpr import ReductionError
from dynamics.methods import Adam, Discrete, Flow, Method, Modified, Sign
from dynamics.model import ModelError
from dynamics.problems import Problem
from dynamics.schedules import times
from dynamics.trajectory import Trajectory

from .training import TrainConfig, TrainResult, _prepare, train

__all__ = [
    "FRACTIONS",
    "TOLERANCE",
    "Comparison",
    "TrainingDiverged",
    "compare",
    "judge",
    "sign_limit",
    "theories_for",
    "tolerance",
    "verdict",
]

FRACTIONS = (0.5, 0.1, 0.01)
MAX_STEPS = 200_000  # cap of the automatic number of training steps of compare()
#: relative-error tolerance on crossing times for the verdict, per theory (float64 training).
TOLERANCE = {"discrete": 1e-6, "modified": 0.01, "flow": 0.1, "sign": 0.1, "adam": 0.03}
#: float32 training resolves the loss to ~1e-7·L_ref: the exact map agrees only to ~1e-6.
FLOAT32_TOLERANCE = {"discrete": 1e-4}


def tolerance(theory: str, dtype: str = "float64") -> float:
    """The relative-error tolerance of ``theory`` for training in ``dtype``."""
    if dtype == "float32" and theory in FLOAT32_TOLERANCE:
        return FLOAT32_TOLERANCE[theory]
    return TOLERANCE[theory]


class TrainingDiverged(ValueError):
    """The experiment of a comparison diverged (names seed, step and loss)."""


def theories_for(optimizer: str, momentum: float = 0.0, loss: str = "mse",
                 scheduled: bool = False) -> tuple[str, ...]:
    """The theories that model ``optimizer`` (cross-entropy has only full-parameter flows;
    ``scheduled``: a learning-rate schedule, which the modified equation does not model)."""
    if optimizer in ("adam", "adamw"):  # the Adam ODE is for one fixed η
        return ("sign",) if scheduled else ("adam", "sign")
    if optimizer == "momentum" or momentum:
        return ("discrete",) if loss == "mse" else ()
    if loss != "mse":
        return ("flow",)
    return ("discrete", "flow") if scheduled else ("discrete", "modified", "flow")


def _theory(name: str, config: TrainConfig) -> Method:
    """The method object of theory ``name`` for training with ``config`` (one η)."""
    lr = float(config.lr)  # type: ignore[arg-type]
    if name == "discrete":
        return Discrete(lr, momentum=config.momentum, schedule=config.schedule)
    if name == "modified":
        return Modified(lr)
    if name == "sign":
        return Sign(eps=config.eps, decoupled=config.optimizer == "adamw")
    if name == "adam":
        return Adam(lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
                     decoupled=config.optimizer == "adamw")
    return Flow()


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
        """JSON-ready summary (crossing keys as strings, times in t; no NaN or inf): per run
        (experiment and each theory) the one run summary of :meth:`Trajectory.summary`
        (``runs``), and beside it the comparison's own crossings, errors and verdicts."""

        def keyed(d: dict[float, float | None]) -> dict[str, float | None]:
            return {f"{f:g}": v for f, v in d.items()}

        runs = {"experiment": self.experiment.summary(FRACTIONS),
                **{k: v.summary(FRACTIONS) for k, v in self.theories.items()}}
        return {
            "crossings": {k: keyed(v) for k, v in self.crossings.items()},
            "relative_errors": {k: keyed(v) for k, v in self.relative_errors.items()},
            "verdicts": self.verdicts,
            "tolerances": {k: tolerance(k, self.train_result.dtype) for k in self.theories},
            "phases": {k: run["phases"] for k, run in runs.items()},
            "runs": runs,
            "final_loss": runs["experiment"]["final_loss"],
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
    return judge(experiment.crossing_times(fractions), float(experiment.t[-1]),
                 theory.crossing_times(fractions), float(theory.t[-1]), tol,
                 theory.method or "theory")


def judge(
    experiment: dict[float, float | None], t_experiment: float,
    theory: dict[float, float | None], t_theory: float, tol: float, name: str = "theory",
) -> tuple[str, dict[float, float | None], list[str]]:
    """:func:`verdict` from crossing times t_f and the end time t of each curve."""
    errors = _relative_errors(experiment, theory)
    notes = []
    pairs = [("experiment", experiment, t_experiment), (name, theory, t_theory)]
    for f in experiment:
        for (first, t, _), (other, t_other, end) in (pairs, pairs[::-1]):
            if t[f] is not None and t_other.get(f) is None and end >= t[f]:
                notes.append(f"{first} reaches {f:g}·L_ref at t = {t[f]:.4g}, {other} has not "
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
    available theory's t_0.01 (``discrete``, else ``flow``, else ``adam``, else ``sign``) by 20 %
    in t (capped at :data:`MAX_STEPS`). Training records every step (exact crossing times). Raises
    ``ValueError`` if ``config.lr`` is not one number or the training diverges.
    """
    if np.ndim(config.lr) != 0:
        raise UsageError(f"lr: compare trains one spec with one step size, got {config.lr!r}")
    lr = float(config.lr)
    spec = _prepare([spec], config)[0]  # with the config's λ and loss: the spec trained
    loss = "ce" if spec.model.cross_entropy() else "mse"
    names = theories_for(config.optimizer, config.momentum, loss, config.schedule is not None)
    theories, notes = {}, []
    # with the step count given, no theory needs to run past the training's last time t_steps
    t_end = None if steps is None else float(times(lr, int(steps), config.schedule)[-1])
    for name in names:  # a method that cannot be derived or integrated is skipped, noted
        try:
            theories[name] = predict(spec, _theory(name, config), t_max=t_end)
        except (ModelError, ReductionError, IntegrationError) as exc:
            notes.append(f"{name} skipped: {str(exc).splitlines()[0]}")
    if steps is None:
        reference = next((theories[n] for n in ("discrete", "flow", "adam", "sign")
                          if n in theories),
                          None) or predict(spec, Flow())
        t_stop = reference.crossing_times((0.01,))[0.01] or float(reference.t[-1])
        if config.schedule is None:
            wanted = math.ceil(1.2 * t_stop / lr) + 1
        else:  # the first step whose time t_k passes 1.2·t_stop (t_k = Σ_{j<k} η_j)
            clock = times(lr, MAX_STEPS, config.schedule)
            wanted = int(np.searchsorted(clock, 1.2 * t_stop)) + 1
        steps = int(min(MAX_STEPS, wanted))
        notes.append(f"steps chosen from the {reference.method or 'flow'} prediction: {steps}"
                     + (f" (capped; {wanted} wanted)" if wanted > MAX_STEPS else ""))
    run_config = TrainConfig(**{**config.__dict__, "steps": steps, "record": "all"})
    result = train(spec, run_config)
    if result.diverged:
        seed, step, value = result.diverged[0]
        raise TrainingDiverged(f"training diverged (seed {seed}, step {step}, loss {value:.3g})")
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


def sign_limit(
    spec: Problem,
    lrs: tuple[float, ...] = (1e-3, 1e-4, 1e-5),
    optimizer: str = "adam",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    dtype: str = "float64",
    device: str = "auto",
) -> dict[str, object]:
    """How closely Adam (or AdamW) at step sizes ``lrs`` follows its small-step limit, the
    sign flow dθ/dt = −g/(|g| + ε): crossing times t_f of each run and their relative errors.

    All step sizes train at once (one batched run, one seed per η) for enough steps to pass
    the sign flow's t_0.01 by 20 % at the smallest η. Adam tends to the sign flow only when
    its second-moment window, η/(1 − β₂) in t, is short against the plateau; the result
    reports that ratio (``window``, over the sign flow's t_0.5) beside each error.
    """
    theory = predict(spec, Sign(eps=eps, decoupled=optimizer == "adamw"))
    sign = theory.crossing_times(FRACTIONS)
    t_stop = sign[0.01] or float(theory.t[-1])
    lrs = tuple(float(lr) for lr in lrs)
    steps = int(math.ceil(1.2 * t_stop / min(lrs)) + 1)
    config = TrainConfig(optimizer=optimizer, lr=list(lrs), steps=steps, betas=betas, eps=eps,
                         dtype=dtype, device=device)
    result = train([spec] * len(lrs), config)
    runs = []
    for lr, crossings in zip(lrs, result.crossing_times(FRACTIONS), strict=True):
        status, errors, _ = judge(crossings, lr * steps, sign, float(theory.t[-1]),
                                  tolerance("sign", dtype), "sign")
        window = lr / (1 - betas[1]) / sign[0.5] if sign[0.5] else None
        runs.append({"lr": lr, "crossings": crossings, "relative_errors": errors,
                     "window": window, "verdict": status})
    return {"problem": spec.describe(), "optimizer": optimizer, "sign": sign, "steps": steps,
            "runs": runs, "diverged": result.messages}
