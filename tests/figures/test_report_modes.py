"""The default report's maps and the full ones (``--full``): which settings a section gets,
and the page and each section saying which run a reader is looking at."""

from __future__ import annotations

import dataclasses

import pytest

from figures.cli import main
from figures.reporting.blocks import Section, SectionResult, TextBlock
from figures.reporting.sections import grouped


def _section(**settings) -> Section:
    return Section(1, "x", "X", lambda ctx: SectionResult(), **settings)


def test_each_run_picks_its_settings_and_the_default_falls_back_to_the_full_maps():
    both = _section(full="full", quick="quick", full_tasks="tasks", default="lean")
    assert both.settings(quick=False) == "lean"
    assert both.settings(quick=False, full=True) == "full"
    assert both.settings(quick=True) == "quick"
    assert both.settings(quick=False, full_tasks=True) == "tasks"
    plain = _section(full="full", quick="quick")
    assert plain.settings(quick=False) == plain.settings(quick=False, full=True) == "full"
    assert plain.settings(quick=False, full_tasks=True) == "full"


def test_grouped_default_trains_what_the_verdicts_rest_on_and_full_every_method():
    default = grouped.SECTION.settings(quick=False)
    full = grouped.SECTION.settings(quick=False, full=True)
    assert set(default.methods) == set(grouped.JUDGED) < set(full.methods)
    assert dataclasses.replace(default, methods=full.methods) == full  # nothing else is cut


@pytest.mark.parametrize("full", [False, True])
def test_the_page_and_the_section_say_which_run_built_them(tmp_path, monkeypatch, full):
    from figures.reporting import page, sections

    seen = {}

    def build(ctx):
        seen["settings"] = ctx.settings
        return SectionResult([TextBlock("built")])

    patched = tuple(dataclasses.replace(s, build=build, default="lean", full="full")
                    if s.slug == "scalar-vector" else s for s in sections.SECTIONS)
    monkeypatch.setattr(sections, "SECTIONS", patched)
    monkeypatch.setattr(page, "SECTIONS", patched)
    assert main(["report", "--out", str(tmp_path), "--only", "scalar-vector"]
                + (["--full"] if full else [])) == 0
    assert seen["settings"] == ("full" if full else "lean")
    text = (tmp_path / "index.html").read_text()
    if full:
        assert "Full run (--full)" in text and "by a full run" in text
        assert "--only scalar-vector" in text and "--full</code>" in text
    else:
        assert "Default run" in text and "scurve report --full" in text
        assert "by a default run" in text


def test_quick_and_full_exclude_each_other(tmp_path, capsys):
    assert main(["report", "--quick", "--full", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scurve report: error: --quick and --full exclude each other"]
