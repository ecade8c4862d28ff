"""The report's page: running the sections, saving each one, and assembling ``index.html``.

:func:`report` runs the chosen sections (:mod:`figures.reporting.sections`) concurrently, one
thread each, their jobs on one executor (cached by :mod:`figures.sweeps`); each section's HTML
fragment goes to ``OUT/sections/`` and its claims and data to ``OUT/data/``, so ``--only``
refreshes its sections and keeps the others. The page and the claims table
(``data/claims.{json,csv,md}``) are assembled from every fragment on disk: at once (sections
being built are marked so) and again as each section finishes, so a reader can open
``index.html`` and reload. Progress goes to standard error: a bar per section on a terminal,
else a line per finished section and every :data:`PROGRESS_EVERY` seconds (sections running,
jobs done and left, time left).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..claims import ClaimResult, claims_markdown, claims_table, replace_readme_table
from ..jsonable import jsonable
from ..sweeps import CacheStats, default_executor, peak_rss_mb
from .blocks import Context, Section, SectionResult, TextBlock, write_csv
from .sections import SECTIONS, resolve_sections

__all__ = ["report", "write_readme"]

_MODES = {
    "quick": "Quick run (--quick): small problems and few seeds, a smoke test; the verdicts "
             "of a default run rest on larger maps.",
    "default": "Default run: the maps every verdict rests on, cut to what the verdicts need "
               "(grouped losses: the judged methods only; power family: without the exact GD "
               "map; extra seeds only beside a map's boundary or where seeds disagree); "
               "`scurve report --full` runs the full maps.",
    "full": "Full run (--full): the full maps of every section.",
    "full_tasks": "Default maps with the training tasks' full configurations and more seeds "
                  "(--full-tasks).",
}


def _mode(quick: bool, full: bool, full_tasks: bool) -> str:
    """The key of :data:`_MODES` of a run."""
    return "quick" if quick else "full_tasks" if full_tasks else "full" if full else "default"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1500px;
margin:0 auto;padding:1em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;
padding:.25em .5em;text-align:left;vertical-align:top} th{background:#f3f3f3}
figure{margin:1em 0} figure img{max-width:100%} figcaption{font-size:.85em;color:#444}
code{background:#f4f4f4;padding:0 .3em} .small{font-size:.8em}
.pending{background:#fff6d6;padding:.4em .7em;border-left:4px solid #e0b000}
.error{background:#fde2e2;padding:.4em .7em;border-left:4px solid #c00}
.supported{color:#176a1a;font-weight:600} .holds-in-part{color:#a06000;font-weight:600}
.not-supported{color:#b00;font-weight:600} .not-measured{color:#777}
ul.eqs{list-style:none;padding-left:0} img.eq{max-width:100%;margin:.2em 0}
nav a{margin-right:1em} img.thumb{height:2.2em;border:1px solid #ccc}
"""


_IMAGE = re.compile(r'(<img [^>]*?src=")([^":]+\.png)(")')


def inline_images(out: Path, fragment: str) -> str:
    """``fragment`` with each ``<img src="PATH.png">`` (relative to ``out``) embedded as a
    base64 data URI, so ``index.html`` stands alone while the fragments on disk only link
    the PNGs (each figure is stored once, in ``figures/``)."""
    def embed(match: re.Match[str]) -> str:
        path = out / match.group(2)
        if not path.is_file():
            return match.group(0)
        encoded = base64.b64encode(path.read_bytes()).decode()
        return f"{match.group(1)}data:image/png;base64,{encoded}{match.group(3)}"

    return _IMAGE.sub(embed, fragment)


def _thumbnail_html(out: Path, row: dict[str, Any]) -> str:
    path = out / str(row.get("thumbnail") or "")
    if not row.get("thumbnail") or not path.is_file():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return (f"<a href='#{row['section']}'><img class='thumb' alt='map of claim {row['claim']}' "
            f"src='data:image/png;base64,{encoded}'></a>")


