"""``scurve sample|predict|train|compare`` for committee-machine specs (kind ``committee``).

:mod:`figures.cli` hands a command here because the committee's registry entry names this
module (hook ``cli``, :mod:`dynamics.models.committee_cli`); the theory is
:mod:`dynamics.models.committee`, training :mod:`validation.committee`. Times are
t = η·step/N (README "Committee machines").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

from dynamics.errors import UsageError

__all__ = [
    "compare",
    "predict",
    "sample",
    "train",
    "write_csv",
]

ESCAPE_CAP = 1e4  # largest t the automatic end time tries (t)


def write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _emit(obj: dict) -> None:
    from .jsonable import jsonable

    print(json.dumps(jsonable(obj), allow_nan=False))


def sample(args: argparse.Namespace) -> int:
    from .cli import sample_from_args

    spec = sample_from_args("committee", args)  # the registered sampler and its options
    path = Path(args.output)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    spec.save(path)
    print(f"wrote {path}: {spec.describe()}, L_ref = {spec.l_ref:.6g}")
    return 0


def _curve(spec, method: str, lr: float, batch: int, t_max: float | None):
    """The ODE curve to ``t_max``, or (automatic) doubling the end time until ε ≤ 1e-4 L_ref."""
    from dynamics.models.committee import integrate

    if t_max is not None:
        return integrate(spec, t_max, method, lr, batch, points=2000)
    t_end = 100.0
    while True:
        curve = integrate(spec, t_end, method, lr, batch, points=2000)
        if curve.loss[-1] <= 1e-4 * spec.l_ref or t_end >= ESCAPE_CAP:
            return curve
        t_end *= 2


def _plateau_json(spec, curve, lr: float, batch: int) -> dict | None:
    from dynamics.models.committee import CommitteeError, plateau

    try:
        p = plateau(spec, curve, lr=lr, batch=batch)
    except CommitteeError:
        return None
    q, r, v = spec.model.unpack(p.y, spec.v0)
    return {"level": p.level, "lambda": p.rate, "fixed_point": {"Q": q, "R": r, "v": v},
            "escape_time": curve.escape_time(p.level)}


def predict(args: argparse.Namespace) -> int:
    from dynamics.models.committee import load
    from dynamics.phases import crossing_times

    spec = load(args.spec)
    method = args.method
    if method not in ("flow", "online"):
        raise UsageError(f"committee specs take --method flow or online, not {method!r}")
    lr = args.lr or 0.0
    if method == "flow" and args.lr is not None:
        raise UsageError("--method flow takes no --lr (it is the η → 0 limit; use online)")
    batch = args.batch or 1
    started = time.perf_counter()
    curve = _curve(spec, method, lr, batch, args.t_max)
    seconds = time.perf_counter() - started
    plateau = _plateau_json(spec, curve, lr, batch)
    crossings = crossing_times(curve.t, curve.loss, spec.l_ref)
    if args.csv:
        write_csv(args.csv, ["t", "loss"], zip(curve.t, curve.loss, strict=True))
    if args.json:
        _emit({"spec": str(args.spec), "problem": spec.describe(), "method": method, "lr": lr,
               "batch": batch, "l_ref": spec.l_ref, "noise_floor": spec.noise_floor,
               "initial_loss": float(curve.loss[0]), "final_loss": float(curve.loss[-1]),
               "t_end": float(curve.t[-1]), "state_size": spec.model.state_size,
               "crossings": {f"{f:g}": t for f, t in crossings.items()},
               "plateau": plateau, "seconds": seconds})
        return 0
    print(f"{spec.describe()} — method {method}"
          f"{f' (η = {lr:g}, B = {batch})' if method == 'online' else ''}, "
          f"{spec.model.state_size} state variables ({seconds:.2f} s)")
    print(f"  L_ref = {spec.l_ref:.6g}; ε(0) = {curve.loss[0]:.6g}; final ε {curve.loss[-1]:.3g} "
          f"at t = {curve.t[-1]:.6g} (noise adds {spec.noise_floor:.3g})")
    if plateau is not None:
        esc = plateau["escape_time"]
        print(f"  plateau at ε = {plateau['level']:.6g}, escape eigenvalue λ = "
              f"{plateau['lambda']:.6g}; ε ≤ half of it at t = "
              f"{'never' if esc is None else format(esc, '.6g')}")
    return 0


def _run(spec, args):
    import torch

    from validation.committee import train as run_training

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    started = time.perf_counter()
    run = run_training(spec, args.lr, args.steps, seeds=args.seeds, batch=args.batch or 1,
                       seed=getattr(args, "seed", 0), dtype=dtype, device=device)
    return run, time.perf_counter() - started, device


def train(args: argparse.Namespace) -> int:
    from dynamics.models.committee import load

    spec = load(args.spec)
    run, seconds, device = _run(spec, args)
    if args.csv:
        write_csv(args.csv, ["seed", "step", "t", "loss"], run.long_rows())
    rate = args.steps / seconds
    if args.json:
        _emit({"problem": spec.describe(), "lr": args.lr, "batch": args.batch or 1,
               "steps": args.steps, "seeds": args.seeds, "device": device,
               "final_loss": run.loss[:, -1], "initial_loss": float(run.loss[0, 0]),
               "t_end": float(run.t[-1]), "steps_per_second": rate,
               "seed_steps_per_second": rate * args.seeds, "seconds": seconds})
        return 0
    print(f"{spec.describe()} — online SGD η = {args.lr:g}, B = {args.batch or 1}, "
          f"{args.steps} steps (t = {run.t[-1]:.4g}), {args.seeds} seed(s) on {device}: "
          f"{seconds:.2f} s, {rate * args.seeds:.4g} seed-steps/s")
    for s in range(args.seeds):
        print(f"seed {s}: population ε {run.loss[s, -1]:.4g} "
              f"(L_ref = {spec.l_ref:.4g})")
    return 0


def compare(args: argparse.Namespace) -> int:
    """Flow, online ODE and training (seed mean) side by side: plateau level and escape time
    (first t with ε ≤ half the online ODE's plateau level)."""
    import numpy as np

    from dynamics.models.committee import integrate, load

    spec = load(args.spec)
    batch = args.batch or 1
    online0 = _curve(spec, "online", args.lr, batch, None)
    steps = args.steps or int(np.ceil(online0.t[-1] * spec.N / args.lr))
    args.steps = steps
    run, seconds, device = _run(spec, args)
    t = run.t
    online = integrate(spec, t[-1], "online", args.lr, batch, times=t)
    flow = integrate(spec, t[-1], "flow", times=t)
    plateau = _plateau_json(spec, online0, args.lr, batch)
    level = plateau["level"] if plateau else None
    from dynamics.phases import emergence_time

    def esc(loss):  # half the fall from the plateau level (None: no plateau, or never)
        value = math.nan if level is None else emergence_time(t, loss, level)
        return None if math.isnan(value) else value

    rows = {"flow": flow.loss, "online": online.loss, "training": run.mean()}
    escape = {k: esc(v) for k, v in rows.items()}
    rel = np.max(np.abs(run.mean() - online.loss) / online.loss)
    if args.json:
        _emit({"spec": str(args.spec), "problem": spec.describe(), "lr": args.lr,
               "batch": batch, "steps": steps, "seeds": args.seeds, "t": t,
               "loss": rows, "escape_time": escape, "plateau": plateau,
               "max_relative_gap_training_online": float(rel), "seconds": seconds})
        return 0
    print(f"{spec.describe()} — η = {args.lr:g}, B = {batch}, {steps} steps, {args.seeds} "
          f"seed(s) on {device}")
    if level is not None:
        print(f"  plateau (online ODE fixed point): ε = {level:.6g}, λ = {plateau['lambda']:.4g}")
    for k in rows:
        e = escape[k]
        print(f"  {k:<9} escape t = {'never' if e is None else format(e, '.5g'):>10}")
    print(f"  largest relative gap, training seed mean vs online ODE: {rel:.3g}")
    return 0


#: the committee's theories in ``scurve sweep`` and their relative-error tolerance on crossing
#: times against training (online SGD at finite N escapes a plateau early or late, issue 20)
SWEEP_THEORIES = {"flow": 0.1, "online": 0.1}


def sweep_cell(spec, theories: list[str], run: dict) -> dict:
    """One sweep cell of a committee spec (:func:`figures.sweep.run_cell`): ``{source:
    Trajectory}`` for each theory (``flow``; ``online`` at the cell's η, B = 1), the ODE to
    1.5× the training horizon t = η·steps/N when the cell trains, else as ``scurve predict``
    (end doubled until ε ≤ 1e-4 L_ref), and ``train`` (online SGD, seed 0, the cell's dtype,
    as ``scurve train --seeds 1``) when ``run["train"]``. Times t = η·step/N."""
    import torch

    from dynamics.errors import UsageError
    from dynamics.trajectory import Trajectory
    from validation.committee import train as run_training

    lr = run["lr"]
    out = {}
    horizon = lr * run["steps"] / spec.N if run["train"] else None
    for name in theories:
        if name not in SWEEP_THEORIES:
            raise UsageError(f"--theory {name}: a committee's theories are "
                             f"{', '.join(SWEEP_THEORIES)}")
        if name == "online" and not (lr and lr > 0):
            raise UsageError("--theory online needs --lr (or an axis lr)")
        curve = _curve(spec, name, lr or 0.0, 1, None if horizon is None else 1.5 * horizon)
        out[name] = Trajectory(curve.t, curve.loss, spec.l_ref, method=name,
                               state_size=spec.model.state_size)
    if run["train"]:
        if run["optimizer"] != "sgd" or run.get("momentum"):
            raise UsageError("a committee trains by plain online SGD (--train sgd, no momentum)")
        dtype = torch.float64 if run["dtype"] == "float64" else torch.float32
        res = run_training(spec, lr, run["steps"], seeds=1, seed=0, dtype=dtype)
        out["train"] = Trajectory(res.t, res.loss[0], spec.l_ref, method="sgd",
                                  steps=res.steps)
    return out
