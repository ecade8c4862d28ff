"""Section "Committee machines: a plateau from symmetry" (issue 20).

A soft committee machine (K = M, g(x) = erf(x/√2), T = I, a = v = 1) learns by online SGD
from fresh Gaussian inputs (:mod:`validation.committee`), beside the N → ∞ online ODE started
from each seed's own initial order parameters (:mod:`dynamics.models.committee`). Times are
t = η·step/N. Three measurements:

* curves: training (each seed) against its ODE, and the plateau level against the ε of the
  symmetric fixed point found by Newton;
* the escape law: ODE starts at the fixed point plus δ·(unstable eigenvector), δ = 10⁻²…10⁻⁶;
  the plateau length (first t with ε ≤ half the plateau level) against ln(1/δ), its fitted
  slope beside 1/λ;
* a symmetric start: student rows orthogonal to the teachers (R = 0): the ODE keeps R_k1 = R_k2
  and never leaves the plateau; training from the same weights at finite N does.

* the plateau length against η (online ODE from one start) beside the law's 1/λ(η) scaling.

* K = M = ``wide`` (4): training against the ODE of each seed's own start, at N = ``n``.

* ReLU, K = M = 2 (η = 1) and K = M = 4 (η = 0.5; η = 1 diverges there, ODE and training):
  training against the ODE of each seed's own start (ReLU's I4 semi-analytic,
  :func:`dynamics.gaussian._relu_i4`).

* the plateau length against N = 250…4000 and on to 1 024 000 (log axis) from the online ODE
  started from exact draws of a random start's order parameters, coupled across N (the same
  teacher projections z per seed), its fitted slope against ln N beside 1/(2λ) of the plateau
  and of the point where the students coincide (the path passes it first; at η > 0 it is
  unstable inside the symmetric subspace), and against η.

Default run: fewer seeds than ``--full`` (erf 3 seeds, ReLU 2 and 1, N-sweep 3 seeds; ``--full``
4, 4 and 2, 24); the symmetric start is one more row of the erf run's batched training. What is
not here: the plateau length against N in *training* (a slow test,
tests/validation/test_committee_training.py, and tests/benchmarks/nsweep_committee_training.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import plots
from ..blocks import Block, Context, Section, SectionResult, TextBlock, fmt

__all__ = ["DEFAULT", "FULL", "QUICK", "SECTION", "Settings", "job_committee_eta",
           "job_committee_law", "job_committee_nsweep", "job_committee_train"]


@dataclass(frozen=True)
class Settings:
    """K = M = ``k``, dimension ``n``, rate ``lr``, ``seeds`` seeds, student init std ``init``,
    training to ``t_end`` (t); K = M = ``wide`` trained to ``wide_t_end`` (0: not shown)."""

    k: int
    n: int
    lr: float
    seeds: int
    init: float
    t_end: float
    wide: int = 0
    wide_t_end: float = 300.0
    relu: tuple[tuple[int, float, int, float], ...] = ()
    """ReLU committees shown: (K = M, t_end, seeds, η) each, at N = ``n`` (η = 1 diverges for
    K = M = 4 ReLU, in the ODE as in training: the η² term of an unbounded g)."""
    nsweep_seeds: int = 0
    """Seeds per N of the ODE-only plateau-length-against-N panel (0: not shown)."""


FULL = Settings(2, 500, 1.0, 4, 0.1, 160.0, 4, relu=((2, 100.0, 4, 1.0), (4, 150.0, 2, 0.5)),
                nsweep_seeds=24)
DEFAULT = Settings(2, 500, 1.0, 3, 0.1, 160.0, 4, relu=((2, 100.0, 2, 1.0), (4, 110.0, 1, 0.5)),
                   nsweep_seeds=3)  # ReLU K = M = 4 to t = 110: its second ODE plateau shown
QUICK = Settings(2, 250, 1.0, 2, 0.1, 160.0)
NS = (250, 500, 1000, 2000, 4000)  # N of the plateau-length-against-N panel (acceptance)
NS_WIDE = (16_000, 64_000, 256_000, 1_024_000)  # the same panel, ODE only, further out
DELTAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
LRS = (0.05, 0.25, 0.5, 1.0, 1.5)  # η of the plateau-length-against-η panel (online ODE)


def _specs(c: dict[str, Any]):
    from dynamics.models.committee import CommitteeSpec, sample

    act = c.get("activation", "erf")
    base = sample(c["k"], c["k"], c["n"], act, c["init"], 0)
    w0 = np.stack([sample(c["k"], c["k"], c["n"], act, c["init"], s).W0
                   for s in range(c["seeds"])])
    p = base.Wt.T @ base.Wt / c["n"]  # projector onto the teacher span (T = I)
    if c.get("symmetric"):  # rows orthogonal to the teachers: R = 0 exactly
        w0 = w0 - w0 @ p
    if c.get("with_symmetric"):  # one more row: seed 0's start made orthogonal to the teachers
        w0 = np.concatenate([w0, (w0[0] - w0[0] @ p)[None]])
    return base, [CommitteeSpec(act, base.Wt, base.a, w, base.v0) for w in w0], w0


def job_committee_train(config: dict[str, Any]) -> dict[str, Any]:
    """Online SGD of ``seeds`` seeds (each its own W0) and the online ODE of each from its own
    initial order parameters: ``{"k", "n", "lr", "seeds", "init", "t_end", "symmetric"}``
    (optional ``activation``, default erf, ``rtol`` of the ODE, default 1e-9, and
    ``with_symmetric``: one more row, seed 0's start orthogonal to the teachers, in the same
    batched run) -> ``t`` (T,), ``train`` (S, T), ``ode`` (S, T) population ε, ``level`` and
    ``rate`` of the symmetric plateau (:func:`dynamics.models.committee.plateau`)."""
    import torch

    from dynamics.models.committee import CommitteeError, integrate, plateau
    from validation.committee import train

    torch.set_num_threads(1)
    base, specs, w0 = _specs(config)
    steps = round(config["t_end"] * config["n"] / config["lr"])
    run = train(base, config["lr"], steps, seeds=len(w0), every=max(1, steps // 300),
                w0=w0, seed=1)
    rtol = config.get("rtol", 1e-9)
    odes = [integrate(s, run.t[-1], "online", config["lr"], times=run.t, rtol=rtol)
            for s in specs]
    try:
        p = plateau(specs[0], odes[0], lr=config["lr"])
        level, rate = p.level, p.rate
    except CommitteeError:
        level = rate = math.nan
    return {"t": run.t, "train": run.loss, "ode": np.stack([o.loss for o in odes]),
            "level": level, "rate": rate}


def job_committee_law(config: dict[str, Any]) -> dict[str, Any]:
    """ODE plateau lengths from the fixed point plus δ·(unstable direction) for each δ of
    ``deltas``: ``{"k", "n", "lr", "init", "deltas"}`` -> ``t_esc`` (D,), ``rate``, ``level``."""
    from dynamics.models.committee import integrate, plateau

    base, _, _ = _specs({**config, "seeds": 1})
    lr = config["lr"]
    p = plateau(base, lr=lr)
    u = p.direction / np.linalg.norm(p.direction)
    t_esc = [integrate(base, (math.log(1 / d) + 10) / p.rate, "online", lr, y0=p.y + d * u,
                       points=2000, rtol=1e-10).escape_time(p.level)
             for d in config["deltas"]]
    return {"t_esc": np.array([np.nan if t is None else t for t in t_esc]), "rate": p.rate,
            "level": p.level}


def job_committee_eta(config: dict[str, Any]) -> dict[str, Any]:
    """The online ODE from one spec for each η of ``lrs``: ``{"k", "n", "init", "lrs"}`` ->
    ``t_esc`` (ε ≤ ½ε*(η)), ``rate`` λ(η) and ``level`` ε*(η) of its plateau, and ``rate_d``
    λ(η) of the point where the students coincide, per η."""
    from dynamics.models.committee import integrate, plateau

    base, _, _ = _specs({**config, "seeds": 1})
    out: dict[str, list[float]] = {"t_esc": [], "rate": [], "level": [], "rate_d": []}
    for lr in config["lrs"]:
        curve = integrate(base, 300, "online", lr, points=900)
        p = plateau(base, curve, lr=lr)
        esc = curve.escape_time(p.level)
        out["t_esc"].append(math.nan if esc is None else esc)
        out["rate"].append(p.rate)
        out["level"].append(p.level)
        out["rate_d"].append(_coinciding(base, p, lr)[0])
    return {k: np.array(v) for k, v in out.items()}


def _coinciding(spec, p, lr: float) -> tuple[float, float]:
    """(λ, ε) of the symmetric fixed point where the students coincide (every Q_kl equal),
    by Newton from the plateau ``p`` with its Q entries averaged; NaN if Newton fails."""
    from dynamics.models.committee import CommitteeError, plateau

    guess = p.y.copy()
    nq = spec.K * (spec.K + 1) // 2
    guess[:nq] = np.mean(p.y[:nq])
    try:
        d = plateau(spec, guess, lr=lr)
    except CommitteeError:
        return math.nan, math.nan
    q = d.y[:nq]
    return (d.rate, d.level) if np.ptp(q) < 1e-8 * np.max(np.abs(q)) else (math.nan, math.nan)


def job_committee_nsweep(config: dict[str, Any]) -> dict[str, Any]:
    """Plateau length against N from the online ODE alone (no finite-N noise after t = 0):
    ``{"k", "lr", "init", "ns", "seeds", "t_end"}`` -> ``t_esc`` (len(ns), seeds), the first
    t with ε ≤ ½ε* of the ODE started from an exact draw of a random start's (Q, R) at each N
    (:func:`dynamics.models.committee.sample_state`), **coupled across N**: seed s has the same
    teacher projections z at every N, so R(0) = σz/√N and δ₀ ∝ N^{-1/2} exactly per seed;
    ``rate`` λ, ``level`` ε* of the symmetric plateau, and ``rate_d``, ``level_d`` of the
    fixed point where the students coincide (Q_kl = Q_kk), which the path passes first."""
    from dynamics.models.committee import integrate, plateau, sample, sample_state

    k, lr, init = config["k"], config["lr"], config["init"]
    ref = sample(k, k, 2 * k + 2, "erf", init, 0)
    p = plateau(ref, lr=lr)
    rate_d, level_d = _coinciding(ref, p, lr)
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(config["seeds"], k, k))
    out = np.full((len(config["ns"]), config["seeds"]), np.nan)
    model = ref.model
    for i, n in enumerate(config["ns"]):
        for s in range(config["seeds"]):
            q, r = sample_state(k, k, n, init, rng, z=zs[s])
            esc = integrate(ref, config["t_end"], "online", lr, y0=model.pack(q, r, ref.v0),
                            points=1000).escape_time(p.level)
            out[i, s] = np.nan if esc is None else esc
    return {"t_esc": out, "rate": p.rate, "level": p.level, "rate_d": rate_d,
            "level_d": level_d}


def _slope(x: np.ndarray, y: np.ndarray, paired: bool = False) -> tuple[float, float]:
    """Least-squares slope of the seed means of ``y`` (rows: x values, columns: seeds) against
    ``x``, and its standard error: from the seeds' spread at each x (the means' s.e.
    propagated through the fit), or, ``paired`` (a seed's starts coupled across x), from the
    spread of the seeds' own fitted slopes (seeds with a NaN left out)."""
    if paired:
        ok = np.all(np.isfinite(y), 0)
        slopes = np.polyfit(x, y[:, ok], 1)[0]
        se = float(slopes.std(ddof=1) / np.sqrt(ok.sum())) if ok.sum() > 1 else math.nan
        return float(slopes.mean()), se
    means = np.nanmean(y, 1)
    se = np.nanstd(y, 1, ddof=1) / np.sqrt(np.sum(np.isfinite(y), 1))
    dx = x - x.mean()
    slope = float(np.sum(dx * (means - means.mean())) / np.sum(dx**2))
    return slope, float(np.sqrt(np.sum((dx / np.sum(dx**2)) ** 2 * se**2)))


def _train_panel(ctx: Context, res: dict[str, Any], name: str, title: str,
                 seeds: int) -> tuple[Block, str]:
    """Training (solid) against the ODE from each seed's start (dashed), the fixed point's
    ε* dotted; returns the figure and a sentence with the escape times (ε ≤ ½ε*)."""
    import matplotlib.pyplot as plt

    with plots.drawing():  # this thread alone lays out text (plots.drawing)
        tw, level = res["t"], float(res["level"])
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for i in range(seeds):
            ax.semilogy(tw, np.maximum(res["train"][i], 1e-12), color=f"C{i}", lw=0.8, alpha=0.8,
                        label="training" if i == 0 else None)
            ax.semilogy(tw, np.maximum(res["ode"][i], 1e-12), color=f"C{i}", lw=1.2, ls="--",
                        label="online ODE (its own start)" if i == 0 else None)
        if math.isfinite(level):
            ax.axhline(level, color="k", lw=0.8, ls=":", label=f"fixed point ε* = {level:.4g}")
        ax.set_xlabel("t = η·step/N")
        ax.set_ylabel("population ε")
        ax.set_ylim(bottom=max(1e-6, 0.3 * float(np.min(res["train"]))))
        ax.legend(fontsize=8)
        if not math.isfinite(level):  # Newton found no saddle on the ODE's path
            level = float(np.max(res["ode"][0][tw > 0.1 * tw[-1]]))  # its highest later ε
        esc_t = [_half(tw, res["train"][i], level) for i in range(seeds)]
        esc_o = [_half(tw, res["ode"][i], level) for i in range(seeds)]
        block = ctx.figure(fig, name, title, [{"t": tt, **{f"train_{i}": res["train"][i][j]
                                                            for i in range(seeds)},
                                               **{f"ode_{i}": res["ode"][i][j]
                                                  for i in range(seeds)}}
                                              for j, tt in enumerate(tw)])
        pairs = [(a, b) for a, b in zip(esc_t, esc_o, strict=True)
                 if a is not None and b is not None]
        sooner = sum(a < b for a, b in pairs)
        spread = max((abs(a / b - 1) for a, b in pairs), default=math.nan)
        text = (f"the plateau sits at ε* = {level:.4g} (λ = {float(res['rate']):.3g}); escapes "
                f"(ε ≤ ½ε*) in training {', '.join(map(fmt, esc_t))} against the ODE's "
                f"{', '.join(map(fmt, esc_o))} from the same starts (training first in {sooner} "
                f"of {len(pairs)}, apart by up to {fmt(100 * spread)} %); at t = {tw[-1]:.4g} "
                f"training's seed mean is at ε = {fmt(float(res['train'][:seeds, -1].mean()))}, "
                f"the ODE's at {fmt(float(res['ode'][:seeds, -1].mean()))}")
        return block, text


def _half(t: np.ndarray, loss: np.ndarray, level: float) -> float | None:
    from dynamics.phases import emergence_time

    value = emergence_time(t, loss, level)  # half the fall from the plateau level
    return None if math.isnan(value) else value


def build(ctx: Context) -> SectionResult:
    import matplotlib.pyplot as plt

    s: Settings = ctx.settings
    cfg = {"k": s.k, "n": s.n, "lr": s.lr, "seeds": s.seeds, "init": s.init, "t_end": s.t_end}
    both, law = ctx.run([
        (job_committee_train, {**cfg, "symmetric": False, "with_symmetric": True}),
        (job_committee_law, {**cfg, "deltas": list(DELTAS)})])
    # the random starts, and (last row, same batched run) seed 0's start made symmetric
    run = {**both, "train": both["train"][:-1], "ode": both["ode"][:-1]}
    sym = {"t": both["t"], "train": both["train"][-1:], "ode": both["ode"][-1:]}
    (eta,) = ctx.run([(job_committee_eta, {"k": s.k, "n": s.n, "init": s.init,
                                          "lrs": list(LRS)})])
    level, rate = float(law["level"]), float(law["rate"])
    settings = (f"K = M = {s.k}, erf, N = {s.n}, η = {s.lr:g}, init σ = {s.init:g}, "
                f"{s.seeds} seeds, t = η·step/N")
    with plots.drawing():  # this thread alone lays out text (plots.drawing)
        # 1. curves
        t = run["t"]
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for i in range(s.seeds):
            ax.semilogy(t, run["train"][i], color="C0", lw=0.8, alpha=0.7,
                        label="training (each seed)" if i == 0 else None)
            ax.semilogy(t, run["ode"][i], color="C1", lw=1.2, ls="--",
                        label="online ODE (its own start)" if i == 0 else None)
        ax.axhline(level, color="k", lw=0.8, ls=":", label=f"fixed point ε* = {level:.4g}")
        ax.set_xlabel("t = η·step/N")
        ax.set_ylabel("population ε")
        ax.legend(fontsize=8)
        esc_ode = [_half(t, run["ode"][i], level) for i in range(s.seeds)]
        first = min((e for e in esc_ode if e is not None), default=t[-1])
        on = (t > 10) & (t < 0.5 * first)  # on the plateau: after the first drop, before escapes
        train_level = float(run["train"][:, on].mean()) if on.any() else math.nan
        ode_level = float(run["ode"][:, on].mean()) if on.any() else math.nan
        esc_train = [_half(t, run["train"][i], level) for i in range(s.seeds)]
        rows = [{"seed": i, "escape t training": esc_train[i], "escape t ODE": esc_ode[i]}
                for i in range(s.seeds)]
        curve_rows = [{"t": tt, **{f"train_{i}": run["train"][i][j] for i in range(s.seeds)},
                       **{f"ode_{i}": run["ode"][i][j] for i in range(s.seeds)}}
                      for j, tt in enumerate(t)]
        blocks: list[Block] = [
            ctx.figure(fig, "curves", f"Online SGD against the online ODE; {settings}",
                       curve_rows),
            ctx.table("escape", "Escape times (ε ≤ ½ ε*), per seed", rows)]
        # 2. escape law
        x = np.log(1 / np.array(DELTAS))
        ok = np.isfinite(law["t_esc"])
        slope = float(np.polyfit(x[ok], law["t_esc"][ok], 1)[0]) if ok.sum() >= 2 else math.nan
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.plot(x, law["t_esc"], "o", label="online ODE")
        ax.plot(x, law["t_esc"][ok][0] + (x - x[ok][0]) / rate, "-",
                label=f"slope 1/λ = {1 / rate:.4g}")
        ax.set_xlabel("ln(1/δ₀)")
        ax.set_ylabel("plateau length t_esc")
        ax.legend(fontsize=8)
        blocks.append(ctx.figure(fig, "law", f"Escape law t_esc ≈ t₀ + (1/λ) ln(1/δ₀); fitted "
                                 f"slope {slope:.4g} against 1/λ = {1 / rate:.4g}; {settings}",
                                 [{"delta": d, "t_esc": te} for d, te in
                                  zip(DELTAS, law["t_esc"], strict=True)]))
        # 2b. plateau length against η: the law at fixed δ₀ predicts t_esc ∝ 1/λ(η) (t₀ aside),
        # with λ of the plateau, or of the coinciding-students point the path passes first
        ref = 0
        predicted = eta["t_esc"][ref] * eta["rate"][ref] / eta["rate"]
        predicted_d = eta["t_esc"][ref] * eta["rate_d"][ref] / eta["rate_d"]
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.plot(LRS, eta["t_esc"], "o-", label="online ODE: t_esc(η)")
        ax.plot(LRS, predicted, "--", label=f"t_esc(η={LRS[ref]:g})·λ(η={LRS[ref]:g})/λ(η), "
                "λ of the plateau")
        ax.plot(LRS, predicted_d, ":", label="the same, λ where the students coincide")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("plateau length t_esc (t = η·step/N)")
        ax.legend(fontsize=7)
        eta_rows = [{"lr": lr, "t_esc": te, "lambda": la, "level": lv, "law": pr,
                     "lambda_coinciding": ld, "law_coinciding": pd}
                    for lr, te, la, lv, pr, ld, pd in zip(LRS, eta["t_esc"], eta["rate"],
                                                          eta["level"], predicted, eta["rate_d"],
                                                          predicted_d, strict=True)]
        blocks.append(ctx.figure(fig, "eta", "Plateau length against η (online ODE, same start); "
                                 "the law at fixed δ₀ scales it by 1/λ(η)", eta_rows))
        blocks.append(ctx.table("eta-table", "Plateau against η (online ODE)", eta_rows))
        eta_gap = float(np.max(np.abs(predicted / eta["t_esc"] - 1)))
        eta_gap_d = float(np.nanmax(np.abs(predicted_d / eta["t_esc"] - 1)))
    # 2c. a wider committee: K = M = wide
    wide_text = ""
    if s.wide:
        (wide,) = ctx.run([(job_committee_train, {**cfg, "k": s.wide, "t_end": s.wide_t_end,
                                                  "symmetric": False})])
        block, sentence = _train_panel(
            ctx, wide, "wide", f"K = M = {s.wide}, erf: online SGD (solid) against the online "
            f"ODE from each seed's start (dashed, same colour); N = {s.n}, η = {s.lr:g}, "
            f"σ = {s.init:g}", s.seeds)
        blocks.append(block)
        wide_text = (f" With K = M = {s.wide} (erf) {sentence} — at N = {s.n} the escape from "
                     "this flatter saddle is set as much by the fluctuations of online SGD as "
                     "by the initial asymmetry the ODE follows.")
    # 2d. ReLU committees (I4 semi-analytic, dynamics.gaussian._relu_i4)
    relu_runs = ctx.run([(job_committee_train, {**cfg, "k": k, "t_end": te, "seeds": ns,
                                                "lr": lr, "symmetric": False,
                                                "activation": "relu", "rtol": 1e-7})
                         for k, te, ns, lr in s.relu])
    relu_text = ""
    for (k, _, ns, lr), res in zip(s.relu, relu_runs, strict=True):
        block, sentence = _train_panel(
            ctx, res, f"relu-k{k}", f"K = M = {k}, ReLU: online SGD (solid) against the online "
            f"ODE from each seed's start (dashed); N = {s.n}, η = {lr:g}, σ = {s.init:g}, "
            f"{ns} seed(s)", ns)
        blocks.append(block)
        relu_text += f" ReLU, K = M = {k}, η = {lr:g}: {sentence}."
    # 2e. plateau length against N (online ODE from exact coupled draws of random starts)
    nsweep_text = ""
    if s.nsweep_seeds:
        ns_all = NS + NS_WIDE
        (nsw,) = ctx.run([(job_committee_nsweep, {"k": s.k, "lr": s.lr, "init": s.init,
                                                  "ns": list(ns_all), "seeds": s.nsweep_seeds,
                                                  "t_end": 250.0})])
        with plots.drawing():  # this thread alone lays out text (plots.drawing)
            te = nsw["t_esc"]
            x = np.log(np.array(ns_all, float))
            acc = slice(0, len(NS))  # the acceptance range N = 250…4000
            fit, fit_se = _slope(x[acc], te[acc], paired=True)
            law_n = 1 / (2 * float(nsw["rate"]))
            law_d = 1 / (2 * float(nsw["rate_d"]))
            means = np.nanmean(te, 1)
            local = np.diff(means) / np.diff(x)  # slope between neighbouring N
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.6))
            for j in range(te.shape[1]):
                ax1.plot(ns_all, te[:, j], ".", color="0.7",
                         label="each seed (same z at every N)" if j == 0 else None)
            ax1.plot(ns_all, means, "o", color="C0", ms=4, label="seed mean")
            ax1.plot(ns_all, means[0] + law_n * (x - x[0]), "--", color="C3",
                     label=f"1/(2λ) = {law_n:.3g}, plateau (λ = {float(nsw['rate']):.3g})")
            ax1.plot(ns_all, means[0] + law_d * (x - x[0]), ":", color="C2",
                     label=f"1/(2λ) = {law_d:.3g}, students coincide")
            ax1.set_xscale("log")
            ax1.set_xlabel("N (ODE from an exact draw of a random start's Q, R)")
            ax1.set_ylabel("plateau length t_esc (ε ≤ ½ε*)")
            ax1.legend(fontsize=7)
            ax2.plot(LRS, eta["t_esc"], "o-", label="online ODE: t_esc(η)")
            ax2.plot(LRS, predicted, "--", label="∝ 1/λ(η), plateau")
            ax2.plot(LRS, predicted_d, ":", label="∝ 1/λ(η), students coincide")
            ax2.set_xlabel("learning rate η")
            ax2.set_ylabel("plateau length t_esc")
            ax2.legend(fontsize=7)
            fig.tight_layout()
            blocks.append(ctx.figure(
                fig, "nsweep", f"Plateau length against N (online ODE from {s.nsweep_seeds} "
                f"random starts drawn exactly at each N, coupled across N; K = M = {s.k}, erf, "
                f"η = {s.lr:g}, σ = {s.init:g}) beside the slopes 1/(2λ) of the two symmetric "
                "fixed "
                "points, and against η",
                [{"n": n, **{f"t_esc_{j}": v for j, v in enumerate(row)}}
                 for n, row in zip(ns_all, te, strict=True)]))
            nsweep_text = (
                " Plateau length against N (online ODE from random starts drawn exactly at each "
                "N, "
                f"the same teacher projections z at every N, {s.nsweep_seeds} seeds): over "
                f"N = {NS[0]}…{NS[-1]} the slope against ln N is {fit:.3g} ± {fit_se:.2g}, "
                f"{fmt(100 * (fit / law_n - 1))} % from the law's 1/(2λ) = {law_n:.3g} of the "
                f"symmetric plateau (ε* = {float(nsw['level']):.5g}) — "
                f"{'within' if abs(fit / law_n - 1) <= 0.2 else 'not within'} the issue's 20 %. "
                f"It is not 1/(2λ) yet because at η > 0 the path first passes a second symmetric "
                f"fixed point, where the two students coincide (ε = {float(nsw['level_d']):.5g}, "
                f"λ = {float(nsw['rate_d']):.4g}, 1/(2λ) = {law_d:.3g}), which is unstable inside "
                "the symmetric subspace too; the path drifts from it to the plateau only at the "
                "plateau's slowest stable rate, so at these N the asymmetry grows at a rate "
                "between the two. The local slope rises slowly towards 1/(2λ): "
                + ", ".join(f"{fmt(v)} ({ns_all[i]}→{ns_all[i + 1]})"
                            for i, v in enumerate(local) if i >= len(NS) - 2)
                + ". (Earlier rounds compared with the coinciding point's λ, which Newton found "
                "from a trajectory's slowest point.) Training over N = 250…4000 is a slow test: "
                "see the README.")
    with plots.drawing():  # this thread alone lays out text (plots.drawing)
        # 3. symmetric start
        ts = sym["t"]
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.semilogy(ts, sym["train"].mean(0), label=f"training, N = {s.n} (one seed)")
        ax.semilogy(ts, sym["ode"][0], "--", label="online ODE (symmetric R, never leaves)")
        ax.set_xlabel("t = η·step/N")
        ax.set_ylabel("population ε")
        ax.legend(fontsize=8)
        sym_train = _half(ts, sym["train"].mean(0), level)
        sym_ode = _half(ts, sym["ode"][0], level)
        blocks.append(ctx.figure(fig, "symmetric", "Student rows orthogonal to the teachers "
                                 "(R = 0): a symmetric start", [{"t": a, "train": b, "ode": c}
                                                                 for a, b, c in zip(
                                     ts, sym["train"].mean(0), sym["ode"][0], strict=True)]))
        text = (f"Plateau: Newton finds the symmetric fixed point at ε* = {level:.5g} (escape "
                f"eigenvalue λ = {rate:.4g}); on the plateau the ODE sits at {fmt(ode_level)} and "
                f"training's seed mean at {fmt(train_level)} "
                f"({fmt(100 * (train_level / level - 1))} "
                f"% from ε*). Escape times (ε ≤ ½ε*): training {', '.join(map(fmt, esc_train))}, "
                f"ODE {', '.join(map(fmt, esc_ode))}. The ODE's plateau length grows by "
                f"{fmt(slope)} per unit of ln(1/δ₀) against the law's 1/λ = {1 / rate:.4g}. From a "
                f"symmetric start (R = 0) the ODE reaches ½ε* at "
                f"{'never' if sym_ode is None else fmt(sym_ode)} (t ≤ {ts[-1]:.4g}), training at "
                f"{'never' if sym_train is None else fmt(sym_train)}: only finite-N fluctuations "
                f"break the symmetry. Against η (same start): plateau lengths "
                f"{', '.join(map(fmt, eta['t_esc']))} for η = {', '.join(map(fmt, LRS))}; "
                f"scaling by 1/λ(η) of the plateau predicts them within {fmt(100 * eta_gap)} %, by "
                f"1/λ(η) of the point where the students coincide within {fmt(100 * eta_gap_d)} % "
                "(at N = 500 the path escapes while it is still drifting from that point to the "
                "plateau; see the N panel). "
                "For the seed's question 1 (is every S-curve a product of "
                "components?): no — this plateau is a saddle of a permutation-symmetric flow, its "
                "length set by the initial asymmetry, (1/λ) ln(1/δ₀), not by a product of factors."
                + wide_text + relu_text + nsweep_text)
        blocks.insert(0, TextBlock(text))
        data = {"level": level, "rate": rate, "slope": slope, "train_level": train_level,
                "ode_level": ode_level, "escape_train": esc_train, "escape_ode": esc_ode,
                "symmetric_train": sym_train, "symmetric_ode": sym_ode, "eta": eta_rows}
        return SectionResult(blocks, [], data)


SECTION = Section(15, "committee", "Committee machines: a plateau from symmetry", build, FULL,
                  QUICK, default=DEFAULT)
