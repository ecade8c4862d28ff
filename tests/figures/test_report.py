"""The report: a one-section quick run (default), and a smoke run of the whole
``scurve report --quick`` (marked ``slow``: about two minutes on 2 cores)."""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import re
import shlex
import sys

import pytest

from figures.claims import CLAIMS, NOT_MEASURED, README_BEGIN, README_END, VERDICTS
from figures.cli import main
from figures.reporting import SECTIONS, resolve_sections
from figures.reporting.sections import scalar_vector


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A quick report of one cheap section (seconds): the claims table's contract."""
    out = tmp_path_factory.mktemp("small")
    assert main(["report", "--quick", "--out", str(out), "--only", "scalar-vector"]) == 0
    return out


def test_claims_rows_are_sentences_with_a_region_a_map_and_a_link(small):
    rows = {r["claim"]: r for r in json.loads((small / "data" / "claims.json").read_text())}
    row = rows[1]
    assert row["verdict"] in VERDICTS and row["region"].startswith(("holds", "fails"))
    assert row["numbers"].endswith(".") and row["numbers"].count(". ") <= 2
    assert "-0" not in row["numbers"]  # no rounding noise shown as negative losses
    assert (small / row["thumbnail"]).is_file()
    page = (small / "index.html").read_text()
    claims = page[page.index("<h2 id='claims'>"):page.index("<h2 id='scalar-vector'>")]
    assert "class='thumb'" in claims and "href='#scalar-vector'" in claims
    cells = [r for r in csv.DictReader(open(small / "data" / "01-scalar-vector-map-claim1.csv"))]
    quick = scalar_vector.QUICK
    assert len(cells) == len(quick.ns) * len(quick.sigmas) and {"σ", "n", "holds"} <= set(cells[0])
    assert rows[2]["verdict"] == NOT_MEASURED


def test_progress_is_a_line_per_section_off_a_terminal_and_bars_on_one(small, capsys,
                                                                      monkeypatch):
    """Standard error a file (CI logs): one line per finished section, no bar; a terminal:
    the section's bar (tqdm), no line."""
    command = ["report", "--quick", "--out", str(small), "--only", "scalar-vector"]
    capsys.readouterr()
    assert main(command) == 0
    err = capsys.readouterr().err
    assert re.fullmatch(rf"scurve report: section 1/{len(SECTIONS)} scalar-vector done in "
                        r"\d+\.\d s; 1/1 sections done; jobs (\d+)/\1 done, 0 left \(as far as "
                        r"counted\); elapsed \d+ s, about 0 s left\n", err)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(command) == 0
    err = capsys.readouterr().err
    assert " 1. scalar-vector: 100%" in err and "scurve report: section" not in err


def test_a_failing_section_is_reported_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    """A section that raises: its page part and its claims say why, the command exits 1."""
    from figures.reporting import page, sections

    def boom(ctx):
        raise RuntimeError("boom")

    broken = tuple(dataclasses.replace(s, build=boom) if s.slug == "scalar-vector" else s
                   for s in sections.SECTIONS)
    monkeypatch.setattr(sections, "SECTIONS", broken)
    monkeypatch.setattr(page, "SECTIONS", broken)
    assert main(["report", "--quick", "--out", str(tmp_path), "--only", "1"]) == 1
    err = capsys.readouterr().err
    assert f"section 1/{len(SECTIONS)} scalar-vector failed in" in err
    assert "section scalar-vector failed: RuntimeError: boom" in err
    rows = {r["claim"]: r for r in json.loads((tmp_path / "data" / "claims.json").read_text())}
    assert rows[1]["verdict"] == NOT_MEASURED and rows[1]["numbers"] == "error: RuntimeError: boom"
    assert 'class="error"' in (tmp_path / "index.html").read_text()


def test_the_page_is_written_at_once_and_each_section_as_it_finishes(tmp_path, capsys,
                                                                   monkeypatch):
    """index.html exists before any section is built and names the sections being built; a
    finished section appears in it while another is still running; progress lines count the
    jobs left."""
    import threading

    from figures.reporting import page, sections
    from figures.reporting.blocks import SectionResult, TextBlock

    first_done = threading.Event()
    seen: dict[str, str] = {}

    def first(ctx):
        seen["first"] = (tmp_path / "index.html").read_text()
        return SectionResult([TextBlock("text of the first section")])

    def second(ctx):
        assert first_done.wait(60)
        seen["second"] = (tmp_path / "index.html").read_text()
        return SectionResult([TextBlock("text of the second section")])

    build = {"scalar-vector": first, "rank-1": second}
    patched = tuple(dataclasses.replace(s, build=build[s.slug]) if s.slug in build else s
                    for s in sections.SECTIONS)
    monkeypatch.setattr(sections, "SECTIONS", patched)
    monkeypatch.setattr(page, "SECTIONS", patched)
    real_assemble = page._assemble

    def assemble(out, footer, running=frozenset(), mode=""):
        rows = real_assemble(out, footer, running, mode)
        if "scalar-vector" not in running and "rank-1" in running:
            first_done.set()
        return rows

    monkeypatch.setattr(page, "_assemble", assemble)
    assert main(["report", "--quick", "--out", str(tmp_path), "--only", "scalar-vector,rank-1"]
                ) == 0
    assert seen["first"].count("Being built now") == 2 and "text of the first section" not in \
        seen["first"] and "Quick run (--quick)" in seen["first"]
    assert "text of the first section" in seen["second"]
    assert seen["second"].count("Being built") == 1
    final = (tmp_path / "index.html").read_text()
    assert "text of the second section" in final and "Being built" not in final
    err = capsys.readouterr().err
    assert "1/2 sections done, running rank-1; jobs 0/0 done, 0 left" in err


