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

What is not here yet (README "Committee machines"): ReLU (its I4 is by quadrature and slow),
the plateau length against N in training (a slow test measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..blocks import Block, Context, Section, SectionResult, TextBlock, fmt

__all__ = ["FULL", "QUICK", "SECTION", "Settings", "job_committee_eta", "job_committee_law",
           "job_committee_train"]


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


FULL = Settings(2, 500, 1.0, 4, 0.1, 160.0, 4)
QUICK = Settings(2, 250, 1.0, 2, 0.1, 160.0)
DELTAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
LRS = (0.05, 0.25, 0.5, 1.0, 1.5)  # η of the plateau-length-against-η panel (online ODE)


def _specs(c: dict[str, Any]):
    from dynamics.models.committee import CommitteeSpec, sample

    base = sample(c["k"], c["k"], c["n"], "erf", c["init"], 0)
    w0 = np.stack([sample(c["k"], c["k"], c["n"], "erf", c["init"], s).W0
                   for s in range(c["seeds"])])
    if c.get("symmetric"):  # rows orthogonal to the teachers: R = 0 exactly
        p = base.Wt.T @ base.Wt / c["n"]  # projector onto the teacher span (T = I)
        w0 = w0 - w0 @ p
    return base, [CommitteeSpec("erf", base.Wt, base.a, w, base.v0) for w in w0], w0


def job_committee_train(config: dict[str, Any]) -> dict[str, Any]:
    """Online SGD of ``seeds`` seeds (each its own W0) and the online ODE of each from its own
    initial order parameters: ``{"k", "n", "lr", "seeds", "init", "t_end", "symmetric"}`` ->
    ``t`` (T,), ``train`` (S, T), ``ode`` (S, T) population ε, ``level`` and ``rate`` of the
    ODE's plateau (NaN for the symmetric start, whose ODE never leaves it)."""
    import torch

    from dynamics.models.committee import CommitteeError, integrate, plateau
    from validation.committee import train

    torch.set_num_threads(1)
    base, specs, w0 = _specs(config)
    steps = round(config["t_end"] * config["n"] / config["lr"])
    run = train(base, config["lr"], steps, seeds=config["seeds"], every=max(1, steps // 300),
                w0=w0, seed=1)
    odes = [integrate(s, run.t[-1], "online", config["lr"], times=run.t) for s in specs]
    try:
        p = plateau(specs[0], integrate(specs[0], 4 * config["t_end"], "online", config["lr"],
                                        points=2000), lr=config["lr"])
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
    p = plateau(base, integrate(base, 800, "online", lr, points=2000), lr=lr)
    u = p.direction / np.linalg.norm(p.direction)
    t_esc = [integrate(base, (math.log(1 / d) + 10) / p.rate, "online", lr, y0=p.y + d * u,
                       points=2000, rtol=1e-10).escape_time(p.level)
             for d in config["deltas"]]
    return {"t_esc": np.array([np.nan if t is None else t for t in t_esc]), "rate": p.rate,
            "level": p.level}


def job_committee_eta(config: dict[str, Any]) -> dict[str, Any]:
    """The online ODE from one spec for each η of ``lrs``: ``{"k", "n", "init", "lrs"}`` ->
    ``t_esc`` (ε ≤ ½ε*(η)), ``rate`` λ(η) and ``level`` ε*(η) of its fixed point, per η."""
    from dynamics.models.committee import integrate, plateau

    base, _, _ = _specs({**config, "seeds": 1})
    out: dict[str, list[float]] = {"t_esc": [], "rate": [], "level": []}
    for lr in config["lrs"]:
        curve = integrate(base, 500, "online", lr, points=1500)
        p = plateau(base, curve, lr=lr)
        esc = curve.escape_time(p.level)
        out["t_esc"].append(math.nan if esc is None else esc)
        out["rate"].append(p.rate)
        out["level"].append(p.level)
    return {k: np.array(v) for k, v in out.items()}


def _half(t: np.ndarray, loss: np.ndarray, level: float) -> float | None:
    from dynamics.phases import emergence_time

    value = emergence_time(t, loss, level)  # half the fall from the plateau level
    return None if math.isnan(value) else value


def build(ctx: Context) -> SectionResult:
    import matplotlib.pyplot as plt

    s: Settings = ctx.settings
    cfg = {"k": s.k, "n": s.n, "lr": s.lr, "seeds": s.seeds, "init": s.init, "t_end": s.t_end}
    run, sym, law = ctx.run([
        (job_committee_train, {**cfg, "symmetric": False}),
        (job_committee_train, {**cfg, "symmetric": True, "t_end": 2 * s.t_end}),
        (job_committee_law, {**cfg, "deltas": list(DELTAS)})])
    (eta,) = ctx.run([(job_committee_eta, {"k": s.k, "n": s.n, "init": s.init,
                                          "lrs": list(LRS)})])
    level, rate = float(law["level"]), float(law["rate"])
    settings = (f"K = M = {s.k}, erf, N = {s.n}, η = {s.lr:g}, init σ = {s.init:g}, "
                f"{s.seeds} seeds, t = η·step/N")
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
    blocks: list[Block] = [ctx.figure(fig, "curves", f"Online SGD against the online ODE; "
                                      f"{settings}", [{"t": tt, **{f"train_{i}": run['train'][i][j]
                                                                   for i in range(s.seeds)},
                                                        **{f"ode_{i}": run['ode'][i][j]
                                                           for i in range(s.seeds)}}
                                                       for j, tt in enumerate(t)]),
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
    # 2b. plateau length against η: the law at fixed δ₀ predicts t_esc ∝ 1/λ(η) (t₀ aside)
    ref = 0
    predicted = eta["t_esc"][ref] * eta["rate"][ref] / eta["rate"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(LRS, eta["t_esc"], "o-", label="online ODE: t_esc(η)")
    ax.plot(LRS, predicted, "--", label=f"t_esc(η={LRS[ref]:g})·λ(η={LRS[ref]:g})/λ(η)")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("plateau length t_esc (t = η·step/N)")
    ax.legend(fontsize=8)
    eta_rows = [{"lr": lr, "t_esc": te, "lambda": la, "level": lv, "law": pr}
                for lr, te, la, lv, pr in zip(LRS, eta["t_esc"], eta["rate"], eta["level"],
                                              predicted, strict=True)]
    blocks.append(ctx.figure(fig, "eta", "Plateau length against η (online ODE, same start); "
                             "the law at fixed δ₀ scales it by 1/λ(η)", eta_rows))
    blocks.append(ctx.table("eta-table", "Plateau against η (online ODE)", eta_rows))
    eta_gap = float(np.max(np.abs(predicted / eta["t_esc"] - 1)))
    # 2c. a wider committee: K = M = wide
    wide_text = ""
    if s.wide:
        (wide,) = ctx.run([(job_committee_train, {**cfg, "k": s.wide, "t_end": s.wide_t_end,
                                                  "symmetric": False})])
        tw = wide["t"]
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for i in range(s.seeds):
            ax.semilogy(tw, wide["train"][i], color=f"C{i}", lw=0.8, alpha=0.8,
                        label="training" if i == 0 else None)
            ax.semilogy(tw, wide["ode"][i], color=f"C{i}", lw=1.2, ls="--",
                        label="online ODE (its own start)" if i == 0 else None)
        ax.axhline(wide["level"], color="k", lw=0.8, ls=":",
                   label=f"fixed point ε* = {wide['level']:.4g}")
        ax.set_xlabel("t = η·step/N")
        ax.set_ylabel("population ε")
        ax.legend(fontsize=8)
        esc_w_train = [_half(tw, wide["train"][i], wide["level"]) for i in range(s.seeds)]
        esc_w_ode = [_half(tw, wide["ode"][i], wide["level"]) for i in range(s.seeds)]
        blocks.append(ctx.figure(fig, "wide", f"K = M = {s.wide}: online SGD (solid) against "
                                 f"the online ODE from each seed's start (dashed, same colour); "
                                 f"N = {s.n}, η = {s.lr:g}, σ = {s.init:g}",
                                 [{"t": tt, **{f"train_{i}": wide["train"][i][j]
                                               for i in range(s.seeds)},
                                   **{f"ode_{i}": wide["ode"][i][j] for i in range(s.seeds)}}
                                  for j, tt in enumerate(tw)]))
        pairs = [(a, b) for a, b in zip(esc_w_train, esc_w_ode, strict=True)
                 if a is not None and b is not None]
        sooner = sum(a < b for a, b in pairs)
        spread = max((abs(a / b - 1) for a, b in pairs), default=math.nan)
        wide_text = (f" With K = M = {s.wide} the plateau sits at ε* = {wide['level']:.4g} "
                     f"(λ = {wide['rate']:.3g}); escapes (ε ≤ ½ε*) in training "
                     f"{', '.join(map(fmt, esc_w_train))} against the ODE's "
                     f"{', '.join(map(fmt, esc_w_ode))} from the same starts: training escapes "
                     f"first in {sooner} of {len(pairs)} seeds, and the two differ by up to "
                     f"{fmt(100 * spread)} % — at N = {s.n} the escape from this flatter "
                     "saddle is set as much by the fluctuations of online SGD as by "
                     "the initial asymmetry the ODE follows.")
    # 3. symmetric start
    ts = sym["t"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.semilogy(ts, sym["train"].mean(0), label=f"training, N = {s.n} (seed mean)")
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
            f"training's seed mean at {fmt(train_level)} ({fmt(100 * (train_level / level - 1))} "
            f"% from ε*). Escape times (ε ≤ ½ε*): training {', '.join(map(fmt, esc_train))}, "
            f"ODE {', '.join(map(fmt, esc_ode))}. The ODE's plateau length grows by "
            f"{fmt(slope)} per unit of ln(1/δ₀) against the law's 1/λ = {1 / rate:.4g}. From a "
            f"symmetric start (R = 0) the ODE reaches ½ε* at "
            f"{'never' if sym_ode is None else fmt(sym_ode)} (t ≤ {ts[-1]:.4g}), training at "
            f"{'never' if sym_train is None else fmt(sym_train)}: only finite-N fluctuations "
            f"break the symmetry. Against η (same start): plateau lengths "
            f"{', '.join(map(fmt, eta['t_esc']))} for η = {', '.join(map(fmt, LRS))}; "
            f"scaling by 1/λ(η) predicts them within {fmt(100 * eta_gap)} %. "
            "For the seed's question 1 (is every S-curve a product of "
            "components?): no — this plateau is a saddle of a permutation-symmetric flow, its "
            "length set by the initial asymmetry, (1/λ) ln(1/δ₀), not by a product of factors."
            + wide_text)
    blocks.insert(0, TextBlock(text))
    data = {"level": level, "rate": rate, "slope": slope, "train_level": train_level,
            "ode_level": ode_level, "escape_train": esc_train, "escape_ode": esc_ode,
            "symmetric_train": sym_train, "symmetric_ode": sym_ode, "eta": eta_rows}
    return SectionResult(blocks, [], data)


SECTION = Section(15, "committee", "Committee machines: a plateau from symmetry", build, FULL,
                  QUICK)
