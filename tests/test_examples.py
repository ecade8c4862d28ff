"""The shipped example models (``examples/``): each loads, samples, predicts, and its
documented commands work.

For every ``examples/*.py``: :func:`dynamics.model.load_file` registers a model named after the
file; the dimensions and init in its docstring's ``scurve sample`` command give a small spec
(:func:`dynamics.problems.sample_model`) that round-trips through ``.npz``; ``predict(spec,
Flow())`` runs with a non-increasing, finite loss; a reducible model's ``state_size`` is the
same when every large dimension is 10x larger, the non-closing one warns once and integrates
every entry of its learned matrices. ``examples/README.md``'s Python block runs as written, and
the README's ``scurve sample`` / ``predict --json`` commands run through the CLI.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from dynamics.integrate import NotReducedWarning, predict
from dynamics.methods import Discrete, Flow
from dynamics.model import load_file
from dynamics.problems import ModelSpec, load, sample_model, save

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FILES = sorted(EXAMPLES.glob("*.py"))
NOT_CLOSING = {"covariance"}
T_MAX = 3.0  # a short horizon: enough to see the loss move, cheap at every size


def documented_command(path: Path) -> tuple[dict[str, int], float]:
    """(dims, init) of the ``scurve sample --model examples/FILE.py --dims ...`` line in the
    file's docstring."""
    text = path.read_text()
    match = re.search(rf"scurve sample --model examples/{path.name} --dims (\S+)"
                      r"(?: --init (\S+))?", text)
    assert match, f"{path.name}: docstring lacks a 'scurve sample --model ...' command"
    dims = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split(","))}
    assert f"scurve predict spec.npz --model examples/{path.name}" in text
    return dims, float(match.group(2) or 1e-2)


def predict_quietly(spec, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = predict(spec, Flow(), t_max=T_MAX, **kwargs)
    return traj, [w for w in caught if issubclass(w.category, NotReducedWarning)]


def test_there_are_examples_and_the_readme_lists_each():
    names = {p.stem for p in FILES}
    assert {"two_layer", "covariance"} <= names
    readme = (EXAMPLES / "README.md").read_text()
    for name in names:
        assert f"`{name}.py`" in readme


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_loads_samples_and_predicts(path, tmp_path):
    model = load_file(path)
    assert model.name == path.stem and model.description
    dims, init = documented_command(path)
    spec = sample_model(model, dims, init=init, seed=0)
    saved = load(save(spec, tmp_path / "spec.npz"))
    assert isinstance(saved, ModelSpec) and saved == spec
    traj, notices = predict_quietly(saved)
    assert np.all(np.isfinite(traj.loss)) and traj.t[-1] == pytest.approx(T_MAX)
    assert np.all(np.diff(traj.loss) <= 1e-12 * spec.l_ref)  # gradient flow: L never rises
    assert traj.loss[-1] < traj.loss[0]
    learned = sum(math.prod(v.shape) for k, v in spec.values().items()
                  if k in model.learned_names)
    if path.stem in NOT_CLOSING:
        assert len(notices) == 1 and "term" in str(notices[0].message)
        assert traj.state_size == learned  # the full flow
        return
    assert not notices
    bigger = {d: v * (10 if any(str(s) == d for s in model.large) else 1)
              for d, v in dims.items()}
    traj_big, _ = predict_quietly(sample_model(model, bigger, init=init, seed=0))
    assert traj_big.state_size == traj.state_size
    if model.large[0] in {d for m in model.learned for d in m.shape}:
        assert traj_big.state_size < sum(  # smaller than the full parameters at the large size
            math.prod(bigger.get(str(d), int(d) if d.is_Integer else 0) for d in m.shape)
            for m in model.learned)


def test_two_layer_state_is_the_weights():
    """The two-layer network reduces over the samples: the weights are the state."""
    model = load_file(EXAMPLES / "two_layer.py")
    dims = {"d_in": 6, "d_out": 4, "h": 3}
    sizes = {predict_quietly(sample_model(model, dims | {"N": n}, seed=1))[0].state_size
             for n in (50, 5000)}
    assert sizes == {3 * 6 + 4 * 3}


def test_readme_python_block_runs(tmp_path, monkeypatch):
    """The README's "your own data" block, run as written (from a scratch directory)."""
    readme = (EXAMPLES / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block.replace('"examples/', f'"{EXAMPLES}/'), "README.md", "exec"), {})
    spec = load(tmp_path / "two_layer_data.npz")
    traj, notices = predict_quietly(spec)
    assert not notices and traj.state_size == 3 * 6 + 4 * 3
    assert traj.loss[-1] < 0.5 * spec.l_ref  # a learnable teacher: the loss drops


