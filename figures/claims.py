"""The seeds' claims: where each one holds, computed from the report's data.

Every claim hinges on settings the seeds do not state (init scale σ above all), so a claim is
judged on a **map**: a grid over the parameters it hinges on (:class:`ClaimMap`, axes
:class:`Axis`), each cell holding the fraction of seeds at which the claim's test holds there
(NaN: not measured or not applicable). From a map, :func:`map_verdict` gives the verdict and
:func:`boundary` the region in words ("holds for σ ≥ 0.03 at n = 100; fails below"); a claim
judged on several maps (claim 8: plateau, bumps, AdamW) combines them with
:func:`claim_verdict`.

The tests of the cells are functions of this module too, on the plain dicts the report
computes per run (:func:`figures.reporting.jobs.summarize`) or on plain numbers:
:func:`exponential_checks` (claim 1), :func:`s_curve_checks` (claims 2, 3),
:func:`rank_10_checks` / :func:`full_rank_checks` (4), :func:`earlier` (5, 8),
:func:`attention_checks` (6), :func:`weight_decay_checks` (7), :func:`adam_plateau_checks`,
:func:`same_plateaus`, :func:`more_bumps` (8), :func:`ce_checks` (9), :func:`bumps_as_claimed`
(10), :func:`grouped_checks` / :func:`simultaneous` (11), :func:`groups_found`,
:func:`gradient_group_checks`, :func:`recovery_counts`, :func:`plateau_share` (12). A cell
over seeds is :func:`seed_cell`, :func:`counted_cell` or :func:`any_cell`, a grid of cells
:func:`cells` (its runs, from a claim map's sweep table: :func:`grid_runs`), a judged
claim :func:`judge`. Thresholds are module constants, stated in the
check names (:data:`CHECKS`). Verdicts are :class:`Verdict` members; verdict logic never looks
at display strings.

A claim whose section did not run is ``"not measured"`` with the reason, never guessed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np

from dynamics.errors import UsageError
from dynamics.phases import relative_width

__all__ = [
    "ABBREV",
    "CHECKS",
    "CLAIMS",
    "HOLDS",
    "IN_PART",
    "MIN_SEEDS",
    "NOT_MEASURED",
    "NOT_SUPPORTED",
    "README_BEGIN",
    "README_END",
    "RELATIONS",
    "SUPPORTED",
    "VERDICTS",
    "Axis",
    "Claim",
    "ClaimMap",
    "ClaimResult",
    "Verdict",
    "adam_plateau_checks",
    "any_cell",
    "attention_checks",
    "boundary",
    "bumps_as_claimed",
    "bumps_per_vector",
    "ce_checks",
    "cell_lists",
    "cells",
    "claim_verdict",
    "claims_markdown",
    "claims_table",
    "counted_cell",
    "crossing",
    "earlier",
    "exp_fit",
    "exponential_checks",
    "failed",
    "failure_counts",
    "fit_slope",
    "flipping_rows",
    "full_rank_checks",
    "gradient_group_checks",
    "grid_runs",
    "grouped_checks",
    "groups_found",
    "headline",
    "judge",
    "legend",
    "loss_at",
    "map_verdict",
    "more_bumps",
    "more_seeds",
    "most_failed",
    "plateau_count",
    "plateau_share",
    "rank_10_checks",
    "recovery_counts",
    "replace_readme_table",
    "row_shapes",
    "s_curve_checks",
    "same_plateaus",
    "seed_cell",
    "seed_short",
    "simultaneous",
    "smear",
    "solution_size",
    "stalls",
    "weight_decay_checks",
]



class Verdict(str, Enum):
    """A claim's verdict. Its value is the text shown and stored (``claims.json``), so a
    verdict read back from JSON compares equal to its member."""

    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    IN_PART = "holds in part"
    NOT_MEASURED = "not measured"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


SUPPORTED, NOT_SUPPORTED, IN_PART, NOT_MEASURED = Verdict
VERDICTS = tuple(Verdict)
HOLDS = 0.5  # a cell holds when the test holds at more than this fraction of its seeds

# thresholds of the cell tests
DECAY_DROP = 0.9  # initial decay: the first plateau sits ≤ 90 % of the starting loss
SHARP = 1.0  # sharp drop: the 90 → 10 % fall takes less time than everything before it
LEVELLED = 0.01  # levels off: final L ≤ 1 % of L_ref
ALIGN_GAIN = 0.3  # alignment grows by ≥ 0.3
NORM_SHRINK = 0.9  # norms shrink: min ≤ 0.9·init …
NORM_GROW = 1 / NORM_SHRINK  # … then grow: end ≥ min/0.9 (the same 10 % either way)
SMEAR = 1.5  # rank 10's relative fall duration ≥ 1.5 × rank 1's
SPAN_ALIGN = 0.9  # rank n spans the truth without aligning: mean alignment ≤ 0.9
EXP_R2 = 0.999  # exponential decay: ln L linear in t with R² ≥ 0.999
ATTN_ALIGN = (0.75, 1.25)  # the last factor aligns within ±25 % of t_0.5
LONGER = 1.05  # "longer" / "later": ≥ 5 % more
SIZE_TOL = 0.05  # solution size ‖XYᵀ‖ = s − λ within 5 %
IN_GROWTH = 0.8  # bumps "during growth": ≥ 80 % of them
STRUGGLES = 0.01  # rank 10 "struggles": final L/L_ref ≥ 1 % and > 10 × rank 2's
ARI_FOUND = 0.5  # found groups match the capabilities: adjusted Rand index ≥ 0.5
STALL = 1.5  # a stall: the loss falls by less than 1.5× over the last third of the run …
STALL_GAP = 3.0  # … while ≥ 3× above SGD's loss after the same number of steps

CHECKS = {  # short key: what it tests (thresholds above)
    "decay": f"initial decay (first plateau ≤ {DECAY_DROP:g} × the starting loss)",
    "plateau": "a plateau",
    "sharp": f"sharp drop (its 90→10 % width ≤ {SHARP:g} × the time before it)",
    "levels": f"levels off (final L ≤ {LEVELLED:g} L_ref)",
    "aligns": f"alignment with the truth grows (by ≥ {ALIGN_GAIN:g})",
    "norms": f"norms shrink (min ≤ {NORM_SHRINK:g}·init), then grow (end ≥ min/{NORM_SHRINK:g})",
    "smeared": f"drop smeared (relative 90→10 % duration ≥ {SMEAR:g} × rank 1's)",
    "no plateau": "no plateau",
    "power tail": "exponential start, then a power-law tail",
    "spans": f"spans the truth (final L ≤ {LEVELLED:g} L_ref) without aligning (mean "
             f"alignment ≤ {SPAN_ALIGN:g})",
    "exponential": f"ln L linear in t (R² ≥ {EXP_R2})",
    "aligned at drop": f"last factor aligns at {ATTN_ALIGN[0]:g}–{ATTN_ALIGN[1]:g} × t_0.5",
    "later": f"plateau ends later than at λ = 0 (t_0.5 ≥ {LONGER:g} ×), or never",
    "smaller": f"solution ‖XYᵀ‖ = max(s − λ, 0) within {SIZE_TOL:.0%}",
    "two plateaus": "at least two plateaus",
    "struggles": f"final L/L_ref ≥ {STRUGGLES:g} and > 10 × rank 2's",
    "unchanged": "no plateau and no divergence (as with the squared loss)",
    "closer": "smaller spread t_last/t_first of the capabilities' half-drop times",
    "wider": "larger median relative drop width (t_90 − t_10)/t_half",
    "found": f"median adjusted Rand index of the found groups over training ≥ {ARI_FOUND:g}",
    "early": "most groups recovered (best-matching cluster F1 ≥ 0.8 from then on) while still "
             "on their plateau",
}


@dataclass(frozen=True)
class Claim:
    """Claim ``number`` of the seeds, its wording, and the report section that measures it."""

    number: int
    text: str
    section: str


@dataclass(frozen=True)
class ClaimResult:
    """A judged claim.

    ``numbers``: one or two plain sentences with the numbers that decide it; ``region``: where
    it holds, in one sentence (:func:`headline`); ``cells``: the same cell by cell
    (:func:`boundary`); ``settings``: seeds and settings; ``thumbnail``: the
    map's PNG, relative to the report folder ("" if none).
    """

    number: int
    verdict: Verdict
    numbers: str
    settings: str = ""
    region: str = ""
    thumbnail: str = ""
    cells: str = ""
    """The region cell by cell (:func:`boundary`), kept in the section; ``region`` is the
    one-sentence :func:`headline`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))  # from JSON: its text


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Scalar and vector targets: pure exponential decay, no plateau.", "scalar-vector"),
    Claim(2, "Rank 1: initial exponential decay, plateau, sharp drop, levelling off; inner "
             "products with the truth grow while norms first shrink then grow.", "rank-1"),
    Claim(3, "Low rank: the same.", "low-rank"),
    Claim(4, "n = 100: rank 10 similar with a smeared drop; rank 100 no plateau, exponential "
             "then power law; learned vectors span the truth without aligning.", "n-100"),
    Claim(5, "Lower rank → longer plateau at fixed init.", "scaling"),
    Claim(6, "Attention head (rank 2): plateau, then sudden drop once all four factors align.",
          "attention"),
    Claim(7, "Weight decay extends the exponential phase and shrinks the solution.",
          "weight-decay"),
    Claim(8, "Adam: same phenomenology but rank 100 regains a plateau; more bumps than SGD. "
             "AdamW accelerates rank 1.", "optimizers"),
    Claim(9, "Cross-entropy: two plateaus at rank 2, rank 10 struggles to reach zero loss, "
             "full rank unchanged.", "cross-entropy"),
    Claim(10, "Bumps in inner products appear only for rank > 1 and during growth.",
          "optimizers"),
    Claim(11, "Grouped loss: capabilities emerge at more similar times and more gradually.",
          "grouped"),
    Claim(12, "Gradient clusters find capabilities; large singular vectors of the gradient "
              "matrix correspond to capabilities.", "grouped"),
)