def _claims_html(out: Path, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{r['claim']}</td><td>{html.escape(r['text'])}</td>"
        f"<td class='{r['verdict'].replace(' ', '-')}'>{html.escape(r['verdict'])}</td>"
        f"<td>{html.escape(str(r.get('region') or '–'))}</td>"
        f"<td>{html.escape(r['numbers'])}<br><span class='small'>"
        f"{html.escape(str(r.get('settings') or ''))}</span></td>"
        f"<td>{_thumbnail_html(out, r)}<br><a href='#{r['section']}'>"
        f"{html.escape(r['section'])}</a></td></tr>"
        for r in rows)
    return ("<p>Each claim is judged on a map over the parameters it hinges on (init σ per "
            "coordinate, rank, optimizer and η, target scale, λ); the verdict names the region "
            "where its test holds, in one sentence (a row whose result flips back and forth "
            "along its axis is called seed-dependent, with the fraction that holds); each "
            "section keeps the cell-by-cell list. Click a map for its section.</p>"
            "<table><tr><th>#</th><th>claim</th><th>verdict</th>"
            "<th>where it holds</th><th>what decides it</th><th>map</th></tr>"
            f"{body}</table>"
            "<p class='small'><a href='data/claims.csv'>claims (CSV)</a> · "
            "<a href='data/claims.json'>claims (JSON)</a> · "
            "<a href='data/claims.md'>claims (Markdown, the README's table)</a> · "
            "<a href='data/run.json'>run (JSON)</a></p>")


def write_readme(out: str | Path, readme: str | Path) -> Path:
    """Rewrite the claims table of ``readme`` (between :data:`figures.claims.README_BEGIN`
    and ``README_END``) from the report's ``out/data/claims.json``."""
    rows = json.loads((Path(out) / "data" / "claims.json").read_text())
    path = Path(readme)
    path.write_text(replace_readme_table(path.read_text(), claims_markdown(rows)))
    return path


def _stem(section: Section) -> str:
    return f"{section.number:02d}-{section.slug}"


def _save_section(out: Path, section: Section, result: SectionResult, quick: bool,
                  seconds: float, command: str, mode: str = "") -> None:
    """Write the section's HTML fragment (``sections/``) and its claims and data (``data/``).

    The page is assembled from the fragments on disk, so ``--only`` refreshes its sections
    and keeps the others from earlier runs.
    """
    reasons = "no measurement" if result.error is None else f"error: {result.error}"
    stamp = time.strftime("%Y-%m-%d %H:%M")
    fragment = "\n".join([
        f"<h2 id='{section.slug}'>{section.number}. {html.escape(section.title)}</h2>",
        *(block.html() for block in result.blocks),
        *(f"<p class='small'>Claim {c.number}, cell by cell: {html.escape(c.cells)}</p>"
          for c in result.claims if c.cells),
        f"<p class='small'>Built {stamp} by a {mode or ('quick' if quick else 'full')} run in "
        f"{seconds:.1f} s; regenerate this section: <code>{html.escape(command)}</code></p>"])
    (out / "sections").mkdir(exist_ok=True)
    (out / "sections" / f"{_stem(section)}.html").write_text(fragment, encoding="utf-8")
    record = {"quick": quick, "mode": mode, "built": stamp, "seconds": seconds, "reasons": reasons,
              "claims": [c.__dict__ for c in result.claims], **result.data}
    (out / "data" / f"{_stem(section)}.json").write_text(
        json.dumps(jsonable(record), indent=1, ensure_ascii=False))


def _assemble(out: Path, footer: str, running: frozenset[str] = frozenset(),
              mode: str = "") -> list[dict[str, Any]]:
    """Write ``out/index.html`` from the section fragments on disk; returns the claims rows.

    Sections in ``running`` (slugs) are marked as being built now (the page is rewritten as
    each one finishes: reload it); ``mode`` says which run a reader is looking at."""
    parts, results, reasons = [], {}, {}
    for section in SECTIONS:
        fragment = out / "sections" / f"{_stem(section)}.html"
        meta = out / "data" / f"{_stem(section)}.json"
        if section.slug in running:
            reasons[section.slug] = "section being built now"
            parts.append(f"<h2 id='{section.slug}'>{section.number}. "
                         f"{html.escape(section.title)}</h2><p class='pending'>Being built "
                         "now: reload this page when it is done.</p>")
        elif fragment.is_file() and meta.is_file():
            record = json.loads(meta.read_text())
            parts.append(inline_images(out, fragment.read_text(encoding="utf-8")))
            results.update({c["number"]: ClaimResult(**c) for c in record["claims"]})
            reasons[section.slug] = record["reasons"]
        else:
            reasons[section.slug] = "section not built yet"
            parts.append(f"<h2 id='{section.slug}'>{section.number}. "
                         f"{html.escape(section.title)}</h2><p class='pending'>Not built yet: "
                         f"<code>scurve report --only {section.slug} --out {out}</code></p>")
    claims = claims_table(results, reasons)
    write_csv(out / "data" / "claims.csv", claims)
    (out / "data" / "claims.json").write_text(json.dumps(claims, indent=1, ensure_ascii=False))
    (out / "data" / "claims.md").write_text(claims_markdown(claims) + "\n")
    nav = "".join(f"<a href='#{s.slug}'>{s.number}. {html.escape(s.title)}</a>"
                  for s in SECTIONS)
    page = "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>scurve report</title><style>{CSS}</style></head><body>"
        "<h1>scurve report</h1><p>Step-wise learning in solvable toy models: theory "
        "(float64 integration of the derived dynamics) against real training from the same "
        "initialisation. Time is continuous, t = η·step.</p>"
        + (f"<p class='{'pending' if running else 'small'}'>{html.escape(mode)}</p>"
           if mode else "")
        + f"<nav>{nav}</nav><h2 id='claims'>Claims</h2>{_claims_html(out, claims)}",
        *parts,
        f"<hr><p class='small'>{html.escape(footer)}</p></body></html>"])
    (out / "index.html").write_text(page, encoding="utf-8")
    return claims


