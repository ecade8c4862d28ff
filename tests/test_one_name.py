"""Issue 17, "one name per concept": THE drop width, its levels and THE emergence time are
defined once, in :mod:`dynamics.phases` (``fall_level``, ``fall_times``, ``relative_width``,
``emergence_time``); a grep over the packages' code fails if a second definition reappears."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWNER = "dynamics/phases.py"

#: code that re-derives one of phases' definitions (comments and strings are not searched)
PATTERNS = {
    "relative drop width": re.compile(r"-[^/=\n]*\)/(t_half|t_mid|crossing\(run,0\.5\))"),
    "fall level": re.compile(r"\w+\s*\+\s*0\.\d+\s*\*\s*\(\s*\w+\s*-\s*\w+\s*\)"
                             r"|1\s*-\s*fractions\s*\*\s*\(\s*1\s*-"),
    "emergence time": re.compile(r"crossing_times\([^()]*(\([^()]*\)[^()]*)*\(0\.5,\)\)\[0\.5\]"),
}


def _code(text: str) -> str:
    """``text``'s code tokens, joined without spaces (a line per logical line): no comments,
    no strings (docstrings)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            out.append("\n")
        elif tok.type not in (tokenize.COMMENT, tokenize.STRING):
            out.append(tok.string)
    return "".join(out)


def _hits(text: str) -> list[str]:
    code = _code(text)
    return [name for name, pattern in PATTERNS.items() if pattern.search(code)]


def test_no_second_drop_width_level_or_emergence_time() -> None:
    found = []
    for package in ("dynamics", "validation", "figures"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != OWNER:
                found += [f"{rel}: {name}" for name in _hits(path.read_text())]
    assert not found, "defined again outside dynamics.phases: " + "; ".join(found)


@pytest.mark.parametrize(("snippet", "name"), [
    ('    return {"width": (t_90 - t_10) / t_half}\n', "relative drop width"),
    ("    w = (t_hi - t_lo) / t_mid\n", "relative drop width"),
    ("    r = t_half.max() / t_half.min()\n", None),  # a spread, not a width
    ("    s = (crossing(run, 0.1) - crossing(run, 0.9)) / crossing(run, 0.5)\n",
     "relative drop width"),
    ("    q90 = math.log(after_lin + 0.9 * (before_lin - after_lin))\n", "fall level"),
    ("    x = f(t, y, start, 1 - fractions * (1 - end / start))\n", "fall level"),
    ("    return crossing_times(self.t, self.loss, level, (0.5,))[0.5]\n", "emergence time"),
    ("    x = [crossing_times(t, g[:, k], ref[k], (0.5,))[0.5] for k in r]\n", "emergence time"),
])
def test_the_grep_finds_the_old_definitions(snippet: str, name: str | None) -> None:
    """The patterns catch the definitions this issue removed (so the test above can fail),
    and not their mention in a docstring or comment."""
    assert _hits(snippet) == ([name] if name else [])
    assert _hits(f'"""{snippet.strip()}"""\n# {snippet.strip()}\n') == []


def test_dynamics_take_rate_decay_and_momentum_by_keyword() -> None:
    """Issue 17: one argument order everywhere: ``grad``/``rhs``/``step`` of every flow and
    map take ``lr``, ``weight_decay``, ``momentum`` keyword-only (a positional call fails)."""
    import inspect

    from dynamics import groups, persample, symbolic

    classes = (symbolic.FullFlow, symbolic._CrossEntropyFlow, symbolic.ReducedFlow,
               symbolic.ReducedGD, persample.PerSampleFlow, persample.PerSampleReduced,
               groups.GroupedDynamics, groups.GroupedFullFlow)
    checked = 0
    for cls in classes:
        for method in ("grad", "rhs", "step"):
            if not hasattr(cls, method):
                continue
            params = inspect.signature(getattr(cls, method)).parameters
            named = [p for p in ("lr", "weight_decay", "momentum") if p in params]
            assert named, f"{cls.__name__}.{method} takes none of lr, weight_decay, momentum"
            assert "lam" not in params and "mu" not in params, f"{cls.__name__}.{method}"
            for name in named:
                assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, \
                    f"{cls.__name__}.{method}({name}) is positional"
            checked += 1
    assert checked >= 10
