"""What a report section is made of: its HTML blocks, its result, and the context it runs in.

A section (:class:`Section`) builds a :class:`SectionResult` from a :class:`Context`: blocks
(figures embedded as base64 PNGs, tables, paragraphs, typeset equations) in page order, the
claims it judged (:class:`figures.claims.ClaimResult`) and its numbers (saved as JSON). Every
figure and table writes the numbers it shows to ``OUT/data/`` as CSV (:func:`write_csv`).
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from .. import plots
from ..claims import ClaimResult
from ..sweeps import CacheStats, Job, run_jobs

__all__ = [
    "Block",
    "Context",
    "EquationBlock",
    "FigureBlock",
    "Section",
    "SectionResult",
    "TableBlock",
    "TextBlock",
    "fmt",
    "write_csv",
]


def fmt(value: Any) -> str:
    """A number as shown in tables and sentences (4 significant digits, "–" for none/NaN)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.4g}"
    return "–" if value is None else str(value)


@dataclass
class FigureBlock:
    """A figure: its PNG, caption, regenerating command and data file. The fragment links the
    PNG by its path; the page embeds it (:func:`figures.reporting.page.inline_images`)."""

    png: Path
    root: Path
    caption: str
    command: str
    data: Path

    def html(self) -> str:
        rel_png, rel_data = self.png.relative_to(self.root), self.data.relative_to(self.root)
        return (f'<figure><img alt="{html.escape(self.caption)}" src="{rel_png}">'
                f"<figcaption>{html.escape(self.caption)}<br>"
                f'<a href="{rel_png}">PNG</a> · <a href="{rel_data}">data (CSV)</a> · '
                f"regenerate: <code>{html.escape(self.command)}</code></figcaption></figure>")


@dataclass
class TableBlock:
    """A table of rows (dicts with the same keys) and its CSV file."""

    title: str
    rows: list[dict[str, Any]]
    root: Path
    data: Path

    def html(self) -> str:
        if not self.rows:
            return ""
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(k)))}</td>" for k in keys)
                       + "</tr>" for r in self.rows)
        rel = self.data.relative_to(self.root)
        return (f"<h3>{html.escape(self.title)}</h3><table><tr>{head}</tr>{body}</table>"
                f'<p class="small"><a href="{rel}">data (CSV)</a></p>')


@dataclass
class TextBlock:
    """A paragraph; ``kind`` ``note`` (plain) or ``error`` (highlighted)."""

    text: str
    kind: Literal["note", "error"] = "note"

    def html(self) -> str:
        return f'<p class="{self.kind}">{html.escape(self.text)}</p>'


@dataclass
class EquationBlock:
    """Equations typeset as PNGs (LaTeX source beside each, or alone if mathtext fails)."""

    title: str
    latex: list[str]
    images: list[bytes | None]

    def html(self) -> str:
        items = []
        for source, image in zip(self.latex, self.images, strict=True):
            if image is None:
                items.append(f"<li><pre>{html.escape(source)}</pre></li>")
            else:
                encoded = base64.b64encode(image).decode()
                items.append(f'<li><img class="eq" alt="{html.escape(source)}" '
                             f'src="data:image/png;base64,{encoded}"></li>')
        return f"<h3>{html.escape(self.title)}</h3><ul class='eqs'>{''.join(items)}</ul>"


Block = FigureBlock | TableBlock | TextBlock | EquationBlock


@dataclass
class SectionResult:
    """What a section shows (``blocks``), the claims it measured, and its data (JSON).

    ``error``: why the section failed (its blocks then say so), None when it was built.
    """

    blocks: list[Block] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Section:
    """A report section: number, slug (for ``--only``), title, builder and its settings.

    ``full`` and ``quick``: the section's settings (its grids, sizes and seeds; a frozen
    dataclass of its module, or None) for a full run (``--full``) and under ``--quick``;
    ``default``: those of the default run where they differ from ``full`` (None: ``full``);
    ``full_tasks``: those under ``--full-tasks`` (the tasks' full configurations; None: as
    without it). The builder reads the chosen ones as ``ctx.settings``.
    """

    number: int
    slug: str
    title: str
    build: Callable[[Context], SectionResult]
    full: Any = None
    quick: Any = None
    full_tasks: Any = None
    default: Any = None

    def settings(self, quick: bool, full_tasks: bool = False, full: bool = False) -> Any:
        """``quick`` under ``--quick``; ``full_tasks`` (if any) under ``--full-tasks``;
        ``full`` under ``--full``; else ``default`` (None: ``full``)."""
        if quick:
            return self.quick
        if full_tasks and self.full_tasks is not None:
            return self.full_tasks
        return self.full if full or self.default is None else self.default