_PRINT = threading.Lock()
PROGRESS_EVERY = 30.0  # seconds between progress lines when standard error is not a terminal
RUNNING_SHOWN = 3  # sections named in a progress line as running (then "and k more")


class _Bar(tqdm):
    """A section's progress bar that counts its finished jobs (``done``) even when it is not
    drawn (tqdm's disabled bars count nothing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.done = 0

    def update(self, n: float | None = 1) -> bool | None:
        self.done += int(n or 0)
        return super().update(n)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Progress:
    """Progress of a report run over its sections' bars: jobs done and left (those the sections
    have asked for so far) and an estimate of the time left, elapsed × left / done."""

    def __init__(self, bars: dict[str, _Bar], started: float) -> None:
        self.bars, self.started = bars, started
        self.finished: list[str] = []

    def line(self, head: str) -> str:
        total = sum(int(b.total or 0) for b in self.bars.values())
        done = sum(b.done for b in self.bars.values())
        left = max(total - done, 0)
        elapsed = time.perf_counter() - self.started
        eta = 0.0 if not left else elapsed * left / done if done else math.nan
        running = [slug for slug in self.bars if slug not in self.finished]
        shown = ", ".join(running[:RUNNING_SHOWN]) + (
            f" and {len(running) - RUNNING_SHOWN} more" if len(running) > RUNNING_SHOWN else "")
        return (f"scurve report: {head}; {len(self.finished)}/{len(self.bars)} sections done"
                + (f", running {shown}" if running else "")
                + f"; jobs {done}/{total} done, {left} left (as far as counted); "
                f"elapsed {_duration(elapsed)}, about {_duration(eta)} left")


def _run_section(ctx: Context, lines: bool, progress: _Progress | None = None,
                 saved: Any = None) -> tuple[str | None, float]:
    """Build and save ``ctx.section``: (error or None, seconds). A failure becomes a note in
    the section; the other sections go on. With ``lines`` (standard error not a terminal),
    prints one line when the section is done (with ``progress``: jobs left and time left)
    instead of drawing its bar. ``saved()`` is called once the section is on disk (the live
    page)."""
    started = time.perf_counter()
    try:
        result = ctx.section.build(ctx)
    except Exception as exc:  # reported in its section and by the command's exit status
        error = f"{type(exc).__name__}: {exc}"
        result = SectionResult([TextBlock(f"error: {error}", "error")], error=error)
    finally:
        ctx.bar.close()
    seconds = time.perf_counter() - started
    _save_section(ctx.out, ctx.section, result, ctx.quick, seconds, ctx.command,
                  _mode(ctx.quick, ctx.full, ctx.full_tasks).replace("_", " "))
    head = (f"section {ctx.section.number}/{len(SECTIONS)} {ctx.section.slug} "
            f"{'done' if result.error is None else 'failed'} in {seconds:.1f} s")
    with _PRINT:
        if progress is not None:
            progress.finished.append(ctx.section.slug)
        if saved is not None:
            saved()
        if lines:
            print(progress.line(head) if progress is not None else f"scurve report: {head}",
                  file=sys.stderr, flush=True)
    return result.error, seconds


def report(
    out: str | Path,
    quick: bool = False,
    only: str | None = None,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    full_tasks: bool = False,
    full: bool = False,
) -> dict[str, Any]:
    """Run the sections (all, or ``only``) and write ``out/index.html`` and ``out/data/``.

    The page holds every section built so far in ``out`` (sections not run now keep their
    last build); the claims table is computed from the sections' saved data.

    Args:
        out: output folder.
        quick: small problems and few seeds (a smoke run, at most ~2 minutes on 2 cores).
        only: section number or slug (comma-separated for several); None: all.
        executor: where the jobs run (default: a local process pool).
        cache_dir: result cache (default ``out/cache``).
        full_tasks: the training tasks' full configurations and more seeds (sections with
            ``full_tasks`` settings: grouped losses); not with ``quick``.
        full: every section's full maps (:attr:`Section.full`) instead of the default run's
            (:attr:`Section.default`); not with ``quick``.

    Returns:
        The run record written to ``out/data/run.json``: seconds (total and per section),
        cache hits and misses, errors.
    """
    if quick and full_tasks:
        raise ValueError("--quick and --full-tasks exclude each other")
    if quick and full:
        raise ValueError("--quick and --full exclude each other")
    started = time.perf_counter()
    chosen = resolve_sections(only)
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    stats = CacheStats()
    own = executor is None
    pool = default_executor() if executor is None else executor
    cache = Path(cache_dir or out / "cache")
    bars = sys.stderr.isatty()  # else one line per finished section (CI logs, files)

    def context(i: int, section: Section) -> Context:
        bar = _Bar(total=0, position=i, dynamic_ncols=True, disable=not bars,
                   desc=f"{section.number:>2}. {section.slug}")
        return Context(out, quick, pool, cache, CacheStats(parent=stats), section, bar,
                       section.settings(quick, full_tasks, full), full_tasks, full)

    mode = (f"{_MODES[_mode(quick, full, full_tasks)]} "
            "Each section says which run built it.")
    contexts = {section.slug: context(i, section) for i, section in enumerate(chosen)}
    progress = _Progress({slug: c.bar for slug, c in contexts.items()}, started)

    def saved() -> None:  # the live page: rewritten as each section finishes (under _PRINT)
        running = frozenset(contexts) - frozenset(progress.finished)
        _assemble(out, "Run in progress: reload this page as sections finish.", running,
                  f"{mode} In progress: {len(progress.finished)}/{len(contexts)} sections "
                  "built; reload this page as sections finish.")

    with _PRINT:
        saved()  # index.html exists at once
    stop = threading.Event()

    def ticker() -> None:  # a line every PROGRESS_EVERY seconds between sections
        while not stop.wait(PROGRESS_EVERY):
            with _PRINT:
                print(progress.line("progress"), file=sys.stderr, flush=True)

    if not bars:
        threading.Thread(target=ticker, daemon=True, name="report-progress").start()
    errors: dict[str, str] = {}
    timing: dict[str, float] = {}
    try:  # sections run concurrently: one waits on its jobs while another draws
        with ThreadPoolExecutor(len(chosen), thread_name_prefix="section") as threads:
            futures = {slug: threads.submit(_run_section, ctx, not bars, progress, saved)
                       for slug, ctx in contexts.items()}
            for slug, future in futures.items():
                error, timing[slug] = future.result()
                if error is not None:
                    errors[slug] = error
    finally:
        stop.set()
        if own:
            pool.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - started
    record = {"seconds": seconds, "quick": quick, "full": full, "full_tasks": full_tasks,
              "section_seconds": timing,
              "section_cpu_seconds": {slug: c.stats.to_dict()["jobs_cpu_seconds"]
                                      for slug, c in contexts.items()},
              "section_peak_mb": {slug: max(c.stats.peak_mb.values(), default=0.0)
                                  for slug, c in contexts.items()},
              "main_peak_mb": round(peak_rss_mb()),  # this process: pages, figures, results
              "cache": stats.to_dict(), "errors": errors}
    (out / "data" / "run.json").write_text(json.dumps(record, indent=1))
    _assemble(out, f"Last run ({_mode(quick, full, full_tasks).replace('_', ' ')}, sections "
                   f"{', '.join(s.slug for s in chosen)}): {seconds:.1f} s wall time; "
                   f"{stats.misses} jobs computed, {stats.hits} read from the cache.",
              mode=mode)
    return record
