"""The report: a smoke run of ``scurve report --quick`` (once per module) and its contract."""

from __future__ import annotations

import html
import json
import re
import shlex

import pytest

from figures.claims import CLAIMS, NOT_MEASURED, VERDICTS
from figures.cli import main
from figures.report import SECTIONS, resolve_sections


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


def test_every_section_shows_its_figures(report):
    sections = _sections((report / "index.html").read_text())
    for section in SECTIONS:
        html = sections[section.slug]
        assert "class=\"error\"" not in html, html[:500]
        assert "<img" in html, f"section {section.slug} has no figure"


def test_every_referenced_file_exists_and_the_page_is_offline(report):
    page = (report / "index.html").read_text()
    refs = re.findall(r"""(?:href|src)=["']([^"'#]+)["']""", page)
    local = [r for r in refs if not r.startswith("data:image/png;base64,")]
    assert local, "the page links its data files"
    assert not [r for r in local if "://" in r or r.startswith("//")]  # nothing external
    for ref in local:
        assert (report / ref).is_file(), ref


def test_data_folder_holds_csv_and_json(report):
    data = report / "data"
    assert len(list(data.glob("*.csv"))) >= len(SECTIONS)
    assert (data / "claims.json").is_file() and (data / "run.json").is_file()


def test_claims_table_has_a_verdict_for_every_claim(report):
    rows = json.loads((report / "data" / "claims.json").read_text())
    assert [r["claim"] for r in rows] == [c.number for c in CLAIMS]
    for row in rows:
        assert row["verdict"] in VERDICTS
        assert row["numbers"]
    measured = [r for r in rows if r["verdict"] != NOT_MEASURED]
    assert len(measured) >= 10, [(r["claim"], r["numbers"]) for r in rows]


def test_rerun_with_the_same_cache_recomputes_nothing(report, capsys):
    assert main(["report", "--quick", "--out", str(report), "--only", "1,rank-1,11"]) == 0
    record = json.loads((report / "data" / "run.json").read_text())
    assert record["cache"]["misses"] == 0 and record["cache"]["hits"] > 0
    out, err = capsys.readouterr()
    assert "total wall time" in out
    for bar in (" 1. scalar-vector", " 2. rank-1", "11. equations"):  # one bar per section
        assert bar in err


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


def test_report_jobs_run_on_a_dask_cluster(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(["report", "--quick", "--out", str(tmp_path), "--only", "scalar-vector",
                     "--scheduler", cluster.scheduler_address]) == 0
    record = json.loads((tmp_path / "data" / "run.json").read_text())
    assert record["cache"]["misses"] > 0 and not record["errors"]
    assert (tmp_path / "figures" / "01-scalar-vector-curves.png").is_file()


@pytest.mark.parametrize("only", ["12", "nonsense", ","])
def test_bad_section_is_a_one_line_usage_error(only, tmp_path, capsys):
    assert main(["report", "--quick", "--out", str(tmp_path), "--only", only]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--only" in err
    assert not (tmp_path / "index.html").exists()


def test_sections_resolve_by_number_or_slug():
    assert [s.slug for s in resolve_sections("2,weight-decay")] == ["rank-1", "weight-decay"]
    assert len(resolve_sections(None)) == len(SECTIONS) == 11
    assert {c.section for c in CLAIMS} <= {s.slug for s in SECTIONS}