def test_readme_commands_through_the_cli(tmp_path, capsys):
    from figures.cli import main

    path = str(EXAMPLES / "symmetric.py")
    spec = str(tmp_path / "spec.npz")
    assert main(["sample", "--model", path, "--dims", "n=50,r=2,k=2", "--init", "0.01",
                 "-o", spec]) == 0
    capsys.readouterr()
    assert main(["predict", spec, "--model", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state_size"] == 2 * 2 + 2 * 2  # AᵀX (r x k), XᵀX (k x k)
    assert out["crossings"]["0.5"] is not None


def test_cli_notice_for_the_model_that_does_not_close(tmp_path, capsys):
    """``scurve predict`` of the covariance model: one line on stderr naming the term, then the
    full flow (state_size = n·k)."""
    from figures.cli import main

    path = str(EXAMPLES / "covariance.py")
    spec = str(tmp_path / "spec.npz")
    assert main(["sample", "--model", path, "--dims", "n=20,k=2", "-o", spec]) == 0
    capsys.readouterr()
    assert main(["predict", spec, "--model", path, "--json"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "reduced" in line]
    assert len(notes) == 1 and "term" in notes[0] and "C" in notes[0]
    assert json.loads(captured.out)["state_size"] == 20 * 2


def test_two_layer_gd_prediction_equals_explicit_gd():
    """``predict(..., Discrete(lr))`` of the two-layer network (the exact reduced map over the
    samples) against GD on the raw data written here: g₁ = −W₂ᵀ E X_dᵀ, g₂ = −E (W₁X_d)ᵀ with
    E = Y_d − W₂W₁X_d; the loss at every step to 1e-9 relative."""
    load_file(EXAMPLES / "two_layer.py")
    rng = np.random.default_rng(2)
    d_in, d_out, h, n = 6, 4, 3, 300
    x = np.diag(np.linspace(0.5, 1.5, d_in)) @ rng.standard_normal((d_in, n)) / np.sqrt(n)
    y = rng.standard_normal((d_out, d_in)) @ x + 0.05 * rng.standard_normal((d_out, n))
    spec = ModelSpec("two_layer", {"Xd": x, "Yd": y, "W10": 0.1 * rng.standard_normal((h, d_in)),
                                   "W20": 0.1 * rng.standard_normal((d_out, h))})
    lr, steps = 0.2, 100
    traj = predict(spec, Discrete(lr), t_max=lr * steps)
    v = spec.values()
    x, y, w1, w2 = v["Xd"], v["Yd"], v["W1"].copy(), v["W2"].copy()
    losses = []
    for _ in range(steps + 1):
        e = y - w2 @ w1 @ x
        losses.append(0.5 * float(np.sum(e**2)))
        w1, w2 = w1 + lr * w2.T @ e @ x.T, w2 + lr * e @ (w1 @ x).T
    assert traj.steps[-1] == steps and traj.state_size == 3 * 6 + 4 * 3  # W1, W2
    want = np.array(losses)[traj.steps]
    assert want[-1] < 0.9 * want[0]
    assert np.max(np.abs(traj.loss / want - 1)) < 1e-9
