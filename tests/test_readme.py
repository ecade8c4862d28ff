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