# =============================================================================== maps


@dataclass(frozen=True)
class Axis:
    """One axis of a map: a symbol (``"σ"``), its values in order, and a label for plots.

    ``numeric`` axes get interval sentences ("σ ≥ 0.03"); others list their values.
    """

    name: str
    values: tuple[Any, ...]
    label: str = ""
    log: bool = False

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float, np.integer, np.floating))
                   and not isinstance(v, bool) for v in self.values)

    def fmt(self, value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{float(value):g}"
        return str(value)


@dataclass
class ClaimMap:
    """Where one test of a claim holds: ``holds[i, j]`` at ``y.values[i]``, ``x.values[j]``.

    ``holds`` is the fraction of seeds at which the test holds (1.0 / 0.0 for one seed), NaN
    where it was not measured or does not apply. ``notes`` (same shape, optional) annotate
    cells, e.g. with the elements that failed. ``test`` says in words what a cell tests.
    """

    test: str
    x: Axis
    y: Axis
    holds: np.ndarray
    settings: str = ""
    seeds: int = 1
    notes: np.ndarray | None = None
    name: str = ""
    """A short name of the test (prefixes its region when a claim has several maps)."""
    reference: bool = False
    """Shown for comparison only (e.g. holds by construction): drawn faded, never judged."""
    hinge: tuple[str, Callable[[Any, Any], float]] | None = None
    """A combination of the axes the claim hinges on: (its symbol, f(x value, y value)), e.g.
    ("nσ²", lambda σ, n: n * σ**2). :func:`headline` states the boundary in it when the cells
    that hold fill one interval of it that no failing cell enters."""
    counts: np.ndarray | None = None
    """Seeds per cell (same shape), where cells rest on different numbers of seeds (extra
    seeds only where the first one's verdict sits beside the boundary, :func:`more_seeds`);
    None: ``seeds`` everywhere."""

    def __post_init__(self) -> None:
        self.holds = np.asarray(self.holds, dtype=float).reshape(len(self.y.values),
                                                                 len(self.x.values))
        if self.counts is not None:
            self.counts = np.asarray(self.counts, dtype=int).reshape(self.holds.shape)
        if self.notes is not None:
            self.notes = np.asarray(self.notes, dtype=object).reshape(self.holds.shape)

    @property
    def measured(self) -> np.ndarray:
        return np.isfinite(self.holds)

    @property
    def ok(self) -> np.ndarray:
        """Boolean grid: the test holds at more than :data:`HOLDS` of the seeds (NaN: False)."""
        with np.errstate(invalid="ignore"):
            return np.where(self.measured, self.holds > HOLDS, False)

    def rows(self) -> list[dict[str, Any]]:
        """One row per cell (for ``data/``): y, x, fraction holding, holds, note (and the
        cell's seeds where :attr:`counts` is given)."""
        out = []
        for i, yv in enumerate(self.y.values):
            for j, xv in enumerate(self.x.values):
                value = self.holds[i, j]
                out.append({"map": self.name or self.test, self.y.name: yv, self.x.name: xv,
                            "fraction holding": None if not np.isfinite(value) else value,
                            "holds": None if not np.isfinite(value) else bool(value > HOLDS),
                            "note": "" if self.notes is None else str(self.notes[i, j] or ""),
                            **({} if self.counts is None else
                               {"seeds": int(self.counts[i, j])})})
        return out


def map_verdict(m: ClaimMap) -> Verdict:
    """``supported`` where every measured cell holds, ``not supported`` where none does,
    ``holds in part`` otherwise; ``not measured`` without a measured cell."""
    measured = m.measured
    if not measured.any():
        return NOT_MEASURED
    ok = m.ok[measured]
    if ok.all():
        return SUPPORTED
    return NOT_SUPPORTED if not ok.any() else IN_PART


def _run_phrase(axis: Axis, ok: Sequence[bool]) -> str:
    """Where a 1-D row of cells (ordered along ``axis``) holds, in words."""
    values = list(axis.values)
    name = axis.name
    hold = [v for v, k in zip(values, ok, strict=True) if k]
    fail = [v for v, k in zip(values, ok, strict=True) if not k]
    fmt = axis.fmt
    if not fail:
        span = ("" if len(values) < 2 else f" ({fmt(values[0])}–{fmt(values[-1])})"
                if axis.numeric else f" ({', '.join(fmt(v) for v in values)})")
        return f"holds at every {name} tested{span}"
    if not hold:
        return f"fails at every {name} tested"
    idx = [i for i, k in enumerate(ok) if k]
    contiguous = idx == list(range(idx[0], idx[-1] + 1))
    if axis.numeric and contiguous:
        lo, hi = values[idx[0]], values[idx[-1]]
        if lo == hi:
            return f"holds only at {name} = {fmt(lo)}; fails at the other {name} tested"
        if idx[-1] == len(values) - 1:
            return f"holds for {name} ≥ {fmt(lo)}; fails below"
        if idx[0] == 0:
            return f"holds for {name} ≤ {fmt(hi)}; fails above"
        return f"holds for {fmt(lo)} ≤ {name} ≤ {fmt(hi)}; fails outside"
    if len(fail) <= 2 and len(hold) > len(fail) and len(values) >= 4:
        return f"holds at every {name} tested except {name} = {', '.join(fmt(v) for v in fail)}"
    return (f"holds at {name} = {', '.join(fmt(v) for v in hold)}; fails at "
            f"{', '.join(fmt(v) for v in fail)}")


def boundary(m: ClaimMap) -> str:
    """Where ``m`` holds, in words: one phrase per row of ``y`` (rows alike are merged).

    Unmeasured cells are left out of their row. Example: "holds for σ ≥ 0.03 at n = 100;
    fails below; holds at every σ tested (0.001–1) at n = 1000".
    """
    phrases: dict[str, list[Any]] = {}
    for i, yv in enumerate(m.y.values):
        keep = m.measured[i]
        if not keep.any():
            continue
        axis = Axis(m.x.name, tuple(v for v, k in zip(m.x.values, keep, strict=True) if k),
                    m.x.label, m.x.log)
        phrases.setdefault(_run_phrase(axis, list(m.ok[i][keep])), []).append(yv)
    if not phrases:
        return "not measured"
    measured_rows = [yv for i, yv in enumerate(m.y.values) if m.measured[i].any()]
    parts = []
    for phrase, rows in phrases.items():
        if len(m.y.values) == 1:
            parts.append(phrase)
        elif len(phrases) == 1 and len(rows) == len(measured_rows) and len(rows) > 1:
            where = f"at every {m.y.name} ({', '.join(m.y.fmt(v) for v in rows)})"
            head, _, tail = phrase.partition(";")
            parts.append(f"{head} {where}" + (f";{tail}" if tail else ""))
        else:
            where = f"at {m.y.name} = {', '.join(m.y.fmt(v) for v in rows)}"
            head, _, tail = phrase.partition(";")
            parts.append(f"{head} {where}" + (f";{tail}" if tail else ""))
    return "; ".join(parts)


FLIPS = 3
"""A row of a map whose verdict changes at least this often along x flips back and forth: on
few seeds that is noise, not a boundary, so :func:`headline` calls it seed-dependent there."""
MIN_SEEDS = 3  # a cell whose seeds disagree should rest on at least this many seeds


def row_shapes(m: ClaimMap) -> list[tuple[Any, str, tuple[int, int] | None]]:
    """The shape of each measured row of ``m`` along x: (y value, shape, held span).

    Shapes: ``"all"`` (every measured cell holds), ``"none"``, ``"flip"`` (the verdict changes
    ≥ :data:`FLIPS` times along x), ``"band"`` (the held cells are contiguous; span = first and
    last held index among the row's measured cells), ``"gap"`` (fails on one contiguous inner
    stretch; span = first and last failing index). Unmeasured cells are skipped.
    """
    out: list[tuple[Any, str, tuple[int, int] | None]] = []
    for i, yv in enumerate(m.y.values):
        keep = m.measured[i]
        if not keep.any():
            continue
        ok = [bool(v) for v in m.ok[i][keep]]
        changes = sum(a != b for a, b in itertools.pairwise(ok))
        held = [j for j, v in enumerate(ok) if v]
        if all(ok):
            out.append((yv, "all", None))
        elif not any(ok):
            out.append((yv, "none", None))
        elif changes >= FLIPS:
            out.append((yv, "flip", None))
        elif held == list(range(held[0], held[-1] + 1)):
            out.append((yv, "band", (held[0], held[-1])))
        else:
            fail = [j for j, v in enumerate(ok) if not v]
            out.append((yv, "gap", (fail[0], fail[-1])))
    return out


def flipping_rows(m: ClaimMap) -> list[Any]:
    """The y values whose rows flip back and forth along x (:func:`row_shapes`)."""
    return [yv for yv, shape, _ in row_shapes(m) if shape == "flip"]


def seed_short(m: ClaimMap) -> int:
    """How many measured cells have seeds that disagree (0 < fraction holding < 1) while they
    rest on fewer than :data:`MIN_SEEDS` seeds (cells to rerun with more seeds); the seeds of
    a cell are ``m.counts`` where given, else ``m.seeds``."""
    counts = np.full(m.holds.shape, m.seeds) if m.counts is None else m.counts
    h, n = m.holds[m.measured], counts[m.measured]
    return int(np.sum((h > 0) & (h < 1) & (n < MIN_SEEDS)))


def more_seeds(m: ClaimMap, near: np.ndarray | None = None) -> np.ndarray:
    """Which cells of ``m`` (a map on its first seeds) to rerun at more seeds: a bool grid.

    A cell gets more seeds when its verdict may be noise: it differs from the verdict of a
    measured neighbour along x or y (the boundary runs beside it, so its own test sits near
    the threshold there), its seeds disagree (0 < fraction holding < 1) on fewer than
    :data:`MIN_SEEDS` seeds (:func:`seed_short`), or ``near`` (optional bool grid) marks it
    as near a threshold of its test. A map that holds (or fails) everywhere, or only along a
    clean boundary's two sides, adds few seeds; one that flips back and forth adds them
    along the whole row, so its fraction of seeds can say whether it is a boundary or noise.
    """
    measured, ok = m.measured, m.ok
    flag = np.zeros(ok.shape, dtype=bool)
    for axis in (0, 1):
        a, b = [slice(None)] * 2, [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        differ = measured[tuple(a)] & measured[tuple(b)] & (ok[tuple(a)] != ok[tuple(b)])
        flag[tuple(a)] |= differ
        flag[tuple(b)] |= differ
    counts = np.full(ok.shape, m.seeds) if m.counts is None else m.counts
    with np.errstate(invalid="ignore"):
        flag |= measured & (m.holds > 0) & (m.holds < 1) & (counts < MIN_SEEDS)
    if near is not None:
        flag |= measured & np.asarray(near, dtype=bool).reshape(ok.shape)
    return flag


def _values(axis: Axis, values: Sequence[Any]) -> str:
    values = list(values)
    if axis.numeric and len(values) > 2:
        return f"{axis.fmt(values[0])}–{axis.fmt(values[-1])}"
    return ", ".join(axis.fmt(v) for v in values)


def _edge(m: ClaimMap, edges: list[tuple[Any, Any]]) -> str:
    """One threshold over the rows: its value, or its range and how it moves with y."""
    xs = [x for _, x in edges]
    if len(set(xs)) == 1:
        return m.x.fmt(xs[0])
    lo, hi = min(xs), max(xs)
    trend = ""
    if m.y.numeric and len(edges) > 1:
        order = [x for _, x in sorted(edges, key=lambda e: e[0])]
        if all(a <= b for a, b in itertools.pairwise(order)):
            trend = f" (rising with {m.y.name})"
        elif all(a >= b for a, b in itertools.pairwise(order)):
            trend = f" (falling with {m.y.name})"
        else:
            trend = f" (depending on {m.y.name})"
    return f"{m.x.fmt(lo)}…{m.x.fmt(hi)}{trend}"


def _hinge_sentence(m: ClaimMap) -> str:
    """"holds where nσ² ≈ 0.9–3; fails where it is smaller or larger" when the map has a
    :attr:`ClaimMap.hinge` and its holding cells span an interval of it no failing cell
    enters; else ""."""
    if m.hinge is None:
        return ""
    name, f = m.hinge
    held, fail = [], []
    for i, yv in enumerate(m.y.values):
        for j, xv in enumerate(m.x.values):
            if m.measured[i, j]:
                (held if m.ok[i, j] else fail).append(float(f(xv, yv)))
    if not held or not fail:
        return ""
    lo, hi = min(held), max(held)
    if any(lo <= v <= hi for v in fail):
        return ""
    below, above = any(v < lo for v in fail), any(v > hi for v in fail)
    side = "smaller or larger" if below and above else "smaller" if below else "larger"
    value = f"{lo:.2g}" if lo == hi else f"{lo:.2g}–{hi:.2g}"
    return f"holds where {name} ≈ {value}; fails where it is {side}"


def headline(m: ClaimMap) -> str:
    """Where ``m`` holds, in one sentence for the claims table (the cell list: :func:`boundary`).

    Every measured cell holding (failing) gives "holds (fails) everywhere tested" with the
    ranges. Along a numeric x each row that holds on one stretch contributes its edges, and the
    sentence gives each edge as a value or a range over y ("holds for σ ≥ 0.01…0.1 (rising
    with n)"); rows that fail in one inner stretch give "fails for a ≤ σ ≤ b". Rows that flip
    (:data:`FLIPS` or more changes along x) are called seed-dependent, with the fraction of
    their cells that hold. Rows holding or failing everywhere are named by their y values.
    Cells whose seeds disagree on fewer than :data:`MIN_SEEDS` seeds are counted at the end.
    A map with a :attr:`ClaimMap.hinge` that separates its cells gives the interval of the
    hinge instead (:func:`_hinge_sentence`). A non-numeric x falls back to :func:`boundary`.
    """
    shapes = row_shapes(m)
    if not shapes:
        return "not measured"
    ok = m.ok[m.measured]
    rows = [yv for yv, _, _ in shapes]
    where = (f"{m.x.name} {_values(m.x, m.x.values)}"
             + (f", {m.y.name} {_values(m.y, rows)}" if len(m.y.values) > 1 else ""))
    short = seed_short(m)
    few = (f"{m.seeds} seed{'s' if m.seeds > 1 else ''}" if m.counts is None
           else f"fewer than {MIN_SEEDS} seeds")
    tail = (f" ({short} cell{'s' if short > 1 else ''} where seeds disagree rest on {few})"
            if short else "")
    if ok.all():
        return f"holds everywhere tested ({where}){tail}"
    if not ok.any():
        return f"fails everywhere tested ({where}){tail}"
    hinged = _hinge_sentence(m)
    if hinged:
        return hinged + tail
    if not m.x.numeric:
        return boundary(m) + tail
    x = m.x.values
    parts = []
    by_shape: dict[str, list[tuple[Any, tuple[int, int] | None]]] = {}
    for yv, shape, span in shapes:
        by_shape.setdefault(shape, []).append((yv, span))

    def at(entries: list[tuple[Any, Any]]) -> str:
        if len(m.y.values) == 1:
            return ""
        if len(entries) == len(rows) > 1:
            return f" at every {m.y.name}"
        return f" at {m.y.name} = {', '.join(m.y.fmt(yv) for yv, _ in entries)}"

    def measured_x(yv: Any) -> list[Any]:
        i = list(m.y.values).index(yv)
        return [v for v, k in zip(x, m.measured[i], strict=True) if k]

    bands = by_shape.get("band", [])
    if bands:
        lows = [(yv, measured_x(yv)[s[0]]) for yv, s in bands if s and s[0] > 0]
        highs = [(yv, measured_x(yv)[s[1]]) for yv, s in bands
                 if s and s[1] < len(measured_x(yv)) - 1]
        name = m.x.name
        if all(sp is not None and sp[0] == sp[1] for _, sp in bands):
            only = [(yv, measured_x(yv)[sp[0]]) for yv, sp in bands if sp is not None]
            lows, highs = only, []
            phrase = f"holds only at {name} = {_edge(m, only)}"
        elif lows and highs:
            phrase = f"holds for {_edge(m, lows)} ≤ {name} ≤ {_edge(m, highs)}"
        elif lows:
            phrase = f"holds for {name} ≥ {_edge(m, lows)}"
        else:
            phrase = f"holds for {name} ≤ {_edge(m, highs)}"
        if len(lows) + len(highs) and (0 < len(lows) < len(bands) or 0 < len(highs) < len(bands)):
            phrase += " (open-ended at some rows)"
        parts.append(phrase + at(bands))
    gaps = by_shape.get("gap", [])
    if gaps:
        lo = [(yv, measured_x(yv)[s[0]]) for yv, s in gaps if s]
        hi = [(yv, measured_x(yv)[s[1]]) for yv, s in gaps if s]
        if lo == hi:
            parts.append(f"fails only at {m.x.name} = {_edge(m, lo)}" + at(gaps))
        else:
            parts.append(f"fails for {_edge(m, lo)} ≤ {m.x.name} ≤ {_edge(m, hi)}" + at(gaps))
    if by_shape.get("all"):
        parts.append(f"holds at every {m.x.name} tested" + at(by_shape["all"]))
    if by_shape.get("none"):
        parts.append(f"fails at every {m.x.name} tested" + at(by_shape["none"]))
    flips = by_shape.get("flip", [])
    if flips:
        index = [list(m.y.values).index(yv) for yv, _ in flips]
        sub = m.holds[index][m.measured[index]]
        held = int(np.sum(sub > HOLDS))
        seeds = (f"; over seeds it holds {np.mean(sub):.0%} of the time" if m.seeds > 1 else "")
        parts.append(f"seed-dependent along {m.x.name}" + at(flips)
                     + f" (flips back and forth: holds at {held} of {sub.size} cells "
                       f"({held / sub.size:.0%}){seeds})")
    return "; ".join(parts) + tail


def claim_verdict(maps: Sequence[ClaimMap]) -> tuple[Verdict, str]:
    """(verdict, region) of a claim judged on several maps (each a part of the claim).

    Supported when every map is; not supported when no map holds anywhere; else ``holds in
    part``. The region joins each map's :func:`boundary`, prefixed by its test when there
    are several maps.
    """
    maps = [m for m in maps if not m.reference]
    verdicts = [map_verdict(m) for m in maps]
    measured = [v for v in verdicts if v != NOT_MEASURED]
    if not measured:
        result = NOT_MEASURED
    elif all(v == SUPPORTED for v in measured):
        result = SUPPORTED
    elif all(v == NOT_SUPPORTED for v in measured):
        result = NOT_SUPPORTED
    else:
        result = IN_PART
    if len(maps) == 1:
        return result, headline(maps[0])
    return result, " | ".join(f"{m.name or m.test}: {headline(m)}" for m in maps)


def cell_lists(maps: Sequence[ClaimMap]) -> str:
    """The region of a claim judged on ``maps`` cell by cell (:func:`boundary` of each map,
    prefixed by its test when there are several): what its section keeps."""
    maps = [m for m in maps if not m.reference]
    if len(maps) == 1:
        return boundary(maps[0])
    return " | ".join(f"{m.name or m.test}: {boundary(m)}" for m in maps)


def judge(number: int, maps: Sequence[ClaimMap], numbers: str, settings: str = "",
          thumbnail: str = "") -> ClaimResult:
    """Claim ``number`` judged on ``maps`` (:func:`claim_verdict`), with the sentences of its
    deciding ``numbers``, its ``settings`` and its map's ``thumbnail``."""
    result, region = claim_verdict(maps)
    return ClaimResult(number, result, numbers, settings, region, thumbnail, cell_lists(maps))


def cells(x: Axis, y: Axis, cell: Callable[[Any, Any], tuple[float, str]]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Grids (len(y), len(x)) of (fraction holding, note) from ``cell(y_value, x_value)``:
    the ``holds`` and ``notes`` of a :class:`ClaimMap`."""
    holds = np.full((len(y.values), len(x.values)), np.nan)
    notes = np.full(holds.shape, "", dtype=object)
    for i, yv in enumerate(y.values):
        for j, xv in enumerate(x.values):
            holds[i, j], notes[i, j] = cell(yv, xv)
    return holds, notes


def grid_runs(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], source: str = "flow"
              ) -> dict[tuple[Any, ...], Mapping[str, Any]]:
    """The runs of a claim map's sweep table (:func:`figures.sweep.sweep` with
    ``record=True``, one row per cell × seed × source): the ``run`` summary of each row of
    ``source``, keyed by the row's values of ``keys`` (grid axes and/or ``seed``), which the
    cell tests judge. Raises UsageError if two rows share a key (an axis left out of ``keys``)."""
    out: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        if row["source"] != source:
            continue
        key = tuple(row[k] for k in keys)
        if key in out:
            at = dict(zip(keys, key, strict=True))
            raise UsageError(f"grid_runs: two {source} rows at {at}; key them by every axis "
                             "and the seed")
        out[key] = row["run"]
    return out


ABBREV = {"decay": "D", "plateau": "P", "sharp": "S", "levels": "L", "aligns": "A",
          "norms": "N", "smeared": "Sm", "no plateau": "P", "power tail": "T", "spans": "Sp",
          "exponential": "E", "aligned at drop": "A", "later": "La", "smaller": "Si",
          "two plateaus": "2P", "struggles": "St", "unchanged": "U", "closer": "C",
          "wider": "W", "found": "F", "early": "B"}
"""The letter of each check (key of :data:`CHECKS`) in a map cell's note."""


def failed(checks: Mapping[str, bool]) -> str:
    """Abbreviations (:data:`ABBREV`) of the checks that fail, comma-separated, in order."""
    return ",".join(ABBREV[k] for k, ok in checks.items() if not ok)


def legend(keys: Sequence[str]) -> str:
    """What the letters of ``keys`` stand for: "D = initial decay (…); P = a plateau"."""
    return "; ".join(f"{ABBREV[k]} = {CHECKS[k]}" for k in keys)


def failure_counts(checks: Sequence[Mapping[str, bool]]) -> dict[str, int]:
    """How many of ``checks`` (one dict per run, the same keys) fail each check, in key order."""
    if not checks:
        return {}
    return {k: sum(not c[k] for c in checks) for k in checks[0]}


def most_failed(checks: Sequence[Mapping[str, bool]], count: int = 2) -> list[tuple[str, int]]:
    """The ``count`` checks failed by the most runs, (key, runs), most first (ties: the later
    key first); checks no run fails are left out."""
    worst = sorted((v, k) for k, v in failure_counts(checks).items() if v)[::-1]
    return [(k, v) for v, k in worst[:count]]


def seed_cell(checks: Sequence[Mapping[str, bool]]) -> tuple[float, str]:
    """A cell over seeds (one check dict per seed): the fraction of seeds at which every check
    holds, and as note the checks that fail at half of the seeds or more (:func:`failed`).
    No seeds: (NaN, "")."""
    if not checks:
        return math.nan, ""
    whole = [all(c.values()) for c in checks]
    worst = {k: False for k, v in failure_counts(checks).items() if v * 2 >= len(checks) and v}
    return float(np.mean(whole)), failed(worst)


def counted_cell(checks: Sequence[Mapping[str, bool]]) -> tuple[float, str]:
    """:func:`seed_cell` with the count in its note, "k/n" (k of the n seeds hold) before the
    failed checks: for maps whose cells have different numbers of seeds (draw them with
    ``seeds=1``, so the note is the cell's text). No seeds: (NaN, "")."""
    value, note = seed_cell(checks)
    if not checks:
        return value, note
    held = sum(all(c.values()) for c in checks)
    return value, f"{held}/{len(checks)}" + (f"\n{note}" if note else "")


def any_cell(checks: Sequence[Mapping[str, bool]]) -> tuple[float, str]:
    """A cell over seeds whose test holds if any of its checks does: the fraction of seeds at
    which one holds, and as note the checks that hold at more than half of the seeds, joined
    by "+". No seeds: (NaN, "")."""
    if not checks:
        return math.nan, ""
    names = [k for k in checks[0] if sum(c[k] for c in checks) * 2 > len(checks)]
    return float(np.mean([any(c.values()) for c in checks])), "+".join(names)


# =============================================================================== cell tests
# ``run``: the dict of ``figures.reporting.jobs.summarize`` — "phases" (Phases.to_dict() or None),
# "factors" (per factor: alignment_start/end, norm_min_ratio, norm_growth, bumps,
# bumps_in_growth, vectors, t_align), "crossings" ({"0.5": t or None, ...}), "loss_start",
# "final_loss", "l_ref".


def _phases(run: Mapping[str, Any]) -> dict[str, Any]:
    return run.get("phases") or {"initial": None, "plateaus": [], "drops": [], "tail": None}


def crossing(run: Mapping[str, Any], f: float = 0.5) -> float:
    """t_f of a run: the first t at which L ≤ f·L_ref (NaN if never reached)."""
    value = run["crossings"].get(f"{f:g}")
    return math.nan if value is None else float(value)


def plateau_count(run: Mapping[str, Any]) -> int:
    """Number of plateaus the shape-based phases found in a run."""
    return len(_phases(run)["plateaus"])


def exp_fit(t: np.ndarray, loss: np.ndarray, l_ref: float) -> tuple[float, float]:
    """(rate, R²) of the least-squares line ln L = −rate·t + c, over the samples with
    L > 1e-12·L_ref (below, rounding dominates): for L = L₀e^{−2t}, (2, 1)."""
    t, loss = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    keep = loss > 1e-12 * l_ref
    log = np.log(loss[keep])
    slope, intercept = np.polyfit(t[keep], log, 1)
    resid = log - (slope * t[keep] + intercept)
    total = log - log.mean()
    return float(-slope), float(1 - np.sum(resid**2) / np.sum(total**2))


def fit_slope(x: np.ndarray, y: np.ndarray, log_x: bool = True, log_y: bool = True) -> float:
    """Least-squares slope of y against x (of ln y against ln x by default), over the finite
    points (positive where logged); NaN with fewer than 2 such points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0 if log_x else True) & (y > 0 if log_y else True)
    if keep.sum() < 2:
        return math.nan
    xs = np.log(x[keep]) if log_x else x[keep]
    ys = np.log(y[keep]) if log_y else y[keep]
    return float(np.polyfit(xs, ys, 1)[0])


def s_curve_checks(run: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 2's elements on one run (keys of :data:`CHECKS`): decay, plateau, sharp,
    levels, aligns, norms (the last two for every factor)."""
    ph = _phases(run)
    plateaus, drops = ph["plateaus"], ph["drops"]
    factors = list(run["factors"].values())
    return {
        "decay": bool(plateaus) and plateaus[0]["level"] <= DECAY_DROP * run["loss_start"],
        "plateau": bool(plateaus),
        "sharp": bool(drops) and drops[0]["width"] <= SHARP * drops[0]["time"],
        "levels": run["final_loss"] <= LEVELLED * run["l_ref"],
        "aligns": bool(factors) and all(
            f["alignment_end"] - f["alignment_start"] >= ALIGN_GAIN for f in factors),
        "norms": bool(factors) and all(
            f["norm_min_ratio"] <= NORM_SHRINK and f["norm_growth"] >= NORM_GROW
            for f in factors),
    }


def smear(run: Mapping[str, Any]) -> float:
    """Relative duration of the fall from L_ref to 0, (t_0.1 − t_0.9)/t_0.5: THE relative drop
    width (:func:`dynamics.phases.relative_width`)."""
    return float(relative_width(crossing(run, 0.9), crossing(run, 0.5), crossing(run, 0.1)))


def rank_10_checks(run: Mapping[str, Any], rank_1: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 4, rank 10: a plateau, and a drop smeared relative to rank 1's at the same σ."""
    with np.errstate(invalid="ignore"):
        smeared = bool(smear(run) >= SMEAR * smear(rank_1))
    return {"plateau": bool(_phases(run)["plateaus"]), "smeared": smeared}


def full_rank_checks(run: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 4, rank n: no plateau, exponential then power-law tail, spans without aligning."""
    ph = _phases(run)
    tail = ph.get("tail") or {}
    factors = list(run["factors"].values())
    align = float(np.mean([f["alignment_end"] for f in factors])) if factors else math.nan
    return {
        "no plateau": not ph["plateaus"],
        "power tail": ph.get("initial") is not None and tail.get("kind") == "power",
        "spans": run["final_loss"] <= LEVELLED * run["l_ref"] and align <= SPAN_ALIGN,
    }


def exponential_checks(r2: float, run: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 1: ln L linear in t (R² of the fit ``r2``) and no plateau."""
    return {"exponential": bool(r2 >= EXP_R2), "no plateau": not _phases(run)["plateaus"]}


def earlier(t: float, t_ref: float) -> bool:
    """``t`` is ≥ 5 % earlier than ``t_ref`` (:data:`LONGER`): t·1.05 ≤ t_ref; a time never
    reached (NaN) on either side fails. Claim 5: t_0.5 at the higher rank against the lower;
    claim 8: AdamW's against Adam's."""
    return bool(t * LONGER <= t_ref)


def attention_checks(run: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 6: a plateau, and the last of the factors aligns at the drop (±25 % of t_0.5)."""
    aligned = [f["t_align"] for f in run["factors"].values() if f["t_align"] is not None]
    ratio = max(aligned, default=math.nan) / crossing(run)
    return {"plateau": bool(_phases(run)["plateaus"]),
            "aligned at drop": bool(ATTN_ALIGN[0] <= ratio <= ATTN_ALIGN[1])}


def solution_size(run: Mapping[str, Any]) -> float:
    """‖X‖‖Y‖ at the end of a run (the product of its factors' final norms): ‖XYᵀ‖ at rank 1."""
    return float(np.prod([f["norm_end"] for f in run["factors"].values()]))


def weight_decay_checks(t_half: float, t_half_0: float, size: float, s: float,
                        lam: float) -> dict[str, bool]:
    """Claim 7 at one λ > 0 against λ = 0 from the same init: the plateau ends later
    (``t_half`` ≥ 1.05 ``t_half_0``; never, NaN, counts as later), and the learned product's
    size ``size`` = ‖XYᵀ‖ is max(s − λ, 0) within 5 % (absolute 5 % of s when it is 0)."""
    later = (not math.isfinite(t_half)) or t_half >= LONGER * t_half_0
    expected = max(s - lam, 0.0)
    smaller = abs(size - expected) <= SIZE_TOL * max(expected, s if expected == 0 else 0)
    return {"later": bool(later), "smaller": bool(smaller)}


def bumps_as_claimed(run: Mapping[str, Any], rank: int) -> bool:
    """Claim 10 on one run: rank 1 — no bumps; rank > 1 — bumps, ≥ 80 % of them in growth."""
    factors = run["factors"].values()
    total = sum(f["bumps"] for f in factors)
    growth = sum(f["bumps_in_growth"] for f in factors)
    if rank == 1:
        return total == 0
    return total > 0 and growth >= IN_GROWTH * total


def bumps_per_vector(run: Mapping[str, Any]) -> float:
    """Bumps of the alignment curves per learned vector (summed over the factors)."""
    factors = run["factors"].values()
    return sum(f["bumps"] for f in factors) / max(1, sum(f["vectors"] for f in factors))


def more_bumps(run: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    """Claim 8: ``run`` (Adam) has more bumps per learned vector than ``ref`` (SGD)."""
    return bumps_per_vector(run) > bumps_per_vector(ref)


def same_plateaus(run: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    """Claim 8, "the same phenomenology": ``run`` (Adam) has a plateau exactly when ``ref``
    (SGD, same spec and seed) has one."""
    return (plateau_count(run) >= 1) == (plateau_count(ref) >= 1)


def loss_at(run: Mapping[str, Any], t: float) -> float:
    """L(t) of a run's (thinned) trajectory, interpolated in log L."""
    traj = run["trajectory"]
    loss = np.maximum(np.asarray(traj.loss, dtype=float), 1e-300)
    return float(np.exp(np.interp(t, traj.t, np.log(loss))))


def stalls(run: Mapping[str, Any]) -> bool:
    """The run ends stalled: L falls by less than :data:`STALL`× over its last third of t,
    above :data:`LEVELLED`·L_ref."""
    t_end = float(run["trajectory"].t[-1])
    start, end = loss_at(run, 2 * t_end / 3), loss_at(run, t_end)
    return end >= LEVELLED * run["l_ref"] and start < STALL * end


def adam_plateau_checks(adam: Mapping[str, Any], sgd: Mapping[str, Any], adam_lr: float,
                        sgd_lr: float) -> dict[str, bool]:
    """Claim 8 at rank n, same spec and seed: "plateau" — Adam's curve has a plateau (shape
    phases) and SGD's none; "stall" — Adam ends stalled (:func:`stalls`) ≥ 3× above SGD's
    loss after the same number of steps (SGD's t = Adam's t · η_SGD/η_Adam, capped at its
    end). The cell holds if either does."""
    steps = float(adam["trajectory"].t[-1]) / adam_lr
    t_sgd = min(steps * sgd_lr, float(sgd["trajectory"].t[-1]))
    gap = adam["final_loss"] >= STALL_GAP * loss_at(sgd, t_sgd)
    return {"plateau": bool(_phases(adam)["plateaus"]) and not _phases(sgd)["plateaus"],
            "stall": bool(stalls(adam) and gap)}


def ce_checks(rank_2: Mapping[str, Any], rank_10: Mapping[str, Any],
              full: Mapping[str, Any], full_diverged: bool) -> dict[str, bool]:
    """Claim 9 at one setting: rank 2 has ≥ 2 plateaus; rank 10 struggles (final L/L_ref ≥ 1 %
    and > 10 × rank 2's); full rank unchanged from MSE (no plateau, did not diverge)."""
    def final(run: Mapping[str, Any]) -> float:
        return run["final_loss"] / run["l_ref"]

    return {
        "two plateaus": len(_phases(rank_2)["plateaus"]) >= 2,
        "struggles": final(rank_10) >= STRUGGLES and final(rank_10) > 10 * final(rank_2),
        "unchanged": not _phases(full)["plateaus"] and not full_diverged,
    }


def grouped_checks(mean: Mapping[str, Any], grouped: Mapping[str, Any]) -> dict[str, bool]:
    """Claim 11 on emergence summaries (``spread``: t_last/t_first of the groups that
    emerged, ``width``: median relative drop width, optional ``emerged``: the share of groups
    that emerged, 1 when absent): grouped loss closer in time (smaller spread, and no fewer
    groups emerged — a group that never emerges is not "closer") and more gradual (larger
    width) than the mean loss. A missing (None/NaN) spread or width fails."""
    def num(summary: Mapping[str, Any], key: str, default: float = math.nan) -> float:
        value = summary.get(key, default)
        return math.nan if value is None else float(value)

    closer = (num(grouped, "spread") < num(mean, "spread")
              and num(grouped, "emerged", 1.0) >= num(mean, "emerged", 1.0))
    wider = num(grouped, "width") > num(mean, "width")
    return {"closer": bool(closer), "wider": bool(wider)}


def simultaneous(mean: Mapping[str, Any]) -> bool:
    """Claim 11: the capabilities already emerge together under the mean loss (spread
    t_last/t_first < 1.05, :data:`LONGER`), leaving the grouped loss nothing to equalise (not
    applicable). A missing spread counts as not simultaneous."""
    return (mean.get("spread") or math.inf) < LONGER


def groups_found(ari: float) -> bool:
    """Claim 12: found groups match the capabilities, adjusted Rand index ≥ 0.5
    (:data:`ARI_FOUND`)."""
    return bool(ari >= ARI_FOUND)


RELATIONS = ("before", "at", "after", "never")
"""When a group becomes recoverable relative to its emergence (``relation`` of a run's
``gradient_groups``, :func:`validation.emergence.recovery_relation`): while still on its
plateau, during its drop, after it, or never."""


def recovery_counts(relations: Sequence[str]) -> dict[str, int]:
    """How many groups fall in each of :data:`RELATIONS`, in that order. ValueError for any
    other relation."""
    unknown = sorted(set(relations) - set(RELATIONS))
    if unknown:
        raise ValueError(f"unknown recovery relation {unknown[0]!r} (one of "
                         f"{', '.join(RELATIONS)})")
    return {r: sum(x == r for x in relations) for r in RELATIONS}


def gradient_group_checks(ari: Sequence[float], relations: Sequence[str]) -> dict[str, bool]:
    """Claim 12 on one run's re-clusterings (keys of :data:`CHECKS`): "found" — the median
    adjusted Rand index over the re-clusterings ``ari`` (the first at step 0) is ≥
    :data:`ARI_FOUND` (NaNs left out; none left fails) while the first one is not: groups
    separable before anything is learned are told apart by their inputs, which says nothing
    of capabilities; "early" — more than half of the groups are recovered before they emerge
    (``relations``: one of :data:`RELATIONS` per group)."""
    raw = np.asarray(ari, dtype=float)
    values = raw[np.isfinite(raw)]
    at_start = bool(raw.size) and np.isfinite(raw[0]) and groups_found(float(raw[0]))
    found = bool(values.size) and groups_found(float(np.median(values))) and not at_start
    counts = recovery_counts(relations)
    return {"found": bool(found), "early": 2 * counts["before"] > len(relations)}


def plateau_share(t: Sequence[float], f1: np.ndarray, plateau_end: Sequence[float],
                  level: float) -> np.ndarray:
    """Per group g, the fraction of the re-clusterings made while g is still on its plateau
    (t_r < ``plateau_end``[g]; a NaN end — never left it — counts every re-clustering) at which
    g's best-matching cluster has F1 ≥ ``level``; NaN for a group with no re-clustering on its
    plateau. ``t`` (R,) the re-clustering times, ``f1`` (R, G)."""
    times = np.asarray(t, dtype=float)
    scores = np.asarray(f1, dtype=float).reshape(len(times), -1)
    ends = np.asarray(plateau_end, dtype=float)
    out = np.full(scores.shape[1], np.nan)
    for g in range(scores.shape[1]):
        on = times < ends[g] if np.isfinite(ends[g]) else np.ones(len(times), dtype=bool)
        if on.any():
            out[g] = float(np.mean(scores[on, g] >= level))
    return out


# =============================================================================== the table


def claims_table(
    results: Mapping[int, ClaimResult], reasons: Mapping[str, str] | None = None
) -> list[dict[str, object]]:
    """One row per claim of :data:`CLAIMS`: number, claim, section, verdict, region, numbers,
    settings, thumbnail.

    ``reasons`` maps a section slug to why it produced no result (not run, failed, pending);
    a claim without a result gets verdict ``not measured`` and that reason as its numbers.
    """
    reasons = reasons or {}
    rows = []
    for claim in CLAIMS:
        result = results.get(claim.number)
        if result is None:
            why = reasons.get(claim.section, "section not run")
            result = ClaimResult(claim.number, NOT_MEASURED, why)
        row: dict[str, object] = {"claim": claim.number, "text": claim.text,
                                  "section": claim.section}
        row.update({k: v for k, v in asdict(result).items() if k != "number"})
        rows.append(row)
    return rows


README_BEGIN = "<!-- claims table: generated by `scurve report --readme README.md`; do not edit -->"
README_END = "<!-- end of claims table -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_markdown(rows: Sequence[Mapping[str, object]]) -> str:
    """The claims table in Markdown (the README's, between :data:`README_BEGIN` and
    :data:`README_END`): number, claim, verdict, where it holds, the deciding numbers."""
    lines = ["| # | claim | verdict | where it holds | what the data show |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['claim']} | {_cell(r['text'])} | {_cell(r['verdict'])} | "
                     f"{_cell(r.get('region') or '–')} | {_cell(r['numbers'])} |")
    return "\n".join(lines)


def replace_readme_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``.

    Raises ValueError if the markers are missing."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise UsageError("README: claims-table markers not found "
                         f"({README_BEGIN!r} … {README_END!r})")
    return readme[:start + len(README_BEGIN)] + "\n" + table + "\n" + readme[end:]
