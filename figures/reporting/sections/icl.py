"""Section "In-context learning: one drop per principal component" (issue 21).

Linear attention trained on in-context linear regression (Zhang, Singh, Latham & Saxe, ICML
2025; :mod:`dynamics.models.icl`): D = 4 dimensions, N = 31 context tokens, P sequences, H = 4
heads, full-batch GD at rate η on L = ½ Σ_p (ŷ_p − y_p)², t = η·step. Times are shown as
t·P (η ∝ 1/P gives the same curve in t·P). Three measurements:

* the staircase: separate rank-one heads, per seed (its own data and init), the exact reduced
  GD map (theory, float64) over float32 torch training from the same weights; the paper's
  population saddle levels 𝓛ₘ/𝓛₀ dotted; every drop's time (steepest point,
  :func:`dynamics.phases.analyze`) in theory against training, at two init scales;
* merged key–query attention beside it on the same data: the GD map of its MLP twin (a two-layer
  linear network on z = (Σₙyₙxₙ)x_qᵀ) overlaid with the attention itself trained on the tokens
  (:mod:`validation.icl`, float64): one drop, to the last saddle at once;
* plateau length against the init scale σ (theory): merged attention is degree 2 in its
  weights, so near 0 the flow is linear with growth rate s = ‖Z yᵀ‖ (s from the data) and
  t_{0.9} = (1/s) ln(1/σ) + c; the GD map's unstable mode grows by 1 + ηs per step, so its
  slope in ln(1/σ) is η/ln(1 + ηs) (→ 1/s as η → 0; ηs ≈ 0.6 here); separate
  rank-one heads are degree 3 (k, q, v), near 0 ȧ ∝ a², so t ∝ 1/σ (log-log slope −1; the
  prefactor depends on the init direction and is not closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import plots
from ..blocks import Block, Context, Section, SectionResult, TextBlock, fmt

__all__ = ["DEFAULT", "FULL", "QUICK", "SECTION", "Settings", "job_icl_run", "job_icl_sigma"]


@dataclass(frozen=True)
class Settings:
    """``sequences`` P, ``seeds`` per init scale, init scales ``inits`` (the staircase),
    ``sigmas`` (plateau length against σ), GD rate η = ``eta_p``/P to t·P = ``tp_end``."""

    sequences: int
    seeds: int
    inits: tuple[float, ...]
    sigmas: tuple[float, ...]
    eta_p: float
    tp_end: float


DIM, CONTEXT, HEADS = 4, 31, 4
FULL = Settings(8000, 6, (1e-2, 1e-3), (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4), 0.1, 600.0)
DEFAULT = Settings(2000, 6, (1e-2, 1e-3), (3e-2, 1e-2, 3e-3, 1e-3), 0.1, 600.0)
QUICK = Settings(1000, 2, (1e-2,), (1e-2, 1e-3), 0.1, 600.0)


def _drops(traj: Any, p: int, l_ref: float) -> list[float]:
    """Drop times (steepest points) of ``traj`` in t·P, those still under way at the curve's
    end left out (not a completed drop)."""
    from dynamics.phases import analyze

    end = float(traj.t[-1])
    return [d.time * p for d in analyze(traj.t, traj.loss, l_ref).drops if d.time < 0.98 * end]


def job_icl_run(config: dict[str, Any]) -> dict[str, Any]:
    """One seed: ``{"sequences", "init", "seed", "separate", "eta_p", "tp_end", "train"}`` ->
    ``tp`` and ``theory`` (the GD map, L/L_ref), with ``train`` also ``tp_train`` and
    ``train_loss`` (float32 torch GD from the same weights, L/L_ref), the drop times (t·P) of
    both, and the population saddle levels 𝓛ₘ/𝓛₀ of Λ (paper recursion)."""
    import torch

    from dynamics.integrate import predict
    from dynamics.methods import Discrete
    from dynamics.models.icl import covariance, saddle_levels, sample_icl

    torch.set_num_threads(1)
    p, eta = config["sequences"], config["eta_p"] / config["sequences"]
    spec = sample_icl(DIM, CONTEXT, p, HEADS, init=config["init"], seed=config["seed"],
                      separate=config["separate"])
    t_end = config["tp_end"] / p
    theory = predict(spec, Discrete(eta), t_max=t_end)
    drops = _drops(theory, p, spec.l_ref)
    lam = np.linalg.eigvalsh(covariance(DIM, seed=config["seed"]))
    levels = saddle_levels(lam, CONTEXT)
    out: dict[str, Any] = {"tp": theory.t * p, "theory": theory.loss / spec.l_ref,
                           "drops": np.array(drops), "levels": levels / levels[0]}
    if config.get("tokens"):  # merged: the attention itself on the tokens (validation.icl)
        from dynamics.models.icl import sequences
        from validation.icl import attention_gd

        t_end = theory.crossing_times((0.2,))[0.2]
        steps = min(theory.steps[-1], round(3 * t_end / eta)) if t_end else theory.steps[-1]
        x, y = sequences(covariance(DIM, seed=config["seed"]), CONTEXT, p,
                         seed=config["seed"] + 1)  # sample_icl's draws
        values = spec.values()
        tokens = attention_gd(x, y, values["W"], values["v"], eta, int(steps))
        out.update(tp_tokens=np.arange(steps + 1) * eta * p, tokens=tokens / spec.l_ref,
                   tokens_error=float(np.max(np.abs(
                       tokens / (theory.loss[:steps + 1]) - 1))))
    if config["train"]:
        from validation.training import TrainConfig, train

        run = train(spec, TrainConfig(optimizer="sgd", lr=eta, steps=round(t_end / eta),
                                      dtype="float32", device="cpu")).trajectories[0]
        out.update(tp_train=run.t * p, train_loss=run.loss / spec.l_ref,
                   train_drops=np.array(_drops(run, p, spec.l_ref)))
    return out


def job_icl_sigma(config: dict[str, Any]) -> dict[str, Any]:
    """Theory only: ``{"sequences", "sigmas", "separate", "eta_p", "tp_end", "seed"}`` -> the
    first crossing of 0.9 L_ref (t·P) per σ, and s = ‖Z yᵀ‖ (the merged model's growth rate
    at 0, in 1/t)."""
    from dynamics.integrate import predict
    from dynamics.methods import Discrete
    from dynamics.models.icl import sample_icl

    p, eta = config["sequences"], config["eta_p"] / config["sequences"]
    out = []
    rate = math.nan
    for sigma in config["sigmas"]:
        spec = sample_icl(DIM, CONTEXT, p, HEADS, init=sigma, seed=config["seed"],
                          separate=config["separate"])
        traj = predict(spec, Discrete(eta), t_max=config["tp_end"] / p)
        t09 = traj.crossing_times((0.9,))[0.9]
        out.append(math.nan if t09 is None else t09 * p)
        if not config["separate"]:
            values = spec.values()
            rate = float(np.linalg.norm(values["Z"] @ values["y"].T))
    return {"t09": np.array(out), "rate": rate}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else math.nan


def build(ctx: Context) -> SectionResult:
    import matplotlib.pyplot as plt

    s: Settings = ctx.settings
    base = {"sequences": s.sequences, "eta_p": s.eta_p, "tp_end": s.tp_end}
    runs = ctx.run([(job_icl_run, {**base, "init": init, "seed": seed, "separate": True,
                                   "train": True})
                    for init in s.inits for seed in range(s.seeds)])
    merged, sep_sigma, mer_sigma = ctx.run([
        (job_icl_run, {**base, "init": s.inits[0], "seed": 0, "separate": False,
                       "train": False, "tokens": True}),
        (job_icl_sigma, {**base, "sigmas": list(s.sigmas), "separate": True, "seed": 0}),
        (job_icl_sigma, {**base, "sigmas": list(s.sigmas), "separate": False, "seed": 0,
                         "tp_end": s.tp_end / 5})])
    settings = (f"D = {DIM}, N = {CONTEXT}, P = {s.sequences}, H = {HEADS}, GD η = "
                f"{s.eta_p:g}/P, t·P shown")
    with plots.drawing():  # this thread alone lays out text (plots.drawing)
        blocks: list[Block] = []
        # 1. the staircase (first init scale, every seed) and merged attention
        fig, ax = plt.subplots(figsize=(9.4, 4.2))
        first = runs[:s.seeds]
        for i, r in enumerate(first):
            ax.semilogy(r["tp_train"], r["train_loss"], color="C0", lw=2.2, alpha=0.35,
                        label="separate heads: training (float32)" if i == 0 else None)
            ax.semilogy(r["tp"], r["theory"], color="C1", lw=0.9, ls="--",
                        label="separate heads: GD map (theory)" if i == 0 else None)
            for d in r["drops"]:
                ax.axvline(d, color="C1", lw=0.4, alpha=0.4)
        ax.semilogy(merged["tp"], merged["theory"], color="C2", lw=1.2,
                    label="merged key–query: GD map of its MLP twin (seed 0)")
        ax.semilogy(merged["tp_tokens"][::4], merged["tokens"][::4], "o", color="C2", ms=3,
                    mfc="none", label="merged: attention on the tokens, GD (float64)")
        for m, level in enumerate(first[0]["levels"][1:], start=1):
            ax.axhline(level, color="k", lw=0.7, ls=":",
                       label="saddle levels L_m/L_0 (P → ∞)" if m == 1 else None)
        ax.set_xscale("log")
        ax.set_xlabel("t·P (t = η·step)")
        ax.set_ylabel("L / L_ref")
        ax.set_ylim(0.08, 1.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        curve_rows = [{"seed": i, "source": src, "tP": float(a), "loss": float(b)}
                      for i, r in enumerate(first)
                      for src, ts, ls in (("theory", r["tp"], r["theory"]),
                                          ("train", r["tp_train"], r["train_loss"]))
                      for a, b in zip(ts[::10], ls[::10], strict=True)]
        blocks.append(ctx.figure(fig, "staircase", f"Separate rank-one heads go down the saddle "
                                 f"levels one principal component at a time; σ = {s.inits[0]:g}, "
                                 f"{s.seeds} seeds (vertical lines: predicted drop times); "
                                 f"{settings}", curve_rows))
        # 2. every drop: theory against training
        drop_rows, errors = [], []
        for k, init in enumerate(s.inits):
            for seed, r in enumerate(runs[k * s.seeds:(k + 1) * s.seeds]):
                th, tr = list(r["drops"]), list(r["train_drops"])
                for j in range(max(len(th), len(tr))):
                    a = th[j] if j < len(th) else None
                    b = tr[j] if j < len(tr) else None
                    err = _rel(a, b) if a is not None and b is not None else None
                    if err is not None:
                        errors.append((init, err))
                    drop_rows.append({"init": init, "seed": seed, "drop": j + 1, "theory tP": a,
                                      "training tP": b, "rel. error": err})
        blocks.append(ctx.table("drops", "Every drop, theory (exact GD map) against float32 "
                                "training from the same weights", drop_rows))
        # 3. plateau length against σ
        sig = np.array(s.sigmas)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
        ok = np.isfinite(sep_sigma["t09"])
        slope_sep = (float(np.polyfit(np.log(sig[ok]), np.log(sep_sigma["t09"][ok]), 1)[0])
                     if ok.sum() >= 2 else math.nan)
        ax1.loglog(sig, sep_sigma["t09"], "o-", label=f"separate heads (fit slope "
                   f"{fmt(slope_sep)})")
        if ok.any():
            j = int(np.flatnonzero(ok)[-1])
            ax1.loglog(sig, sep_sigma["t09"][j] * sig[j] / sig, "k--", lw=0.8,
                       label="degree-3 law ∝ 1/σ")
        ax1.set_xlabel("init σ")
        ax1.set_ylabel("t·P at L = 0.9 L_ref")
        ax1.legend(fontsize=7)
        okm = np.isfinite(mer_sigma["t09"])
        x = np.log(1 / sig)
        slope_mer = (float(np.polyfit(x[okm], mer_sigma["t09"][okm], 1)[0])
                     if okm.sum() >= 2 else math.nan)
        eta = s.eta_p / s.sequences  # the GD map's linear escape: dt/dln(1/σ) = η/ln(1 + ηs)
        law = s.sequences * eta / math.log1p(eta * mer_sigma["rate"])  # in t·P
        ax2.plot(x, mer_sigma["t09"], "o-", label=f"merged (fit slope {fmt(slope_mer)})")
        if okm.any():
            j = int(np.flatnonzero(okm)[0])
            ax2.plot(x, mer_sigma["t09"][j] + (x - x[j]) * law, "k--", lw=0.8,
                     label=f"law: slope Pη/ln(1+ηs) = {fmt(law)}")
        ax2.set_xlabel("ln(1/σ)")
        ax2.set_ylabel("t·P at L = 0.9 L_ref")
        ax2.legend(fontsize=7)
        fig.tight_layout()
        sigma_rows = [{"sigma": a, "separate tP": b, "merged tP": c} for a, b, c in
                      zip(s.sigmas, sep_sigma["t09"], mer_sigma["t09"], strict=True)]
        blocks.append(ctx.figure(fig, "sigma", "Plateau length against the init scale (theory): "
                                 "separate heads ∝ 1/σ (degree 3), merged attention (1/s)·ln(1/σ) "
                                 f"(degree 2, GD escape slope η/ln(1+ηs), s = ‖Z yᵀ‖); {settings}",
                                 sigma_rows))
        # text
        levels = first[0]["levels"]
        found = [float(np.min(r["theory"])) for r in first]
        worst = {init: max((e for i, e in errors if i == init), default=math.nan)
                 for init in s.inits}
        median = {init: float(np.median([e for i, e in errors if i == init]))
                  if any(i == init for i, _ in errors) else math.nan for init in s.inits}
        counts = [len(r["drops"]) for r in runs[:s.seeds]]
        text = (f"Separate rank-one heads ({settings}) learn the principal components of the "
                f"input covariance one at a time: the phase analysis finds {min(counts)}–"
                f"{max(counts)} drops per seed at σ = {s.inits[0]:g}, resting near the paper's "
                f"population saddle levels 𝓛ₘ/𝓛₀ = {', '.join(fmt(v) for v in levels[1:])} "
                f"(finite P = {s.sequences} moves them: the lowest loss reached is "
                f"{', '.join(fmt(v) for v in found[:3])}… against 𝓛_D/𝓛₀ = {fmt(levels[-1])}; "
                "two close eigenvalues can merge two steps into one drop). Drop times, exact GD "
                "map "
                "against float32 training from the same weights: "
                + "; ".join(f"σ = {init:g}: median {fmt(100 * median[init])} %, worst "
                            f"{fmt(100 * worst[init])} %" for init in s.inits)
                + " — the only difference is float32 rounding, amplified while the run sits near "
                "a saddle. Merged key–query attention, a two-layer linear network on the cubic "
                "feature z, drops once: attention trained on the tokens themselves (torch "
                "autograd, "
                f"float64) follows the GD map of that network to {merged['tokens_error']:.1e} "
                "(largest relative difference over the steps shown). Plateau length against σ: "
                "separate heads follow the degree-3 law t ∝ 1/σ "
                f"(log-log slope {fmt(slope_sep)} against −1); merged attention grows by "
                f"{fmt(slope_mer)} per unit of ln(1/σ) against the GD map's linear-escape law "
                f"Pη/ln(1 + ηs) = "
                f"{fmt(law)} ({fmt(100 * _rel(slope_mer, law))} % apart). For the seeds' picture: "
                "in-context regression is a multi-component task — each component is a separate "
                "S-curve, its plateau set by the init scale and its eigenvalue, so 'in-context "
                "learning appears abruptly' holds per component, not for the task as a whole.")
        blocks.insert(0, TextBlock(text))
        data = {"slope_separate": slope_sep, "slope_merged": slope_mer, "law_merged": law,
                "drop_errors_worst": {str(k): v for k, v in worst.items()},
                "drop_errors_median": {str(k): v for k, v in median.items()},
                "levels": [float(v) for v in levels], "drops": drop_rows,
                "twin_error": merged["tokens_error"]}
        return SectionResult(blocks, [], data)


SECTION = Section(16, "icl", "In-context learning: one drop per principal component", build,
                  FULL, QUICK, default=DEFAULT)
