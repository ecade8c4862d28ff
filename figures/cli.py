"""The ``scurve`` command line: one subcommand per job.

Every error a user can cause (bad arguments, bad spec files, impossible settings) prints one
line on stderr and exits with status 2; a training run that diverged exits with status 1.
Times are continuous time t (a gradient step of rate η advances t by η).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from dynamics.phases import Phases
    from dynamics.problems import Problem

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class UsageError(Exception):
    """A user error: reported as one line on stderr with exit status 2."""


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


def _emit_json(obj: object) -> None:
    """Exactly one JSON object on stdout (NaN/inf are not JSON: they become null)."""
    print(json.dumps(_jsonable(obj), allow_nan=False))


def _jsonable(obj: object) -> object:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --------------------------------------------------------------------------- sample
def _add_problem_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """Options that define a problem (shared by ``sample`` and ``train --problem``)."""
    p.add_argument("--n", type=_positive_int, required=required,
                   help="dimension n (d for the attention head)")
    p.add_argument("--rank", type=_positive_int, default=1, help="target rank r (head dim h)")
    p.add_argument("--model-rank", type=_positive_int, default=None,
                   help="model rank k (head dim h'); default: the target rank")
    p.add_argument("--init", type=_nonneg_float, default=1e-3,
                   help="init std σ per coordinate (default 1e-3)")
    p.add_argument("--singular-values", type=_float_list, default=None,
                   help="comma-separated target singular values (default: random Gaussian)")
    p.add_argument("--scale", type=_positive_float, default=1.0,
                   help="typical target singular value for random targets (default 1)")
    p.add_argument("--weight-decay", type=_nonneg_float, default=0.0, help="λ (default 0)")
    p.add_argument("--loss", choices=("mse", "ce"), default="mse",
                   help="factorization loss (default mse)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def sample_from_args(
    problem: str, args: argparse.Namespace, seed: int | None = None
) -> Problem:
    """Build a spec from the problem options (raises SpecError on impossible settings)."""
    from dynamics.problems import AttentionHead, Factorization, Vector

    seed = args.seed if seed is None else seed
    if problem == "vector":
        return Vector.sample(args.n, init=args.init, scale=args.scale,
                             weight_decay=args.weight_decay, seed=seed)
    if problem == "attention":
        if args.loss != "mse":
            raise UsageError("--loss ce is only available for factorization")
        return AttentionHead.sample(args.n, args.rank, args.model_rank, init=args.init,
                                    singular_values=args.singular_values, scale=args.scale,
                                    weight_decay=args.weight_decay, seed=seed)
    return Factorization.sample(args.n, args.rank, args.model_rank, init=args.init,
                                singular_values=args.singular_values, scale=args.scale,
                                weight_decay=args.weight_decay, loss=args.loss, seed=seed)


def _cmd_sample(args: argparse.Namespace) -> int:
    from dynamics.problems import save

    spec = sample_from_args(args.problem, args)
    path = save(spec, args.output)
    print(f"wrote {path}: {spec.describe()}, L_ref = {spec.l_ref:.6g}")
    return 0


# --------------------------------------------------------------------------- predict
def _crossings_json(crossings: dict) -> dict[str, float | None]:
    return {f"{f:g}": (None if t is None else float(t)) for f, t in crossings.items()}


def _summary_lines(crossings: dict, phases: Phases) -> list[str]:
    """Readable summary of crossing times and phases (times in t)."""
    lines = []
    for f, t in crossings.items():
        shown = "never reached" if t is None else f"t = {t:.6g}"
        lines.append(f"  t_{f:g} (L <= {f:g} L_ref): {shown}")
    lines.extend(f"  {line}" for line in phases.describe().splitlines())
    return lines


def _cmd_predict(args: argparse.Namespace) -> int:
    import time

    from dynamics.integrate import predict
    from dynamics.problems import load

    spec = load(args.spec)
    started = time.perf_counter()
    traj = predict(spec, method=args.method, lr=args.lr, t_max=args.t_max,
                   momentum=args.momentum)
    seconds = time.perf_counter() - started
    crossings = traj.crossing_times()
    phases = traj.phases()
    if args.json:
        _emit_json({"spec": str(args.spec), "problem": spec.describe(), "method": args.method,
                    "lr": args.lr, "l_ref": spec.l_ref, "crossings": _crossings_json(crossings),
                    "phases": phases.to_dict(), "final_loss": float(traj.loss[-1]),
                    "t_end": float(traj.t[-1]), "seconds": seconds})
        return 0
    lr = "" if args.lr is None else f", η = {args.lr:g}"
    print(f"{spec.describe()} — method {args.method}{lr} ({seconds:.2f} s)")
    print(f"  L_ref = {spec.l_ref:.6g}; final loss {traj.loss[-1]:.3g} at t = {traj.t[-1]:.6g}")
    print("\n".join(_summary_lines(crossings, phases)))
    return 0


# --------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    import time

    from figures.report import build_report, resolve_sections

    resolve_sections(args.only)  # a bad --only is a usage error before anything starts
    started = time.perf_counter()
    client = None
    executor = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--scheduler needs Dask: pip install -e \".[dask]\"") from None
        client = Client(args.scheduler)
        executor = client.get_executor()
    try:
        record = build_report(args.out, quick=args.quick, only=args.only, executor=executor,
                              cache_dir=args.cache)
    finally:
        if client is not None:
            client.close()
    cache = record["cache"]
    print(f"wrote {args.out / 'index.html'}: {cache['misses']} jobs computed, "
          f"{cache['hits']} from the cache; total wall time {time.perf_counter() - started:.1f} s")
    for slug, error in record["errors"].items():
        print(f"scurve report: section {slug} failed: {error}", file=sys.stderr)
    return 1 if record["errors"] else 0


# --------------------------------------------------------------------------- main
Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scurve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("sample", help="sample a problem spec (.npz) from a seed")
    p.add_argument("problem", choices=("factorization", "attention", "vector"))
    _add_problem_options(p, required=True)
    p.add_argument("-o", "--output", type=Path, required=True, help="spec file to write")
    p.set_defaults(func=_cmd_sample)

    from dynamics.integrate import METHODS

    p = sub.add_parser("predict", help="integrate the theory: loss curve, crossings, phases")
    p.add_argument("spec", type=Path, help="problem spec file (.npz)")
    p.add_argument("--method", choices=METHODS, default="flow",
                   help="flow (reduced when possible), modified, discrete, full, sign")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="step size η (modified, discrete)")
    p.add_argument("--momentum", type=_nonneg_float, default=0.0,
                   help="heavy-ball μ (discrete)")
    p.add_argument("--t-max", type=_positive_float, default=None,
                   help="end-time cap in t (default automatic)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("report", help="run every experiment and write an offline HTML report")
    p.add_argument("--out", type=Path, default=Path("scurve-report"),
                   help="output folder (default scurve-report)")
    p.add_argument("--quick", action="store_true",
                   help="small problems and few seeds (about 2 minutes on 2 cores)")
    p.add_argument("--only", default=None, metavar="SECTION",
                   help="section number or name (comma-separated for several)")
    p.add_argument("--cache", type=Path, default=None,
                   help="result cache folder (default OUT/cache)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the jobs on a Dask cluster (needs the [dask] extra)")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scurve`` console command; returns the exit status."""
    from dynamics.problems import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, SpecError, ValueError) as exc:
        print(f"scurve {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"scurve {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
