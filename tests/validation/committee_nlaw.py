"""Issue 20's N-law in training, the protocol shared by the slow test
(``test_committee_training.py``) and the benchmark (``tests/benchmarks/
nsweep_committee_training.py``): the plateau length of online SGD (the batched torch trainer,
K = M = 2, erf, η = 1, init σ = 0.1) at each N, with **coupled starts** — seed s has the same
teacher-subspace projections w_k·w*_m/√N = σ z_km at every N (z ~ N(0, 1), so R(0) = σz/√N
and δ₀ ∝ N^{-1/2} exactly), the rest of each row i.i.d. N(0, σ²) and fresh per N; every start
is still a draw of the i.i.d. Gaussian init, only the seed-to-seed spread of ln δ₀ cancels
from the per-seed slopes. The escape time is the first t = η·step/N with ε ≤ ½ε* of the
symmetric plateau ε*."""

from __future__ import annotations

import numpy as np

from dynamics.models import committee as cm

SIGMA, LR, T_END = 0.1, 1.0, 170.0
NS = (250, 500, 1000, 2000, 4000)


def plateau() -> cm.Plateau:
    """The symmetric plateau (level ε*, escape rate λ) of the protocol's online ODE."""
    ref = cm.sample(2, 2, 250, "erf", init=SIGMA, seed=0)
    return cm.plateau(ref, cm.integrate(ref, 300, "online", lr=LR, points=600), lr=LR)


def starts(seeds: int) -> np.ndarray:
    """(seeds, 2, 2): each seed's teacher projections z, the same at every N."""
    return np.random.default_rng(0).normal(size=(seeds, 2, 2))


def escape_times(n: int, zs: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """Escape time (t) of each seed at dimension ``n`` (NaN: not escaped by t = T_END)."""
    from validation.committee import train

    spec = cm.sample(2, 2, n, "erf", init=SIGMA, seed=0)
    w0 = np.stack([cm.sample(2, 2, n, "erf", init=SIGMA, seed=1000 + n + 100 * s + seed,
                             z=z).W0 for s, z in enumerate(zs)])
    steps = round(T_END * n / LR)
    run = train(spec, LR, steps, seeds=len(zs), every=max(1, steps // 1000), w0=w0,
                seed=7 + n + seed)
    esc = [cm.Curve(run.t, run.loss[s], run.t[:, None], "sgd").escape_time(level)
           for s in range(len(zs))]
    return np.array([np.nan if e is None else e for e in esc])


def slope(ns: np.ndarray | tuple[int, ...], times: np.ndarray) -> tuple[float, float, int]:
    """Mean and standard error of the seeds' own fitted slopes of escape time against ln N
    (``times``: (len(ns), seeds)), over the seeds that escaped at every N; and their count."""
    kept = np.flatnonzero(~np.isnan(times).any(0))
    slopes = np.polyfit(np.log(np.asarray(ns, float)), times[:, kept], 1)[0]
    return float(slopes.mean()), float(slopes.std(ddof=1) / np.sqrt(kept.size)), int(kept.size)
