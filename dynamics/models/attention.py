"""Linear attention head (softmax dropped): target M⊗N with M = Q⋆K⋆ᵀ, N = O⋆V⋆ᵀ.

L = ½‖M⊗N − M̃⊗Ñ‖² + ½λ Σ‖θ‖², M̃ = QKᵀ, Ñ = OVᵀ learned (d x h′ factors); since
‖A⊗B‖ = ‖A‖‖B‖ and ⟨A⊗B, C⊗D⟩ = ⟨A,C⟩⟨B,D⟩, L = ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²].
Spec keys: targets ``Q``, ``K``, ``O``, ``V`` (d x h), initial values ``Q0``… (d x h′);
dimensions n = d, r = h, k = h′ (``spec.d``, ``spec.h`` are aliases).
"""

from __future__ import annotations

from typing import Any

from ..registry import Entry, register
from .factorization import PAIR_OPTIONS

__all__ = ["ENTRY", "build", "sample"]

NAMES = ("Q", "K", "O", "V")
DESCRIPTION = "½‖(Q⋆K⋆ᵀ)⊗(O⋆V⋆ᵀ) − (QKᵀ)⊗(OVᵀ)‖² (linear attention head, d x h factors)"


def build() -> Any:
    """The :class:`dynamics.model.Model` of the head (module docstring)."""
    from sympy import MatrixSymbol

    from ..model import Model
    from ._terms import inner, k, n, r

    t = {f: MatrixSymbol(f"{f}s", n, r) for f in NAMES}
    w = {f: MatrixSymbol(f, n, k) for f in NAMES}
    m, nn = t["Q"] * t["K"].T, t["O"] * t["V"].T
    mt, nt = w["Q"] * w["K"].T, w["O"] * w["V"].T
    return Model(
        "attention",
        (inner(m, m) * inner(nn, nn) - 2 * inner(m, mt) * inner(nn, nt)
         + inner(mt, mt) * inner(nt, nt)) / 2,
        list(w.values()), list(t.values()), [n],
        keys={f"{f}s": f for f in NAMES}, targets={f: f"{f}s" for f in NAMES},
        latex={f"{f}s": rf"{f}^{{\star}}" for f in NAMES}, description=DESCRIPTION)


def sample(d: int, rank: int = 1, model_rank: int | None = None, init: float = 1e-2,
           singular_values: list[float] | None = None, scale: float = 1.0,
           weight_decay: float = 0.0, seed: int = 0) -> Any:
    """Sample a spec from ``seed``: circuits M = QKᵀ and N = OVᵀ (rank h) drawn like a
    factorization target (each with singular values ``singular_values`` or typical scale
    ``scale``); learned factors d x h′ i.i.d. N(0, init²)."""
    import numpy as np

    from ..errors import SpecError
    from ..problems import Spec, check_int, check_nonneg, check_positive, target_factors

    d = check_int("d", d)
    h = check_int("rank", rank)
    hm = h if model_rank is None else check_int("model_rank", model_rank)
    if h > d or hm > d:
        raise SpecError(f"rank: head dims ({h}, {hm}) exceed d = {d}")
    init = check_nonneg("init", init)
    scale = check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    q, k = target_factors(rng, d, h, singular_values, scale)
    o, v = target_factors(rng, d, h, singular_values, scale)
    inits = [rng.standard_normal((d, hm)) * init for _ in range(4)]
    data = dict(zip(NAMES, (q, k, o, v), strict=True))
    data |= {f"{f}0": w for f, w in zip(NAMES, inits, strict=True)}
    return Spec("attention", data, weight_decay=weight_decay, checked=True)


def _sample_cli(n: int, **options: Any) -> Any:
    """:func:`sample` with the command line's ``--n`` as d."""
    return sample(n, **options)


def zero_loss(spec: Any) -> float:
    """½‖M‖²‖N‖² (M = Q⋆K⋆ᵀ, N = O⋆V⋆ᵀ)."""
    m = ((spec.Q.T @ spec.Q) * (spec.K.T @ spec.K)).sum()
    nn = ((spec.O.T @ spec.O) * (spec.V.T @ spec.V)).sum()
    return 0.5 * float(m * nn)


def rate_scale(spec: Any) -> tuple[float, float]:
    """Singular values of each circuit (M = QKᵀ, N = OVᵀ) times the other circuit's norm (the
    circuit's effective target): (largest, smallest nonzero), in 1/t."""
    import numpy as np

    from ..problems import product_singular_values, scale_of

    m, nn = product_singular_values(spec.Q, spec.K), product_singular_values(spec.O, spec.V)
    norms = float(np.linalg.norm(m)), float(np.linalg.norm(nn))
    return scale_of(np.concatenate([m * norms[1], nn * norms[0]]))


def crossing_time(spec: Any, f: float) -> float:
    """The closed-form t_f (:func:`dynamics.theory.attention_crossing_time`), read by
    ``theory.crossing_time``."""
    from ..theory import attention_crossing_time

    return attention_crossing_time(spec, f)


ENTRY = register(Entry(
    "attention", build, _sample_cli,
    options=PAIR_OPTIONS,  # --n is d, --rank the head dim h, --model-rank h'

    hooks={"grouped": False, "rate_scale": rate_scale, "closed_form": True,
           "crossing_time": crossing_time,
           "dims": {"n": ("Q", 0), "r": ("Q", 1), "k": ("Q0", 1)}, "zero_loss": zero_loss,
           "attributes": {"d": lambda spec: spec.n, "h": lambda spec: spec.r},
           "describe": lambda spec: (f"attention d={spec.d} h={spec.h} h'={spec.k} "
                                     f"λ={spec.weight_decay:g}")},
    description=DESCRIPTION,
))
