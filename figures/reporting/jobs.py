"""The report's jobs: the cacheable units of work, and what they keep of each run.

A job is ``(fn, config)`` (:mod:`figures.sweeps`): ``fn`` one of the top-level functions here,
run in a worker process and cached on disk by its configuration and the source of this module.
The report's sections (:mod:`figures.reporting.sections`) build the configs; every job that
integrates or trains a spec returns :func:`summarize` of each run (crossing times, phases,
alignment and norm histories, in continuous time t; a step of rate η advances t by η, README
"Conventions").
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from scipy.signal import find_peaks

from dynamics import schedules
from dynamics.problems import Chain, Problem
from dynamics.record import SaveAt
from dynamics.schedules import Schedule, schedule_from_text
from dynamics.trajectory import Trajectory

__all__ = [
    "BUMP_PROMINENCE",
    "FRACTIONS",
    "POWER_FRACTIONS",
    "REFERENCE_EVERY",
    "job_balanced",
    "job_equations",
    "job_power_law",
    "job_power_theory",
    "job_power_train",
    "job_predict",
    "job_predict_aligned",
    "job_task",
    "make_spec",
    "summarize",
]

FRACTIONS = (0.9, 0.5, 0.1, 0.01)  # crossing times t_f reported for every run
PLOT_SAMPLES = 600  # samples kept per trajectory for figures and data files
MAX_PAIRS = 16  # above r·k target/learned pairs, only max_j |cos| is kept per learned vector
BUMP_PROMINENCE = 0.05  # a bump: a local maximum of an alignment curve this prominent
REFERENCE_EVERY = 50  # task runs: the mean loss is timed on a copy of the model this often
STORED_VECTORS = 16  # learned vectors per factor kept in a stored trajectory (:func:`_narrow`)
STORED_DTYPE = np.float32  # cosines and norms of a stored (thinned) trajectory (:func:`_thin`)


def make_spec(config: dict[str, Any]) -> Problem:
    """The spec sampled from ``config`` = ``{"kind": ..., **sampler options, "seed": s}``: what
    ``scurve sample KIND ... --seed s`` draws and what a sweep's cell samples
    (:func:`dynamics.registry.sample`, one sampler for all three); a config in the family's own
    sampler arguments (``d`` of an attention head) is drawn by that sampler, the same draw."""
    from dynamics import registry
    from dynamics.problems import KINDS

    args = dict(config)
    kind, seed = args.pop("kind"), args.pop("seed", 0)
    if set(args) <= {o.name for o in registry.entry(kind).options}:
        return registry.sample(kind, args, seed=seed)
    # the family's own sampler arguments (an attention head's d for the command line's n)
    return KINDS[kind].sample(**args, seed=seed)  # type: ignore[attr-defined]


def _thin(traj: Trajectory, count: int = PLOT_SAMPLES) -> Trajectory:
    """At most ~``count`` samples (``SaveAt.grid(count).thin``: half linear, half log-spaced in
    t); big cosines compacted. The thinned trajectory is for figures: it holds cosines and
    norms (not the order parameters) and no exact crossing record. Cosines and norms are
    stored as float32 (:data:`STORED_DTYPE`: relative rounding 6e-8, invisible in a figure
    and below the 7 digits of a data CSV; half the cache); t and L stay float64 (claims read L(t)).

    With more than :data:`MAX_PAIRS` target/learned pairs a factor keeps only
    max_j |cos(target j, learned l)| per learned vector (shape (T, 1, k)): what is plotted.
    """
    keep = SaveAt.grid(count).thin(traj.t)
    cosines = {}
    for name, cos in traj.cosines.items():
        cos = cos[keep]
        if cos.shape[1] * cos.shape[2] > MAX_PAIRS:
            cos = np.max(np.abs(cos), axis=1, keepdims=True)
        cosines[name] = cos.astype(STORED_DTYPE)
    return Trajectory(traj.t[keep], traj.loss[keep], traj.l_ref, cosines,
                      {name: v[keep].astype(STORED_DTYPE) for name, v in traj.norms.items()},
                      traj.method,
                      None if traj.steps is None else traj.steps[keep], traj.state_size,
                      None if traj.group_loss is None else traj.group_loss[keep],
                      time_unit=traj.time_unit)


def _narrow(traj: Trajectory, count: int = STORED_VECTORS) -> Trajectory:
    """``traj`` with at most ``count`` learned vectors per factor kept in its stored cosines
    and norms (evenly spaced by index; the vectors of a random start are exchangeable).

    Stored curves are for the figures, which draw more than a few learned vectors as their
    median and 10–90 % band (:func:`figures.plots.plot_trajectories`): over ``count`` of them
    instead of all. Every number judged is computed before, from all of them
    (:func:`_factor_summary`)."""
    def pick(k: int) -> np.ndarray:
        return np.unique(np.linspace(0, k - 1, count).round().astype(int))

    if all(v.shape[-1] <= count for v in traj.norms.values()):
        return traj
    keep = {name: pick(v.shape[-1]) for name, v in traj.norms.items()}
    return dataclasses.replace(
        traj, cosines={name: c[..., keep[name]] if name in keep else c
                       for name, c in traj.cosines.items()},
        norms={name: v[:, keep[name]] for name, v in traj.norms.items()})


def _factor_summary(t: np.ndarray, cosines: np.ndarray, norms: np.ndarray) -> dict[str, Any]:
    """Alignment, norm history and bumps of one factor (medians over its learned vectors).

    Alignment of learned vector l: max_j |cos(target j, l)|. ``t_align``: first time the mean
    alignment has covered 90 % of its change. Norm ratios: min/initial and final/min. Bumps:
    local maxima of the alignment curves with prominence >= :data:`BUMP_PROMINENCE`; a bump is
    "in growth" when it lies between the vector's smallest norm and the time its norm has
    covered 90 % of its growth.
    """
    align = np.max(np.abs(cosines), axis=1)
    mean = align.mean(axis=1)
    change = mean[-1] - mean[0]
    reached = np.flatnonzero(mean >= mean[0] + 0.9 * change) if change > 0 else []
    low, low_at, end = norms.min(axis=0), norms.argmin(axis=0), norms[-1]
    tiny = np.finfo(np.float64).tiny
    bumps, in_growth = [], 0
    for l in range(align.shape[1]):
        grown = np.flatnonzero(norms[low_at[l]:, l] >= low[l] + 0.9 * (end[l] - low[l]))
        grow_end = t[low_at[l] + grown[0]] if grown.size else t[-1]
        peaks, _ = find_peaks(align[:, l], prominence=BUMP_PROMINENCE)
        bumps.extend(float(t[i]) for i in peaks)
        in_growth += int(np.sum((t[peaks] >= t[low_at[l]]) & (t[peaks] <= grow_end)))
    return {
        "vectors": int(align.shape[1]),
        "alignment_start": float(mean[0]),
        "alignment_end": float(mean[-1]),
        "t_align": float(t[reached[0]]) if len(reached) else None,
        "norm_start": float(np.median(norms[0])),
        "norm_end": float(np.median(end)),
        "norm_min_ratio": float(np.median(low / np.maximum(norms[0], tiny))),
        "norm_growth": float(np.median(end / np.maximum(low, tiny))),
        "bumps": len(bumps),
        "bumps_in_growth": in_growth,
        "bump_times": sorted(bumps),
    }


def summarize(traj: Trajectory, loss_t: np.ndarray | None = None,
              loss: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the report uses about one run, computed at full resolution.

    Crossing times and phases come from ``(loss_t, loss)`` when given (a training run's
    every-step loss), else from the trajectory. The trajectory itself is kept thinned
    (:func:`_thin`, :func:`_narrow`) for the figures.
    """
    from dynamics.phases import analyze, crossing_times

    loss_t = traj.t if loss_t is None else loss_t
    loss = traj.loss if loss is None else loss
    finite = np.isfinite(loss)
    loss_t, loss = loss_t[finite], loss[finite]
    crossings: dict[str, float | None] = {f"{f:g}": None for f in FRACTIONS}
    phases = None
    if loss.size >= 2:
        crossings = {f"{f:g}": v for f, v in
                     crossing_times(loss_t, loss, traj.l_ref, FRACTIONS).items()}
        try:
            phases = analyze(loss_t, loss, traj.l_ref).to_dict()
        except ValueError:  # too few usable samples for the phase analysis
            phases = None
    return {
        "trajectory": _narrow(_thin(traj)),
        "crossings": crossings,
        "phases": phases,
        "factors": {name: _factor_summary(traj.t, traj.cosines[name], traj.norms[name])
                    for name in traj.cosines},
        "l_ref": float(traj.l_ref),
        "loss_start": float(loss[0]) if loss.size else math.nan,
        "final_loss": float(loss[-1]) if loss.size else math.nan,
        "t_end": float(loss_t[-1]) if loss.size else 0.0,
    }


