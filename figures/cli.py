"""The ``scurve`` command line: one subcommand per job.

Every error a user can cause (bad arguments, bad spec files, impossible settings) prints one
line on stderr and exits with status 2; a training run that diverged exits with status 1.
Times are continuous time t (a gradient step of rate η advances t by η; with a learning-rate
schedule, t_k = Σ_{j<k} η_j).

Start-up is cheap: this module imports only the standard library at load time, the parser is
built from torch-free name lists (:mod:`dynamics.methods`, :mod:`validation.names`), and each
subcommand imports what it needs (NumPy/SymPy for ``sample``/``derive``, SciPy for
``predict``, torch only for ``train``/``compare``/``grouped``/``report``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from dynamics.methods import Method
    from dynamics.phases import Phases
    from dynamics.problems import Problem
    from dynamics.schedules import Schedule
    from dynamics.trajectory import Trajectory

__all__ = ["main"]

EXIT_USAGE = 2


def _registry():  # -> the dynamics.registry module (standard library only: no SymPy)
    from dynamics import registry

    return registry


#: the registered models with a sampler (:mod:`dynamics.registry`), in the registry's order
PROBLEMS = tuple(n for n, e in _registry().entries().items() if e.sample is not None)
EXIT_DIVERGED = 1
#: an exception that is not a user error: a bug (``--debug`` re-raises it)
EXIT_BUG = 3


def _usage(message: str) -> Exception:
    """A :class:`dynamics.errors.UsageError` (one line, exit status 2)."""
    from dynamics.errors import UsageError

    return UsageError(message)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _float_list(text: str) -> list[float]:
    return [_positive_float(part) for part in text.split(",") if part.strip()]


def _betas(text: str) -> tuple[float, float]:
    """``B1,B2`` -> (β₁, β₂), each in [0, 1)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected B1,B2 (two numbers), got {text!r}")
    betas = (_float(parts[0]), _float(parts[1]))
    if not all(0 <= b < 1 for b in betas):
        raise argparse.ArgumentTypeError(f"each beta must be in [0, 1), got {text!r}")
    return betas


def _schedule(text: str) -> Schedule:
    from dynamics.schedules import schedule_from_text

    try:
        return schedule_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SCHEDULE_HELP = ("learning-rate schedule NAME:KEY=VALUE,... with torch.optim.lr_scheduler's "
                 "names and semantics, stepped once per step: step:step_size=N,gamma=G "
                 "(StepLR), exponential:gamma=G, cosine:T_max=N,eta_min=E, "
                 "linear:start_factor=S,end_factor=E,total_iters=N (warm-up); time is then "
                 "t_k = Σ_{j<k} η_j")


def _emit_json(obj: object) -> None:
    """Exactly one JSON object on stdout (NaN/inf are not JSON: they become null)."""
    from figures.jsonable import jsonable

    print(json.dumps(jsonable(obj), allow_nan=False))


# --------------------------------------------------------------------------- sample
def _converters() -> dict[str, Callable[[str], object]]:
    """How the command line parses each option type of :data:`dynamics.registry.TYPES`."""
    return {"int": int, "posint": _positive_int, "float": _float, "posfloat": _positive_float,
            "nonneg": _nonneg_float, "floats": _float_list, "str": str}


def _add_problem_options(p: argparse.ArgumentParser, *, required: bool,
                         kind: str | None = None) -> None:
    """The sampler options of every registered model (or only of ``kind``), read from the
    registry (:mod:`dynamics.registry`), one group per model; an option several models share is
    declared once, by the first. Every option defaults to None here: the sampler's declared
    default applies (:func:`sample_from_args`). Then ``--seed``."""
    del required  # each model's required options are checked when it is sampled
    convert = _converters()
    seen: set[str] = set()
    for name, entry in _registry().entries().items():
        if entry.sample is None or (kind is not None and name != kind):
            continue
        group = p.add_argument_group(f"{name} options (sample {name})")
        for o in entry.options:
            if o.name in seen or o.flag in p._option_string_actions:  # e.g. train's --objective
                continue
            seen.add(o.name)
            if o.type == "flag":
                group.add_argument(o.flag, action="store_true", default=None, help=o.help)
                continue
            group.add_argument(o.flag, type=convert[o.type], default=None, help=o.help,
                               choices=o.choices or None, metavar=o.metavar)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """Optimizer options shared by ``train`` and ``compare``."""
    from validation.names import OPTIMIZERS

    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--lr", type=_positive_float, required=True,
                   help="step size η (t = η·step); with --schedule the base rate")
    p.add_argument("--momentum", type=_nonneg_float, default=0.0,
                   help="heavy-ball μ (default 0; 0.9 for --optimizer momentum)")
    p.add_argument("--betas", type=_betas, default=(0.9, 0.999), metavar="B1,B2",
                   help="Adam's (β₁, β₂) (default 0.9,0.999)")
    p.add_argument("--eps", type=_positive_float, default=1e-8,
                   help="Adam's ε (default 1e-8; a code minimising a mean over m entries with "
                   "ε trains like ε·m/2 here, see the README)")
    p.add_argument("--schedule", type=_schedule, default=None, metavar="NAME:KEY=VALUE,...",
                   help=SCHEDULE_HELP)
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="float32 (default of train) or float64 (default of compare)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")


