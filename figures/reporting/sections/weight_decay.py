"""Section 9, weight decay (claim 7): ½λ(‖X‖² + ‖Y‖²) added to the rank-1 loss delays the
drop (the exponential phase lasts longer) and shrinks the solution to ‖XYᵀ‖ = max(s − λ, 0).
Theory (gradient flow) over SGD training from the same spec, and a map over λ × σ of exact
flows against λ = 0 from the same init (:func:`figures.claims.weight_decay_checks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...claims import (
    Axis,
    ClaimMap,
    cells,
    crossing,
    grid_runs,
    judge,
    legend,
    seed_cell,
    solution_size,
    weight_decay_checks,
)
from ...sweep import Axis as GridAxis
from ..blocks import Block, Context, Section, SectionResult, fmt
from ._maps import SIGMA_LABEL, count, map_figure
from ._runs import overlay, overlay_figure, overlay_table

__all__ = ["FULL", "MAP_DEFAULTS", "QUICK", "SECTION", "Settings", "map_grid"]

S = 1.0  # the target's singular value
CURVE_SIGMA = 0.05


@dataclass(frozen=True)
class Settings:
    """Curves at ``n`` for each of ``curve_lambdas``; the claim map over ``lambdas`` (each
    against λ = 0) × ``sigmas``."""

    n: int
    curve_lambdas: tuple[float, ...]
    lambdas: tuple[float, ...]
    sigmas: tuple[float, ...]


FULL = Settings(20, (0.0, 0.1, 0.3, 0.5), (0.1, 0.3, 0.5, 0.8, 0.95, 1.2),
                (1e-3, 0.01, 0.1, 1.0))
QUICK = Settings(10, (0.0, 0.3), (0.1, 0.5, 1.2), (1e-3, 0.1, 1.0))


def _spec(n: int, sigma: float, lam: float) -> dict[str, Any]:
    return {"kind": "factorization", "n": n, "rank": 1, "init": sigma, "singular_values": [S],
            "weight_decay": lam, "seed": 0}


MAP_DEFAULTS = {"rank": 1, "singular_values": [S], "t_max": 400.0}
"""The claim map's fixed settings (with n): rank 1, s = S, gradient flow to t = 400."""


def map_grid(s: Settings) -> list[GridAxis]:
    """The claim map's grid (a sweep of ``factorization``, seed 0): init σ × λ, λ = 0 (the
    reference of every cell) included."""
    return [GridAxis("init", s.sigmas), GridAxis("weight_decay", (0.0, *s.lambdas))]


def build(ctx: Context) -> SectionResult:
    s: Settings = ctx.settings
    settings = [{"name": f"λ={lam:g}", "lr": 0.01, "t_max": 15.0,
                 "spec": _spec(s.n, CURVE_SIGMA, lam)} for lam in s.curve_lambdas]
    theory, trained = overlay(ctx, settings)
    blocks: list[Block] = [
        overlay_figure(ctx, "curves", f"Weight decay λ, rank 1, s = 1, σ = {CURVE_SIGMA:g}",
                       settings, theory, trained),
        overlay_table(ctx, "table", settings, theory, trained)]
    x = Axis("λ", s.lambdas, "weight decay λ")
    y = Axis("σ", s.sigmas, SIGMA_LABEL)
    rows = ctx.sweep("map-claim7-sweep", "factorization", map_grid(s), seeds=[0],
                     theories=["flow"], defaults=MAP_DEFAULTS | {"n": s.n})
    runs = grid_runs(rows, ("init", "weight_decay"))
    holds, notes = cells(x, y, lambda sigma, lam: seed_cell([weight_decay_checks(
        crossing(runs[(sigma, lam)]), crossing(runs[(sigma, 0.0)]),
        solution_size(runs[(sigma, lam)]), S, lam)]))
    m = ClaimMap("plateau ends later than at λ = 0 (or never) and the solution shrinks to "
                 "s − λ", x, y, holds, f"gradient flow (exact reduced), rank 1, s = 1, "
                 f"n = {s.n}, seed 0", notes=notes)
    block, thumb = map_figure(ctx, "claim7", [m], "Claim 7: where weight decay delays the "
                              "drop and shrinks the solution",
                              f"Letters: failed checks ({legend(['later', 'smaller'])}).")
    mid = y.values[len(y.values) // 2]
    shown = x.values[:3]
    text = (f"Holds at {count(m)}. At σ = {mid:g}: t_0.5 " + ", ".join(
        f"{fmt(crossing(runs[(mid, lam)]))} (λ = {lam:g})" for lam in (0.0, *shown))
        + "; ‖XYᵀ‖ " + ", ".join(f"{solution_size(runs[(mid, lam)]):.3f}" for lam in shown)
        + " against max(s − λ, 0) = " + ", ".join(f"{max(S - lam, 0):.3g}" for lam in shown)
        + ".")
    return SectionResult([block, *blocks], [judge(7, [m], text, m.settings, thumb)],
                         {"map": m.rows()})


SECTION = Section(9, "weight-decay", "Weight decay", build, FULL, QUICK)
