"""The ``scurve sweep`` subcommand: its parser and runner (standard library at load time;
the work is in :mod:`figures.sweep`). Every user error is one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser"]

SCHEDULER_TIMEOUT_S = 10


def add_parser(sub: argparse._SubParsersAction, model_help: str) -> None:
    """Add ``sweep`` to the subcommands ``sub`` of ``scurve``."""
    p = sub.add_parser("sweep", help="map a spec family over a grid: theory and training per "
                       "cell, a table, heatmaps and an index.html")
    p.add_argument("problem", nargs="?", default=None,
                   help="built-in kind or model name (default: the one --model file's model)")
    p.add_argument("--model", action="append", type=Path, metavar="FILE.py", help=model_help)
    p.add_argument("--dims", default=None, metavar="NAME=SIZE,...",
                   help="model dimensions (any model, as scurve sample --dims)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2|LO..HI:COUNT[:log]",
                   help="a grid axis (repeatable): a sampler argument (init, n, rank, a --dims "
                   "dimension, ...) or a run option (lr, momentum, eps, optimizer, steps, "
                   "beta1, beta2, betas=B1/B2, schedule, objective, t_max; separate values that "
                   "contain commas with |)")
    p.add_argument("--seeds", default="1", metavar="S|A,B,...",
                   help="seeds 0..S-1, or a comma list (default 1)")
    p.add_argument("--theory", default="flow", metavar="M1,M2,...",
                   help="comma list of predict methods (default flow)")
    p.add_argument("--train", default=None, metavar="OPTIMIZER",
                   help="train with this optimizer from the same initial weights (omit: "
                   "theory only)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--out", type=Path, default=Path("sweep-out"), help="output folder")
    p.add_argument("--plot", action="append", default=[], metavar="MEAS",
                   help="heatmap of this measurement (repeatable; with --x and --y)")
    p.add_argument("--x", default=None, metavar="AXIS", help="heatmap x axis (default: 1st)")
    p.add_argument("--y", default=None, metavar="AXIS", help="heatmap y axis (default: 2nd)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on this Dask scheduler (tcp://HOST:PORT)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: min(2, CPUs))")
    p.add_argument("--cache", type=Path, default=None,
                   help="cell cache folder (default OUT/cache)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="train at most N cells as one batch (cells that differ only in init "
                   "and seed train together; default: all of them; 1: one job per cell; "
                   "the table is the same)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="training precision (default float64)")
    for name, kind in (("n", int), ("rank", int), ("init", float), ("lr", float),
                       ("momentum", float), ("weight-decay", float), ("eps", float),
                       ("depth", int), ("scale", float)):
        p.add_argument(f"--{name}", type=kind, default=None,
                       help=f"value of {name} in every cell (unless it is a grid axis)")
    p.add_argument("--loss", choices=("mse", "ce"), default=None)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="value of any other sampler or run option in every cell (repeatable; "
                   "e.g. --set students=4 for a committee)")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dynamics.errors import UsageError
    from figures.cli import load_models, parse_dims, problem_name
    from figures.sweep import (
        PLOTTABLE,
        SweepError,
        axis_types,
        parse_grid,
        parse_seeds,
        sweep,
        write_outputs,
    )
    from figures.sweeps import JobError

    loaded = load_models(args)
    if len(args.model or []) > 1:
        raise UsageError("sweep takes one --model FILE.py")
    problem = problem_name(args, loaded)
    try:
        dims = None if args.dims is None else parse_dims(args.dims)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--dims: {exc}") from None
    types = axis_types(problem, dims)
    axes = [parse_grid(g, types) for g in args.grid]
    names = [a.name for a in axes]
    plots = []
    for measurement in args.plot:
        if measurement not in PLOTTABLE:
            raise SweepError(f"--plot: unknown measurement {measurement!r} (known: "
                             f"{', '.join(PLOTTABLE)})")
        x = args.x or (names[0] if names else None)
        y = args.y or (names[1] if len(names) > 1 else None)
        for flag, axis in (("--x", x), ("--y", y)):
            if axis is None or axis not in names:
                raise SweepError(f"--plot needs {flag} naming a grid axis (axes: "
                                 f"{', '.join(names) or 'none'}), got {axis!r}")
        plots.append((measurement, x, y))
    defaults = {k: v for k, v in {
        "n": args.n, "rank": args.rank, "init": args.init, "lr": args.lr,
        "momentum": args.momentum, "weight_decay": args.weight_decay, "eps": args.eps,
        "depth": args.depth, "scale": args.scale, "loss": args.loss}.items() if v is not None}
    for text in args.set:
        axis = parse_grid(text, types)
        if len(axis.values) != 1:
            raise SweepError(f"--set {axis.name}: one value (a grid axis takes several)")
        defaults[axis.name] = axis.values[0]
    if args.steps < 1:
        raise UsageError(f"--steps: must be >= 1, got {args.steps}")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch: must be >= 1, got {args.batch}")
    client = executor = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--scheduler needs Dask: pip install -e \".[dask]\"") from None
        try:
            client = Client(args.scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler: cannot reach {args.scheduler} within "
                             f"{SCHEDULER_TIMEOUT_S} s ({type(exc).__name__})") from None
        executor = client.get_executor()
    elif args.workers is not None:
        from figures.sweeps import default_executor

        executor = default_executor(args.workers)
    curves: dict = {}
    try:
        rows = sweep(problem, axes, dims=dims,
                     model_file=args.model[0] if args.model else None,
                     seeds=parse_seeds(args.seeds),
                     theories=[t.strip() for t in args.theory.split(",") if t.strip()],
                     train=args.train, steps=args.steps, defaults=defaults, dtype=args.dtype,
                     executor=executor, cache_dir=args.cache or args.out / "cache",
                     progress=True, curves=curves, batch=args.batch)
    except JobError as exc:
        print(f"scurve sweep: a cell failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown()
    written = write_outputs(rows, args.out, names, curves, plots, title=f"sweep {problem}")
    print(f"wrote {len(rows)} rows to {written[0]}; {args.out / 'index.html'}", file=sys.stdout)
    return 0