def job_predict(config: dict[str, Any]) -> dict[str, Any]:
    """Integrate the theory: ``{"spec", "method", "lr", "t_max"}`` -> :func:`summarize`."""
    from dynamics.integrate import predict
    from dynamics.methods import method_from_name

    started = time.perf_counter()
    spec = make_spec(config["spec"])
    method = method_from_name(config.get("method", "flow"), lr=config.get("lr"))
    traj = predict(spec, method, t_max=config.get("t_max"))
    return {**summarize(traj), "mechanistic": _mechanistic(spec, traj),
            "seconds": time.perf_counter() - started}


def _mechanistic(spec: Problem, traj: Trajectory) -> dict[str, Any] | None:
    """Mechanistic phases (:func:`dynamics.phases.mechanistic_phases`, from the order
    parameters) of a curve whose model registers its mode strengths (the ``mode_strengths``
    hook: a squared-loss factorization without decay); None for anything else."""
    from dynamics.phases import mechanistic_phases

    strengths = spec.entry.hook("mode_strengths")
    s = None if strengths is None else strengths(spec)
    if s is None:
        return None
    try:
        return mechanistic_phases(traj.t, traj.loss, None, None, s,
                                  overlaps={f: traj.overlaps(f) for f in ("X", "Y")}).to_dict()
    except (ValueError, KeyError):
        return None