def sample_from_args(
    problem: str, args: argparse.Namespace, seed: int | None = None
) -> Problem:
    """Build a spec from the problem options (raises SpecError on impossible settings).

    With ``--dims`` any model (built-in or ``--model FILE.py``) is sampled by
    :func:`dynamics.problems.sample_model`; otherwise the model's registered sampler takes its
    declared options (:mod:`dynamics.registry`), each left out taking its declared default.
    """
    seed = args.seed if seed is None else seed
    dims = getattr(args, "dims", None)
    registry = _registry()
    item = registry.entry(problem)
    names = ("init", "weight_decay", "loss", "depth") if dims is not None else \
        tuple(o.name for o in (item.options if item is not None else ()))
    options = {k: getattr(args, k, None) for k in names}
    if dims is not None and getattr(args, "loss", None) is None:
        options["loss"] = "mse"
    return registry.sample(problem, options, seed=seed, dims=dims)


def parse_dims(text: str) -> dict[str, int]:
    """``n=50,r=2,k=2`` -> {"n": 50, "r": 2, "k": 2}."""
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=SIZE,..., got {text!r}")
        out[name.strip()] = _positive_int(value.strip())
    return out


def load_models(args: argparse.Namespace) -> list[str]:
    """Register every ``--model FILE.py``; the names of the models loaded."""
    paths = getattr(args, "model", None) or []
    if not paths:
        return []
    from dynamics.model import load_file  # SymPy: only for model files

    return [load_file(path).name for path in paths]


def problem_name(args: argparse.Namespace, loaded: list[str]) -> str:
    """The positional PROBLEM, or the model of the one --model file when it is omitted."""

    def known() -> list[str]:  # the registry's names (no SymPy)
        return list(_registry().entries())

    problem = args.problem
    if problem is None:
        if len(loaded) != 1:
            raise _usage("give the problem (a built-in or the name of a --model file's "
                             f"model); known: {', '.join(known())}")
        problem = loaded[0]
    if problem not in known():
        raise _usage(f"unknown problem {problem!r} (known: {', '.join(known())}; load "
                         "your own with --model FILE.py)")
    return problem


def _model_named(problem: str, args: argparse.Namespace):  # -> Model
    from dynamics.model import get

    return get(problem, {"loss": getattr(args, "loss", None) or "mse",
                         "depth": getattr(args, "depth", None)})


def _cmd_sample(args: argparse.Namespace) -> int:
    problem = problem_name(args, load_models(args))
    commands = _commands_of(problem)
    if commands is not None:  # a family with its own spec type and commands (committee)
        return commands.sample(args)
    from dynamics.problems import save

    spec = sample_from_args(problem, args)
    path = save(spec, args.output)
    print(f"wrote {path}: {spec.describe()}, L_ref = {spec.l_ref:.6g}")
    return 0


def _commands_of(kind: str | None):  # -> a module with sample/predict/train/compare, or None
    """The command module a registered family names (hook ``cli``), else None."""
    entry = _registry().entry(kind) if kind else None
    module = entry.hook("cli") if entry is not None else None
    if module is None:
        return None
    import importlib

    return importlib.import_module(module)


def _commands_of_file(path: Path | None):  # -> module or None
    """:func:`_commands_of` the ``kind`` of spec file ``path``."""
    if path is None:
        return None
    from dynamics.problems import kind_of

    return _commands_of(kind_of(path))


# --------------------------------------------------------------------------- predict
def _summary_lines(crossings: dict, phases: Phases) -> list[str]:
    """Readable summary of crossing times and phases (times in t)."""
    lines = []
    for f, t in crossings.items():
        shown = "never reached" if t is None else f"t = {t:.6g}"
        lines.append(f"  t_{f:g} (L <= {f:g} L_ref): {shown}")
    lines.extend(f"  {line}" for line in phases.describe().splitlines())
    return lines


