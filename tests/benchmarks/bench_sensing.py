"""Matrix sensing (examples/sensing.py) at d = 10 and 20: derivation, predict and training cost.

Targets (issue 23): cold derivation, ``predict`` (exact GD map, every step) and ``sample`` in
seconds; the generated trainer at least as fast per step as a plain torch loop over the same
model (ŷ = einsum(X, W₀W₁), ½Σ(ŷ − y)², autograd, ``torch.optim.SGD``), reported as the ratio
of their per-step times measured in the same run. ``--blocks`` also times today's block
encoding (d column blocks C_b with selectors E_b, ŷᵀ = Σ_b E_bᵀW₁ᵀW₀ᵀC_b; its derivation grows
about quadratically in d, so it is off by default).

    python tests/benchmarks/bench_sensing.py [--dims 10,20] [--steps 2000] [--blocks]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _spec(model, d: int, n: int, seed: int = 0):
    from dynamics import problems

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d, d)) / np.sqrt(n)
    a = rng.standard_normal((d, 2))
    y = np.einsum("nij,ij->n", x, a @ a.T / np.sqrt(d)).reshape(n, 1, 1)
    return problems.ModelSpec(model.name, {"X": x, "y": y,
                                           "W00": rng.standard_normal((d, d)) * 0.1,
                                           "W10": rng.standard_normal((d, d)) * 0.1})


def _torch_loop(spec, lr: float, steps: int) -> float:
    """Seconds per step of the plain loop (float64, CPU)."""
    torch.manual_seed(0)
    v = spec.data
    x, y = torch.tensor(v["X"]), torch.tensor(v["y"]).reshape(-1)
    w0 = torch.tensor(v["W00"], requires_grad=True)
    w1 = torch.tensor(v["W10"], requires_grad=True)
    opt = torch.optim.SGD([w0, w1], lr=lr)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((torch.einsum("nij,ij->n", x, w0 @ w1) - y) ** 2).sum()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def _blocks_model(d: int):
    """Today's encoding: C_b (d × N) = column b of every X_n, E_b = e_b (d × 1)."""
    import sympy as sp

    from dynamics.model import Model

    n, h = sp.symbols("N h", integer=True, positive=True)
    w0, w1 = sp.MatrixSymbol("W0", d, h), sp.MatrixSymbol("W1", h, d)
    cs = [sp.MatrixSymbol(f"C{b}", d, n) for b in range(d)]
    es = [sp.MatrixSymbol(f"E{b}", d, 1) for b in range(d)]
    yt = sp.MatrixSymbol("Yt", 1, n)
    pred = sp.MatAdd(*(e.T * w1.T * w0.T * c for e, c in zip(es, cs, strict=True)))
    r = pred - yt
    return Model(f"blocks{d}", loss=sp.Trace(r * r.T) / 2, learned=[w0, w1],
                 constants=[*cs, *es, yt], large=[n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="10,20")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--blocks", action="store_true")
    args = parser.parse_args()
    os.environ["SCURVE_CACHE"] = tempfile.mkdtemp(prefix="bench-sensing-")  # cold derivations
    from dynamics import methods, model, problems, symbolic
    from dynamics.integrate import predict
    from validation.training import TrainConfig, train

    sensing = model.load_file(ROOT / "examples" / "sensing.py")
    start = time.perf_counter()
    symbolic.full_flow(sensing), symbolic.reduced_gd(sensing), symbolic.training_program(sensing)
    symbolic.full_flow(sensing, modified=True)
    print(f"cold derivation (flow, modified, GD map, torch): {time.perf_counter() - start:.2f} s "
          "(independent of d and N)")
    lr = 0.05
    for d in (int(x) for x in args.dims.split(",")):
        n = 60 if d == 10 else 4 * d * d
        start = time.perf_counter()
        problems.sample_model(sensing, {"d": d, "h": d, "N": n}, init=0.1)
        sample = time.perf_counter() - start
        spec = _spec(sensing, d, n)
        start = time.perf_counter()
        traj = predict(spec, methods.Discrete(lr=lr))
        gd = time.perf_counter() - start
        start = time.perf_counter()
        predict(spec, methods.Flow())
        flow = time.perf_counter() - start
        steps = args.steps
        train(spec, TrainConfig(lr=lr, steps=20, dtype="float64", device="cpu"))  # warm
        start = time.perf_counter()
        train(spec, TrainConfig(lr=lr, steps=steps, dtype="float64", device="cpu"))
        ours = (time.perf_counter() - start) / steps
        plain = _torch_loop(spec, lr, steps)
        print(f"d={d} N={n}: sample {sample:.2f} s; predict discrete {gd:.2f} s "
              f"({len(traj.t) - 1} steps, state {traj.state_size}); predict flow {flow:.2f} s; "
              f"train {1 / ours:.0f} steps/s vs plain torch loop {1 / plain:.0f} steps/s "
              f"(time ratio ours/plain {ours / plain:.2f})")
        if args.blocks:
            blocks = _blocks_model(d)
            start = time.perf_counter()
            symbolic.full_flow(blocks), symbolic.reduced_gd(blocks)
            print(f"  block encoding d={d}: cold derivation (flow, GD map) "
                  f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