def _schedule(text: str | None) -> Schedule | None:
    """A job config's ``"schedule"`` (``NAME:KEY=VALUE,...`` text, JSON-friendly, see
    :func:`dynamics.schedules.schedule_from_text`) -> the schedule; None stays None."""
    return None if text is None else schedule_from_text(text)


def job_task(config: dict[str, Any]) -> dict[str, Any]:
    """One training run of a task of examples (:func:`validation.tasks.train_task`).

    ``config``: ``{"task", "method", "seed", "quick"}`` (the reduced configuration of
    :data:`validation.tasks.TASKS` or the full one), ``"steps"`` (None: the task's default),
    ``"params"`` (the method's q, tau), ``"options"`` (the gradient methods' options, e.g.
    ``recluster_every``, ``exclude``), ``"probe_every"`` / ``"probe_options"`` (gradients
    clustered on the side, training unchanged). The mean loss is timed on a copy of the model
    every :data:`REFERENCE_EVERY` steps, so ``overhead`` is measured in the same run.

    Returns the per-group curves (``time`` in the task's unit, ``group_loss`` (T, G) in nats,
    ``group_accuracy``), the task's ``reference`` loss ℓ_ref,g and ``probabilities`` p_g,
    ``groups`` (a name per group) and :meth:`validation.tasks.TaskResult.summary`.
    """
    from validation.tasks import TASKS, make_method, make_task, train_task

    setting = TASKS[config["task"]]
    task = make_task(config["task"], config["seed"], quick=config["quick"])
    method = make_method(config["method"], task, config["seed"], **config.get("params", {}),
                         **config.get("options", {}))
    result = train_task(task, method, config.get("steps") or setting.run_steps(config["quick"]),
                        setting.lr, config["seed"], setting.optimizer, setting.record,
                        probe_every=config.get("probe_every"),
                        probe_options=config.get("probe_options"),
                        reference_every=REFERENCE_EVERY)
    names = task.group_names
    return {"time": result.time, "time_unit": result.time_unit, "group_loss": result.group_loss,
            "group_accuracy": result.group_accuracy,
            "reference": np.asarray(task.reference_loss, dtype=float),
            "probabilities": np.asarray(task.probabilities, dtype=float), "groups": names,
            "summary": result.summary()}


