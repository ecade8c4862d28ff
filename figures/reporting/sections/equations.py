"""Section 11, the derived equations: SymPy derivations of :mod:`dynamics.symbolic` (one job),
typeset by matplotlib's mathtext, with their LaTeX source in ``data/``."""

from __future__ import annotations

import json

from ... import plots
from ..blocks import Block, Context, EquationBlock, Section, SectionResult, TextBlock
from ..jobs import job_equations

__all__ = ["DERIVATIONS", "SECTION"]

DERIVATIONS = [  # [title, dynamics.symbolic function, its keyword arguments]
    ["Vector: full gradient flow", "full_flow", {"model": "vector"}],
    ["Factorization: full gradient flow", "full_flow", {"model": "factorization"}],
    ["Factorization: reduced flow (order parameters)", "reduced_flow",
     {"model": "factorization"}],
    ["Factorization: modified equation of GD (step η)", "full_flow",
     {"model": "factorization", "modified": True}],
    ["Factorization: exact reduced GD map", "reduced_gd", {"model": "factorization"}],
    ["Factorization: exact reduced GD map with momentum μ", "reduced_gd",
     {"model": "factorization", "momentum": True}],
    ["Factorization, cross-entropy: full gradient flow", "full_flow",
     {"model": "factorization", "loss": "ce"}],
    ["Attention head: full gradient flow", "full_flow", {"model": "attention"}],
    ["Attention head: reduced flow", "reduced_flow", {"model": "attention"}],
]


def _equation_image(latex: str) -> bytes | None:
    try:
        return plots.render_equation(latex)
    except (ValueError, RuntimeError):  # a construct mathtext cannot typeset: show the source
        return None


def build(ctx: Context) -> SectionResult:
    (equations,) = ctx.run([(job_equations, {"derivations": DERIVATIONS})])
    blocks: list[Block] = [TextBlock(
        "Derived with SymPy from the loss (dynamics.symbolic); the reduced equations are "
        "in the order parameters P = TᵀW, U = WᵀW and G = TᵀT; a primed symbol is its value "
        "after one step.")]
    for title, latex in equations.items():
        blocks.append(EquationBlock(title, latex, [_equation_image(s) for s in latex]))
    path = ctx.out / "data" / f"{ctx.name('equations')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(equations, indent=1, ensure_ascii=False))
    return SectionResult(blocks, [], {"equations": equations})


SECTION = Section(11, "equations", "The derived equations", build)
