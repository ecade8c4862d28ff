"""Issue 23: an option the method does not use is refused (one line, exit 2), and
``predict --json`` says whether the reduced order-parameter dynamics were integrated."""

from __future__ import annotations

import json

import pytest

from figures.cli import main


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("opts") / "spec.npz"
    assert main(["sample", "factorization", "--n", "30", "--rank", "2", "--model-rank", "2",
                 "--init", "1e-2", "--seed", "1", "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("options", [
    ("--method", "flow", "--lr", "0.05"),          # flow reads --lr only under Group DRO
    ("--method", "modified", "--lr", "0.05", "--momentum", "0.9"),
    ("--method", "full", "--eps", "1e-3"),
])
def test_option_the_method_does_not_take(spec_path, options, capsys) -> None:
    assert main(["predict", str(spec_path), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


@pytest.mark.parametrize("method, reduced", [("flow", True), ("full", False)])
def test_predict_json_says_reduced(spec_path, method, reduced, capsys) -> None:
    assert main(["predict", str(spec_path), "--method", method, "--t-max", "5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reduced"] is reduced
    # independent check: the full flow's state is X and Y (2·n·k = 120 numbers); the reduced
    # one is O(r·k + k²), whatever n
    assert (out["state_size"] < 2 * 30 * 2) is reduced


def test_flow_takes_lr_under_group_dro(tmp_path, capsys) -> None:
    spec = tmp_path / "modes.npz"
    assert main(["sample", "modes", "--dims", "n=8,G=2,k=2", "--init", "0.01", "--seed", "2",
                 "-o", str(spec)]) == 0
    assert main(["predict", str(spec), "--objective", "dro(step=0.01)", "--method", "flow",
                 "--lr", "0.05", "--t-max", "2", "--json"]) == 0
    assert main(["predict", str(spec), "--objective", "power(q=1)", "--method", "flow",
                 "--lr", "0.05", "--t-max", "2"]) == 2
