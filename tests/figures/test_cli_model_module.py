"""Issue 17, Build 2: a model is added by one module. A model registered in a temporary module
(its Model, its sampler with its command-line options, a describe hook) runs sample -> predict ->
train -> compare through the CLI without touching any other file."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import dynamics.model
import dynamics.registry
from figures.cli import main

MODULE = textwrap.dedent('''
    import numpy as np
    import sympy as sp

    from dynamics.model import Model
    from dynamics.problems import Spec
    from dynamics.registry import Entry, Option, register

    n, k = sp.symbols("n k", integer=True, positive=True)
    a, x = sp.MatrixSymbol("a", n, 1), sp.MatrixSymbol("x", n, k)
    w = sp.MatrixSymbol("w", k, 1)
    E = a - x * w
    MODEL = Model("tmpline", sp.Trace(E.T * E) / 2, [x, w], [a], [n],
                  description="½‖a − x w‖² (a temporary model)")


    def sample(n, width=2, init=1e-2, seed=0):
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((n, 1)) / np.sqrt(n)
        return Spec("tmpline", {"a": a, "x0": rng.standard_normal((n, width)) * init,
                                "w0": rng.standard_normal((width, 1)) * init})


    register(Entry("tmpline", lambda: MODEL, sample,
                   options=(Option("n", "posint", None, "rows of a", required=True),
                            Option("width", "posint", 2, "tmpline: columns of x"),
                            Option("init", "nonneg", 1e-2, "init std")),
                   hooks={"describe": lambda spec: f"tmpline n={spec.n} width={spec.k}"}))
''')


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    dynamics.model.known()
    monkeypatch.setattr(dynamics.registry, "_ENTRIES", dict(dynamics.registry._ENTRIES))
    monkeypatch.setattr(dynamics.model, "_BUILT", dict(dynamics.model._BUILT))


def _json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_a_model_module_runs_sample_predict_train_compare(tmp_path, capsys):
    pytest.importorskip("torch")
    module = tmp_path / "tmpline.py"
    module.write_text(MODULE)
    spec = str(tmp_path / "s.npz")
    assert main(["sample", "tmpline", "--model", str(module), "--n", "8", "--width", "3",
                 "--seed", "1", "-o", spec]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(spec) as f:
        assert str(f["kind"]) == "tmpline" and f["x0"].shape == (8, 3)
    with pytest.raises(SystemExit):  # its options are its own: --help lists them
        main(["sample", "tmpline", "--model", str(module), "--help"])
    assert "--width" in capsys.readouterr().out
    assert main(["predict", spec, "--model", str(module), "--json"]) == 0
    predicted = _json(capsys)
    assert predicted["problem"] == "tmpline n=8 width=3"
    t_pred = predicted["crossings"]["0.5"]
    assert main(["train", spec, "--model", str(module), "--lr", "0.02", "--steps", "3000",
                 "--dtype", "float64", "--json"]) == 0
    trained = _json(capsys)
    assert main(["compare", spec, "--model", str(module), "--lr", "0.02", "--json"]) == 0
    compared = _json(capsys)
    assert compared["problem"] == "tmpline n=8 width=3"
    # GD at η = 0.02 against the flow: t_0.5 agrees to O(η·s) (about 1 % here, tolerance 10 %)
    assert trained["crossings"]["0.5"] == pytest.approx(t_pred, rel=0.1)


def test_a_model_modules_required_option_is_one_line(tmp_path, capsys):
    module = tmp_path / "tmpline.py"
    module.write_text(MODULE)
    assert main(["sample", "tmpline", "--model", str(module), "-o",
                 str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs --n" in err


@pytest.mark.parametrize("kind, options", [("factorization", ["--n", "20", "--rank", "2"]),
                                           ("chain", ["--n", "10", "--depth", "4"]),
                                           ("vector", ["--n", "5"])])
def test_sample_of_a_builtin_imports_no_sympy(kind, options, tmp_path):
    """Issue 18 item 4: the registry, the samplers and the spec need no SymPy to draw numbers
    (the built-in modules build their models lazily); timing: bench_cli_startup.py."""
    import subprocess
    import sys

    driver = ("import sys; from figures.cli import main; code = main(sys.argv[1:]); "
              "print(code, 'sympy' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", driver, "sample", kind, *options, "-o",
                          str(tmp_path / "s.npz")], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout + out.stderr


def test_a_builtin_is_found_by_dropping_its_module_into_dynamics_models(tmp_path, monkeypatch,
                                                                        capsys):
    """A built-in is one new file: a module placed among dynamics/models' modules (here: a
    temporary folder added to the package's path) that assigns ENTRY is discovered and listed
    after the others, with no list of names to edit; `scurve sample` then knows it."""
    import dynamics.models

    module = MODULE.replace("register(Entry(", "ENTRY = register(Entry(")
    (tmp_path / "tmpline.py").write_text(module)
    monkeypatch.setattr(dynamics.models, "__path__", [*dynamics.models.__path__, str(tmp_path)])
    monkeypatch.setattr(dynamics.registry, "_LOADED", [])  # discover again (entries: a copy)
    import sys

    try:
        assert dynamics.registry.builtin_modules()[-1] == "tmpline"
        names = list(dynamics.registry.entries())  # built-ins first, then models from files
        builtins = list(dynamics.registry.builtin_names())
        assert names[:len(builtins)] == builtins and builtins[:2] == ["vector", "factorization"]
        assert builtins[-1] == "tmpline"
        assert main(["sample", "tmpline", "--n", "4", "-o", str(tmp_path / "s.npz")]) == 0
        assert "tmpline n=4" in capsys.readouterr().out
    finally:
        sys.modules.pop("dynamics.models.tmpline", None)