def job_equations(config: dict[str, Any]) -> dict[str, Any]:
    """The derived equations (LaTeX) of ``config["derivations"]``: ``[title, call, kwargs]``."""
    from dynamics import symbolic

    return {title: getattr(symbolic, call)(**kwargs).latex()
            for title, call, kwargs in config["derivations"]}


def job_predict_aligned(config: dict[str, Any]) -> dict[str, Any]:
    """Gradient flow from a balanced start aligned with the target: ``{"spec", "fraction",
    "t_max"}``; X0 = c·A, Y0 = c·B with c = √fraction, so each mode starts at w_i = fraction·s_i
    (A = U diag(√s), B = V diag(√s) for a spec sampled with ``singular_values``)."""
    from dynamics.integrate import predict

    spec = make_spec(config["spec"])
    c = math.sqrt(config["fraction"])
    spec = spec.replace(X0=spec.A * c, Y0=spec.B * c)
    return summarize(predict(spec, t_max=config["t_max"]))  # gradient flow


def job_balanced(config: dict[str, Any]) -> dict[str, Any]:
    """Flow of a balanced aligned chain against the closed form: ``{"depth", "n", "s", "a0"}``.

    A = √s u, B = √s v (unit u, v), X0 = a0 u, Y0 = a0 v, M_i0 = a0 (k = 1): u = a^D obeys
    u̇ = D u^{2−2/D}(s − u) exactly. Returns the largest |L_flow − L_closed| (in L_ref; the
    flow's loss is a difference of order parameters, so it is exact to ~1e-10·L_ref, not
    relative) and both t_0.5.
    """
    from dynamics import theory
    from dynamics.integrate import predict

    depth, n, s, a0 = config["depth"], config["n"], config["s"], config["a0"]
    rng = np.random.default_rng(0)
    u, v = (w / np.linalg.norm(w) for w in rng.standard_normal((2, n, 1)))
    spec = Chain(A=u * math.sqrt(s), B=v * math.sqrt(s), X0=u * a0, Y0=v * a0,
                 M0=np.full((depth - 2, 1, 1), a0))
    started = time.perf_counter()
    traj = predict(spec)  # gradient flow
    closed = theory.chain_loss(traj.t, s, a0**depth, depth)
    t_half = traj.crossing_times().get(0.5)
    exact = theory.chain_crossing(0.5, s, a0**depth, depth)
    return {"max |L_flow − L_closed|/L_ref": float(np.max(np.abs(traj.loss - closed)))
            / spec.l_ref, "t_0.5 flow": None if t_half is None else float(t_half),
            "t_0.5 closed form": exact,
            "t_0.5 rel. diff": None if t_half is None else abs(t_half / exact - 1),
            "seconds": time.perf_counter() - started}


POWER_FRACTIONS = (0.9, 0.5, 0.1)
"""Levels f of the power-family section's per-group times t_f: the first t with
ℓ_g ≤ f·ℓ_ref,g (ℓ_ref,g = s_g²/2, the zero model's), so t_0.5 is the emergence time and
(t_0.1 − t_0.9)/t_0.5 the width, the same for the law, the theory and training."""


