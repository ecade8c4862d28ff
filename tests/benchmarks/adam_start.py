"""Why the Adam ODE starts with K exact Adam steps (dynamics.adam, module docstring "Start";
README "Adam as an ODE"): signed relative errors (%) of the ODE's t_0.5 / t_0.1 against
torch.optim.Adam (float64, tests/dynamics/adam_oracle.py) on factorization n = 100, rank 3
(target singular values 1.08, 1.00, 0.86), seed 0.

    python tests/benchmarks/adam_start.py

0. The first steps: how much one Adam step changes the overlaps P = (AᵀX, BᵀY) (unit target
   columns) of torch's run, |P_k − P_0|/|P_0|, and how far the ODE from t = 0 (first order)
   lands from them at t = kη, |P_ode − P_k|/|P_k − P_0|, η = 1e-3, σ ∈ {1e-2, 1e-3, 0.1}.
1. The ODE started from Adam's own (θ, m, v) after k steps (``Adam(exact_steps=k)``, the first
   k steps being torch's to 1e-12, tests/dynamics/test_adam.py), first order and with the
   half-step correction, σ ∈ {1e-2, 1e-3}, η = 1e-3: the miss is made in the first steps.
2. The first-order ODE from t = 0 against η (σ ∈ {1e-3, 1e-2}): the miss does not shrink ∝ η.
3. ε (1e-8, 1e-12, 1e-16, in both) and the solver's rtol (1e-6, 1e-8, 1e-11), σ = 1e-2.
4. Other β (outside the acceptance grid): the defaults (K = ⌈1/(1 − β₁)⌉ exact steps, then
   the ODE with the half-step correction) against the first-order ODE from t = 0; with K, so
   that a crossing inside the exact start (t_f ≤ Kη, the map itself) can be told apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dynamics"))
from adam_oracle import torch_adam, torch_crossings

from dynamics.adam import run_adam
from dynamics.methods import Adam
from dynamics.problems import sample_model

F = (0.5, 0.1)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=0)


def first_steps(sigma: float, lr: float, ks: tuple[int, ...]) -> list[str]:
    """Section 0's two ratios at each step k of ``ks``."""
    spec = _spec(sigma)
    values = spec.values()
    a, b = _unit(values["A"]), _unit(values["B"])
    seen = {}

    def inspect(step, opt, params):
        seen[step] = np.concatenate([(a.T @ params["X"].detach().numpy()).ravel(),
                                     (b.T @ params["Y"].detach().numpy()).ravel()])

    torch_adam(spec, lr, max(ks) + 1, inspect=inspect)
    lines = []
    for k in ks:
        traj = run_adam(spec, Adam(lr, exact_steps=0, half_step=False), t_max=k * lr)
        assert abs(traj.t[-1] - k * lr) <= 1e-12, traj.t[-1]
        ode = np.concatenate([traj.overlaps("X")[-1].ravel(), traj.overlaps("Y")[-1].ravel()])
        moved = np.linalg.norm(seen[k] - seen[0])
        lines.append(f"k = {k:2d}: torch's overlaps moved {moved / np.linalg.norm(seen[0]):.3g} "
                     f"× |P_0|; the ODE is {np.linalg.norm(ode - seen[k]) / moved:.3g} × that "
                     "off")
    return lines


def _spec(sigma: float):
    return sample_model("factorization", {"n": 100, "r": 3, "k": 3}, init=sigma, seed=0)


def errors(sigma: float, lr: float, eps: float = 1e-8, rtol: float = 1e-8,
           betas: tuple[float, float] = (0.9, 0.999), **options) -> str:
    spec = _spec(sigma)
    method = Adam(lr, eps=eps, betas=betas, **options)
    ode = run_adam(spec, method, t_max=3.0, rtol=rtol).crossing_times(F)
    exp = torch_crossings(spec, lr, 1.3 * (ode[0.1] or 3.0), F, eps=eps, betas=betas)
    return " / ".join("—" if ode[f] is None or exp[f] is None else
                      f"{100 * (ode[f] - exp[f]) / exp[f]:+.2f}" for f in F)


def main() -> None:
    print("0. the first steps, η = 1e-3 (ODE from t = 0, first order)")
    for sigma in (1e-2, 1e-3, 0.1):
        for line in first_steps(sigma, 1e-3, (1, 2, 3, 10)):
            print(f"   σ = {sigma:g}, {line}", flush=True)
    print("1. restarted from Adam's state after k steps, η = 1e-3 (t_0.5 / t_0.1, %)")
    for sigma in (1e-2, 1e-3):
        for k in (0, 1, 2, 3, 5, 10, 20, 30):
            print(f"   σ = {sigma:g}, k = {k:2d}: first order "
                  f"{errors(sigma, 1e-3, exact_steps=k, half_step=False)}; half-step "
                  f"{errors(sigma, 1e-3, exact_steps=k)}", flush=True)
    print("2. the first-order ODE from t = 0 against η (t_0.5 / t_0.1, %)")
    for sigma in (1e-3, 1e-2):
        for lr in (1e-3, 5e-4, 2.5e-4, 1e-4):
            print(f"   σ = {sigma:g}, η = {lr:g}: "
                  f"{errors(sigma, lr, exact_steps=0, half_step=False)}", flush=True)
    print("3. ε and rtol, first order from t = 0, σ = 1e-2, η = 1e-3 (t_0.5 / t_0.1, %)")
    for eps in (1e-8, 1e-12, 1e-16):
        print(f"   ε = {eps:g} (ODE and torch): "
              f"{errors(1e-2, 1e-3, eps=eps, exact_steps=0, half_step=False)}", flush=True)
    for rtol in (1e-6, 1e-8, 1e-11):
        first_order = errors(1e-2, 1e-3, rtol=rtol, exact_steps=0, half_step=False)
        print(f"   rtol = {rtol:g}: {first_order}", flush=True)
    print("4. other β: from t = 0 first order; the defaults (t_0.5 / t_0.1, %)")
    for betas in ((0.0, 0.999), (0.8, 0.99), (0.9, 0.99), (0.95, 0.999), (0.99, 0.999)):
        for sigma in (1e-2, 1e-3):
            for lr in (1e-3, 1e-2):
                k = Adam(lr, betas=betas).exact_steps
                print(f"   β = {betas}, σ = {sigma:g}, η = {lr:g} (K = {k}, Kη = {k * lr:g}): "
                      f"{errors(sigma, lr, betas=betas, exact_steps=0, half_step=False)}; "
                      f"{errors(sigma, lr, betas=betas)}", flush=True)


if __name__ == "__main__":
    main()
