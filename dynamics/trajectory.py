"""Trajectories: the quantities the seeds plot, for theory and experiment alike.

A trajectory holds, at times ``t`` (continuous time; a gradient step of rate η advances t by
η; README "Conventions"), the loss and, for every factor (learned matrix W, n x k, with
target T, n x r):

* ``cosines[name][i, j, l]`` = ⟨T_{:,j}, W_{:,l}⟩ / (‖T_{:,j}‖ ‖W_{:,l}‖) at sample i — the
  cosine between target direction j and learned vector l;
* ``norms[name][i, l]`` = ‖W_{:,l}‖.

Both are functions of the factor's order parameters P = TᵀW (r x k), U = WᵀW (k x k) and the
constant G = TᵀT (r x r) only:  cos_jl = P_jl / √(G_jj U_ll),  ‖w_l‖ = √U_ll.  This module is
the one implementation of those formulas; the reduced ODEs produce (P, U) directly and the
trainer measures them from its parameters, so one plotting function serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .phases import Phases, analyze, crossing_times

__all__ = ["Trajectory", "cosines_and_norms"]


def cosines_and_norms(
    p: np.ndarray, u: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosines P_jl/√(G_jj U_ll) and norms √U_ll from order parameters.

    ``p`` has shape (..., r, k), ``u`` (..., k, k) and ``g`` (r, r) or (..., r, r); leading
    axes (time, seed) broadcast. A zero-norm learned vector has cosine 0 by convention.
    """
    p = np.asarray(p, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    u_diag = np.clip(np.diagonal(u, axis1=-2, axis2=-1), 0.0, None)
    g_diag = np.clip(np.diagonal(np.asarray(g, dtype=np.float64), axis1=-2, axis2=-1), 0.0, None)
    norms = np.sqrt(u_diag)
    denom = np.sqrt(g_diag)[..., :, None] * norms[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(denom > 0, p / np.where(denom > 0, denom, 1.0), 0.0)
    return cos, norms


@dataclass
class Trajectory:
    """Loss, cosines and norms sampled at times ``t`` (see module docstring).

    Attributes:
        t: sample times in continuous time t (shape (T,)).
        loss: loss at those times (shape (T,)).
        l_ref: loss of the zero model, ½‖target‖² (README "Conventions").
        cosines: ``{factor: (T, r, k) array}``.
        norms: ``{factor: (T, k) array}``.
        method: what produced it (``"flow"``, ``"discrete"``, ``"sgd"``, ...).
        steps: optional integer step numbers of the samples (discrete processes).
        state_size: number of scalar state variables of the ODE or map that produced it
            (0 for a training run).
        group_loss: (T, G) the loss ℓ_g of every capability group (grouped models), else None.
    """

    t: np.ndarray
    loss: np.ndarray
    l_ref: float
    cosines: dict[str, np.ndarray] = field(default_factory=dict)
    norms: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = ""
    steps: np.ndarray | None = None
    state_size: int = 0
    group_loss: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        self.loss = np.asarray(self.loss, dtype=np.float64)
        if self.t.shape != self.loss.shape or self.t.ndim != 1:
            raise ValueError(f"t {self.t.shape} and loss {self.loss.shape} must be equal 1-d")
        if self.group_loss is not None:
            self.group_loss = np.asarray(self.group_loss, dtype=np.float64)
            if self.group_loss.ndim != 2 or self.group_loss.shape[0] != self.t.size:
                raise ValueError(f"group_loss {self.group_loss.shape} must be (T, G) with "
                                 f"T = {self.t.size}")

    @classmethod
    def from_order_parameters(
        cls,
        t: np.ndarray,
        loss: np.ndarray,
        l_ref: float,
        order: dict[str, tuple[np.ndarray, np.ndarray]],
        gram: dict[str, np.ndarray],
        method: str = "",
        steps: np.ndarray | None = None,
    ) -> Trajectory:
        """Build from ``order[name] = (P (T, r, k), U (T, k, k))`` and ``gram[name] = G``."""
        cosines, norms = {}, {}
        for name, (p, u) in order.items():
            cosines[name], norms[name] = cosines_and_norms(p, u, gram[name])
        return cls(t, loss, float(l_ref), cosines, norms, method, steps)

    def crossing_times(
        self, fractions: tuple[float, ...] = (0.5, 0.1, 0.01)
    ) -> dict[float, float | None]:
        """t_f: first time L ≤ f·L_ref (interpolated in log L; :mod:`dynamics.phases`)."""
        return crossing_times(self.t, self.loss, self.l_ref, fractions)

    def phases(self) -> Phases:
        """Phase segmentation of the loss curve (:func:`dynamics.phases.analyze`)."""
        return analyze(self.t, self.loss, self.l_ref)
