"""Issue 17, Build 1: one ``Spec`` type for every model; ``sample -> save -> load`` gives an
equal spec for every built-in, every family (committee, icl) and every example model, and every
function (the closed forms included) accepts it however it was made."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dynamics import registry, theory
from dynamics.model import get, load_file
from dynamics.problems import (
    KINDS,
    AttentionHead,
    Chain,
    Factorization,
    Spec,
    Vector,
    load,
    sample_model,
    save,
    zero_loss,
)

ROOT = Path(__file__).resolve().parents[2]

#: small settings of each registered sampler (its declared options; the rest default)
SMALL = {
    "vector": {"n": 5},
    "factorization": {"n": 6, "rank": 2, "model_rank": 3, "weight_decay": 0.1},
    "attention": {"n": 5, "rank": 1},
    "chain": {"n": 6, "rank": 2, "depth": 4},
    "modes": {"scales": "1,2", "n": 5, "hidden": 3, "examples": 16, "objective": "power(q=1)"},
    "icl": {"dim": 2, "context": 4, "sequences": 8},
    "committee": {"n": 20},
}


def _sample(kind: str, seed: int = 0) -> object:
    entry = registry.entry(kind)
    return entry.sample(**(entry.defaults() | SMALL[kind]), seed=seed)


def test_every_registered_sampler_is_covered() -> None:
    assert {n for n, e in registry.entries().items() if e.sample is not None} == set(SMALL)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_sample_save_load_round_trip(kind: str, tmp_path) -> None:
    spec = _sample(kind, seed=3)
    back = load(save(spec, tmp_path / "s.npz") if isinstance(spec, Spec)
                else (spec.save(tmp_path / "s.npz") or tmp_path / "s.npz"))
    if isinstance(spec, Spec):
        assert back == spec and back.kind == kind
        assert back.l_ref == spec.l_ref and back.describe() == spec.describe()
        assert back != _sample(kind, seed=4)  # equality looks at the arrays
    else:  # the committee's own spec type, loaded through its registered hook
        assert type(back) is type(spec) and back == spec
        assert back.describe() == spec.describe() and back != _sample(kind, seed=4)


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_models_round_trip(name: str, tmp_path) -> None:
    model = load_file(ROOT / "examples" / name)
    spec = sample_model(model, {str(d): 3 for d in model.dims}, init=0.1, seed=1)
    back = load(save(spec, tmp_path / "s.npz"))
    assert back == spec and type(back) is Spec
    assert back.values().keys() == spec.values().keys()


@pytest.mark.parametrize("kind", ["vector", "factorization", "attention", "chain"])
def test_closed_zero_loss_is_the_derived_one(kind: str) -> None:
    """The modules' closed forms of L_ref (hook ``zero_loss``, no SymPy) against the loss the
    SymPy-derived program evaluates at every learned matrix 0."""
    spec = _sample(kind)
    derived = zero_loss(spec.model, spec.values())
    assert spec.l_ref == pytest.approx(derived, rel=1e-12)


def test_cross_entropy_l_ref_is_kl_to_uniform() -> None:
    spec = Factorization.sample(4, 2, loss="ce", seed=2)
    c = (spec.A @ spec.B.T).ravel()
    p = np.exp(c - c.max())
    p /= p.sum()
    assert spec.l_ref == pytest.approx(float(np.sum(p * np.log(p * c.size))), rel=1e-10)


def test_builders_build_the_one_spec_type() -> None:
    f = Factorization.sample(6, 2, seed=0)
    assert type(f) is Spec and isinstance(f, Factorization) and not isinstance(f, Chain)
    assert Factorization(f.A, f.B, f.X0, f.Y0) == f
    assert Factorization(**f.data, loss="ce") != f
    assert sample_model("factorization", {"n": 6, "r": 2, "k": 2}).kind == "factorization"
    v = Vector(a=np.ones(3), x0=np.zeros(3))  # flat vectors become n x 1 columns
    assert v.a.shape == (3, 1) and v.n == 3 and v.l_ref == 1.5
    a = AttentionHead.sample(5, 1, seed=0)
    assert (a.d, a.h, a.k) == (5, 1, 1) and isinstance(a, AttentionHead)
    c = Chain.sample(6, 2, depth=2)
    assert c.depth == 2 and c.M0.shape == (0, 2, 2) and load_round(c) == c
    assert tuple(KINDS)[:4] == ("vector", "factorization", "attention", "chain")


def load_round(spec: Spec) -> Spec:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return load(save(spec, Path(tmp) / "s.npz"))


def test_sampled_and_loaded_specs_both_get_the_closed_form(tmp_path) -> None:
    """The bug of issue 17: ``sample_model`` gave a spec the closed forms refused."""
    spec = sample_model("factorization", {"n": 8, "r": 1, "k": 1}, init=1e-3, seed=0)
    loaded = load(save(spec, tmp_path / "f.npz"))
    t = theory.crossing_time(spec)
    assert np.isfinite(t) and t == theory.crossing_time(loaded)


def test_grouped_objective_is_parsed_once(monkeypatch) -> None:
    """The objective is held parsed: reading it does not call the parser again."""
    import dynamics.groups as groups

    spec = _sample("modes")
    calls = []
    real = groups.parse
    monkeypatch.setattr(groups, "parse", lambda text: calls.append(text) or real(text))
    for _ in range(3):
        assert spec.group_objective.label == "power(q=1)"
    assert calls == []


def test_unknown_attribute_is_an_attribute_error() -> None:
    spec = Factorization.sample(4, 1)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        spec.nope  # noqa: B018
    assert not hasattr(spec, "depth") and get("chain", {"M0": np.zeros((1, 1, 1))}).name == "chain"


# --------------------------------------------------------------------------- grep test
SPEC_CLASSES = r"(Vector|Factorization|AttentionHead|Chain|ModelSpec|Spec|CommitteeSpec)"
PATTERN = re.compile(r"isinstance\([^()]*,\s*\(?[^)]*\b" + SPEC_CLASSES + r"\b")


def test_no_spec_class_isinstance_outside_a_models_own_module() -> None:
    """Nothing branches on a spec's class outside the model's own module (dynamics/models/),
    the spec type's module (dynamics/problems.py) and validation/tasks.py (task classes, the
    tasks engineer's); code asks ``spec.kind`` or the registry instead."""
    allowed = {ROOT / "dynamics" / "problems.py", ROOT / "validation" / "tasks.py"}
    found = []
    for package in ("dynamics", "validation", "figures"):
        for path in (ROOT / package).rglob("*.py"):
            if path in allowed or path.parent == ROOT / "dynamics" / "models":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if PATTERN.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_grep_finds_what_it_looks_for() -> None:
    assert PATTERN.search("if isinstance(spec, Factorization):")
    assert PATTERN.search("isinstance(s, (Vector, Chain))")
    assert not PATTERN.search("isinstance(model, Family)")


def test_replace_pickle_and_objective_swap() -> None:
    import pickle

    spec = Factorization.sample(5, 2, seed=1)
    moved = spec.replace(X0=spec.A * 0.5, loss="ce", weight_decay=0.2)
    assert np.array_equal(moved.X0, spec.A * 0.5) and moved.loss == "ce"
    assert moved.weight_decay == 0.2 and np.array_equal(moved.Y0, spec.Y0)
    assert spec.loss == "mse"  # the original is unchanged
    with pytest.raises(Exception, match="immutable"):
        spec.kind = "vector"
    assert pickle.loads(pickle.dumps(moved)) == moved
    modes = _sample("modes")
    mean = modes.with_objective("mean")
    assert mean.objective == "mean" and modes.objective == "power(q=1)"
    assert mean.data.keys() == modes.data.keys() and mean != modes