def _notices(command: str, caught: list[warnings.WarningMessage]) -> None:
    """Each NotReducedWarning as one line on stderr (the others as they are)."""
    from dynamics.integrate import NotReducedWarning

    for w in caught:
        if issubclass(w.category, NotReducedWarning):
            print(f"scurve {command}: note: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _method(args: argparse.Namespace) -> Method:
    """The method object of ``--method`` with the options given (others: a usage error)."""
    from dynamics.methods import method_from_name

    # options not given are None (left out); the method object checks the others: at this
    # boundary every ValueError it raises is about the user's options (a usage error)
    try:
        return method_from_name(args.method, lr=args.lr, momentum=args.momentum,
                                schedule=args.schedule, eps=args.eps,
                                decoupled=True if args.decoupled else None, betas=args.betas,
                                weight_decay=args.weight_decay, exact_steps=args.exact_steps,
                                half_step=args.half_step)
    except ValueError as exc:
        from dynamics.errors import ScurveError

        if isinstance(exc, ScurveError):
            raise
        raise _usage(str(exc)) from None


def _check_flow_lr(method: Method, spec: Problem) -> None:
    """``--lr`` with ``--method flow`` only where the objective reads it (Group DRO, whose
    weights move per training step); elsewhere it would be silently ignored: a usage error."""
    if method.name != "flow" or getattr(method, "lr", None) is None:
        return
    objective = spec.group_objective
    if objective is None or objective.dro_step is None:
        raise _usage("--lr: method 'flow' takes --lr only under a Group DRO objective "
                         "(its weights move per step); drop --lr or use --method modified|discrete")


def _options(method: Method) -> dict[str, object]:
    """A method's options as JSON-ready values (a schedule in its ``--schedule`` form)."""
    import dataclasses

    return {f.name: _schedule_text(getattr(method, f.name)) if f.name == "schedule"
            else getattr(method, f.name) for f in dataclasses.fields(method)}


def _schedule_text(schedule: Schedule | None) -> str | None:
    return None if schedule is None else schedule.text()


def _load_spec(args: argparse.Namespace) -> Problem:
    """The spec file, trained under ``--objective`` when given (grouped models only)."""
    from dynamics.problems import load

    spec = load(args.spec)
    if args.objective is None:
        return spec
    if spec.group_objective is None:
        raise _usage(f"--objective: {spec.describe()} has no groups (a grouped model's spec, "
                         "e.g. kind 'modes', takes one)")
    return spec.with_objective(args.objective)


def _group_lines(traj: Trajectory, spec: Problem) -> dict[str, object]:
    """Per-group emergence times t_g (ℓ_g ≤ ½ ℓ_g's reference loss, None: never;
    :func:`dynamics.phases.emergence_time`) of a grouped spec's trajectory."""
    import math

    from dynamics.phases import emergence_time

    reference = spec.reference_losses  # type: ignore[union-attr]
    times = [emergence_time(traj.t, traj.group_loss[:, g], float(reference[g]))
             for g in range(traj.group_loss.shape[1])]
    times = [None if math.isnan(x) else x for x in times]
    return {"objective": spec.objective, "group_crossings_0.5": times,  # type: ignore
            "group_final_loss": traj.group_loss[-1].tolist()}


def _cmd_predict(args: argparse.Namespace) -> int:
    import time

    from dynamics.integrate import predict

    from .committee_cli import write_csv

    commands = _commands_of_file(args.spec)
    if commands is not None:  # a family with its own commands (hook "cli")
        return commands.predict(args)
    method = _method(args)
    load_models(args)
    spec = _load_spec(args)
    _check_flow_lr(method, spec)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = predict(spec, method, t_max=args.t_max)
    _notices("predict", caught)
    if args.csv:
        import numpy as np

        group_loss = traj.group_loss if traj.group_loss is not None else np.zeros((len(traj.t), 0))
        write_csv(args.csv, ["t", "loss", *(f"group_{g}" for g in
                                                         range(group_loss.shape[1]))],
                                np.column_stack([traj.t, traj.loss, group_loss]).tolist())
    seconds = time.perf_counter() - started
    from dynamics.integrate import NotReducedWarning

    # reduced: integrated in order parameters (the method reduces and the model closes)
    reduced = method.reducible and not any(
        issubclass(w.category, NotReducedWarning) for w in caught)
    crossings = traj.crossing_times()
    phases = traj.phases()
    options = _options(method)
    groups = {} if traj.group_loss is None else _group_lines(traj, spec)
    if args.json:  # the run summary (Trajectory.summary) and what only predict knows
        _emit_json({**traj.summary(), "spec": str(args.spec), "problem": spec.describe(),
                    "method": args.method, "options": options, "lr": args.lr,
                    "state_size": traj.state_size, "reduced": reduced, "seconds": seconds,
                    **groups})
        return 0
    shown = ", ".join(f"{k} = {v}" for k, v in options.items() if v is not None)
    print(f"{spec.describe()} — method {args.method}{f' ({shown})' if shown else ''}, "
          f"{traj.state_size} state variables ({seconds:.2f} s)")
    print(f"  L_ref = {spec.l_ref:.6g}; final loss {traj.loss[-1]:.3g} at t = {traj.t[-1]:.6g}")
    print("\n".join(_summary_lines(crossings, phases)))
    if groups:
        print(f"  objective {groups['objective']}: group g reaches ½ ℓ_g(0) at t = "
              f"{_fmt_list(groups['group_crossings_0.5'])}")
    return 0


# --------------------------------------------------------------------------- derive
def _derivations(model) -> dict[str, object]:  # model: dynamics.model.Model
    """Title -> derived object (or the one-line reason it does not exist) for ``model``."""
    from dynamics import symbolic

    if model.cross_entropy():
        return {"cross-entropy loss and full-parameter gradient flow": symbolic.full_flow(model)}
    blocks: dict[str, object] = {"loss and full-parameter gradient flow": symbolic.full_flow(model)}
    reduced = {
        "reduced order-parameter flow (contractions over the large dimensions)":
            lambda: symbolic.reduced_flow(model),
        "exact reduced map of one GD step of rate η": lambda: symbolic.reduced_gd(model),
        "exact reduced map of one GD step with heavy-ball momentum μ":
            lambda: symbolic.reduced_gd(model, momentum=True),
        "first-order modified equation for step η, reduced":
            lambda: symbolic.reduced_flow(model, modified=True),
    }
    for title, derive in reduced.items():
        try:
            blocks[title] = derive()
        except symbolic.ReductionError as exc:
            blocks["no reduced dynamics"] = f"the model does not close: {exc}"
            blocks["first-order modified equation for step η, full parameters"] = \
                symbolic.full_flow(model, modified=True)
            break
    return blocks


def _cmd_derive(args: argparse.Namespace) -> int:
    from dynamics import symbolic
    from dynamics.model import Family, entry, get

    problem = problem_name(args, load_models(args))
    if args.rank is not None:
        title = f"reduced gradient flow, every dimension = {args.rank}, component by component"
        blocks: dict[str, list[str]] = {title: symbolic.component_equations(
            _model_named(problem, args), args.rank, latex=args.latex)}
    else:
        family = entry(problem)
        variants = family.variants if isinstance(family, Family) and args.loss is None \
            else (("", {}),)
        objects: dict[str, object] = {}
        for label, selection in variants:
            model = get(problem, selection) if label else _model_named(problem, args)
            for title, obj in _derivations(model).items():
                objects[f"{title} ({label})" if label else title] = obj
        blocks = {k: ([v] if isinstance(v, str) else v.latex()) for k, v in objects.items()}
        if not args.latex:
            from pylatexenc.latex2text import LatexNodes2Text

            plain = LatexNodes2Text(math_mode="text").latex_to_text
            blocks = {k: [line if isinstance(objects[k], str) else plain(line) for line in v]
                      for k, v in blocks.items()}
    for title, lines in blocks.items():
        print(f"# {title}")
        print("\n".join(lines))
        print()
    return 0


# --------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace, loss: str | None, weight_decay: float | None):
    from validation.training import TrainConfig

    # compare without --steps: a placeholder, compare() picks the steps from the prediction
    return TrainConfig(optimizer=args.optimizer, lr=args.lr, steps=args.steps or 1,
                       momentum=args.momentum, betas=args.betas, eps=args.eps,
                       schedule=args.schedule, weight_decay=weight_decay, loss=loss,
                       dtype=args.dtype, device=args.device,
                       progress=not getattr(args, "json", False))


def _train_specs(args: argparse.Namespace) -> list[Problem]:

    if args.spec is not None and args.problem is not None:
        raise _usage("give either SPEC.npz or --problem, not both")
    if args.spec is not None:
        if args.seeds != 1:
            raise _usage("--seeds needs --problem (a spec file is one seed)")
        return [_load_spec(args)]
    if args.problem is None:
        raise _usage("give a spec file (SPEC.npz) or --problem NAME")
    problem_name(args, [])
    args.weight_decay = args.weight_decay or 0.0
    args.loss = args.loss or "mse"
    return [sample_from_args(args.problem, args, seed=args.seed + i) for i in range(args.seeds)]


def _cmd_train(args: argparse.Namespace) -> int:
    import warnings

    from validation.training import train

    from .committee_cli import write_csv

    commands = _commands_of_file(args.spec)
    if commands is not None:  # a family with its own commands (hook "cli")
        return commands.train(args)
    load_models(args)
    from_file = args.spec is not None
    loss, weight_decay = args.loss, args.weight_decay  # overrides of a spec file's values
    specs = _train_specs(args)
    config = _train_config(args, loss if from_file else None,
                           weight_decay if from_file else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = train(specs, config)
    if args.csv:
        write_csv(args.csv, ["seed", "step", "t", "loss"], [
            (i if from_file else args.seed + i, round(t / args.lr), t, loss)
            for i, traj in enumerate(result.trajectories)
            for t, loss in zip(traj.t.tolist(), traj.loss.tolist(), strict=True)])
    crossings = result.crossing_times()
    seeds = []  # one run, one answer: crossings and phases from the same exact record
    for i, traj in enumerate(result.trajectories):
        seeds.append({"seed": i if from_file else args.seed + i, **traj.summary()})
    if args.json:
        single = len(seeds) == 1
        _emit_json({  # one seed: its run summary (Trajectory.summary) at the top level
            **({k: v for k, v in seeds[0].items() if k != "seed"} if single else {}),
            "runs": seeds,
            "problem": specs[0].describe(), "optimizer": config.optimizer, "lr": args.lr,
            "schedule": _schedule_text(config.schedule), "steps": config.steps,
            "device": result.device, "dtype": result.dtype,
            "crossings": seeds[0]["crossings"] if single else [s["crossings"] for s in seeds],
            "phases": seeds[0]["phases"] if single else [s["phases"] for s in seeds],
            "final_loss": seeds[0]["final_loss"] if single else [s["final_loss"]
                                                                for s in seeds],
            "steps_per_second": result.steps_per_second,
            "seed_steps_per_second": result.steps_per_second * len(seeds),
            "seconds": result.seconds, "diverged": [
                {"seed": seeds[i]["seed"], "step": step, "loss": value}
                for i, step, value in result.diverged],
        })
    else:
        print(f"{specs[0].describe()} — {config.optimizer}, η = {args.lr:g}"
              f"{_schedule_note(config.schedule)}, {config.steps} steps, {len(specs)} seed(s) "
              f"on {result.device} "
              f"({result.dtype}): {result.seconds:.2f} s, "
              f"{result.steps_per_second * len(specs):.4g} seed-steps/s")
        for s, traj, cross in zip(seeds, result.trajectories, crossings, strict=True):
            print(f"seed {s['seed']}: final loss {s['final_loss']:.4g} "
                  f"(L_ref = {traj.l_ref:.4g})")
            if s["phases"] is None:
                print("  too few samples before it diverged for a phase analysis")
            else:
                print("\n".join(_summary_lines(cross, traj.phases())))
    for i, step, value in result.diverged:
        print(f"scurve train: seed {seeds[i]['seed']} diverged at step {step} "
              f"(t = {result.t[i, step]:.4g}): loss {value:.4g}", file=sys.stderr)
    return EXIT_DIVERGED if result.diverged else 0


def _schedule_note(schedule: Schedule | None) -> str:
    return "" if schedule is None else f" ({_schedule_text(schedule)})"


# --------------------------------------------------------------------------- compare
def _cmd_compare(args: argparse.Namespace) -> int:
    from validation.comparison import TrainingDiverged, compare

    commands = _commands_of_file(args.spec)
    if commands is not None:  # a family with its own commands (hook "cli")
        return commands.compare(args)
    load_models(args)
    spec = _load_spec(args)
    config = _train_config(args, None, None)
    try:
        comparison = compare(spec, config, steps=args.steps)
    except TrainingDiverged as exc:
        print(f"scurve compare: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    if args.json:
        _emit_json({"spec": str(args.spec), "problem": spec.describe(), **comparison.to_dict()})
        return 0
    print(f"{spec.describe()} — {config.optimizer}, η = {args.lr:g}"
          f"{_schedule_note(config.schedule)}, {comparison.train_result.config.steps} steps "
          f"({config.dtype})")
    fractions = list(comparison.crossings["experiment"])
    print(f"  {'':<12}" + "".join(f"{'t_' + format(f, 'g'):>14}" for f in fractions)
          + "  verdict")
    for name, cross in comparison.crossings.items():
        times = "".join(f"{'—' if cross[f] is None else format(cross[f], '.6g'):>14}"
                        for f in fractions)
        verdict = comparison.verdicts.get(name, "")
        print(f"  {name:<12}{times}  {verdict}")
    for name, errors in comparison.relative_errors.items():
        shown = ", ".join(f"t_{f:g}: {'—' if e is None else format(e, '.2e')}"
                          for f, e in errors.items())
        print(f"  relative error of {name}: {shown}")
    for note in comparison.notes:
        print(f"  note: {note}")
    return 0


# --------------------------------------------------------------------------- grouped
def _cmd_grouped(args: argparse.Namespace) -> int:
    """Train a capability task with a loss method, S seeds: validation.tasks.grouped_runs."""
    import time

    from validation.tasks import TASKS, grouped_runs

    setting = TASKS[args.task]
    started = time.perf_counter()
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = grouped_runs(args.task, args.method, seeds, q=args.q, tau=args.tau, steps=args.steps,
                        quick=args.quick, progress=not args.json, lr=args.lr,
                        probe_every=args.probe_every)
    per_seed = ("emergence_times", "threshold_times", "widths", "spread", "plateau_to_drop",
                "worst_group_final", "mean_final", "overhead", "seconds_per_step", "ari")
    out = {"task": args.task, "method": args.method, "params": runs[0]["params"],
           "seeds": seeds, "steps": runs[0]["steps"], "lr": runs[0]["lr"],
           "optimizer": setting.optimizer, "time_unit": runs[0]["time_unit"],
           **{key: [run.get(key) for run in runs] for key in per_seed},
           "gradient_groups": [run.get("gradient_groups") for run in runs],
           "summary": [run["summary"] for run in runs],
           "seconds": time.perf_counter() - started}
    if args.json:
        _emit_json(out)
        return 0
    unit = out["time_unit"]
    label = args.method + "".join(f" {k}={v:g}" for k, v in out["params"].items())
    print(f"{args.task} — method {label}, {len(seeds)} seed(s), {out['steps']} steps of "
          f"{setting.optimizer} at η = {out['lr']:g}, {out['seconds']:.1f} s")
    for seed, times in zip(seeds, out["emergence_times"], strict=True):
        print(f"  seed {seed}: emergence time per group ({unit}, half of its own drop): "
              f"{_fmt_list(times)}")
    print(f"  spread (max/min emergence time): {_fmt_list(out['spread'])}")
    widths = [run["summary"]["width"] for run in runs]
    print(f"  width (t_10→t_90 / t_half, median over groups): {_fmt_list(widths)}")
    print(f"  worst-group / mean final loss: {_fmt_list(out['worst_group_final'])} / "
          f"{_fmt_list(out['mean_final'])}")
    print(f"  overhead (s per step / mean loss's): {_fmt_list(out['overhead'])}")
    finals = [run[-1]["ari"] if run else None for run in out["ari"]]
    if any(v is not None for v in finals):
        print(f"  adjusted Rand index at the last re-clustering: {_fmt_list(finals)}")
    return 0


def _fmt_list(values: Sequence[float | None]) -> str:
    from figures.jsonable import jsonable

    return ", ".join("—" if v is None else f"{v:.4g}" for v in jsonable(list(values)))


# --------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    import time

    from figures.reporting import report as build_report
    from figures.reporting import resolve_sections, write_readme

    try:  # a bad --only is a usage error before anything starts
        resolve_sections(args.only)
    except ValueError as exc:  # resolve_sections reads only the user's --only
        raise _usage(str(exc)) from None
    if args.quick and args.full_tasks:
        raise _usage("--quick and --full-tasks exclude each other")
    if args.quick and args.full:
        raise _usage("--quick and --full exclude each other")
    started = time.perf_counter()
    client = None
    executor = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise _usage("--scheduler needs Dask: pip install -e \".[dask]\"") from None
        client = Client(args.scheduler)
        executor = client.get_executor()
    try:
        record = build_report(args.out, quick=args.quick, only=args.only, executor=executor,
                              cache_dir=args.cache, full_tasks=args.full_tasks,
                              full=args.full)
    finally:
        if client is not None:
            client.close()
    if args.readme is not None:
        write_readme(args.out, args.readme)
        print(f"rewrote the claims table of {args.readme} from {args.out / 'data/claims.json'}")
    cache = record["cache"]
    print(f"wrote {args.out / 'index.html'}: {cache['misses']} jobs computed, "
          f"{cache['hits']} from the cache; total wall time {time.perf_counter() - started:.1f} s")
    for slug, error in record["errors"].items():
        print(f"scurve report: section {slug} failed: {error}", file=sys.stderr)
    return 1 if record["errors"] else 0


# --------------------------------------------------------------------------- main
Command = Callable[[argparse.Namespace], int]


def build_parser(sample_kind: str | None = None) -> argparse.ArgumentParser:
    """The ``scurve`` parser; ``sample_kind``: ``scurve sample KIND`` shows (and takes) only
    that model's sampler options."""
    parser = _Parser(prog="scurve", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error (a bug), show its traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    model_help = ("Python file defining MODEL = dynamics.model.Model(...) (repeatable); its "
                  "model becomes a known problem / spec kind")
    p = sub.add_parser(
        "sample", help="sample a problem spec (.npz) from a seed",
        description="Each registered model takes its own sampler's options (scurve sample KIND "
        "--help lists them; dynamics/models/). The matrix built-ins take --n/--rank/...: "
        "targets with i.i.d. Gaussian factors (or "
        "--singular-values), learned factors N(0, init²). With --dims NAME=SIZE,... any model "
        "(also --model FILE.py) is sampled: each constant i.i.d. N(0, 1/m), m the product of "
        "its large dimensions (1 if none); each learned matrix i.i.d. N(0, init²).")
    p.add_argument("problem", nargs="?", default=None,
                   help=f"{', '.join(PROBLEMS)} or a --model file's model (default: that model)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    p.add_argument("--dims", type=parse_dims, default=None, metavar="NAME=SIZE,...",
                   help="sizes of the model's dimension symbols, e.g. n=50,r=2,k=2")
    _add_problem_options(p, required=False, kind=sample_kind)
    p.add_argument("-o", "--output", type=Path, required=True, help="spec file to write")
    p.set_defaults(func=_cmd_sample)

    from dynamics.methods import METHODS

    p = sub.add_parser(
        "predict", help="integrate the theory: loss curve, crossings, phases",
        description="Each method takes only its own options: flow, full (none); modified "
        "(--lr); discrete (--lr, --momentum, --schedule); sign (--eps, --decoupled); adam (--lr, "
        "--betas, --eps, --weight-decay, --decoupled, --exact-steps, --[no-]half-step).")
    p.add_argument("spec", type=Path, help="problem spec file (.npz)")
    p.add_argument("--objective", default=None, metavar="LABEL",
                   help="group objective of a grouped model's spec, e.g. 'power(q=1)', "
                        "'tilted(tau=2)', 'dro' (default: the spec's)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    p.add_argument("--method", choices=(*METHODS, "online"), default="flow",
                   help="flow (reduced when it closes, else full, with a note), modified, "
                   "discrete (the exact GD map), full, sign (Adam's small-step limit), "
                   "adam (Adam(W) at step --lr as an ODE in θ, m, v); "
                   "online (committee specs: online SGD's N → ∞ ODE, --lr, --batch)")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="online: B fresh samples per step (default 1)")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE",
                   help="write the curve: columns t, loss, then any group losses")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="step size η (modified, discrete; with --schedule the base rate)")
    p.add_argument("--momentum", type=_nonneg_float, default=None,
                   help="heavy-ball μ (discrete; default 0)")
    p.add_argument("--schedule", type=_schedule, default=None, metavar="NAME:KEY=VALUE,...",
                   help=f"discrete: {SCHEDULE_HELP}")
    p.add_argument("--eps", type=_positive_float, default=None,
                   help="sign, adam: Adam's ε (default 1e-8)")
    p.add_argument("--decoupled", action="store_true",
                   help="sign, adam: AdamW's decoupled weight decay")
    p.add_argument("--betas", type=_betas, default=None, metavar="B1,B2",
                   help="adam: (β₁, β₂) (default 0.9,0.999)")
    p.add_argument("--weight-decay", type=_nonneg_float, default=None,
                   help="adam: λ (default: the spec's)")
    p.add_argument("--exact-steps", type=_nonneg_int, default=None, metavar="K",
                   help="adam: the first K steps are Adam's exact map, the ODE after them "
                   "(default ⌈1/(1 − β₁)⌉ = 10; 0: the ODE from t = 0)")
    p.add_argument("--half-step", action=argparse.BooleanOptionalAction, default=None,
                   help="adam: the ODE's O(η) correction, the moments' clocks η/2 ahead "
                   "(default on; --no-half-step: the first-order ODE)")
    p.add_argument("--t-max", type=_positive_float, default=None,
                   help="end-time cap in t (default automatic)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object on stdout (with state_size: scalar state variables)")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("derive", help="print the SymPy-derived equations of a problem")
    p.add_argument("problem", nargs="?", default=None,
                   help=f"{', '.join(PROBLEMS)} or a --model file's model (default: that model)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    p.add_argument("--rank", type=_positive_int, default=None,
                   help="write the reduced flow component by component, every dimension = RANK")
    p.add_argument("--loss", choices=("mse", "ce"), default=None,
                   help="factorization: only this loss (default: both)")
    p.add_argument("--depth", type=_positive_int, default=3, help="chain depth (default 3)")
    p.add_argument("--latex", action="store_true", help="LaTeX instead of plain text")
    p.set_defaults(func=_cmd_derive)

    p = sub.add_parser("train", help="train a spec (or S sampled seeds) with PyTorch, batched")
    p.add_argument("spec", type=Path, nargs="?", default=None, help="problem spec file (.npz)")
    p.add_argument("--objective", default=None, metavar="LABEL",
                   help="group objective of a grouped model's spec, e.g. 'power(q=1)', "
                        "'tilted(tau=2)', 'dro' (default: the spec's)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    p.add_argument("--problem", default=None, metavar="NAME",
                   help=f"sample --seeds problems ({', '.join(PROBLEMS)}, or a --model file's "
                   "model with --dims) instead of reading SPEC.npz")
    p.add_argument("--dims", type=parse_dims, default=None, metavar="NAME=SIZE,...",
                   help="with --problem: sizes of the model's dimension symbols")
    _add_problem_options(p, required=False)
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="number of seeds S (seeds SEED..SEED+S-1), trained at once")
    _add_training_options(p)
    p.add_argument("--steps", type=_positive_int, required=True, help="number of steps N")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="committee specs: B fresh Gaussian inputs per step (default 1)")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE",
                   help="write every seed's curve, long format: seed, step, t, loss")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    # with SPEC.npz, --weight-decay and --loss override the spec's only when given
    p.set_defaults(func=_cmd_train, weight_decay=None, loss=None, dtype="float32")

    p = sub.add_parser("compare", help="train a spec and compare with every applicable theory")
    p.add_argument("spec", type=Path, help="problem spec file (.npz)")
    p.add_argument("--objective", default=None, metavar="LABEL",
                   help="group objective of a grouped model's spec, e.g. 'power(q=1)', "
                        "'tilted(tau=2)', 'dro' (default: the spec's)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    _add_training_options(p)
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="number of steps (default: past the predicted t_0.01)")
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="committee specs: seeds trained at once (default 1)")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="committee specs: B fresh Gaussian inputs per step (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_compare, dtype="float64")

    from validation.names import GROUP_METHODS, TASKS

    p = sub.add_parser("grouped", help="train a capability task with a (grouped) loss method")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--method", choices=GROUP_METHODS, default="mean")
    p.add_argument("--seeds", type=_positive_int, default=1, help="number of seeds")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="training steps (default: the task's)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate η (default: the task's)")
    p.add_argument("--q", type=float, default=None,
                   help="power family q: L = Σ_g ℓ_g^(q+1)/(q+1) (--method power, or cluster)")
    p.add_argument("--tau", type=float, default=None,
                   help="tilted ERM τ: L = (1/τ) log Σ_g p_g e^(τ ℓ_g) (--method tilted)")
    p.add_argument("--quick", action="store_true",
                   help="the task's reduced configuration (parity: 80 bits, 8000 steps)")
    p.add_argument("--probe-every", type=_positive_int, default=None, metavar="R",
                   help="cluster per-example gradients every R steps on the side (tasks of "
                        "examples; training unchanged)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_grouped)

    p = sub.add_parser("report", help="run every experiment and write an offline HTML report")
    p.add_argument("--out", type=Path, default=Path("scurve-report"),
                   help="output folder (default scurve-report)")
    p.add_argument("--quick", action="store_true",
                   help="small problems and few seeds (about 2 minutes on 2 cores)")
    p.add_argument("--only", default=None, metavar="SECTION",
                   help="section number or name (comma-separated for several)")
    p.add_argument("--full-tasks", action="store_true",
                   help="grouped losses on the tasks' full configurations, 3 seeds every "
                        "method (not with --quick; about 45 minutes more on 2 cores)")
    p.add_argument("--full", action="store_true",
                   help="the full maps of every section (more methods and seeds; about twice "
                        "the default run's time)")
    p.add_argument("--cache", type=Path, default=None,
                   help="result cache folder (default OUT/cache)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the jobs on a Dask cluster (needs the [dask] extra)")
    p.add_argument("--readme", type=Path, default=None, metavar="PATH",
                   help="then rewrite the claims table of this README (between its markers) "
                        "from the report's data/claims.json")
    p.set_defaults(func=_cmd_report)

    from figures.sweep_cli import add_parser as add_sweep

    add_sweep(sub, model_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scurve`` console command; returns the exit status."""
    from dynamics.errors import ScurveError  # standard library only

    argv = list(sys.argv[1:] if argv is None else argv)
    kind = argv[1] if len(argv) > 1 and argv[0] == "sample" else None
    if kind is not None and _model_files(argv):  # a model file may register a sampler
        from dynamics.model import load_file

        try:
            for path in _model_files(argv):
                load_file(path)
        except ScurveError as exc:
            print(f"scurve sample: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
    sampled = {n for n, e in _registry().entries().items() if e.sample is not None}
    parser = build_parser(kind if kind in sampled else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ScurveError as exc:  # a user error (dynamics.errors); any other exception is a bug
        print(f"scurve {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"scurve {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. ``scurve train ... | head``: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # anything else is a bug in scurve, not a user error
        return _bug(args, exc)


def _model_files(argv: Sequence[str]) -> list[str]:
    """The ``--model FILE`` arguments of ``argv`` (before parsing)."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--model="):
            out.append(arg.split("=", 1)[1])
    return out


def _bug(args: argparse.Namespace, exc: Exception) -> int:
    """Report ``exc`` (not a user error) in one line as a bug; ``--debug``: re-raise it."""
    if getattr(args, "debug", False):
        raise exc
    print(f"scurve {args.command}: internal error (a bug in scurve, please report it): "
          f"{type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
          file=sys.stderr)
    return EXIT_BUG


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (newlines folded)."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
