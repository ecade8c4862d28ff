"""``scurve sweep``: map a spec family (built-in or ``--model FILE.py``) over a grid of settings.

A *cell* is one point of the grid (one value per axis) and one seed. For each cell the spec is
sampled exactly as ``scurve sample PROBLEM ... --seed s`` with the cell's arguments samples it,
every requested theory is integrated (:func:`dynamics.integrate.predict`) and, when an
optimizer is given, the spec is trained with PyTorch from the same initial weights
(:func:`validation.training.train`, every step recorded). Each curve is measured by
:mod:`dynamics.phases` and each theory is judged against training by
:func:`validation.comparison.judge` (relative error |t_theory − t_train| / t_train of each
crossing time).

Times are continuous time t = η·step (t_k = Σ_{j<k} η_j), losses are in the spec's units and
plateau levels in units of L_ref (the loss at the initial point, ``spec.l_ref``).

Cells run through the shared job runner :func:`figures.sweeps.run_jobs` (a local process pool
or a Dask ``distributed`` executor) and are cached per cell under ``cache_dir``, keyed by
everything that determines them (the cell's configuration, the model file's bytes, the code).
Training cells that differ only in the seed and the init scale ``init`` (:data:`BATCHED`) are
trained as ONE batch (:func:`run_cells`; the trainer advances specs of one shape together, bit
for bit as alone in float64 on the CPU) and split back into one cached result per cell
(:func:`figures.sweeps.batched`): a rerun recomputes only the missing cells, batched again.

Grid grammar (a contract): ``NAME=V1,V2,...`` or ``NAME=LO..HI:COUNT[:log]``.

Table columns of ``results.csv`` (one row per cell × seed × source), in order:

* one column per grid axis (its value), ``seed``, ``source`` (a theory's method name or
  ``train``);
* ``t_0.5``, ``t_0.1``, ``t_0.01``: first time the loss is ≤ f·L_ref (empty: not reached);
* ``final_loss`` (at the curve's end ``t_end``), ``t_end``, ``l_ref``;
* ``plateaus`` (count), ``plateau_levels`` (in L_ref, ``;``-separated), ``plateau_lengths``
  (in t), ``drop_times`` (steepest point, t), ``drop_widths`` (t), ``tail`` (``exponential``,
  ``power`` or empty);
* grouped models only (empty otherwise), the emergence of the capability groups
  (:func:`validation.emergence.summarize_run`, group g emerged once ℓ_g ≤ ½ℓ_g of the zero
  model): ``emergence_spread`` = t_last/t_first of the groups' half-drop times (1: together),
  ``emergence_width`` = median over groups of (t_90 − t_10)/t_half of each group's own drop,
  ``groups_emerged`` = the share of groups that emerged;
* ``rel_err_0.5``, ``rel_err_0.1``, ``rel_err_0.01``, ``verdict``: a theory against training
  (empty for ``train`` rows and theory-only sweeps);
* ``seconds``: wall time of this source in its cell (the only column that depends on the
  machine).

Run-option axes: ``lr``, ``momentum``, ``eps``, ``optimizer``, ``steps``, Adam's ``beta1``
and ``beta2`` (or ``betas`` with values ``B1/B2``), ``schedule`` (``--schedule``'s
``NAME:KEY=VALUE,...`` form) and ``objective`` (a grouped model's group objective,
:func:`dynamics.groups.parse`). A list whose values contain commas (a schedule) separates its
values with ``|``: ``schedule=step:step_size=100,gamma=0.5|cosine:T_max=1000``.
``t_max``: the theories' horizon in t (default: with training 1.5 × its horizon η·steps, else
each theory's own end). Not a grid axis: ``singular_values`` (a list; give it in ``defaults``).

The report's claim maps are sweeps too (:meth:`figures.reporting.blocks.Context.sweep`): a
section declares its grid, :func:`sweep` runs it with ``record=True`` (each row then also
holds ``run``, the report's full summary of its curve, :func:`figures.reporting.jobs.summarize`,
not written to ``results.csv``) and :mod:`figures.claims` judges the rows
(:func:`figures.claims.grid_runs`). :func:`plan` builds a sweep's cell jobs without running
them (:meth:`Plan.rows` makes the table), so several grids (a section's curves and maps) run
in one :func:`figures.sweeps.run_jobs` call. The report's training grids (the SGD/Adam/AdamW
rank × σ × seed grid, cross-entropy's) and its other training runs are training cells with
``train_record="log"`` (order parameters at log-spaced steps), their σ × seed cells batched.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynamics.errors import UsageError
from figures.sweeps import CacheStats, Job, batched, run_jobs

__all__ = [
    "COLUMNS",
    "MEASUREMENTS",
    "Axis",
    "Plan",
    "SweepError",
    "parse_grid",
    "parse_seeds",
    "plan",
    "sweep",
    "write_outputs",
    "write_table",
]

FRACTIONS = (0.5, 0.1, 0.01)
#: the run-option axes and their value types (``float``, ``int``, ``text``, ``bool``)
RUN_TYPES = {"lr": "float", "momentum": "float", "eps": "float", "optimizer": "text",
             "steps": "int", "beta1": "float", "beta2": "float", "betas": "text",
             "schedule": "text", "objective": "text", "t_max": "float"}
RUN_OPTIONS = tuple(RUN_TYPES)
#: a registered sampler option's value type (dynamics.registry.TYPES) as an axis type; an
#: option of another type (a list of floats) is not a grid axis
_OPTION_TYPES = {"int": "int", "posint": "int", "float": "float", "posfloat": "float",
                 "nonneg": "float", "str": "text", "flag": "bool"}
#: axis types guessed for a grid string parsed without its problem (``parse_grid(text)``)
_GUESS = {"init": "float", "weight_decay": "float", "scale": "float", "noise": "float",
          "loss": "text", "activation": "text", "second_layer": "text", **RUN_TYPES}
MEASUREMENTS = ("t_0.5", "t_0.1", "t_0.01", "final_loss", "t_end", "l_ref", "plateaus",
                "plateau_levels", "plateau_lengths", "drop_times", "drop_widths", "tail",
                "emergence_spread", "emergence_width", "groups_emerged",
                "rel_err_0.5", "rel_err_0.1", "rel_err_0.01", "verdict", "seconds")
#: the measurements a heatmap can show (numbers; a list column shows its first entry)
PLOTTABLE = ("t_0.5", "t_0.1", "t_0.01", "final_loss", "plateaus", "plateau_levels",
             "plateau_lengths", "drop_times", "drop_widths", "emergence_spread",
             "emergence_width", "groups_emerged", "rel_err_0.5", "rel_err_0.1",
             "rel_err_0.01", "seconds")
COLUMNS = ("seed", "source", *MEASUREMENTS)
CURVE_POINTS = 200


class SweepError(UsageError):
    """A bad sweep request (one line)."""


@dataclass(frozen=True)
class Axis:
    """A grid axis: a parameter name and its values."""

    name: str
    values: tuple[Any, ...]


def _text(name: str, text: str) -> str:
    """A text value of axis ``name``, checked where it has a grammar (raises SweepError)."""
    try:
        if name == "betas":
            b1, sep, b2 = text.partition("/")
            betas = (float(b1), float(b2)) if sep else ()
            if not betas or not all(0 <= b < 1 for b in betas):
                raise ValueError(f"expected B1/B2 with 0 <= B < 1, got {text!r}")
        elif name == "schedule":
            from dynamics.schedules import schedule_from_text

            schedule_from_text(text)
        elif name == "objective":
            from dynamics.groups import parse

            parse(text)
    except ValueError as exc:
        raise SweepError(f"--grid {name}: {exc}") from None
    return text


def _value(name: str, text: str, kind: str) -> Any:
    """A list value of axis ``name`` of type ``kind`` (raises SweepError)."""
    if kind == "text":
        return _text(name, text)
    if kind == "bool":
        truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in truth:
            raise SweepError(f"--grid {name}: expected true or false, got {text!r}")
        return truth[text.lower()]
    value = _endpoint(name, text, "")
    if name in ("beta1", "beta2") and not 0 <= value < 1:
        raise SweepError(f"--grid {name}: must be in [0, 1), got {text!r}")
    if kind == "int":
        if value != int(value):
            raise SweepError(f"--grid {name}: {text!r} is not an integer")
        return int(value)
    return value


def _endpoint(name: str, text: str, what: str = "range end ") -> float:
    """A finite float (a range end of axis ``name``; raises SweepError)."""
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"--grid {name}: {what}{text!r} is not a number") from None
    if not math.isfinite(value):
        raise SweepError(f"--grid {name}: {what}{text!r} is not finite")
    return value


def parse_grid(text: str, types: dict[str, str] | None = None) -> Axis:
    """``NAME=V1,V2,...`` or ``NAME=LO..HI:COUNT[:log]`` -> :class:`Axis` (raises SweepError).

    ``types`` gives each axis name's value type (:func:`axis_types`; without it, or for a name
    it lacks, the type is guessed: a run option's, float for ``init``-like names, otherwise an
    integer dimension). A range has COUNT values evenly spaced from LO to HI (both included),
    geometrically with ``:log``; an integer parameter's values are rounded and repeated values
    dropped.
    """
    name, sep, body = text.partition("=")
    name = name.strip()
    if not sep or not name or not body.strip():
        raise SweepError(f"--grid: expected NAME=V1,V2,... or NAME=LO..HI:COUNT[:log], "
                         f"got {text!r}")
    kind = (types or {}).get(name) or _GUESS.get(name, "int")
    if ".." not in body or kind in ("text", "bool"):
        parts = body.split("|") if "|" in body else body.split(",")
        values = tuple(_value(name, v.strip(), kind) for v in parts if v.strip())
        if not values:
            raise SweepError(f"--grid {name}: empty list")
        return Axis(name, values)
    lo_text, _, rest = body.partition("..")
    parts = rest.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise SweepError(f"--grid {name}: expected LO..HI:COUNT[:log], got {body!r}")
    lo, hi = _endpoint(name, lo_text), _endpoint(name, parts[0])
    try:
        count = int(parts[1])
    except ValueError:
        raise SweepError(f"--grid {name}: COUNT {parts[1]!r} is not an integer") from None
    if count < 1:
        raise SweepError(f"--grid {name}: empty range (COUNT = {count})")
    if count > 1 and lo == hi:
        raise SweepError(f"--grid {name}: empty range {lo:g}..{hi:g} with {count} values")
    if len(parts) == 3:
        if lo <= 0 or hi <= 0:
            raise SweepError(f"--grid {name}: a log range must not reach or cross 0 "
                             f"(got {lo:g}..{hi:g})")
        grid = np.geomspace(lo, hi, count)
    else:
        grid = np.linspace(lo, hi, count)
    if kind == "int":
        values = tuple(dict.fromkeys(int(np.rint(v)) for v in grid))
    else:
        values = tuple(float(v) for v in grid)
    return Axis(name, values)


def parse_seeds(text: str) -> list[int]:
    """``S`` -> seeds 0..S−1; ``a,b,c`` -> those seeds."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        count = int(text)
    except ValueError:
        raise SweepError(f"--seeds: expected a count or a comma list of integers, "
                         f"got {text!r}") from None
    if count < 1:
        raise SweepError(f"--seeds: need at least one seed, got {count}")
    return list(range(count))


