"""The CLI's error policy (issue 17, Build 7): user errors (dynamics.errors.ScurveError and its
subclasses) give one line and exit 2; anything else is a bug: one line saying so, exit 3, and
``--debug`` re-raises it with its traceback."""

from __future__ import annotations

import pytest

from dynamics.errors import ModelError, ScurveError, SpecError, UsageError
from figures import cli


def test_hierarchy() -> None:
    from dynamics.model import ModelError as model_error
    from dynamics.problems import SpecError as spec_error

    assert spec_error is SpecError and model_error is ModelError
    for cls in (SpecError, ModelError, UsageError):
        assert issubclass(cls, ScurveError) and issubclass(cls, ValueError)


def _raise(exc: Exception):
    def command(args: object) -> int:
        raise exc
    return command


@pytest.mark.parametrize("exc", [SpecError("X0: bad\nshape"), UsageError("--lr: not taken")])
def test_user_error_one_line_exit_2(exc, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "_cmd_sample", _raise(exc))
    assert cli.main(["sample", "vector", "--n", "3", "--out", "x.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "bug" not in err


@pytest.mark.parametrize("exc", [TypeError("oops"), RuntimeError("boom"), KeyError("k")])
def test_bug_one_line_exit_3(exc, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "_cmd_sample", _raise(exc))
    assert cli.main(["sample", "vector", "--n", "3", "--out", "x.npz"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bug" in err and type(exc).__name__ in err
    assert "--debug" in err and "Traceback" not in err


def test_debug_reraises(monkeypatch) -> None:
    monkeypatch.setattr(cli, "_cmd_sample", _raise(TypeError("oops")))
    with pytest.raises(TypeError, match="oops"):
        cli.main(["--debug", "sample", "vector", "--n", "3", "--out", "x.npz"])
