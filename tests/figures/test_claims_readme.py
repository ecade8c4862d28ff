"""The README's claims table is the generator's output (``scurve report --readme README.md``),
not hand-written: same header, one row per claim in order, the claims' own wording, a verdict
from :data:`figures.claims.VERDICTS`, and it regenerates to itself."""

from __future__ import annotations

import re
from pathlib import Path

from figures.claims import CLAIMS, README_BEGIN, README_END, VERDICTS, claims_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def test_readme_claims_table_is_in_the_generators_format():
    assert README.count(README_BEGIN) == 1 and README.count(README_END) == 1
    table = README.split(README_BEGIN)[1].split(README_END)[0].strip()
    lines = table.splitlines()
    header = claims_markdown([]).splitlines()
    assert lines[:2] == header
    rows = [_cells(line) for line in lines[2:]]
    assert [int(r[0]) for r in rows] == [c.number for c in CLAIMS]
    assert [r[1] for r in rows] == [c.text for c in CLAIMS]
    assert all(r[2] in VERDICTS for r in rows)
    again = claims_markdown([{"claim": int(r[0]), "text": r[1], "verdict": r[2],
                              "region": "" if r[3] == "–" else r[3], "numbers": r[4]}
                             for r in rows])
    assert again == table
