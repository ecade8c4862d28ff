"""Merged linear attention trained on the tokens themselves (torch autograd, full-batch GD).

The check that scurve's merged ``icl`` model — a two-layer linear network on the cubic feature
z = (Σₙ yₙxₙ) x_qᵀ (:mod:`dynamics.models.icl`) — is the attention layer's twin, by a path that
shares nothing with the derivation: the attention is evaluated on the tokens eₙ = [xₙ; yₙ] ∈
R^{D+1} (the query token e_q = [x_q; 0]),

    ŷ_p = Σ_h ( Σₙ (eₙᵀ W^KQ_h e_q) · W^V_h eₙ )_{D+1},   sum over the N context tokens and the
    query token (whose y = 0),

L = ½ Σ_p (ŷ_p − y_{q,p})², and full-batch GD W ← W − η ∇L through autograd, t = η·step. Only the
blocks that carry ŷ are learned (W^KQ_h's x→x block, W^V_h's y→y entry; the paper's code starts
the others at zero): W^KQ_h = [[W_h, 0], [0, 0]], W^V_h = v_h e_{D+1}e_{D+1}ᵀ.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["attention_gd", "attention_loss"]


def attention_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, v: torch.Tensor
                   ) -> torch.Tensor:
    """½ Σ_p (ŷ_p − y_q)² of H merged heads on the tokens (module docstring).

    Args:
        x: (P, N+1, D) inputs, the last row of each sequence the query.
        y: (P, N+1) labels, the last one the target y_q (set to 0 in the query token).
        w: (H, D²) key–query x→x blocks, row h = vec W_h (row-major), as the spec's ``W``.
        v: (1, H) value y→y entries, as the spec's ``v``.
    """
    dim = x.shape[-1]
    heads = w.shape[0]
    y_in = torch.cat([y[:, :-1], torch.zeros_like(y[:, -1:])], dim=1)
    e = torch.cat([x, y_in[..., None]], dim=-1)  # (P, N+1, D+1)
    wkq = torch.zeros(heads, dim + 1, dim + 1, dtype=x.dtype)
    wkq[:, :dim, :dim] = w.reshape(heads, dim, dim)
    wv = torch.zeros(heads, dim + 1, dim + 1, dtype=x.dtype)
    wv[:, dim, dim] = v.reshape(heads)
    keyed = torch.einsum("hij,pj->phi", wkq, e[:, -1])  # W^KQ_h e_q
    scores = torch.einsum("pni,phi->phn", e, keyed)  # eₙᵀ W^KQ_h e_q
    pooled = torch.einsum("phn,pnj->phj", scores, e)  # Σₙ scoreₙ eₙ
    out = torch.einsum("hij,phj->pi", wv, pooled)  # Σ_h W^V_h (…)
    return 0.5 * torch.sum((out[:, -1] - y[:, -1]) ** 2)


def attention_gd(x: np.ndarray, y: np.ndarray, w0: np.ndarray, v0: np.ndarray, lr: float,
                 steps: int) -> np.ndarray:
    """Losses L_0 … L_steps of full-batch GD at rate ``lr`` on :func:`attention_loss` from
    (``w0``, ``v0``), float64 on the CPU (step k at t = lr·k)."""
    tx, ty = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    v = torch.tensor(v0, dtype=torch.float64, requires_grad=True)
    losses = np.empty(steps + 1)
    for k in range(steps + 1):
        loss = attention_loss(tx, ty, w, v)
        losses[k] = loss.item()
        if k == steps:
            break
        gw, gv = torch.autograd.grad(loss, [w, v])
        with torch.no_grad():
            w -= lr * gw
            v -= lr * gv
    return losses