def test_readme_option_rewrites_only_the_claims_table(small, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{README_BEGIN}\nstale\n{README_END}\ntail\n")
    assert main(["report", "--quick", "--out", str(small), "--only", "scalar-vector",
                 "--readme", str(readme)]) == 0
    text = readme.read_text()
    table = (small / "data" / "claims.md").read_text().strip()
    assert text == f"# title\n{README_BEGIN}\n{table}\n{README_END}\ntail\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", "--quick", "--out", str(out)]) == 0
    return out


def _sections(page: str) -> dict[str, str]:
    """The HTML of each section, by slug."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"<h2 id='([a-z0-9-]+)'>", page)]
    ends = [s for s, _ in starts[1:]] + [page.index("<hr>")]
    return {slug: page[s:e] for (s, slug), e in zip(starts, ends, strict=True)}


@pytest.mark.slow
def test_every_section_shows_its_figures(report):
    sections = _sections((report / "index.html").read_text())
    for section in SECTIONS:
        html = sections[section.slug]
        assert "class=\"error\"" not in html, html[:500]
        assert "<img" in html, f"section {section.slug} has no figure"


@pytest.mark.slow
def test_every_referenced_file_exists_and_the_page_is_offline(report):
    page = (report / "index.html").read_text()
    refs = re.findall(r"""(?:href|src)=["']([^"'#]+)["']""", page)
    local = [r for r in refs if not r.startswith("data:image/png;base64,")]
    assert local, "the page links its data files"
    assert not [r for r in local if "://" in r or r.startswith("//")]  # nothing external
    for ref in local:
        assert (report / ref).is_file(), ref


@pytest.mark.slow
def test_data_folder_holds_csv_and_json(report):
    data = report / "data"
    assert len(list(data.glob("*.csv"))) >= len(SECTIONS)
    assert (data / "claims.json").is_file() and (data / "run.json").is_file()


@pytest.mark.slow
def test_claims_table_has_a_verdict_for_every_claim(report):
    rows = json.loads((report / "data" / "claims.json").read_text())
    assert [r["claim"] for r in rows] == [c.number for c in CLAIMS]
    for row in rows:
        assert row["verdict"] in VERDICTS
        assert row["numbers"]
    measured = [r for r in rows if r["verdict"] != NOT_MEASURED]
    assert len(measured) >= 10, [(r["claim"], r["numbers"]) for r in rows]


@pytest.mark.slow
def test_rerun_with_the_same_cache_recomputes_nothing(report, capsys):
    assert main(["report", "--quick", "--out", str(report), "--only", "1,rank-1,11"]) == 0
    record = json.loads((report / "data" / "run.json").read_text())
    assert record["cache"]["misses"] == 0 and record["cache"]["hits"] > 0
    out, err = capsys.readouterr()
    assert "total wall time" in out
    lines = [line for line in err.splitlines() if line.startswith("scurve report: section")]
    assert sorted(line.split()[3] for line in lines) == [f"{n}/{len(SECTIONS)}"
                                                          for n in (1, 11, 2)]


@pytest.mark.slow
def test_the_command_under_each_figure_regenerates_it(report):
    page = (report / "index.html").read_text()
    commands = {html.unescape(c) for c in re.findall(r"regenerate: <code>([^<]+)</code>", page)}
    slugs = {s.slug for s in SECTIONS if s.slug != "equations"}  # equations: no figure
    assert {shlex.split(c)[3] for c in commands} == slugs
    command = next(c for c in commands if "--only rank-1 " in c)
    assert shlex.split(command)[:2] == ["scurve", "report"]
    figure = report / "figures" / "02-rank-1-curves.png"
    before = figure.stat().st_mtime_ns
    assert main(shlex.split(command)[1:]) == 0
    assert figure.stat().st_mtime_ns > before
    assert json.loads((report / "data" / "run.json").read_text())["cache"]["misses"] == 0


@pytest.mark.slow  # ~4 s: starts a LocalCluster
def test_report_jobs_run_on_a_dask_cluster(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(["report", "--quick", "--out", str(tmp_path), "--only", "scalar-vector",
                     "--scheduler", cluster.scheduler_address]) == 0
    record = json.loads((tmp_path / "data" / "run.json").read_text())
    assert record["cache"]["misses"] > 0 and not record["errors"]
    assert (tmp_path / "figures" / "01-scalar-vector-curves.png").is_file()


@pytest.mark.parametrize("only", ["99", "nonsense", ","])
def test_bad_section_is_a_one_line_usage_error(only, tmp_path, capsys):
    assert main(["report", "--quick", "--out", str(tmp_path), "--only", only]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--only" in err
    assert not (tmp_path / "index.html").exists()


def test_sections_resolve_by_number_or_slug():
    assert [s.slug for s in resolve_sections("2,weight-decay")] == ["rank-1", "weight-decay"]
    assert len(resolve_sections(None)) == len(SECTIONS) >= 12
    assert {c.section for c in CLAIMS} <= {s.slug for s in SECTIONS}


def test_fragments_link_pngs_and_the_page_embeds_them(tmp_path):
    """Each figure is stored once (figures/); index.html embeds it as a data URI."""
    import base64

    from figures.reporting.page import inline_images

    (tmp_path / "figures").mkdir()
    png = b"\x89PNG\r\n\x1a\nfake"
    (tmp_path / "figures" / "a.png").write_bytes(png)
    fragment = ('<figure><img alt="x" src="figures/a.png"><a href="figures/a.png">PNG</a>'
                '<img src="figures/missing.png"></figure>')
    page = inline_images(tmp_path, fragment)
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert '<a href="figures/a.png">PNG</a>' in page  # links stay links
    assert 'src="figures/missing.png"' in page  # nothing to embed: left as it was
