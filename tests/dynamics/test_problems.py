"""Problem specs: sampling, exact npz round trip, and one test per validation error."""

from __future__ import annotations

import numpy as np
import pytest

from dynamics.problems import AttentionHead, Factorization, SpecError, Vector, load, save


@pytest.fixture(params=["vector", "factorization", "factorization-ce", "attention"])
def spec(request):
    if request.param == "vector":
        return Vector.sample(7, init=0.1, weight_decay=0.01, seed=3)
    if request.param == "attention":
        return AttentionHead.sample(6, 2, 3, init=1e-2, weight_decay=0.1, seed=4)
    loss = "ce" if request.param.endswith("ce") else "mse"
    return Factorization.sample(9, 2, 3, init=1e-3, loss=loss, seed=5)


def test_round_trip_is_exact(spec, tmp_path):
    path = save(spec, tmp_path / "spec.npz")
    back = load(path)
    assert back == spec
    for key, value in spec.arrays().items():
        assert np.array_equal(getattr(back, key), value)
        assert getattr(back, key).dtype == np.float64
    assert back.weight_decay == spec.weight_decay


def test_same_seed_same_spec_other_seed_differs():
    assert Factorization.sample(20, 3, seed=1) == Factorization.sample(20, 3, seed=1)
    assert Factorization.sample(20, 3, seed=1) != Factorization.sample(20, 3, seed=2)


def test_explicit_singular_values_are_exact():
    s = [3.0, 1.5, 0.25]
    spec = Factorization.sample(30, 3, init=0.0, singular_values=s, seed=0)
    got = np.linalg.svd(spec.target, compute_uv=False)[:3]
    np.testing.assert_allclose(got, s, rtol=1e-12)
    # balanced factors: AᵀA = BᵀB = diag(s)
    np.testing.assert_allclose(spec.A.T @ spec.A, np.diag(s), atol=1e-12)
    np.testing.assert_allclose(spec.B.T @ spec.B, np.diag(s), atol=1e-12)
    assert spec.l_ref == pytest.approx(0.5 * sum(v * v for v in s), rel=1e-12)


def test_random_target_scale_and_init_std():
    spec = Factorization.sample(400, 1, 10, init=0.01, scale=2.0, seed=0)
    s = np.linalg.svd(spec.target, compute_uv=False)[0]
    assert 1.5 < s < 2.6  # ‖a‖‖b‖ with ‖a‖², ‖b‖² ~ scale·χ²_n/n
    assert np.std(spec.X0) == pytest.approx(0.01, rel=0.05)


def test_l_ref_matches_direct_formulas():
    f = Factorization.sample(8, 2, seed=0)
    assert f.l_ref == pytest.approx(0.5 * np.sum(f.target**2), rel=1e-13)
    a = AttentionHead.sample(5, 2, seed=0)
    target = np.kron(a.Q @ a.K.T, a.O @ a.V.T)
    assert a.l_ref == pytest.approx(0.5 * np.sum(target**2), rel=1e-12)
    ce = Factorization.sample(6, 2, loss="ce", scale=3.0, seed=0)
    c = ce.target.ravel()
    p = np.exp(c - c.max()) / np.exp(c - c.max()).sum()
    assert ce.l_ref == pytest.approx(float(np.sum(p * np.log(p * c.size))), rel=1e-12)


def _write(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _valid_arrays():
    spec = Factorization.sample(5, 2, 2, init=0.1, seed=0)
    return {"kind": np.array("factorization"), **spec.arrays()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("kind"), "missing key 'kind'"),
        (lambda d: d.pop("B"), "missing key 'B'"),
        (lambda d: d.update(kind=np.array("mlp")), "kind: unknown kind 'mlp'"),
        (lambda d: d.update(loss=np.array("hinge")), "loss: unknown loss 'hinge'"),
        (lambda d: d.update(weight_decay=np.array(-0.1)), "weight_decay: must be"),
        (lambda d: d.update(weight_decay=np.array(np.nan)), "weight_decay: must be"),
        (lambda d: d.update(X0=np.ones((5, 2, 1))), "X0: expected a 2-d array"),
        (lambda d: d.update(B=np.ones((4, 2))), "B: shape (4, 2) disagrees with X0 (5, 2)"),
        (lambda d: d.update(Y0=np.ones((5, 3))), "Y0: shape (5, 3) disagrees with X0 (5, 2)"),
        (lambda d: d["A"].__setitem__((0, 0), np.inf), "A: contains non-finite values"),
        (lambda d: d.update(extra=np.zeros(2)), "extra: unexpected key"),
    ],
)
def test_each_validation_error_names_the_key(tmp_path, change, message):
    arrays = _valid_arrays()
    change(arrays)
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SpecError) as info:
        load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_not_an_npz_and_missing_file(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("this is not a zip file")
    with pytest.raises(SpecError, match=r"not a valid \.npz spec file"):
        load(junk)
    with pytest.raises(SpecError, match="no such file"):
        load(tmp_path / "absent.npz")


def test_attention_dimension_mismatch(tmp_path):
    a = AttentionHead.sample(5, 1, 2, seed=0)
    arrays = {"kind": np.array("attention"), **a.arrays()}
    arrays["V0"] = np.ones((5, 1))
    with pytest.raises(SpecError, match=r"V0: shape \(5, 1\) disagrees with Q0 \(5, 2\)"):
        load(_write(tmp_path / "a.npz", **arrays))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 5, "rank": 9}, "rank: target rank 9 exceeds n = 5"),
        ({"n": 5, "rank": 2, "model_rank": 6}, "model_rank: model rank 6 exceeds"),
        ({"n": 5, "rank": 2, "init": -1.0}, "init: must be"),
        ({"n": 5, "rank": 2, "singular_values": [1.0]}, "singular_values: expected 2"),
        ({"n": 5, "rank": 2, "singular_values": [1.0, -2.0]}, "singular_values: must be"),
        ({"n": 0, "rank": 1}, "n: must be an integer >= 1"),
    ],
)
def test_sample_rejects_impossible_settings(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        Factorization.sample(**kwargs)


def test_factors_pair_targets_with_learned():
    a = AttentionHead.sample(4, 1, seed=0)
    names = list(a.factors())
    assert names == ["Q", "K", "O", "V"]
    target, learned = a.factors()["O"]
    assert target is a.O and learned is a.O0