def axis_types(problem: str, dims: dict[str, int] | None) -> dict[str, str]:
    """Every parameter a grid axis may set for ``problem`` and its value type: the options of
    the model's registered sampler (:mod:`dynamics.registry`; with ``dims``, the model's
    dimensions, ``init`` and ``weight_decay``), then the run options :data:`RUN_TYPES`."""
    from dynamics import registry

    if dims is not None:
        from dynamics.model import get

        sampler = {str(d): "int" for d in get(problem).dims}
        sampler |= {"init": "float", "weight_decay": "float"}
    else:
        entry = registry.entry(problem)
        if entry is None or entry.sample is None:
            raise SweepError(f"sweep {problem}: no built-in sampler, give --dims NAME=SIZE,...")
        if entry.hook("cli") is not None and entry.hook("sweep") is None:  # own commands
            raise SweepError(f"sweep {problem}: its specs have their own predict/train (scurve "
                             f"predict/train/compare); the sweep maps models on the shared path")
        sampler = {o.name: _OPTION_TYPES[o.type] for o in entry.options
                   if o.type in _OPTION_TYPES}
    return sampler | {k: v for k, v in RUN_TYPES.items() if k not in sampler}


def valid_axes(problem: str, dims: dict[str, int] | None) -> tuple[str, ...]:
    """The parameter names a grid axis may take for ``problem`` (with ``dims``)."""
    return tuple(axis_types(problem, dims))


