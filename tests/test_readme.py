"""The README is a contract: CI runs its test command verbatim, and its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    test_command = next(line for line in first_block if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_python_examples_run_and_theory_matches_experiment(capsys):
    namespace: dict = {}
    for example in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["loss"].item() > 0 and set(namespace["info"]) >= {"absent"}
    theory, run = namespace["theory"], namespace["run"]
    for f, t in theory.crossing_times().items():
        assert abs(run.crossing_times()[0][f] - t) <= 1e-6 * t
    assert "plateau" in capsys.readouterr().out


def test_your_own_model_section_runs(tmp_path, monkeypatch, capsys):
    """The "Your own model" file and its sample/derive/predict commands, as a user runs them."""
    import json
    import shlex

    import dynamics.model
    from figures.cli import main

    section = README.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(# mine.py\n.*?)```", section, re.S).group(1)
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()
    (tmp_path / "mine.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dynamics.registry, "_ENTRIES", dict(dynamics.registry._ENTRIES))
    monkeypatch.setattr(dynamics.model, "_BUILT", dict(dynamics.model._BUILT))
    for line in commands[:3]:  # sample, derive, predict (train/compare: tests/validation)
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "scurve"
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    state_size = json.loads(out.strip().splitlines()[-1])["state_size"]
    assert state_size == 16 and '"state_size": 16' in section