def _group_times(t: np.ndarray, group_loss: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(G, 3) t_f of every group at the :data:`POWER_FRACTIONS` of its reference loss
    (:func:`dynamics.phases.fall_times` of the fall from it to 0, linear in ln ℓ between
    samples; t_0.5 is :func:`dynamics.phases.emergence_time`); NaN: never."""
    from dynamics.phases import fall_times

    out = np.full((group_loss.shape[1], len(POWER_FRACTIONS)), np.nan)
    for g in range(group_loss.shape[1]):
        finite = np.isfinite(group_loss[:, g])
        out[g] = fall_times(t[finite], group_loss[finite, g], float(reference[g]), 0.0,
                            POWER_FRACTIONS)
    return out


def job_power_law(config: dict[str, Any]) -> dict[str, Any]:
    """The decoupled emergence law of one modes task's seed over the power family:
    ``{"task", "seed", "qs"}`` -> ``{"power": (Q, 3, G), "mean": (3, G)}``, the t_f
    (:data:`POWER_FRACTIONS`, in t) of every mode under power(q) for each q of ``qs`` and under
    the mean loss, from :func:`dynamics.groups.emergence_law` with the mode's initial balanced
    strength w_g(0) (:func:`dynamics.groups.balanced_strengths`), s_g and p̂_g of the spec."""
    from dynamics.groups import balanced_strengths, emergence_law, objective
    from validation.tasks import make_task

    task = make_task(config["task"], config["seed"])
    d = task.spec.data
    w0 = balanced_strengths(d["A"], d["B"], d["X0"], d["Y0"])
    s, p = np.diag(d["S"]), task.frequencies

    def times(obj: Any) -> np.ndarray:
        return np.stack([emergence_law(obj, s, p, w0, f) for f in POWER_FRACTIONS])

    return {"power": np.stack([times(objective("power", q=q)) for q in config["qs"]]),
            "mean": times(objective("mean"))}


def job_power_train(config: dict[str, Any]) -> dict[str, Any]:
    """Float64 full-batch training of one modes task under one group objective, every seed at
    once (the batched trainer, as :func:`validation.tasks.train_task` trains a spec):
    ``{"task", "seeds", "objective" (a label, e.g. "power(q=1)"), "lr", "steps", "level"}``.
    Per seed: ``times`` (G, 3) (:func:`_group_times`); ``final`` (G,) ℓ_g after the last step;
    ``mean_start``, ``mean_final`` the mean loss Σ_g p̂_g ℓ_g at step 0 and at the end;
    ``steps_to_level`` the first step from which the mean loss stays ≤ ``level`` × its start
    to the end of the run (None: not by the end). Time t = η·step (README "Conventions"); with
    an optional ``"schedule"`` (text, :func:`_schedule`) t_k = Σ_{j<k} η_j."""
    from validation.tasks import TASKS, make_task
    from validation.training import TrainConfig, train

    tasks = [make_task(config["task"], seed) for seed in config["seeds"]]
    lr, steps = config["lr"], config["steps"]
    run = train([task.spec.with_objective(config["objective"]) for task in tasks],
                TrainConfig(optimizer=TASKS[config["task"]].optimizer, lr=lr, steps=steps,
                            dtype="float64", device="cpu",
                            schedule=_schedule(config.get("schedule"))))
    t = schedules.times(lr, steps, _schedule(config.get("schedule")))
    runs = []
    for task, group_loss in zip(tasks, run.group_loss, strict=True):
        mean = group_loss @ task.frequencies
        above = np.flatnonzero(~(mean <= config["level"] * mean[0]))  # NaN counts as above
        if not above.size:
            settled: int | None = 0
        else:
            settled = int(above[-1]) + 1 if above[-1] < steps else None
        runs.append({
            "times": _group_times(t, group_loss, task.reference_loss),
            "final": group_loss[-1], "mean_start": float(mean[0]), "mean_final": float(mean[-1]),
            "steps_to_level": settled,
        })
    return {"runs": runs, "seconds": run.seconds}


def job_power_theory(config: dict[str, Any]) -> dict[str, Any]:
    """The derived theory of one seed's run (:func:`validation.tasks.predict_task`):
    ``{"task", "seed", "objective", "lr", "flow_steps", "gd_steps"}``: ``flow``, the gradient
    flow to t = η·``flow_steps``, and ``gd``, the exact GD map of rate η for ``gd_steps`` steps
    (equal to float64 SGD up to rounding; None when ``gd_steps`` is 0), each as ``{"times"}``,
    (G, 3) (:func:`_group_times`)."""
    from validation.tasks import make_task, predict_task

    task = make_task(config["task"], config["seed"])
    started = time.perf_counter()
    out: dict[str, Any] = {"gd": None}
    for key, steps, discrete in (("flow", config["flow_steps"], False),
                                 ("gd", config["gd_steps"], True)):
        if steps:
            r = predict_task(task, config["objective"], steps, config["lr"], discrete=discrete)
            out[key] = {"times": _group_times(r.time, r.group_loss, task.reference_loss)}
    return {**out, "seconds": time.perf_counter() - started}
