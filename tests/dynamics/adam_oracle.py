"""The oracle of the Adam ODE tests: torch.optim.Adam / AdamW in float64 on losses written by
hand here (not generated from the model), from a spec's initial weights, full batch.

Losses (README "Conventions", ½ × sum):
factorization ½‖ABᵀ − XYᵀ‖²; attention ½‖M⊗N − M̃⊗Ñ‖² with M = QKᵀ, N = OVᵀ (targets Qs, ...),
i.e. ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²]; examples/symmetric.py ½‖AAᵀ − XXᵀ‖².
"""

from __future__ import annotations

import numpy as np
import torch

from dynamics.phases import crossing_times


def _loss(kind: str, p: dict, c: dict) -> torch.Tensor:
    if kind == "factorization":
        return 0.5 * ((c["A"] @ c["B"].T - p["X"] @ p["Y"].T) ** 2).sum()
    if kind == "attention":
        m, n = p["Q"] @ p["K"].T, p["O"] @ p["V"].T
        ms, ns = c["Qs"] @ c["Ks"].T, c["Os"] @ c["Vs"].T
        return 0.5 * ((m**2).sum() * (n**2).sum() - 2 * (m * ms).sum() * (n * ns).sum()
                      + (ms**2).sum() * (ns**2).sum())
    if kind == "symmetric":
        return 0.5 * ((c["A"] @ c["A"].T - p["X"] @ p["X"].T) ** 2).sum()
    raise KeyError(kind)


def torch_adam(spec, lr: float, steps: int, betas=(0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.0, decoupled: bool = False, inspect=None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(t = η·step, L) of every step 0..steps of torch.optim.Adam(W) on ``spec``'s loss;
    ``inspect(step, optimizer, params)`` (optional) is called after each backward pass, before
    the optimizer's step (the gradients and the previous step's moments in place)."""
    values, model = spec.values(), spec.model
    p = {w: torch.tensor(values[w], dtype=torch.float64, requires_grad=True)
         for w in model.learned_names}
    c = {k: torch.tensor(values[k], dtype=torch.float64) for k in model.constant_names}
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(list(p.values()), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    losses = []
    for step in range(steps + 1):
        opt.zero_grad()
        loss = _loss(model.name, p, c)
        losses.append(loss.item())
        if step == steps:
            break
        loss.backward()
        if inspect is not None:
            inspect(step, opt, p)
        opt.step()
    return np.arange(steps + 1) * lr, np.array(losses)


def torch_crossings(spec, lr: float, t_end: float, fractions=(0.5, 0.1), **options
                    ) -> dict[float, float | None]:
    """Crossing times t_f of the torch run up to t_end (README "Conventions")."""
    t, loss = torch_adam(spec, lr, int(np.ceil(t_end / lr)) + 1, **options)
    return crossing_times(t, loss, spec.l_ref, fractions)
