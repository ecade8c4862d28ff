"""Online SGD of a real committee machine in torch, many seeds batched, from a spec's weights.

Every step draws B fresh inputs x ~ N(0, I_N) per seed and takes, on the per-sample loss
½(φ − φ*)² averaged over the batch (Δ = φ* − φ, λ_k = w_k·x/√N),

    w_k ← w_k + (η/B) Σ_b Δ_b v_k g′(λ_kb) x_b/√N,     v_k ← v_k + (η/(N B)) Σ_b Δ_b g(λ_kb)

(the second line only when the spec's second layer is trained), t = η·step/N. g and g′ are
compiled from the same SymPy expression the theory integrates (:mod:`dynamics.gaussian`); the
gradient is written out above rather than derived by the symbolic machinery because the
committee loss is an expectation, not a trace polynomial. At the logged steps the **population**
loss ε is computed exactly from each seed's own order parameters (Q, R, v) with the theory's
ε(Q, R, T, v, a) — not a sample estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from dynamics.errors import UsageError
from dynamics.gaussian import activation, x
from dynamics.models.committee import CommitteeSpec, epsilon

__all__ = ["CommitteeRun", "torch_activation", "train"]

def _extreme(op, args):
    ts = [u for u in args if torch.is_tensor(u)]
    out = ts[0]
    for u in args:
        if u is not out:
            out = op(out, u if torch.is_tensor(u) else torch.full_like(ts[0], float(u)))
    return out


_TORCH = {"erf": torch.erf, "tanh": torch.tanh, "exp": torch.exp, "Heaviside":
          lambda v, *_: (v > 0).to(v.dtype), "Max": lambda *a: _extreme(torch.maximum, a),
          "Min": lambda *a: _extreme(torch.minimum, a),
          "sqrt": lambda v: torch.sqrt(v) if torch.is_tensor(v) else math.sqrt(v),
          "sin": torch.sin, "cos": torch.cos, "Abs": torch.abs}


def torch_activation(name: str):
    """(g, g′) as torch functions, lambdified from the activation's SymPy expression."""
    expr = activation(name).expr
    # constants such as sqrt(2/π) as floats (evalf), not recomputed at every call
    g = sp.lambdify(x, expr.evalf(), modules=[_TORCH])
    dg = sp.lambdify(x, sp.diff(expr, x).evalf(), modules=[_TORCH])

    def wrap(f):
        def out(v):
            r = f(v)
            return r if torch.is_tensor(r) else torch.full_like(v, float(r))
        return out

    return wrap(g), wrap(dg)


@dataclass
class CommitteeRun:
    """Logged steps, their t = η·step/N, every seed's population ε (S, T) and Q, R (and v)."""

    steps: np.ndarray
    t: np.ndarray
    loss: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    v: np.ndarray

    def mean(self) -> np.ndarray:
        return self.loss.mean(0)

    def long_rows(self) -> list[tuple[int, int, float, float]]:
        """(seed, step, t, loss) rows, long format."""
        return [(s, int(st), float(tt), float(lo)) for s in range(self.loss.shape[0])
                for st, tt, lo in zip(self.steps, self.t, self.loss[s], strict=True)]


def train(spec: CommitteeSpec, lr: float, steps: int, seeds: int = 1, batch: int = 1,
          every: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32,
          device: str = "cpu", chunk: int = 64, w0: np.ndarray | None = None) -> CommitteeRun:
    """Online SGD (module docstring) from ``spec.W0``, ``spec.v0`` for ``seeds`` input streams
    at once (or from each seed's own ``w0[s]``, shape (seeds, K, N)); logs every ``every``
    steps (default steps/400) and at the last step."""
    if not lr > 0 or steps < 1 or seeds < 1 or batch < 1:
        raise UsageError("train needs lr > 0 and steps, seeds, batch >= 1")
    every = every or max(1, steps // 400)
    g, dg = torch_activation(spec.activation)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, k = spec.N, spec.K
    sq = float(np.sqrt(n))
    start = spec.W0 if w0 is None else np.asarray(w0, float)
    w = torch.tensor(start, dtype=dtype, device=device).expand(seeds, k, n).clone()
    v = torch.tensor(spec.v0, dtype=dtype, device=device).expand(seeds, k).clone()
    wt = torch.tensor(spec.Wt, dtype=dtype, device=device)
    a = torch.tensor(spec.a, dtype=dtype, device=device)
    log_steps, qs, rs, vs = [], [], [], []

    def log(step):
        wd = w.double()
        qs.append((wd @ wd.transpose(1, 2) / n).cpu().numpy())
        rs.append((wd @ wt.double().T / n).cpu().numpy())
        vs.append(v.double().cpu().numpy())
        log_steps.append(step)

    log(0)
    step = 0
    wk = w.transpose(1, 2)  # (S, N, K) view of w: λ = x·wk, updated in place through it
    vk = v[:, None, :]  # (S, 1, K) view of v
    while step < steps:
        m = min(chunk, steps - step)
        # x/√N once per chunk: λ = (x/√N)·w and Δw = (η/B) coef·x/√N use the same scaled x
        xs = torch.randn(m, seeds, batch, n, generator=gen, dtype=dtype, device=device) / sq
        noise = (spec.noise * torch.randn(m, seeds, batch, generator=gen, dtype=dtype,
                                          device=device)) if spec.noise else None
        targets = g(xs @ wt.T) @ a  # (m, S, B)
        if noise is not None:
            targets = targets + noise
        for i in range(m):
            xb = xs[i]  # (S, B, N)
            lam = torch.bmm(xb, wk)  # (S, B, K)
            gl = g(lam)
            delta = targets[i] - (gl * vk).sum(-1)  # (S, B)
            coef = delta[..., None] * dg(lam) * vk  # (S, B, K)
            wk.baddbmm_(xb.transpose(1, 2), coef, alpha=lr / batch)
            if spec.trained:
                v += (lr / (n * batch)) * (delta[..., None] * gl).sum(1)
            step += 1
            if step % every == 0 or step == steps:
                log(step)
    q, r, vv = np.stack(qs, 1), np.stack(rs, 1), np.stack(vs, 1)  # (S, T, ...)
    loss = epsilon(spec.activation, q, r, spec.T, vv, spec.a)
    st = np.array(log_steps)
    return CommitteeRun(st, lr * st / n, loss, q, r, vv)
