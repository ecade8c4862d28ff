"""Section 1, scalar and vector targets (claim 1): L = ½‖a − w‖² decays as e^{−2t}, with no
plateau, from any init; theory (gradient flow) over SGD training from the same spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...claims import (
    Axis,
    ClaimMap,
    cells,
    exp_fit,
    exponential_checks,
    grid_runs,
    judge,
    legend,
    plateau_count,
    seed_cell,
)
from ...sweep import Axis as GridAxis
from ..blocks import Block, Context, Section, SectionResult
from ._maps import FULL_SIGMAS, QUICK_SIGMAS, SIGMA_LABEL, map_figure
from ._runs import overlay, overlay_figure, overlay_table

__all__ = ["FULL", "QUICK", "SECTION", "Settings", "map_grid"]

CURVE_SIGMAS = (0.01, 1.0)
T_MAX = 10.0


@dataclass(frozen=True)
class Settings:
    """``curve_n``: n of the vector curves (beside the scalar, n = 1); the claim map over
    ``sigmas`` × ``ns``."""

    curve_n: int
    sigmas: tuple[float, ...]
    ns: tuple[int, ...] = (1, 10, 100)


FULL = Settings(100, FULL_SIGMAS)
QUICK = Settings(20, QUICK_SIGMAS)


def _spec(n: int, sigma: float) -> dict[str, Any]:
    return {"kind": "vector", "n": n, "init": sigma, "seed": 0}


def _curves(s: Settings) -> list[dict[str, Any]]:
    return [{"name": f"n={n}, σ={sigma:g}", "lr": 0.01, "t_max": T_MAX, "spec": _spec(n, sigma)}
            for n in (1, s.curve_n) for sigma in CURVE_SIGMAS]


def map_grid(s: Settings) -> list[GridAxis]:
    """The claim map's grid (a sweep of ``vector``, seed 0, gradient flow to t = T_MAX):
    n × init σ; ``scurve sweep vector --grid n=... --grid init=... --set t_max=10``."""
    return [GridAxis("n", s.ns), GridAxis("init", s.sigmas)]


def build(ctx: Context) -> SectionResult:
    s: Settings = ctx.settings
    settings = _curves(s)
    theory, trained = overlay(ctx, settings)
    blocks: list[Block] = [
        overlay_figure(ctx, "curves", "Scalar (n = 1) and vector targets", settings, theory,
                       trained, log_time=False),
        overlay_table(ctx, "table", settings, theory, trained)]
    x, y = Axis("σ", s.sigmas, SIGMA_LABEL, True), Axis("n", s.ns)
    rows = ctx.sweep("map-claim1-sweep", "vector", map_grid(s), seeds=[0], theories=["flow"],
                     defaults={"t_max": T_MAX})
    runs = grid_runs(rows, ("n", "init"))
    fits = {key: exp_fit(run["trajectory"].t, run["trajectory"].loss, run["l_ref"])
            for key, run in runs.items()}
    holds, notes = cells(x, y, lambda n, sigma: seed_cell(
        [exponential_checks(fits[(n, sigma)][1], runs[(n, sigma)])]))
    m = ClaimMap("exponential decay (ln L linear, R² ≥ 0.999) and no plateau", x, y, holds,
                 "gradient flow (exact), target ‖a‖ = 1, seed 0", notes=notes)
    block, thumb = map_figure(ctx, "claim1", [m], "Claim 1: where scalar/vector decay is "
                              "exponential", f"Each cell: one gradient-flow curve; "
                              f"{legend(['exponential', 'no plateau'])}.")
    rates = np.array([f[0] for f in fits.values()])
    r2 = np.array([f[1] for f in fits.values()])
    plateaus = sum(plateau_count(r) > 0 for r in runs.values())
    span = (f"{rates.min():.3g}" if f"{rates.min():.3g}" == f"{rates.max():.3g}"
            else f"{rates.min():.3g}–{rates.max():.3g}")
    claim = judge(1, [m], f"ln L falls at rate {span} per unit t "
                  f"(theory: 2) with 1 − R² ≤ {1 - r2.min():.1g}; {plateaus} of {len(runs)} "
                  "curves show a plateau.", m.settings, thumb)
    return SectionResult([block, *blocks], [claim], {"rates": rates, "r2": r2})


SECTION = Section(1, "scalar-vector", "Scalar and vector targets", build, FULL, QUICK)
