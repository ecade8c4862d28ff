"""``scurve sample icl``: a spec from the CLI, and one-line exit-2 errors for bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from dynamics.models.icl import covariance, features, sequences
from dynamics.problems import load
from figures.cli import main

BASE = ["sample", "icl", "--dim", "3", "--context", "5", "--sequences", "40"]


def test_sample_icl_writes_the_features_of_its_sequences(tmp_path):
    """The spec's Z is vec((Σₙ yₙxₙ)x_qᵀ) of the seeded sequences, recomputed here from the raw
    draws; W0 (H×D²) and v0 (1×H) have the requested heads."""
    out = tmp_path / "icl.npz"
    assert main([*BASE, "--heads", "2", "--init", "0.1", "--seed", "3", "-o", str(out)]) == 0
    v = load(out).values()
    x, y = sequences(covariance(3, seed=3), 5, 40, seed=4)
    beta = np.einsum("pn,pnd->pd", y[:, :-1], x[:, :-1])
    want = np.stack([np.outer(beta[p], x[p, -1]).ravel() for p in range(40)], axis=1)
    assert np.allclose(v["Z"], want, rtol=1e-13, atol=0)
    assert np.array_equal(v["Z"], features(x, y)[0])
    assert v["W"].shape == (2, 9) and v["v"].shape == (1, 2)


@pytest.mark.parametrize("extra, words", [
    (["--context", "0"], "context"),
    (["--separate", "--rank", "5"], "rank"),
    (["--eigenvalues", "1,-1,2"], "positive definite"),
    (["--eigenvalues", "1,2"], "shape"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, words):
    assert main([*BASE, *extra, "-o", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()
