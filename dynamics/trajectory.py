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
from typing import Any

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
    """Loss and order parameters sampled at times ``t`` (see module docstring): the one result
    type of theory (:func:`dynamics.integrate.predict`) and training
    (:func:`validation.training.train`).

    Attributes:
        t: sample times in continuous time t (shape (T,)); ``time_unit`` names the clock.
        loss: loss at those times (shape (T,)).
        l_ref: loss of the zero model, ½‖target‖² (README "Conventions").
        cosines: ``{factor: (T, r, k) array}``: derived from ``order`` on demand when the
            trajectory was made from order parameters, else as given (e.g. compacted for a plot).
        norms: ``{factor: (T, k) array}``, likewise.
        method: what produced it (``"flow"``, ``"discrete"``, ``"sgd"``, ...).
        steps: optional integer step numbers of the samples (discrete processes, training).
        state_size: number of scalar state variables of the ODE or map that produced it
            (0 for a training run).
        group_loss: (T, G) the loss ℓ_g of every capability group (grouped models), else None.
        order: ``{factor: (P (T, r, k), U (T, k, k))}``, P = TᵀW, U = WᵀW: the order parameters
            it was made from (empty for a trajectory given only cosines and norms).
        gram: ``{factor: G = TᵀT (r, r)}``, the constants of ``order``.
        time_unit: the unit of ``t``: ``"t"``, continuous time t = η·step (README
            "Conventions"; with a schedule t_k = Σ_{j<k} η_j).
        every_t, every_loss: the exact crossing record of a run whose samples are a subset of
            its steps (a training run: order parameters at its saved steps, loss at every
            step, (N,) each): crossing times and phases come from it; None where the samples
            hold every crossing already (theory: root-found, or the steps around each one).
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
    order: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    gram: dict[str, np.ndarray] = field(default_factory=dict)
    time_unit: str = "t"
    every_t: np.ndarray | None = None
    every_loss: np.ndarray | None = None

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
        missing = set(self.order) - set(self.gram)
        if missing:
            raise ValueError(f"order parameters of {sorted(missing)} need their gram TᵀT")
        if (self.every_t is None) != (self.every_loss is None):
            raise ValueError("every_t and every_loss go together")
        if self.every_t is not None:
            self.every_t = np.asarray(self.every_t, dtype=np.float64)
            self.every_loss = np.asarray(self.every_loss, dtype=np.float64)
            if self.every_t.shape != self.every_loss.shape or self.every_t.ndim != 1:
                raise ValueError(f"every_t {self.every_t.shape} and every_loss "
                                 f"{self.every_loss.shape} must be equal 1-d")

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
        **more: object,
    ) -> Trajectory:
        """Build from ``order[name] = (P (T, r, k), U (T, k, k))`` and ``gram[name] = G``;
        ``more``: any other field (``group_loss``, ``state_size``, ``every_t``, ...)."""
        order = {name: (np.asarray(p, dtype=np.float64), np.asarray(u, dtype=np.float64))
                 for name, (p, u) in order.items()}
        return cls(t, loss, float(l_ref), method=method, steps=steps, order=order,
                   gram={name: np.asarray(gram[name], dtype=np.float64) for name in order},
                   **more)  # type: ignore[arg-type]

    def _derived(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Cosines and norms of every factor from ``order`` (computed once, then kept)."""
        cache = self.__dict__.get("_derived_cache")
        if cache is None:
            cos, norms = {}, {}
            for name, (p, u) in self.order.items():
                cos[name], norms[name] = cosines_and_norms(p, u, self.gram[name])
            cache = self.__dict__["_derived_cache"] = (cos, norms)
        return cache

    def overlaps(self, name: str) -> np.ndarray:
        """(T, r, k) overlaps of factor ``name`` with the *unit* target columns,
        P_jl/√G_jj = ‖w_l‖·cos_jl (from ``order`` when held, else from cosines and norms)."""
        if name in self.order:
            p, g = self.order[name][0], self.gram[name]
            scale = np.sqrt(np.clip(np.diagonal(g), 0.0, None))
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(scale[:, None] > 0, p / np.where(scale > 0, scale, 1.0)[:, None],
                                0.0)
        return self.cosines[name] * self.norms[name][:, None, :]

    def crossing_times(
        self, fractions: tuple[float, ...] = (0.5, 0.1, 0.01)
    ) -> dict[float, float | None]:
        """t_f: first time L ≤ f·L_ref (interpolated in log L; :mod:`dynamics.phases`), from
        the exact crossing record (``every_t``/``every_loss``) when the run has one."""
        t, loss = self.curve()
        return crossing_times(t, loss, self.l_ref, fractions)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(t, loss) at full resolution: the exact crossing record when held, else the
        samples."""
        if self.every_t is not None:
            return self.every_t, self.every_loss  # type: ignore[return-value]
        return self.t, self.loss

    def phases(self) -> Phases:
        """Phase segmentation of the loss curve (:func:`dynamics.phases.analyze`) at full
        resolution (:meth:`curve`): its crossings are :meth:`crossing_times`'."""
        return analyze(*self.curve(), self.l_ref)

    def summary(self, fractions: tuple[float, ...] = (0.5, 0.1, 0.01)) -> dict[str, Any]:
        """The one run summary (JSON-ready; times in ``time_unit``): ``crossings`` ({"f": t_f}),
        ``phases`` (:meth:`Phases.to_dict`, None when the curve is too short to analyse, e.g.
        a run diverged at once), ``l_ref``, ``initial_loss``, ``final_loss``, ``t_end``,
        ``steps`` (the last step, None for continuous methods), ``method``, ``time_unit``
        and, for grouped models, ``group_final_loss``. Crossings and phases both come from
        :meth:`curve`, so they agree."""
        t, loss = self.curve()
        try:
            phases: dict[str, Any] | None = self.phases().to_dict()
        except ValueError:  # too few finite samples (a run that diverged at once)
            phases = None
        out: dict[str, Any] = {
            "method": self.method, "time_unit": self.time_unit, "l_ref": float(self.l_ref),
            "crossings": {f"{f:g}": v for f, v in self.crossing_times(fractions).items()},
            "phases": phases,
            "initial_loss": float(loss[0]), "final_loss": float(loss[-1]),
            "t_end": float(t[-1]),
            "steps": None if self.steps is None or self.steps.size == 0
            else int(self.steps[-1]),
        }
        if self.group_loss is not None:
            out["group_final_loss"] = [float(v) for v in self.group_loss[-1]]
        return out


def _lazy(name: str, index: int) -> property:
    """``cosines``/``norms``: as given, or derived from ``order`` when none were given."""

    def get(self: Trajectory) -> dict[str, np.ndarray]:
        given = self.__dict__.get(f"_{name}")
        if given or not self.order:
            return given if given is not None else {}
        return self._derived()[index]

    def put(self: Trajectory, value: dict[str, np.ndarray]) -> None:
        self.__dict__[f"_{name}"] = dict(value) if value else {}

    return property(get, put, doc=f"``{{factor: {name}}}`` (see :class:`Trajectory`)")


Trajectory.cosines = _lazy("cosines", 0)  # type: ignore[assignment]
Trajectory.norms = _lazy("norms", 1)  # type: ignore[assignment]
