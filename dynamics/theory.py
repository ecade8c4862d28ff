"""Theory: closed forms for plateau lengths, drops and staircases.

Continuous time t throughout (a gradient step of rate η advances t by η); losses are the data
loss ½‖target − model‖² (weight decay enters the flow, not the loss), ``L_ref`` = ½‖target‖².

Factorization, rank 1 (C = s u vᵀ, learned X, Y n x k, init entries N(0, σ²))
-------------------------------------------------------------------------------
With p = Xᵀu, q = Yᵀv (k-vectors) the flow is dp/dt = s q − (YᵀY + λ) p, dq/dt likewise. At
small init the linear terms dominate: m = (p + q)/2 grows like e^{st}, p − q decays like
e^{−st}, and once p ≈ q ≈ m the strength w = u_ᵀ X Yᵀ v = p·q obeys the logistic

    dw/dt = 2w(s' − w),   s' = s − λ − ν,   w(t) = s' / (1 + (s'/w₀ − 1) e^{−2s't}),

with the effective start w₀ = |m(0)|² and ν = the init energy off the target directions per
column, (‖X0⊥‖² + ‖Y0⊥‖²)/2k ≈ (n − 1)σ², which acts as a weight decay during the plateau
(the term −X YᵀY). With L/L_ref = (1 − w/s)², the loss crosses f·L_ref when w = s(1 − √f):

    t_f = (1/2s') ln[(s'/w₀ − 1) / (s'/w_f − 1)],   w_f = s(1 − √f)    [t_½ with s' = s:
          (1/2s) ln[(√2 − 1)(s/w₀ − 1)]].

Random init: m(0) ~ N(0, σ²/2 · I_k), so w₀ = (σ²/2) χ²_k and, with E ln χ²_k = ψ(k/2) + ln 2
and Var ln χ²_k = ψ′(k/2),

    E[t_f] ≈ (1/2s')[ln(2s'/σ²) + c(f, k)],   c(f, k) = ln((1 − √f)/√f) − ψ(k/2) − ln 2,
    sd[t_f] ≈ √ψ′(k/2) / 2s'.

For f = ½, k = 1: c = ln(√2 − 1) + γ + ln 2 = 0.38899 and sd = π/(2√2 s') = 1.1107/s' —
the rule-of-thumb constants 0.39 and 1.11/s, derived. At fixed init norm ε per learned vector,
σ = ε/√n:
E[t_½] ≈ (1/2s)[ln(2ns/ε²) + c].

Staircase (rank r, well-separated singular values s_1 > s_2 > ...): in the linear phase the
modes decouple exactly (m_i = (Xᵀu_i + Yᵀv_i)/2 grows like e^{s_i t}); once mode 1 is learned,
YᵀY ≈ s_1 e_1e_1ᵀ damps the e_1-component of every later m_i, so mode i grows from the part of
m_i(0) orthogonal to m_1(0), ..., m_{i−1}(0) (Gram–Schmidt in R^k): w_i0 ~ (σ²/2) χ²_{k−i+1},

    z_i(t) = u_iᵀ X Yᵀ v_i ≈ logistic(t; s_i − λ − ν, w_i0),
    E[t_i(level)] ≈ (1/2s_i')[ln(2s_i'/σ²) − ψ((k − i + 1)/2) − ln 2 + ln(level/(1 − level))],

t_i(level) the time z_i reaches level·s_i'; the loss is ½Σ(s_i − z_i)².

Attention head, rank 1 (M = s_M u vᵀ, N = s_N u′v′ᵀ, learned q, k, o, v ∈ R^d, h′ = 1)
----------------------------------------------------------------------------------------
With overlaps a = uᵀq, b = vᵀk, c = u′ᵀo, d = v′ᵀv and S = s_M s_N the loss is ½(S − abcd)² +
(terms of order (dσ²)⁴) and da/dt = (S − abcd)·bcd, and cyclically. At small init
da/dt = S·bcd, so all squares move together, d(a²)/dt = 2S·abcd: a finite-time blow-up at

    T = τ(a, b, c, d)/2S,   τ = ∫ dz / √Π_i(z + e_i)   (e_i = a_i² − min_j a_j²),

over z from min a_i² to ∞ if abcd > 0, and from min a_i² down to 0 and back to ∞ if abcd < 0.
Balanced (a = b = c = d = p₀): τ = 1/p₀², T = 1/(2Sp₀²), and the exact solution of
dw/dt = 4w^{3/2}(S − w), w = p⁴, x = p²/√S gives

    t_f = [G(x_f) − G(x₀)] / (2S^{3/2}),   G(x) = −1/x + atanh(x),   x_f = √(1 − √f),

so t_f = T + (atanh x_f − 1/x_f)/(2S^{3/2}) + O(x₀). Random init (overlaps i.i.d. N(0, σ²)):
τ scales as 1/σ², and averaging the sign of abcd (independent of the squares) gives exactly

    E[T] = κ/(2Sσ²),   κ = (2/π²) ∫_0^∞ cosh(4x) K_0(x)⁴ dx = 6.1165...,

so "p₀²" of the balanced law is σ²/κ on average; the seed distribution is wide (median of τσ² =
2.93, sd of ln τ = 1.00, Var τ log-divergent). The law is a power of 1/σ, not its logarithm.

Depth-D chain, balanced aligned mode (X M₁⋯M_{D−2} Yᵀ, every factor's scalar a, u = a^D)
-----------------------------------------------------------------------------------------
ȧ = a^{D−1}(s − a^D), so du/dt = D u^{2−2/D}(s − u) (Saxe et al. 2014; Arora et al. 2018) and,
with y = (u/s)^{1/D},

    t(u0 → u1) = s^{−(2−2/D)} [F(y1) − F(y0)],   F(y) = −1/((D − 2)y^{D−2}) + ∫_0^y z dz/(1 − z^D)

(the last integral in closed form over the D-th roots of unity; D = 2 is the logistic above).
From a per-factor start σ (u0 = σ^D): t_f = σ^{−(D−2)}/((D − 2)s) + K_D(f, s) − σ²/(2s²) +
O(σ^{D+2}) for D ≥ 3 — the blow-up time of the linear phase ȧ = s a^{D−1} plus a constant —
and (1/s) ln(1/σ) + K_2 at D = 2: each halving of σ multiplies the plateau by 2^{D−2}.

Vector (no product): x(t) = a/(1 + λ) + (x0 − a/(1 + λ)) e^{−(1+λ)t}: pure exponential decay.

Measured errors against the integrated reduced flow (``predict(spec, Flow())``) are in each
function's docstring; ``tests/dynamics/test_theory.py`` asserts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import digamma, polygamma

from . import registry
from .errors import ModelError, UsageError
from .problems import Factorization, Spec
from .trajectory import Trajectory

__all__ = [
    "ATTENTION_CONSTANT",
    "ATTENTION_MEDIAN",
    "PLATEAU_CONSTANT",
    "SEED_SD",
    "attention_balanced_crossing",
    "attention_blowup_time",
    "attention_overlaps",
    "attention_plateau_time",
    "chain_blowup_time",
    "chain_crossing",
    "chain_law",
    "chain_law_slope",
    "chain_local_slope",
    "chain_loss",
    "chain_overlaps",
    "chain_plateau_time",
    "chain_time",
    "chain_u",
    "crossing_time",
    "initial_strengths",
    "logistic_crossing",
    "logistic_loss",
    "logistic_w",
    "mode_strengths",
    "mode_times",
    "plateau_constant",
    "plateau_time",
    "plateau_time_fixed_norm",
    "plateau_time_sd",
    "staircase_loss",
    "staircase_times",
    "vector_loss",
]

PLATEAU_CONSTANT = math.log(math.sqrt(2) - 1) + np.euler_gamma + math.log(2)  # c(½, 1) = 0.38899
SEED_SD = math.pi / (2 * math.sqrt(2))  # s · sd[t_½] for k = 1: √ψ′(½)/2 = 1.11072
ATTENTION_CONSTANT = 6.1165250804006677  # κ = E[τ]σ² = (2/π²)∫cosh(4x)K_0(x)⁴dx (mpmath, 30 digits)
ATTENTION_MEDIAN = 2.93  # median of τσ² (Monte Carlo, 2·10⁵ draws, ±0.01)


# ---------------------------------------------------------------------------------------------
# Rank-1 logistic


def _rate(s: float, weight_decay: float) -> float:
    return float(s) - float(weight_decay)


def logistic_w(t: ArrayLike, s: float, w0: float, weight_decay: float = 0.0) -> np.ndarray:
    """Strength w(t) of the balanced aligned rank-1 start: dw/dt = 2w(s' − w), s' = s − λ.

    w(t) = s'/(1 + (s'/w₀ − 1)e^{−2s't}) (t in continuous time, w in units of s); for
    s' ≤ 0 the stable form w₀e^{2s't}/(1 + w₀(e^{2s't} − 1)/s') (→ w₀/(1 + 2w₀t) at s' = 0).
    """
    t = np.asarray(t, dtype=np.float64)
    sp = _rate(s, weight_decay)
    if w0 < 0:
        raise UsageError(f"w0 = p·q must be >= 0 for a balanced start (got {w0})")
    if sp > 0:
        if w0 == 0:
            return np.zeros_like(t)
        return sp / (1 + (sp / w0 - 1) * np.exp(-2 * sp * t))
    growth = np.exp(2 * sp * t)
    integral = 2 * t if sp == 0 else np.expm1(2 * sp * t) / sp
    return w0 * growth / (1 + w0 * integral)


def logistic_loss(t: ArrayLike, s: float, w0: float, weight_decay: float = 0.0) -> np.ndarray:
    """Data loss ½(s − w(t))² of :func:`logistic_w` (L_ref = ½s²), without cancellation."""
    t = np.asarray(t, dtype=np.float64)
    sp = _rate(s, weight_decay)
    if sp > 0 and w0 > 0:
        e = (sp / w0 - 1) * np.exp(-2 * sp * t)
        return 0.5 * (s - sp + sp * e / (1 + e)) ** 2
    return 0.5 * (s - logistic_w(t, s, w0, weight_decay)) ** 2


def _logistic_time(w_from: float, w_to: float, sp: float) -> float:
    """Time for dw/dt = 2w(s' − w) to move from w_from to w_to (same side of s', in t)."""
    if sp == 0:
        return 0.5 * (1 / w_to - 1 / w_from)
    return math.log((sp / w_from - 1) / (sp / w_to - 1)) / (2 * sp)


def logistic_crossing(f: float, s: float, w0: float, weight_decay: float = 0.0) -> float:
    """Exact t_f of :func:`logistic_loss`: first t with ½(s − w)² ≤ f·½s².

    Rising from w₀ < w_f = s(1 − √f) towards s' = s − λ:
    t_f = (1/2s') ln[(s'/w₀ − 1)/(s'/w_f − 1)]; falling from w₀ > s(1 + √f) the same with
    w_f = s(1 + √f). Returns 0 if L(0) ≤ f·L_ref and ``inf`` if w never reaches w_f
    (w₀ = 0, or s' ≤ w_f: no learning when λ ≥ s).
    """
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    if w0 < 0:
        raise UsageError(f"w0 = p·q must be >= 0 for a balanced start (got {w0})")
    sp = _rate(s, weight_decay)
    root = math.sqrt(f)
    low, high = s * (1 - root), s * (1 + root)
    if low <= w0 <= high:
        return 0.0
    w_end = max(sp, 0.0)
    if w0 < low:
        return _logistic_time(w0, low, sp) if w0 > 0 and w_end > low else math.inf
    return _logistic_time(w0, high, sp) if w_end < high else math.inf


# ---------------------------------------------------------------------------------------------
# Random-init plateau law


def plateau_constant(f: float = 0.5, model_rank: int = 1) -> float:
    """c(f, k) = ln((1 − √f)/√f) − ψ(k/2) − ln 2 of E[t_f] ≈ (1/2s)[ln(2s/σ²) + c].

    c(½, 1) = ln(√2 − 1) + γ + ln 2 = 0.38899 (:data:`PLATEAU_CONSTANT`); from
    w₀ = (σ²/2)χ²_k, E ln χ²_k = ψ(k/2) + ln 2 (module docstring).
    """
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    root = math.sqrt(f)
    return math.log((1 - root) / root) - float(digamma(model_rank / 2)) - math.log(2)


def plateau_time(
    s: float,
    sigma: float,
    f: float = 0.5,
    model_rank: int = 1,
    weight_decay: float = 0.0,
    n: int | None = None,
) -> float:
    """Expected t_f over seeds, rank-1 target of singular value s, init entries N(0, σ²).

    E[t_f] ≈ (1/2s')[ln(2s'/σ²) − ψ(k/2) − ln 2 − ln(s'/w_f − 1)], w_f = s(1 − √f), s' = s − λ − ν,
    ν = (n − 1)σ² when ``n`` is given (the finite-init correction), else 0. For λ = ν = 0 this
    is (1/2s)[ln(2s/σ²) + c(f, k)] (:func:`plateau_constant`). ``inf`` when s' ≤ w_f.

    Measured against the flow, mean over 200 seeds (n = 100, σ = 1e-3, s = 1): the law is
    within the Monte-Carlo error (±0.1 %); per-seed spread sd ≈ √ψ′(k/2)/2s' (±5 %). The
    omitted terms are O(w₀/s) and O((ν/s)²) (see :func:`crossing_time`).
    """
    nu = 0.0 if n is None else (n - 1) * sigma**2
    sp = _rate(s, weight_decay) - nu
    w_f = s * (1 - math.sqrt(f))
    if sp <= w_f:
        return math.inf
    log_w0 = math.log(sigma**2 / 2) + float(digamma(model_rank / 2)) + math.log(2)
    return (math.log(sp) - log_w0 - math.log(sp / w_f - 1)) / (2 * sp)


def plateau_time_sd(s: float, model_rank: int = 1, weight_decay: float = 0.0) -> float:
    """Seed-to-seed sd of t_f: √ψ′(k/2)/(2s'), s' = s − λ (π/(2√2 s) = 1.1107/s for k = 1)."""
    return math.sqrt(float(polygamma(1, model_rank / 2))) / (2 * _rate(s, weight_decay))


def plateau_time_fixed_norm(s: float, eps: float, n: int, f: float = 0.5) -> float:
    """E[t_f] at fixed init norm ε per learned vector (σ = ε/√n): (1/2s)[ln(2ns/ε²) + c].

    Includes the finite-init correction ν = (n − 1)ε²/n ≈ ε² (see :func:`plateau_time`).
    """
    return plateau_time(s, eps / math.sqrt(n), f=f, n=n)


# ---------------------------------------------------------------------------------------------
# Per-spec (per-seed) predictions and the staircase


def initial_strengths(spec: Spec) -> tuple[np.ndarray, np.ndarray, float]:
    """(s, w₀, ν) of a factorization spec: the small-init inputs of the staircase.

    s: the target's nonzero singular values, decreasing; w₀[i] = |m_i⊥|², m_i =
    (X0ᵀu_i + Y0ᵀv_i)/2 orthogonalised (Gram–Schmidt in R^k) against m_1..m_{i−1} (zero for
    i > k); ν = (‖X0⊥‖² + ‖Y0⊥‖²)/2k, the init energy outside the target's singular spaces
    per column.
    """
    _closed_form_spec(spec, "factorization")
    if spec.loss != "mse":
        raise ModelError("closed forms are for the mse loss")
    qa, ra = np.linalg.qr(spec.A)  # C = ABᵀ = Q_a (R_a R_bᵀ) Q_bᵀ: no n x n matrix formed
    qb, rb = np.linalg.qr(spec.B)
    uc, s, vct = np.linalg.svd(ra @ rb.T)
    keep = s > 1e-12 * s[0]
    u, s, v = qa @ uc[:, keep], s[keep], qb @ vct[keep].T
    p, q = u.T @ spec.X0, v.T @ spec.Y0  # r x k
    m = 0.5 * (p + q)
    basis: list[np.ndarray] = []
    w0 = np.zeros(s.size)
    for i, row in enumerate(m):
        rest = row - sum((row @ e) * e for e in basis)
        w0[i] = float(rest @ rest)
        if len(basis) < spec.k:
            norm = math.sqrt(w0[i])
            basis.append(rest / norm if norm > 0 else rest)
    off = np.sum(spec.X0**2) - np.sum(p**2) + np.sum(spec.Y0**2) - np.sum(q**2)
    return s, w0, float(off) / (2 * spec.k)


def staircase_loss(t: ArrayLike, spec: Spec) -> np.ndarray:
    """Small-init prediction of the loss curve: L(t) = ½Σ_i (s_i − z_i(t))².

    z_i = logistic_w(t, s_i, w_i0, λ + ν) from :func:`initial_strengths` — independent logistic
    modes (exact for the aligned balanced start, asymptotic in σ otherwise). Measured errors:
    see :func:`crossing_time` and :func:`mode_times`.
    """
    s, w0, nu = initial_strengths(spec)
    t = np.asarray(t, dtype=np.float64)
    lam = spec.weight_decay + nu
    residual = [logistic_loss(t, si, wi, lam) for si, wi in zip(s, w0, strict=True)]
    return np.sum(residual, axis=0)


def mode_times(spec: Spec, level: float = 0.5) -> np.ndarray:
    """Per-seed t_i: time at which z_i = u_iᵀXYᵀv_i reaches level·s_i' (s_i' = s_i − λ − ν).

    t_i = (1/2s_i') ln[(s_i'/w_i0 − 1)·level/(1 − level)] with (s, w₀, ν) from
    :func:`initial_strengths`; modes in decreasing s; ``inf`` if mode i cannot be learned.
    Measured (well-separated s = 4, 2, 1 and 3, 1, 0.3; n = 50…200; σ = 1e-4…1e-3,
    k = r = 3, level ½): within 1e-4 relative of the flow's z_i crossings (tests: 1e-3).
    """
    if not 0 < level < 1:
        raise UsageError(f"level must be in (0, 1), got {level}")
    s, w0, nu = initial_strengths(spec)
    sp = s - spec.weight_decay - nu
    out = np.full(s.size, math.inf)
    ok = (sp > 0) & (w0 > 0)
    out[ok] = np.log((sp[ok] / w0[ok] - 1) * level / (1 - level)) / (2 * sp[ok])
    return out


def staircase_times(
    singular_values: Sequence[float],
    sigma: float,
    model_rank: int | None = None,
    level: float = 0.5,
    weight_decay: float = 0.0,
    n: int | None = None,
) -> np.ndarray:
    """Expected t_i over seeds (incremental learning, distinct well-separated s_i).

    E[t_i] ≈ (1/2s_i')[ln(2s_i'/σ²) − ψ(k_i/2) − ln 2 + ln(level/(1 − level))], k_i = k − j
    for the mode of j-th largest s (k = ``model_rank``, default r), s_i' = s_i − λ − ν with
    ν = (n − r)σ² if ``n`` is given. Times in input order; ``inf`` for modes beyond k or with
    s_i' ≤ 0. Measured: see :func:`mode_times` (seed mean within its Monte-Carlo error).
    """
    s = np.asarray(singular_values, dtype=np.float64)
    k = s.size if model_rank is None else int(model_rank)
    nu = 0.0 if n is None else (n - s.size) * sigma**2
    out = np.full(s.size, math.inf)
    for j, i in enumerate(np.argsort(-s, kind="stable")):
        sp = s[i] - weight_decay - nu
        if j < k and sp > 0:
            log_ratio = math.log(2 * sp / sigma**2) - float(digamma((k - j) / 2)) - math.log(2)
            out[i] = (log_ratio + math.log(level / (1 - level))) / (2 * sp)
    return out


def mode_strengths(traj: Trajectory) -> np.ndarray:
    """z_i(t) = ⟨a_i, XYᵀ b_i⟩/(‖a_i‖‖b_i‖) from a factorization trajectory, shape (T, r).

    From the trajectory's order parameters (:meth:`Trajectory.overlaps`, P_il/√G_ii =
    ⟨a_i/‖a_i‖, x_l⟩): z_i = Σ_l (P_X)_il (P_Y)_il/√((G_A)_ii (G_B)_ii). For a target sampled
    with ``singular_values`` (A = U diag √s, B = V diag √s) this is u_iᵀZv_i, the strength of
    mode i that :func:`mode_times` predicts.
    """
    return np.einsum("til,til->ti", traj.overlaps("X"), traj.overlaps("Y"))


# ---------------------------------------------------------------------------------------------
# Attention head


def _g(x: float) -> float:
    """G(x) = −1/x + ½ ln|(1 + x)/(1 − x)|, G′(x) = 1/(x²(1 − x²))."""
    return -1 / x + 0.5 * math.log(abs((1 + x) / (1 - x)))


def attention_balanced_crossing(f: float, S: float, p0: float) -> float:
    """Exact t_f of the balanced aligned rank-1 head (a = b = c = d = p₀, S = s_M s_N).

    dw/dt = 4w^{3/2}(S − w) with w = abcd = p⁴, L = ½(S − w)², L_ref = ½S²; with x = √(w/S):
    t_f = [G(x_f) − G(x₀)]/(2S^{3/2}), G(x) = −1/x + atanh x, x_f = √(1 ∓ √f). Leading term
    1/(2Sp₀²). 0 if L(0) ≤ f·L_ref; ``inf`` for p₀ = 0.
    """
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    x0 = p0**2 / math.sqrt(S)
    root = math.sqrt(f)
    if x0 == 0:
        return math.inf
    if 1 - root <= x0**2 <= 1 + root:
        return 0.0
    x_f = math.sqrt(1 - root) if x0**2 < 1 else math.sqrt(1 + root)
    return (_g(x_f) - _g(x0)) / (2 * S**1.5)


def attention_overlaps(spec: Spec) -> tuple[np.ndarray, float]:
    """((a, b, c, d), S) of a rank-1 head (h = h′ = 1): a = uᵀq0, ..., S = ‖M‖‖N‖.

    u, v (u′, v′) are the unit singular vectors of M = QKᵀ (N = OVᵀ): u = Q/‖Q‖, v = K/‖K‖.
    """
    if spec.h != 1 or spec.k != 1:
        raise ModelError(f"closed form needs a rank-1 head with h' = 1 (got h={spec.h}, "
                         f"h'={spec.k})")
    pairs = [(spec.Q, spec.Q0), (spec.K, spec.K0), (spec.O, spec.O0), (spec.V, spec.V0)]
    overlaps = np.array([float(t[:, 0] @ w[:, 0]) / np.linalg.norm(t) for t, w in pairs])
    norms = [np.linalg.norm(t) for t, _ in pairs]
    return overlaps, float(np.prod(norms))


def attention_blowup_time(overlaps: ArrayLike, S: float) -> float:
    """Small-init plateau T of the rank-1 head: blow-up time of da/dt = S·bcd (cyclic).

    T = τ/(2S), τ = ∫ dz/√Π_i(z + e_i), e_i = a_i² − min a_j² (module docstring); with
    z = min a_j² + u² the integrand is smooth: τ = ∫ 2du/√Π_{j≠min}(u² + e_j) from √min a_j²
    to ∞ (abcd > 0), plus twice the integral from 0 to √min a_j² (abcd < 0). Balanced:
    1/(2Sp₀²). ``inf`` if two overlaps vanish together (a saddle).
    """
    a = np.asarray(overlaps, dtype=np.float64)
    if a.shape != (4,):
        raise UsageError(f"expected the four overlaps (a, b, c, d), got shape {a.shape}")
    return _blowup_tau(a) / (2 * S)


def _blowup_tau(a: np.ndarray) -> float:
    """τ = 2S·T of the blow-up of da_i/dt = S Π_{j≠i} a_j (m ≥ 3 overlaps a_i).

    d(a_i²)/dt = 2S Π_j a_j for every i, so a_i² − a_j² is conserved and τ = ∫ dz/√Π_i(z + e_i),
    e_i = a_i² − min a_j²; with z = u² the integrand is smooth: τ = ∫ 2du/√Π_{j≠min}(u² + e_j)
    from √min a_j² to ∞ (Π a > 0), plus twice the integral from 0 to √min a_j² (Π a ≤ 0:
    the smallest overlap first shrinks through 0). ``inf`` if two overlaps vanish together
    (Π a ≤ 0 with two smallest |a_i| equal: a saddle, never left).
    """
    sq = a**2
    low = int(np.argmin(sq))
    e = np.delete(sq - sq[low], low)
    if np.prod(a) <= 0 and np.count_nonzero(e == 0) > 0:
        return math.inf

    def integrand(u: float) -> float:
        return 2.0 / math.sqrt(float(np.prod(u * u + e)))

    u0 = math.sqrt(sq[low])
    tau = quad(integrand, u0, math.inf, epsabs=0.0, epsrel=1e-10, limit=200)[0]
    if np.prod(a) <= 0:
        tau += 2 * quad(integrand, 0.0, u0, epsabs=0.0, epsrel=1e-10, limit=200)[0]
    return tau


def _attention_saturation(f: float, S: float) -> float:
    """(atanh x_f − 1/x_f)/(2S^{3/2}): t_f − T of the balanced solution as x₀ → 0."""
    x_f = math.sqrt(1 - math.sqrt(f))
    return (math.atanh(x_f) - 1 / x_f) / (2 * S**1.5)


def attention_plateau_time(S: float, sigma: float, f: float = 0.5) -> float:
    """Expected t_f over seeds of the rank-1 head, init entries N(0, σ²), S = s_M s_N.

    E[t_f] ≈ κ/(2Sσ²) + (atanh x_f − 1/x_f)/(2S^{3/2}), κ = :data:`ATTENTION_CONSTANT`,
    x_f = √(1 − √f) (−0.621/S^{3/2} at f = ½). The seed spread is wide: the median is
    :data:`ATTENTION_MEDIAN`/(2Sσ²) + the same shift, sd of ln t ≈ 1.0.
    """
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    return ATTENTION_CONSTANT / (2 * S * sigma**2) + _attention_saturation(f, S)


# ---------------------------------------------------------------------------------------------
# Depth-D chain: the balanced aligned mode


def _depth(depth: int) -> int:
    if int(depth) != depth or depth < 2:
        raise UsageError(f"depth must be an integer >= 2, got {depth}")
    return int(depth)


def _chain_j(y: ArrayLike, log_r: ArrayLike, depth: int) -> np.ndarray:
    """J_D(y) = ∫_0^y z dz/(1 − z^D) (y ≠ 1), with log_r = ln|1 − y^D| passed exactly.

    Roots of unity ω_k = e^{2πik/D}: z/(1 − z^D) = −(1/D)Σ_k ω_k²/(z − ω_k), so
    J_D(y) = −(1/D)[ln|1 − y| + Re Σ_{k=1}^{D−1} ω_k² ln(1 − y ω̄_k)] (each log on its
    principal branch, continuous for y ∈ (0, ∞)), with ln|1 − y| = log_r − ln Σ_{j<D} y^j.
    Below y = ½ the series Σ_m y^{mD+2}/(mD+2) is used (the logs cancel to O(y²) there).
    D = 3: (1/3)[−ln(1 − y) + ½ln(1 + y + y²) − √3(atan((2y + 1)/√3) − π/6)];
    D = 4: ½ atanh y². Vectorised over y.
    """
    y = np.asarray(y, dtype=np.float64)
    log_r = np.broadcast_to(np.asarray(log_r, dtype=np.float64), y.shape)
    out = np.empty(y.shape)
    low = y < 0.5
    powers = np.arange(64 // depth + 2)[::-1] * depth + 2  # smallest terms first
    out[low] = np.sum(y[low, None] ** powers / powers, axis=-1)
    high = y[~low]
    omega = np.exp(2j * np.pi * np.arange(1, depth) / depth)
    rest = np.sum(omega**2 * np.log(1 - high[:, None] * np.conj(omega)), axis=-1).real
    near = log_r[~low] - np.log(np.sum(high[:, None] ** np.arange(depth), axis=-1))
    out[~low] = -(near + rest) / depth
    return out


def _chain_f(x: ArrayLike, log_r: ArrayLike, depth: int) -> np.ndarray:
    """Antiderivative of the time in units s = 1, D ≥ 3: F(y) = ∫ dy/(y^{D−1}(1 − y^D)).

    y = x^{1/D}, x = u/s, log_r = ln|1 − x|; 1/(y^{D−1}(1 − y^D)) = y^{−(D−1)} + y/(1 − y^D), so
    F(y) = −1/((D − 2)y^{D−2}) + J_D(y) (:func:`_chain_j`).
    """
    y = np.asarray(x, dtype=np.float64) ** (1 / depth)
    return -1 / ((depth - 2) * y ** (depth - 2)) + _chain_j(y, log_r, depth)


def _chain_time(x0: float, log_r0: float, x1: ArrayLike, log_r1: ArrayLike,
                depth: int) -> np.ndarray:
    """Time (s = 1) of u̇ = D u^{2−2/D}(1 − u) from x0 to x1 (log_r = ln|1 − x|), D ≥ 3."""
    return _chain_f(x1, log_r1, depth) - _chain_f(x0, log_r0, depth)


def chain_time(u0: float, u1: float, s: float, depth: int) -> float:
    """Time for the balanced aligned depth-D mode to go from u0 to u1 (in t).

    The mode: all D factors of X M₁⋯M_{D−2} Yᵀ along one target mode of strength s, each
    factor's scalar a, product u = a^D; ȧ = a^{D−1}(s − a^D) gives (Saxe et al. 2014;
    Arora et al. 2018)

        du/dt = D u^{2−2/D} (s − u),
        t(u0 → u1) = ∫_{u0}^{u1} du / (D u^{2−2/D}(s − u)) = s^{−(2−2/D)} [F(y1) − F(y0)],

    y = (u/s)^{1/D}, F(y) = −1/((D − 2)y^{D−2}) + J_D(y), J_D(y) = ∫_0^y z dz/(1 − z^D) in
    closed form for every integer D by partial fractions over the D-th roots of unity
    (:func:`_chain_j`; D = 4: ½ atanh y²). D = 2 is the logistic dw/dt = 2w(s − w)
    (:func:`logistic_w`). u0, u1 > 0 on the same side of s, in the direction of motion
    (towards s); ``inf`` if u1 = s.
    """
    depth = _depth(depth)
    if s <= 0 or u0 <= 0 or u1 <= 0:
        raise UsageError(f"need s, u0, u1 > 0 (got s={s}, u0={u0}, u1={u1})")
    if u1 == u0:
        return 0.0
    if u1 == s:
        return math.inf
    if (u0 < s) != (u1 < s) or (u1 < u0) != (u0 > s):
        raise UsageError(f"u1={u1} is not reached from u0={u0}: u moves towards s={s}")
    if depth == 2:
        return _logistic_time(u0, u1, s)
    t = _chain_time(u0 / s, math.log(abs(s - u0) / s), u1 / s, math.log(abs(s - u1) / s), depth)
    return float(t) / s ** (2 - 2 / depth)


def chain_crossing(f: float, s: float, u0: float, depth: int) -> float:
    """Exact t_f of the balanced aligned depth-D mode: first t with ½(s − u)² ≤ f·½s².

    L_ref = ½s² (the zero model); the level is u_f = s(1 − √f) rising from u0 < u_f, or
    s(1 + √f) falling from above; t_f = :func:`chain_time` (u0 → u_f). D = 2 is
    :func:`logistic_crossing`. 0 if L(0) ≤ f·L_ref, ``inf`` for u0 = 0 (a saddle).
    """
    depth = _depth(depth)
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    if u0 < 0:
        raise UsageError(f"u0 = a^D must be >= 0 for a balanced aligned start (got {u0})")
    if depth == 2:
        return logistic_crossing(f, s, u0)
    root = math.sqrt(f)
    if s * (1 - root) <= u0 <= s * (1 + root):
        return 0.0
    if u0 == 0:
        return math.inf
    sign = 1.0 if u0 < s else -1.0
    t = _chain_time(u0 / s, math.log(abs(s - u0) / s), 1 - sign * root, math.log(root), depth)
    return float(t) / s ** (2 - 2 / depth)


def _chain_logit(t: np.ndarray, s: float, u0: float, depth: int) -> tuple[np.ndarray, float]:
    """φ(t) with u = s/(1 + εe^{−φ}), ε = sign(s − u0), solving t(u0 → u(φ)) = t by Newton.

    dt/dφ = 1/(D s u^{1−2/D}) > 0; t(φ) is concave (u0 < s) or convex (u0 > s), so Newton
    from φ(0) converges monotonically (after at most one overshoot). A sample is done when its
    step is below 1e-14·max(1, |φ|) or its time residual is at the rounding level of t(φ)
    (a few ulps of |F(y0)|, the largest term of the difference).
    """
    eps = 1.0 if u0 < s else -1.0
    phi0 = math.log(u0 / abs(s - u0))
    x0, log_r0 = u0 / s, math.log(abs(s - u0) / s)
    scale = s ** (2 - 2 / depth)
    noise = 64 * np.finfo(np.float64).eps * (abs(float(_chain_f(x0, log_r0, depth))) / scale
                                             + np.abs(t))
    flat = t.ravel()
    phi = np.full(flat.shape, phi0)
    todo = np.arange(flat.size)
    for _ in range(100):
        if todo.size == 0:
            break
        p = phi[todo]
        e = eps * np.exp(-p)
        x, log_r = 1 / (1 + e), -p - np.log1p(e)  # ln|1 − x| without underflow in the tail
        residual = flat[todo] - _chain_time(x0, log_r0, x, log_r, depth) / scale
        step = residual * depth * s * (s * x) ** (1 - 2 / depth)
        if eps < 0:  # convex: keep φ > 0 (u finite) on the overshoot
            step = np.maximum(step, -0.5 * p)
        phi[todo] = p + step
        done = (np.abs(step) <= 1e-14 * np.maximum(1.0, np.abs(p))) | (
            np.abs(residual) <= noise.ravel()[todo])
        todo = todo[~done]
    return phi.reshape(t.shape), eps


def chain_u(t: ArrayLike, s: float, u0: float, depth: int) -> np.ndarray:
    """u(t) of du/dt = D u^{2−2/D}(s − u) from u0 (t in continuous time, u in units of s).

    The inverse of :func:`chain_time`, solved in φ = ln(u/|s − u|) by Newton to ~1e-14 per
    sample (D ≥ 3; D = 2 is the logistic :func:`logistic_w`). u0 = 0 and u0 = s are fixed
    points.
    """
    depth = _depth(depth)
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0):
        raise UsageError("t must be >= 0")
    if depth == 2:
        return logistic_w(t, s, u0)
    if u0 == 0 or u0 == s:
        return np.full(t.shape, float(u0))
    phi, eps = _chain_logit(t, s, u0, depth)
    return s / (1 + eps * np.exp(-phi))


def chain_loss(t: ArrayLike, s: float, u0: float, depth: int) -> np.ndarray:
    """Loss ½(s − u(t))² of the balanced aligned depth-D mode (L_ref = ½s²), from
    :func:`chain_u` without cancellation (s − u = s·εe^{−φ}/(1 + εe^{−φ}))."""
    depth = _depth(depth)
    t = np.asarray(t, dtype=np.float64)
    if depth == 2:
        return logistic_loss(t, s, u0)
    if u0 == 0 or u0 == s:
        return np.full(t.shape, 0.5 * (s - u0) ** 2)
    phi, eps = _chain_logit(t, s, u0, depth)
    e = eps * np.exp(-phi)
    return 0.5 * (s * e / (1 + e)) ** 2


def chain_law(f: float, s: float, depth: int) -> tuple[float, float]:
    """(C, K) of the small-init law t_f = C·g_D(σ) + K − σ²/(2s²) + O(σ^{D+2}).

    Per-factor init scale σ (balanced aligned, a0 = σ, u0 = σ^D). From
    t_f = s^{−(2−2/D)}[F(y_f) − F(y0)] with y0 = σ/s^{1/D} and F(y0) = −1/((D − 2)y0^{D−2}) +
    y0²/2 + O(y0^{D+2}):

        D ≥ 3: g_D(σ) = σ^{−(D−2)},  C = 1/((D − 2)s),  K = s^{−(2−2/D)} F(y_f),
        D = 2: g_2(σ) = ln(1/σ),     C = 1/s,            K = (1/2s) ln(s(1 − √f)/√f),

    y_f = (1 − √f)^{1/D} (D = 2: the logistic's expansion, same −σ²/(2s²) term). So t ∝
    σ^{−(D−2)} at depth D ≥ 3 — a power of 1/σ, not its logarithm — and each halving of σ
    multiplies the plateau by 2^{D−2} as σ → 0.
    """
    depth = _depth(depth)
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    root = math.sqrt(f)
    if depth == 2:
        return 1 / s, math.log(s * (1 - root) / root) / (2 * s)
    offset = float(_chain_f(1 - root, math.log(root), depth)) / s ** (2 - 2 / depth)
    return 1 / ((depth - 2) * s), offset


def chain_plateau_time(f: float, s: float, sigma: float, depth: int) -> float:
    """Small-init t_f of the balanced aligned depth-D mode, per-factor init σ (u0 = σ^D).

    t_f ≈ C·g_D(σ) + K − σ²/(2s²) (:func:`chain_law`), error O(σ^{D+2}) against the exact
    :func:`chain_crossing`: D ≥ 3: σ^{−(D−2)}/((D − 2)s) + K; D = 2: (1/s)ln(1/σ) + K.
    """
    depth = _depth(depth)
    c, k = chain_law(f, s, depth)
    g = math.log(1 / sigma) if depth == 2 else sigma ** (-(depth - 2))
    return c * g + k - sigma**2 / (2 * s**2)


def chain_overlaps(spec: Spec) -> tuple[np.ndarray, float]:
    """((uᵀX0, M_1, ..., M_{D−2}, vᵀY0), s) of a rank-1 chain with k = 1.

    C = A Bᵀ = s u vᵀ with s = ‖A‖‖B‖, u = A/‖A‖, v = B/‖B‖; the middle factors are scalars.
    """
    if spec.r != 1 or spec.k != 1:
        raise ModelError(f"closed form needs a rank-1 chain with k = 1 (got r={spec.r}, "
                         f"k={spec.k})")
    norm_a, norm_b = float(np.linalg.norm(spec.A)), float(np.linalg.norm(spec.B))
    a = [float(spec.A[:, 0] @ spec.X0[:, 0]) / norm_a, *spec.M0.reshape(-1).tolist(),
         float(spec.B[:, 0] @ spec.Y0[:, 0]) / norm_b]
    return np.array(a), norm_a * norm_b


def chain_blowup_time(overlaps: ArrayLike, s: float) -> float:
    """Small-init plateau T of the rank-1, k = 1 chain of depth D = len(overlaps) ≥ 3.

    At small init each overlap (uᵀX, M_1, ..., M_{D−2}, vᵀY) grows as ȧ_i = s Π_{j≠i} a_j
    (the rest of the flow is smaller by O(init²)); T is its blow-up time,
    T = (1/2s) ∫ dz/√Π_i(z + e_i), e_i = a_i² − min a_j² (as the attention head's, which is
    D = 4). Balanced (all a_i = a0): T = 1/((D − 2)s a0^{D−2}), the leading term of
    :func:`chain_law`; t_f ≈ T + K_D(f, s) (:func:`crossing_time`).
    """
    a = np.asarray(overlaps, dtype=np.float64)
    if a.ndim != 1 or a.size < 3:
        raise UsageError(f"expected D >= 3 overlaps, got shape {a.shape}")
    return _blowup_tau(a) / (2 * s)


def chain_law_slope(depth: int) -> float:
    """Predicted slope of ln t_f against ln σ as σ → 0: −(D − 2).

    0 at D = 2, where the law is logarithmic (t_f ≈ (1/s) ln(1/σ)): the local slope there is
    −1/(s·t_f) → 0, never a power (:func:`chain_local_slope`).
    """
    return float(2 - _depth(depth))


def chain_local_slope(f: float, s: float, sigma: float, depth: int) -> float:
    """d ln t_f / d ln σ of the exact balanced aligned t_f at per-factor init σ (u0 = σ^D).

    With dt_f/du0 = −1/(D u0^{2−2/D}(s − u0)) and du0/dσ = Dσ^{D−1}:
    d ln t_f/d ln σ = −σ^{2−D}/(t_f (s − σ^D)); → −(D − 2) as σ → 0 for D ≥ 3 and
    −1/(t_f(s − σ²)) at D = 2.
    """
    depth = _depth(depth)
    u0 = sigma**depth
    return -(sigma ** (2 - depth)) / (chain_crossing(f, s, u0, depth) * (s - u0))


# ---------------------------------------------------------------------------------------------
# Vector baseline and the per-spec entry point


def vector_loss(t: ArrayLike, spec: Spec) -> np.ndarray:
    """Exact L(t) = ½‖a − x(t)‖² of the vector flow dx/dt = a − (1 + λ)x.

    x(t) = a/(1 + λ) + (x0 − a/(1 + λ))e^{−(1+λ)t}; for λ = 0, L = L(0)e^{−2t}.
    """
    t = np.asarray(t, dtype=np.float64)
    rate = 1 + spec.weight_decay
    x_inf = spec.a[:, 0] / rate
    x = x_inf + np.multiply.outer(np.exp(-rate * t), spec.x0[:, 0] - x_inf)
    return 0.5 * np.sum((spec.a[:, 0] - x) ** 2, axis=-1)


def _closed_form_spec(spec: Spec, kind: str | None = None) -> None:
    """Raise a one-line :class:`ModelError` unless ``spec`` is a built-in spec with a closed
    form (of ``kind`` when given): a spec of any other model (a ``ModelSpec``, e.g. a grouped
    model or ``sample_model(model, dims)``) has none and must be integrated."""
    entry = registry.entry(spec.kind)
    if entry is None or not entry.hook("closed_form") or (kind is not None and spec.kind != kind):
        want = kind or "/".join(n for n, e in registry.entries().items() if e.hook("closed_form"))
        raise ModelError(f"{spec.kind}: no closed-form prediction for this spec (closed forms "
                         f"are for built-in {want} specs); integrate it with "
                         "dynamics.integrate.predict")


def crossing_time(spec: Spec, f: float = 0.5) -> float:
    """Per-seed small-init prediction of t_f (first t with L ≤ f·L_ref) for ``spec``: the
    ``crossing_time`` hook its model module registers (no branch on the kind here):

    * vector: exact, from :func:`vector_loss` (:func:`vector_crossing_time`);
    * factorization (mse): the crossing of :func:`staircase_loss`
      (:func:`staircase_crossing_time`); for rank 1 this is
      t_f = (1/2s') ln[(s'/w₀ − 1)/(s'/w_f − 1)], s' = s − λ − ν. Measured (rank 1, f = ½,
      s ∈ [0.5, 4], n ∈ [50, 400]): |error| < 0.1 % for ν/s ≤ 2e-3 (σ = 1e-3), < 2 % for
      ν/s ≤ 0.08 (σ = 1e-2); without the ν term the error is ≈ −ν/s;
    * attention head (rank 1, h′ = 1): :func:`attention_blowup_time` plus the saturation
      shift of :func:`attention_plateau_time` (:func:`attention_crossing_time`). Measured
      (S ≈ 1-1.4, 4 seeds each): within 3e-4 relative for d·σ² ≤ 1e-3 and 5e-3 for
      d·σ² = 8e-3 (tests/dynamics/test_theory.py);
    * chain: depth 2 is the factorization; depth ≥ 3 :func:`chain_crossing_time`.

    Returns ``inf`` when the level is never reached.
    """
    if not 0 < f < 1:
        raise UsageError(f"f must be in (0, 1), got {f}")
    _closed_form_spec(spec)
    hook = registry.entry(spec.kind).hook("crossing_time")  # type: ignore[union-attr]
    if hook is None:
        raise ModelError(f"{spec.kind}: no closed-form crossing time registered; integrate it "
                         "with dynamics.integrate.predict")
    return float(hook(spec, f))


def attention_crossing_time(spec: Spec, f: float) -> float:
    """t_f of a rank-1 attention head: blow-up time plus the saturation shift."""
    overlaps, S = attention_overlaps(spec)
    return attention_blowup_time(overlaps, S) + _attention_saturation(f, S)


def chain_crossing_time(spec: Spec, f: float) -> float:
    """t_f of a chain: depth 2 is the factorization's staircase; depth ≥ 3 (λ = 0) the blow-up
    time plus the chain law's shift."""
    if spec.depth == 2:
        return staircase_crossing_time(
            Factorization(A=spec.A, B=spec.B, X0=spec.X0, Y0=spec.Y0,
                          weight_decay=spec.weight_decay), f)
    if spec.weight_decay:
        raise ModelError("the chain's closed form (D >= 3) is for weight decay 0")
    overlaps, s = chain_overlaps(spec)
    return chain_blowup_time(overlaps, s) + chain_law(f, s, spec.depth)[1]


def vector_crossing_time(spec: Spec, f: float) -> float:
    """t_f of the vector problem, exact: the root of :func:`vector_loss` = f·L_ref."""
    level = f * spec.l_ref
    rate = 1 + spec.weight_decay
    loss0 = float(vector_loss(0.0, spec))
    if loss0 <= level:
        return 0.0
    floor = float(vector_loss(1e3 / rate, spec))
    if floor > level:
        return math.inf
    return brentq(lambda t: float(vector_loss(t, spec)) - level, 0.0, 1e3 / rate)


def staircase_crossing_time(spec: Spec, f: float) -> float:
    """t_f of a squared-loss factorization: the crossing of :func:`staircase_loss`."""
    level = f * spec.l_ref
    loss0 = float(staircase_loss(0.0, spec))
    if loss0 <= level:
        return 0.0
    s, _, _ = initial_strengths(spec)
    t_hi = 1.0 / s[-1]
    while float(staircase_loss(t_hi, spec)) > level:
        t_hi *= 2
        if t_hi > 1e8 / s[-1]:
            return math.inf
    return brentq(lambda t: math.log(float(staircase_loss(t, spec)) / level), 0.0, t_hi,
                  xtol=1e-12 * t_hi, rtol=1e-12)