@dataclass
class Context:
    """What a section needs: output folder, budget, executor, cache, progress bar, settings
    (``full_tasks``: the report runs the tasks' full configurations, ``--full-tasks``;
    ``full``: the full maps, ``--full``)."""

    out: Path
    quick: bool
    executor: Executor
    cache_dir: Path
    stats: CacheStats
    section: Section
    bar: tqdm
    settings: Any = None
    full_tasks: bool = False
    full: bool = False
    """The run's maps are the full ones (``--full``), not the default run's."""

    def run(self, jobs: Sequence[Job]) -> list[Any]:
        """Results of the jobs (cached), counted on the section's progress bar."""
        return run_jobs(jobs, self.executor, self.cache_dir, self.bar, self.stats)

    def sweep(self, name: str, problem: str, grid: Sequence[Any], **options: Any
              ) -> list[dict[str, Any]]:
        """A claim map's grid run by the one grid runner (:func:`figures.sweep.plan`, its
        cells cached with the report's jobs, on the report's executor and progress bar): one
        table row per cell × seed × source, each with ``run``, the report's summary of its
        curve (``record=True``), written as :meth:`table_of` writes it. ``grid``:
        :class:`figures.sweep.Axis` values; ``options``: :func:`figures.sweep.plan`'s."""
        from ..sweep import plan

        planned = plan(problem, grid, record=True, **options)
        return self.table_of(name, planned, self.run(planned.jobs))

    def table_of(self, name: str, planned: Any, results: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows of a sweep ``planned`` (:func:`figures.sweep.plan` with ``record=True``)
        whose jobs gave ``results`` (run with others in one :meth:`run`), written in the
        sweep's format (``results.csv``'s, :func:`figures.sweep.write_table`) to
        ``data/NN-slug-NAME.csv``."""
        from ..sweep import write_table

        rows = planned.rows(results)
        write_table(rows, self.out / "data" / f"{self.name(name)}.csv", planned.names)
        return rows

    @property
    def command(self) -> str:
        """The command that rebuilds this section."""
        quick = (" --quick" if self.quick else " --full-tasks" if self.full_tasks else "") \
            + (" --full" if self.full else "")
        cache = "" if self.cache_dir == self.out / "cache" else f" --cache {self.cache_dir}"
        return f"scurve report --only {self.section.slug} --out {self.out}{quick}{cache}"

    def name(self, name: str) -> str:
        """File stem of the section's item ``name``: ``NN-slug-name``."""
        return f"{self.section.number:02d}-{self.section.slug}-{name}"

    def figure(self, fig: Any, name: str, caption: str,
               rows: list[dict[str, Any]]) -> FigureBlock:
        """Save ``fig`` (PNG) and the numbers it shows (``rows``, CSV)."""
        png = plots.save_png(fig, self.out / "figures" / f"{self.name(name)}.png")
        data = write_csv(self.out / "data" / f"{self.name(name)}.csv", rows)
        return FigureBlock(png, self.out, caption, self.command, data)

    def table(self, name: str, title: str, rows: list[dict[str, Any]]) -> TableBlock:
        """A table and its CSV file."""
        data = write_csv(self.out / "data" / f"{self.name(name)}.csv", rows)
        return TableBlock(title, rows, self.out, data)


CSV_DIGITS = 7  # significant digits of the floats in the data files (what the figures draw)


def _csv_value(value: Any) -> Any:
    """A float rounded to :data:`CSV_DIGITS` significant digits, written as the shortest text
    that reads back as that value (0.99999942607 → ``0.9999994``, 1.0 → ``1.0``); anything
    else unchanged."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        return repr(float(f"{float(value):.{CSV_DIGITS}g}"))
    return value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` (dicts; the header is the union of their keys, in order) to ``path``,
    floats to :data:`CSV_DIGITS` significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return path