def _required(problem: str, dims: dict[str, int] | None) -> set[str]:
    """The sampler options a cell must give (declared required, :mod:`dynamics.registry`)."""
    from dynamics import registry

    entry = None if dims is not None else registry.entry(problem)
    return {o.name for o in entry.options if o.required} if entry is not None else set()


def _sampler_defaults(problem: str, dims: dict[str, int] | None) -> dict[str, Any]:
    """The sampler options of a cell and their defaults (None: required or model-chosen)."""
    if dims is not None:
        return {"init": 1e-3, "weight_decay": 0.0}
    from dynamics import registry

    entry = registry.entry(problem)
    return {o.name: o.default for o in entry.options} if entry is not None else {}


def _check_grouped(problem: str) -> None:
    """Raise SweepError unless ``problem`` is a grouped model (it has a group objective)."""
    from dynamics.model import get

    try:
        grouped = get(problem).grouped
    except ValueError:
        grouped = False
    if not grouped:
        raise SweepError(f"--grid objective: {problem} has no groups (objectives apply to a "
                         "grouped model, e.g. modes)")


def _file_digest(path: str | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _own_cells(problem: str) -> Any:
    """The module of a family that runs its own sweep cells (registry hook ``sweep``: its
    ``sweep_cell(spec, theories, run)`` and ``SWEEP_THEORIES`` {name: tolerance}), or None."""
    import importlib

    from dynamics import registry

    entry = registry.entry(problem)
    name = None if entry is None else entry.hook("sweep")
    return None if name is None else importlib.import_module(name)


def sample_cell(config: dict[str, Any], load: bool = True) -> Any:
    """The spec of one cell: what ``scurve sample`` samples with the cell's arguments and
    seed (the same function, :func:`dynamics.registry.sample`); ``load``: (re)load the cell's
    model file first (a batch loads it once, so that its specs share one model)."""
    from dynamics import registry
    from dynamics.model import load_file

    if config.get("model_file") and load:
        load_file(config["model_file"])
    return registry.sample(config["problem"], config["sample"], seed=config["seed"],
                           dims=config.get("dims"))


def _method(name: str, run: dict[str, Any]) -> Any:
    """The method object of theory ``name`` with the cell's run options that it takes
    (``lr``, ``momentum``, ``eps``; ``decoupled`` for AdamW's sign theory)."""
    import dataclasses

    from dynamics import methods

    if name not in methods._CLASSES:
        methods.method_from_name(name)  # raises: unknown method (names the known ones)
    accepted = {f.name for f in dataclasses.fields(methods._CLASSES[name])}
    options = {"lr": run["lr"], "momentum": run["momentum"], "eps": run["eps"],
               "decoupled": True if run["optimizer"] == "adamw" else None,
               "betas": _betas(run), "schedule": _schedule(run)}
    return methods.method_from_name(name, **{k: v for k, v in options.items()
                                             if k in accepted})


def _betas(run: dict[str, Any]) -> tuple[float, float]:
    """Adam's (β₁, β₂) of a cell: its ``betas`` text ``B1/B2`` or its ``beta1``, ``beta2``."""
    if run.get("betas"):
        b1, _, b2 = run["betas"].partition("/")
        return float(b1), float(b2)
    return float(run["beta1"]), float(run["beta2"])


def _schedule(run: dict[str, Any]) -> Any:
    """The cell's learning-rate schedule (:mod:`dynamics.schedules`), or None."""
    from dynamics.schedules import schedule_from_text

    return None if not run.get("schedule") else schedule_from_text(run["schedule"])


def _compact(t: np.ndarray, loss: np.ndarray) -> dict[str, np.ndarray]:
    """At most CURVE_POINTS samples of a curve, log-spaced in index (the early drop kept)."""
    idx = np.unique(np.geomspace(1, len(t), CURVE_POINTS).astype(int) - 1)
    return {"t": np.asarray(t)[idx], "loss": np.asarray(loss)[idx]}


def _measure(traj: Any, spec: Any, phases: dict[str, Any] | None = None) -> dict[str, Any]:
    """The measurements of one curve (:mod:`dynamics.phases`) of ``spec``; ``phases``: the
    curve's phases (:meth:`dynamics.phases.Phases.to_dict`) when already analysed (a
    recording cell's summary), else they are analysed here."""
    cross = traj.crossing_times(FRACTIONS)
    out: dict[str, Any] = {f"t_{f:g}": cross[f] for f in FRACTIONS}
    out.update(final_loss=float(traj.loss[-1]), t_end=float(traj.t[-1]),
               l_ref=float(traj.l_ref))
    if phases is None:
        try:
            phases = traj.phases().to_dict()
        except ValueError:  # too few finite samples (a diverged run)
            phases = None
    if phases is not None:
        out.update(
            plateaus=len(phases["plateaus"]),
            plateau_levels=[p["level"] / phases["l_ref"] for p in phases["plateaus"]],
            plateau_lengths=[p["length"] for p in phases["plateaus"]],
            drop_times=[d["time"] for d in phases["drops"]],
            drop_widths=[d["width"] for d in phases["drops"]],
            tail=None if phases["tail"] is None else phases["tail"]["kind"])
    emergence = _emergence(traj, spec)
    if emergence is not None:
        out["emergence"] = emergence
        out.update({column: emergence[key] if np.isfinite(emergence[key]) else None
                    for column, key in (("emergence_spread", "spread"),
                                        ("emergence_width", "width"),
                                        ("groups_emerged", "emerged"))})
    out["curve"] = _compact(traj.t, traj.loss)
    return out


def _emergence(traj: Any, spec: Any) -> dict[str, float] | None:
    """The groups' emergence of a grouped model's curve (:func:`validation.emergence.
    summarize_run`, threshold ½ℓ_g of the zero model, ``spec.reference_losses``); None for a
    curve without group losses."""
    if getattr(traj, "group_loss", None) is None:
        return None
    from validation.emergence import summarize_run

    finite = np.isfinite(traj.group_loss).all(axis=1)
    return summarize_run(traj.t[finite], traj.group_loss[finite],
                         np.asarray(spec.reference_losses) / 2)


def _analysed(recorded: dict[str, Any], traj: Any) -> dict[str, Any] | None:
    """The phases a recording cell's summary already holds, when they are the ones
    :func:`_measure` would find (the summary analysed the same curve: no separate crossing
    record, every sample finite); else None (analyse again)."""
    run = recorded.get("run")
    if run is None or traj.every_t is not None or not np.isfinite(traj.loss).all():
        return None
    return run["phases"]


def _recorder(config: dict[str, Any]) -> Any:
    """``(spec, traj, theory) -> {"run": the report's summary of traj}`` for a cell of a
    recording sweep (:func:`figures.reporting.jobs.summarize`: a theory's of its samples, with
    its mechanistic phases; a training run's of its every-step loss, the exact crossing record
    :meth:`dynamics.trajectory.Trajectory.curve`, as the report's training jobs keep it),
    ``-> {}`` otherwise."""
    if not config.get("record"):
        return lambda spec, traj, theory=True: {}
    from figures.reporting.jobs import _mechanistic, summarize

    def record(spec: Any, traj: Any, theory: bool = True) -> dict[str, Any]:
        if not theory:
            return {"run": summarize(traj, *traj.curve())}
        run = summarize(traj)
        run["mechanistic"] = _mechanistic(spec, traj)  # as job_predict keeps
        return {"run": run}

    return record


def _record_version() -> str:
    """SHA-256 of the source of the report's run summary (a recording cell's cache key: the
    summary lives in another module, which the job's own code version does not cover)."""
    from figures.reporting import jobs

    return hashlib.sha256(Path(jobs.__file__).read_bytes()).hexdigest()


#: the cell settings a batch of training cells may differ in: the trainer trains specs of one
#: shape at once (:func:`validation.training.train`), so the seed and the init scale
BATCHED = ("seed", "init")


def batch_key(config: dict[str, Any]) -> str | None:
    """The batch a cell's training may join (:func:`figures.sweeps.batched`): cells equal in
    everything but :data:`BATCHED` train as one batch; None (alone) for a theory-only cell and
    for a family that runs its own cells."""
    if not config["run"]["train"] or (not config.get("dims") and _own_cells(config["problem"])):
        return None
    rest = {k: v for k, v in config.items() if k not in BATCHED}
    rest["sample"] = {k: v for k, v in config["sample"].items() if k not in BATCHED}
    return json.dumps(rest, sort_keys=True, default=str)


def run_cells(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells of one batch (:func:`batch_key`): each cell's theories, then the training of all
    of them as one batch (:func:`validation.training.train` of their specs at once; float64
    on the CPU gives each spec bit for bit the run it has alone, tested); the measurements per
    source of each cell, as :func:`run_cell` (training ``seconds``: the batch's wall time
    shared equally)."""
    import warnings

    from dynamics.integrate import predict
    from dynamics.model import load_file

    if configs[0].get("model_file"):  # once: the batch's specs share one model
        load_file(configs[0]["model_file"])
    outs: list[dict[str, Any]] = []
    specs = []
    for config in configs:
        spec = sample_cell(config, load=False)
        run = config["run"]
        if run.get("objective"):
            spec = spec.with_objective(run["objective"])
        specs.append(spec)
        own = None if config.get("dims") else _own_cells(config["problem"])
        if own is not None:  # a family that runs its own cells (committee machines)
            outs.append(_own_cell(own, spec, config))
            continue
        # with training, the theories run to 1.5 × its horizon t = η·steps (not to their own
        # end) (unless the cell sets its own horizon ``t_max``)
        t_max = run.get("t_max") or (1.5 * run["lr"] * run["steps"] if run["train"] else None)
        record = _recorder(config)
        out: dict[str, Any] = {}
        for name in config["theories"]:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traj = predict(spec, _method(name, run), t_max=t_max)
            recorded = record(spec, traj)
            out[name] = {**_measure(traj, spec, _analysed(recorded, traj)), **recorded,
                         "seconds": time.perf_counter() - started}
        outs.append(out)
    trained = [i for i, c in enumerate(configs)
               if c["run"]["train"] and (c.get("dims") or not _own_cells(c["problem"]))]
    if trained:
        _train_cells([configs[i] for i in trained], [specs[i] for i in trained],
                     [outs[i] for i in trained])
    for config, out in zip(configs, outs, strict=True):
        if config.get("record"):  # the summary holds the (thinned) curve: not stored twice
            for measured in out.values():
                if "run" in measured:
                    measured.pop("curve", None)
    return outs


def _train_cells(configs: list[dict[str, Any]], specs: list[Any],
                 outs: list[dict[str, Any]]) -> None:
    """Train ``specs`` (one batch: ``configs`` equal but for :data:`BATCHED`) at once and add
    each cell's ``train`` measurements and its theories' verdicts to ``outs``."""
    import warnings

    import torch

    from validation.comparison import judge, tolerance  # imports torch: only to train
    from validation.training import TrainConfig, train

    torch.set_num_threads(1)
    run = configs[0]["run"]
    started = time.perf_counter()
    train_config = TrainConfig(optimizer=run["optimizer"], lr=run["lr"], steps=run["steps"],
                               momentum=run["momentum"], eps=run["eps"], betas=_betas(run),
                               schedule=_schedule(run), dtype=run["dtype"], device="cpu",
                               record=configs[0].get("train_record", "all"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = train(specs, train_config)
    seconds = (time.perf_counter() - started) / len(specs)
    diverged = {int(d[0]) for d in result.diverged}
    for i, (config, spec, out) in enumerate(zip(configs, specs, outs, strict=True)):
        # taken out of the result: each trajectory (and the cosines its summary caches, as
        # large as its order parameters) is freed once measured, not kept for the batch
        experiment, result.trajectories[i] = result.trajectories[i], None
        recorded = _recorder(config)(spec, experiment, False)
        if recorded:
            recorded["run"]["diverged"] = i in diverged
        phases = recorded["run"]["phases"] if recorded and np.isfinite(
            experiment.curve()[1]).all() else None  # the summary analysed the same curve
        out["train"] = {**_measure(experiment, spec, phases), **recorded, "seconds": seconds,
                        "diverged": i in diverged}
        exp_cross = {f: out["train"][f"t_{f:g}"] for f in FRACTIONS}
        for name in config["theories"]:
            th_cross = {f: out[name][f"t_{f:g}"] for f in FRACTIONS}
            verdict, errors, _ = judge(exp_cross, out["train"]["t_end"], th_cross,
                                       out[name]["t_end"], tolerance(name, run["dtype"]), name)
            out[name]["verdict"] = verdict
            out[name].update({f"rel_err_{f:g}": e for f, e in errors.items()})


def _own_cell(own: Any, spec: Any, config: dict[str, Any]) -> dict[str, Any]:
    """One cell of a family that runs its own cells (registry hook ``sweep``)."""
    run = config["run"]
    started = time.perf_counter()
    trajs = own.sweep_cell(spec, config["theories"], run)
    seconds = (time.perf_counter() - started) / len(trajs)
    out = {k: {**_measure(v, spec), "seconds": seconds} for k, v in trajs.items()}
    if run["train"]:
        from validation.comparison import judge
    for name in config["theories"] if run["train"] else ():
        verdict, errors, _ = judge(
            {f: out["train"][f"t_{f:g}"] for f in FRACTIONS}, out["train"]["t_end"],
            {f: out[name][f"t_{f:g}"] for f in FRACTIONS}, out[name]["t_end"],
            own.SWEEP_THEORIES[name], name)
        out[name].update({"verdict": verdict, **{f"rel_err_{f:g}": e
                                                 for f, e in errors.items()}})
    return out


@batched(run_cells, batch_key)
def run_cell(config: dict[str, Any]) -> dict[str, Any]:
    """One cell × seed: every theory and (optionally) training; the measurements per source.
    The batch of one cell (:func:`run_cells`): cells that differ only in :data:`BATCHED` are
    run as one batch by :func:`figures.sweeps.run_jobs`, with the same results.

    Returns ``{source: measurements}`` (see the module docstring for the measurements).
    """
    return run_cells([config])[0]


def _cell_options(axes: Sequence[Axis], point: tuple[Any, ...], base: dict[str, Any],
                  sampler: Sequence[str], dims: dict[str, int] | None
                  ) -> tuple[dict, dict, dict | None]:
    """Sampler options, run options and dims of one grid point."""
    values = dict(zip((a.name for a in axes), point, strict=True))
    sample = {k: values.get(k, base[k]) for k in sampler}
    run = {k: values.get(k, base[k]) for k in RUN_OPTIONS}
    cell_dims = None if dims is None else {k: int(values.get(k, v)) for k, v in dims.items()}
    return sample, run, cell_dims


def sweep(
    problem: str,
    grid: Sequence[Axis] | Sequence[str],
    *,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | Any = False,
    stats: CacheStats | None = None,
    curves: dict[int, dict[str, np.ndarray]] | None = None,
    batch: int | None = None,
    **cells: Any,
) -> list[dict[str, Any]]:
    """Map ``problem`` over ``grid``: one row per cell × seed × source (module docstring).

    Args:
        problem, grid: as :func:`plan`.
        executor, cache_dir, stats: as :func:`figures.sweeps.run_jobs`.
        progress: a bar on stderr with cells done/left and an ETA (or an open ``tqdm`` bar
            that counts the cells, as :func:`figures.sweeps.run_jobs`).
        curves: if given, filled with the compact curve (``t``, ``loss``) of each row index.
        batch: at most this many cells trained as one batch (cells that differ only in the
            seed and ``init``, :func:`batch_key`; None: all of them; 1: one job per cell);
            the table is the same whatever it is.
        cells: the cells' settings, :func:`plan`'s keywords (``dims``, ``model_file``,
            ``seeds``, ``theories``, ``train``, ``steps``, ``defaults``, ``dtype``,
            ``record``, ``where``).

    Raises:
        SweepError: an axis that is not a parameter, a bad range or seed list.
    """
    planned = plan(problem, grid, **cells)
    label = "sweep cells" if progress is True else None if progress is False else progress
    results = run_jobs(planned.jobs, executor=executor, cache_dir=cache_dir,
                       progress_label=label, stats=stats, max_batch=batch)
    return planned.rows(results, curves)


@dataclass(frozen=True)
class Plan:
    """A sweep's cells as jobs (:func:`plan`): ``jobs`` (``(run_cell, config)``, for
    :func:`figures.sweeps.run_jobs`), each one's ``labels`` (grid point, seed), the axis
    ``names``, the row ``sources`` and whether rows keep the run summary (``record``)."""

    jobs: list[Job]
    labels: list[tuple[tuple[Any, ...], int]]
    names: list[str]
    sources: tuple[str, ...]
    record: bool

    def rows(self, results: Sequence[dict[str, Any]],
             curves: dict[int, dict[str, np.ndarray]] | None = None) -> list[dict[str, Any]]:
        """The table rows (one per cell × seed × source) of the jobs' ``results``."""
        rows: list[dict[str, Any]] = []
        for (point, seed), result in zip(self.labels, results, strict=True):
            for source in self.sources:
                measured = result[source]
                row = dict(zip(self.names, point, strict=True))
                row.update(seed=seed, source=source)
                row.update({k: measured.get(k) for k in MEASUREMENTS})
                if self.record:  # the report's summary (with a grouped model's emergence)
                    row["run"] = measured["run"]
                    if "emergence" in measured:
                        row["run"] = {**row["run"], "emergence": measured["emergence"]}
                if curves is not None:
                    curves[len(rows)] = measured.get("curve") or _compact(
                        measured["run"]["trajectory"].t, measured["run"]["trajectory"].loss)
                rows.append(row)
        return rows


def plan(
    problem: str,
    grid: Sequence[Axis] | Sequence[str],
    *,
    dims: dict[str, int] | None = None,
    model_file: str | Path | None = None,
    seeds: Sequence[int] | int = 1,
    theories: Sequence[str] = ("flow",),
    train: str | None = None,
    steps: int = 1000,
    defaults: dict[str, Any] | None = None,
    dtype: str = "float64",
    record: bool = False,
    where: Callable[[dict[str, Any], int], bool] | None = None,
    train_record: str = "all",
) -> Plan:
    """The cells of a sweep as jobs, not run (:func:`sweep` runs them): several plans' jobs
    can run in one :func:`figures.sweeps.run_jobs` call (a report section's maps and curves
    at once, in one pool); :meth:`Plan.rows` turns their results into the table.

    Args:
        problem: a built-in kind or a model's name (``model_file``'s ``MODEL``).
        grid: axes, as :class:`Axis` or grid strings ``NAME=...`` (:func:`parse_grid`).
        dims: model dimensions (``--dims``); None: the built-in sampler options.
        model_file: the user's ``FILE.py`` (its bytes key the cache).
        seeds: a count S (seeds 0..S−1) or the seeds.
        theories: ``predict`` method names.
        train: the optimizer to train with (None: theory only).
        steps: training steps (the grid may vary ``steps``).
        defaults: values of the non-grid parameters (``init``, ``lr``, ``n``, ...).
        dtype: training precision (default float64, the comparison precision).
        record: each row also holds ``run``, the report's full summary of its curve
            (:func:`figures.reporting.jobs.summarize`: crossings, phases, alignment and norm
            histories, the thinned trajectory); not a column of ``results.csv``.
        where: if given, only the cells for which ``where(axis values, seed)`` is true run
            (a map that adds seeds beside its boundary, a corner left out).
        train_record: the training steps whose order parameters are measured
            (:class:`validation.training.TrainConfig`'s ``record``): ``all`` (default) or
            ``log`` (log-spaced steps: a long or wide run's order parameters at every step
            would not fit in memory). The loss is kept at every step either way (crossing
            times and phases come from it); the compact curve and a recording row's
            alignment and norm histories are at the recorded steps.

    Raises:
        SweepError: an axis that is not a parameter, a bad range or seed list.
    """
    from dynamics.model import load_file

    if model_file is not None:
        load_file(model_file)
    types = axis_types(problem, dims)
    axes = [parse_grid(a, types) if isinstance(a, str) else a for a in grid]
    valid = tuple(types)
    names = [a.name for a in axes]
    for name in names:
        if name not in valid:
            raise SweepError(f"--grid {name}: not a parameter of {problem} (valid: "
                             f"{', '.join(valid)})")
        if names.count(name) > 1:
            raise SweepError(f"--grid {name}: given twice")
    if "betas" in names and ({"beta1", "beta2"} & set(names)):
        raise SweepError("--grid betas: give either betas or beta1/beta2 axes, not both")
    if "objective" in names or (defaults or {}).get("objective"):
        _check_grouped(problem)
    from dynamics.methods import METHODS
    from validation.names import OPTIMIZERS

    own = _own_cells(problem) if dims is None else None
    known = tuple(own.SWEEP_THEORIES) if own is not None else METHODS
    if own is not None and train not in (None, "sgd"):
        raise SweepError(f"--train {train}: {problem} trains by plain online SGD (--train sgd)")
    for name in theories:
        if name not in known:
            raise SweepError(f"--theory: unknown method {name!r} (known: {', '.join(known)})")
    if train is not None and train not in OPTIMIZERS:
        raise SweepError(f"--train: unknown optimizer {train!r} (known: {', '.join(OPTIMIZERS)})")
    if train_record not in ("all", "log"):
        raise SweepError(f"train_record: expected all or log, got {train_record!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    sampler = _sampler_defaults(problem, dims)
    base: dict[str, Any] = {"lr": None, "momentum": 0.0, "eps": 1e-8,
                            "optimizer": train or "sgd", "steps": steps, "beta1": 0.9,
                            "beta2": 0.999, "betas": None, "schedule": None, "objective": None,
                            "t_max": None}
    base.update(sampler)
    for key, value in (defaults or {}).items():
        # a sampler option that is no grid axis (a list: singular_values) may still be set
        if key not in valid and key not in (dims or {}) and key not in sampler:
            raise SweepError(f"--{key.replace('_', '-')}: not a parameter of {problem} "
                             f"(valid: {', '.join(valid)})")
        base[key] = value
    digest = _file_digest(None if model_file is None else str(model_file))
    points = list(np.ndindex(*(len(a.values) for a in axes))) if axes else [()]
    jobs, labels = [], []
    for index in points:
        point = tuple(a.values[i] for a, i in zip(axes, index, strict=True))
        sample, run, cell_dims = _cell_options(axes, point, base, tuple(sampler), dims)
        run = {**run, "train": train is not None, "dtype": dtype}
        missing = [k for k, v in sample.items() if v is None and k in _required(problem, dims)]
        if missing:
            raise SweepError(f"sweep {problem} needs --{missing[0].replace('_', '-')} (or an "
                             f"axis {missing[0]}) or --dims")
        if run["lr"] is None and (train is not None
                                  or any(t in ("discrete", "modified") for t in theories)):
            raise SweepError("--lr is needed (or an axis lr) to train or for discrete/modified")
        for seed in seed_list:
            if where is not None and not where(dict(zip(names, point, strict=True)), seed):
                continue
            jobs.append((run_cell, {
                "problem": problem, "dims": cell_dims, "sample": sample, "run": run,
                "seed": seed, "theories": list(theories),
                "model_file": None if model_file is None else str(Path(model_file).resolve()),
                "model_digest": digest,
                **({"record": _record_version()} if record else {}),
                **({"train_record": train_record} if train_record != "all" else {})}))
            labels.append((point, seed))
    if jobs:  # a sampler's own rule (modes: --scales or --groups) fails here, not in a cell
        from dynamics.errors import ScurveError

        try:
            sample_cell(jobs[0][1], load=False)
        except ScurveError as exc:
            raise SweepError(f"sweep {problem}: {str(exc).splitlines()[0]}") from None
    sources = (*theories, *(["train"] if train is not None else []))
    return Plan(jobs, labels, names, sources, record)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(_cell_text(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_table(rows: list[dict[str, Any]], path: str | Path, axes: Sequence[str]) -> Path:
    """The sweep table (``results.csv``'s format: a column per grid axis, then
    :data:`COLUMNS`) of ``rows`` at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*axes, *COLUMNS])
        for row in rows:
            writer.writerow([_cell_text(row.get(c)) for c in (*axes, *COLUMNS)])
    return path


def write_outputs(
    rows: list[dict[str, Any]], out: str | Path, axes: Sequence[str],
    curves: dict[int, dict[str, np.ndarray]] | None = None,
    plots: Sequence[tuple[str, str, str]] = (), title: str = "sweep",
) -> list[Path]:
    """``results.csv``, ``curves.npz``, one heatmap PNG per ``(measurement, x, y)`` and
    ``index.html`` under ``out``; the paths written."""
    out = Path(out)
    written = [write_table(rows, out / "results.csv", axes)]
    if curves:
        path = out / "curves.npz"
        np.savez_compressed(path, **{f"{k}_{part}": v[part] for k, v in curves.items()
                                     for part in ("t", "loss")})
        written.append(path)
    images = [heatmap(rows, m, x, y, out / f"{m}_{x}_{y}.png", axes) for m, x, y in plots]
    written.extend(images)
    page = out / "index.html"
    body = "".join(f'<figure><img src="{html.escape(p.name)}"><figcaption>'
                   f"{html.escape(p.stem)}</figcaption></figure>" for p in images)
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{len(rows)} rows: "
        f"<a href='results.csv'>results.csv</a> (columns documented in figures/sweep.py); "
        f"compact curves in curves.npz (keys ROW_t, ROW_loss).</p>{body}")
    written.append(page)
    return written


def _numeric(value: Any) -> float:
    if isinstance(value, list):
        value = value[0] if value else None
    return float("nan") if value is None else float(value)


def heatmap_panels(rows: list[dict[str, Any]], measurement: str, x: str, y: str,
                   axes: Sequence[str] = ()) -> tuple[list[Any], list[Any],
                                                      list[tuple[str, np.ndarray]]]:
    """The panels of :func:`heatmap`: the x and y values and, per source and per combination
    of the other grid ``axes``' values, its title and the (len(y), len(x)) grid of the median
    over seeds of ``measurement`` (NaN: no finite value)."""
    sources = [s for s in dict.fromkeys(r["source"] for r in rows)  # those with a value
               if any(r["source"] == s and r.get(measurement) not in (None, [])
                      for r in rows)] or ["train"]
    others = [a for a in axes if a not in (x, y)]
    combos = list(dict.fromkeys(tuple(r[a] for a in others) for r in rows)) or [()]
    xs = sorted({r[x] for r in rows})
    ys = sorted({r[y] for r in rows})
    panels = []
    for combo in combos:
        fixed = dict(zip(others, combo, strict=True))
        for source in sources:
            grid = np.full((len(ys), len(xs)), np.nan)
            for i, yv in enumerate(ys):
                for j, xv in enumerate(xs):
                    values = [_numeric(r.get(measurement)) for r in rows
                              if r["source"] == source and r[x] == xv and r[y] == yv
                              and all(r[a] == v for a, v in fixed.items())]
                    finite = [v for v in values if math.isfinite(v)]
                    if finite:
                        grid[i, j] = float(np.median(finite))
            title = ", ".join([source, *(f"{a}={_tick(v)}" for a, v in fixed.items())])
            panels.append((title, grid))
    return xs, ys, panels


def _tick(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def heatmap(rows: list[dict[str, Any]], measurement: str, x: str, y: str, path: Path,
            axes: Sequence[str] = ()) -> Path:
    """PNG: the median over seeds of ``measurement`` on the (x, y) grid, one panel per
    source and per combination of the other grid ``axes``' values (a list measurement shows
    its first entry; blank: not reached)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys, found = heatmap_panels(rows, measurement, x, y, axes)
    columns = min(len(found), 4)
    lines = math.ceil(len(found) / columns)
    fig, panels = plt.subplots(lines, columns, figsize=(3.6 * columns + 0.8, 3.4 * lines),
                               squeeze=False, constrained_layout=True)
    for ax in panels.flat[len(found):]:
        ax.set_visible(False)
    grids = [grid for _, grid in found]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.array([])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = None
    for ax, (title, grid) in zip(panels.flat, found, strict=False):
        image = ax.imshow(grid, origin="lower", aspect="auto", vmin=vmin, vmax=vmax,
                          cmap="viridis")
        ax.set_xticks(range(len(xs)), [_tick(v) for v in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [_tick(v) for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=9)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if math.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7,
                            color="w")
    if image is not None:
        fig.colorbar(image, ax=[ax for ax in panels.flat if ax.get_visible()],
                     label=f"{measurement} (median over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
