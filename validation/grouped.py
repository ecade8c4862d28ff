"""Loss methods that weight groups of examples ("capabilities"), and gradient groups.

Every method is a :class:`LossMethod`: a callable
``method(per_example_losses, groups) -> (scalar, diagnostics)`` plus a hook
``method.update(model, (inputs, targets), step)`` that the training loop calls before the
loss of each batch. Methods that need per-example gradients (gradient clusters, SVD)
compute them in the hook; the others ignore it. One training loop therefore serves all::

    for step, (x, y, g) in enumerate(batches):
        method.update(model, (x, y), step)
        loss, info = method(per_example_loss(model(x), y), g)
        opt.zero_grad(); loss.backward(); opt.step()

Methods (ℓ_n the loss of example n, ℓ_g = mean of ℓ_n over the examples of group g in the
batch, only the groups present in the batch enter):

* :class:`ObjectiveLoss`  F = outer(Σ_g f(ℓ_g, w_g)) for every objective of
  :func:`dynamics.groups.objective` — ``mean`` (f = wℓ, w_g = n_g/N: the mean over examples),
  ``power`` (q), ``grouped`` (Σℓ_g²), ``root``, ``tilted`` (τ) and ``dro`` (w = softmax(z),
  z_g += c·ℓ_g each step). The SymPy expression of :mod:`dynamics.groups` is printed for
  torch once (:func:`torch_objective`), so the theory and training use one definition.
* :class:`ClusterGroupedLoss`  an objective (default Σ_g ℓ_g²) over groups found by
  clustering per-example gradients (:class:`GradientClusterer`).
* :class:`SVDGroupedLoss`  L = Σ_i (σ_i Σ_n ℓ_n α̂_i(n))², from the SVD of the gradients.

Gradient groups (:class:`GradientClusterer`): unit per-example gradients ĝ_n of the whole
model (or of the parameters named by patterns), the QDG affinity A_nm = 1 − arccos(ĝ_n·ĝ_m)/π
(Michaud et al. 2023) and spectral clustering, or k-means; the number of clusters given or
chosen by the eigengap of the normalised Laplacian (:func:`eigengap_k`) or the silhouette
(:func:`silhouette_k`). Each clustering records its time and peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import sympy as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.metrics import silhouette_score
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from dynamics.errors import UsageError
from dynamics.groups import ELL, SUM, WEIGHT, GroupObjective, objective

__all__ = [
    "ClusterGroupedLoss",
    "Clustering",
    "Diagnostics",
    "GradientClusterer",
    "LossMethod",
    "ObjectiveLoss",
    "PerExampleLoss",
    "SVDGroupedLoss",
    "assign_to_centroids",
    "centroid_scores",
    "cluster_centroids",
    "cluster_unit_gradients",
    "eigengap_k",
    "flatten_grads",
    "gradient_affinity",
    "gradient_svd",
    "group_means",
    "match_labels",
    "matching",
    "per_example_grads",
    "select_parameters",
    "silhouette_k",
    "spectral_labels",
    "torch_objective",
    "unit_rows",
]

Diagnostics = dict[str, Any]
PerExampleLoss = Callable[[Tensor, Tensor], Tensor]
"""``per_example_loss(outputs, targets) -> (N,)`` losses, one per example."""


def group_means(losses: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per-group mean losses ℓ_g = (1/n_g) Σ_{n: g_n = g} ℓ_n and the mask n_g > 0.

    Differentiable in ``losses``; an absent group (n_g = 0) gets ℓ_g = 0 and mask False.
    """
    counts = torch.bincount(groups, minlength=num_groups)
    sums = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device)
    sums = sums.index_add(0, groups, losses)
    return sums / counts.clamp(min=1), counts > 0


@functools.cache
def _printed(f: sp.Expr, outer: sp.Expr) -> tuple[Callable, Callable]:
    return sp.lambdify([ELL, WEIGHT], f, "torch"), sp.lambdify([SUM], outer, "torch")


def torch_objective(group_objective: GroupObjective) -> Callable[[Tensor, Tensor], Tensor]:
    """F(ℓ, w) = outer(Σ_g f(ℓ_g, w_g)) as a torch function of ℓ (G,) and w (G,).

    The :attr:`~dynamics.groups.GroupObjective.expression` printed by
    ``sympy.lambdify(..., "torch")``, once per expression (cached); differentiable in ℓ.
    """
    f, outer = _printed(*group_objective.expression)

    def value(ell: Tensor, w: Tensor) -> Tensor:
        inner = f(ell, w)
        if not isinstance(inner, Tensor) or inner.shape != ell.shape:  # f constant in ℓ
            inner = torch.as_tensor(inner, dtype=ell.dtype).expand(ell.shape)
        return outer(inner.sum())

    return value


class LossMethod:
    """Interface of a loss method: ``update`` hook, then ``__call__`` on per-example losses."""

    name = "method"
    params: ClassVar[dict[str, float]] = {}
    """The method's parameters (e.g. ``{"q": 1.0}``), for reports."""

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        """Called by the training loop before the loss of ``batch`` at ``step``; no-op here.

        Methods that find groups return ``labels`` (N,) and, at a re-clustering, ``clustering``
        (a :class:`Clustering`); where their scores came from a forward pass of the model on
        the whole batch, ``losses``: its per-example losses ℓ_n with their graph, which the
        training loop uses instead of a second forward pass (the same numbers)."""
        return {}

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        """Scalar training loss from per-example ``losses`` (N,) and group labels (N,)."""
        raise NotImplementedError


class ObjectiveLoss(LossMethod):
    """F = outer(Σ_{g present} f(ℓ_g, w_g)) of a :class:`~dynamics.groups.GroupObjective`.

    ℓ_g is the mean loss of group g in the batch; groups absent from the batch are left out
    (listed under ``"absent"``; ``"group_loss"`` holds ℓ_g, NaN when absent). The weights:

    * weighted objectives (mean, tilted): w_g = n_g/N, the group's frequency in the batch, so
      ``mean`` is exactly the mean of ℓ_n over the batch;
    * ``dro``: w = softmax(z) (float64 state, z = 0 at the start); each call first advances
      z_g += c·ℓ_g (ℓ_g detached) for the groups present, then uses w held constant
      (Group DRO, Sagawa et al. 2020: q_g ← q_g e^{cℓ_g}, renormalised);
    * the others ignore w.
    """

    def __init__(self, group_objective: GroupObjective, num_groups: int) -> None:
        self.objective = group_objective
        self.num_groups = num_groups
        self.name = group_objective.name
        self.params = dict(group_objective.params)
        self._value = torch_objective(group_objective)
        self.logits = torch.zeros(num_groups, dtype=torch.float64)

    @property
    def weights(self) -> Tensor:
        """DRO's q = softmax(z) (float64); uniform for the other objectives' state."""
        return torch.softmax(self.logits, dim=0)

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if groups is None:
            raise UsageError(f"loss method {self.name!r} needs group labels")
        means, present = group_means(losses, groups, self.num_groups)
        info: Diagnostics = {
            "group_loss": torch.where(present, means.detach(), torch.nan),
            "absent": torch.nonzero(~present).flatten().tolist(),
        }
        if self.objective.dro_step is not None:
            present_losses = torch.where(present, means.detach().double(), 0.0)
            self.logits = self.logits + self.objective.dro_increment(present_losses)
            weights = self.weights.to(losses.dtype)
            info["weights"] = self.weights
        elif self.objective.weighted:
            weights = torch.bincount(groups, minlength=self.num_groups).to(losses.dtype)
            weights = weights / groups.numel()
        else:
            weights = torch.ones(self.num_groups, dtype=losses.dtype, device=losses.device)
        return self._value(means[present], weights[present]), info


# ----------------------------------------------------------------- per-example gradients


def select_parameters(
    model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> list[str]:
    """Names of ``model``'s parameters matching a pattern of ``include`` (None: all) and none
    of ``exclude`` (``fnmatch`` patterns, e.g. ``"*embed*"``, ``"*norm*"`` to leave out
    embeddings and norm layers as Michaud et al.'s QDG does). ValueError if none is left."""
    names = [name for name, _ in model.named_parameters()]
    chosen = [n for n in names if include is None or any(fnmatch.fnmatch(n, p) for p in include)]
    chosen = [n for n in chosen if not any(fnmatch.fnmatch(n, p) for p in exclude)]
    if not chosen:
        raise UsageError(f"no parameter matches include={include} exclude={list(exclude)}")
    return chosen


def per_example_grads(
    model: nn.Module,
    per_example_loss: PerExampleLoss,
    inputs: Tensor,
    targets: Tensor,
    params: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Per-example gradients ∇_θ ℓ_n for each parameter name in ``params`` (default: all).

    Uses ``torch.func``: ``vmap(grad(ℓ))`` over the examples with ``functional_call``; the
    other parameters and the buffers are held fixed. ``chunk_size`` bounds memory (examples
    per vectorised chunk). Returns ``{name: (N, *param.shape)}``; the model is not modified.
    """
    named = {name: p.detach() for name, p in model.named_parameters()}
    chosen = {name: named[name] for name in (params if params is not None else named)}
    fixed = {name: p for name, p in named.items() if name not in chosen}
    fixed.update(model.named_buffers())

    def loss_of_one(theta: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        outputs = functional_call(model, {**fixed, **theta}, (x.unsqueeze(0),))
        return per_example_loss(outputs, y.unsqueeze(0)).sum()

    per_example = vmap(grad(loss_of_one), in_dims=(None, 0, 0), chunk_size=chunk_size)
    return per_example(chosen, inputs, targets)


def centroid_scores(
    model: nn.Module,
    per_example_loss: PerExampleLoss,
    inputs: Tensor,
    targets: Tensor,
    directions: Tensor,
    params: Sequence[str] | None = None,
    factored: bool = True,
    losses: list[Tensor] | None = None,
) -> Tensor:
    """s_nk = ∇_θ ℓ_n · c_k for each direction c_k (rows of ``directions``, (K, M) over the
    flattened ``params`` in model order), (N, K), without forming per-example gradients.

    When every chosen parameter is used linearly (``nn.Linear`` layers, matmuls, sliced
    addends: :class:`_LinearUses`): one forward and one backward pass, from the factors δ aᵀ
    of the gradients (:func:`_factored_scores`); else each column is one forward-mode derivative
    (``torch.func.jvp``) of the per-example losses along c_k (:func:`_forward_mode_scores`):
    K forward passes instead of N backward ones. argmax_k |s_nk| equals argmax_k |ĝ_n·c_k|
    (the norm ‖∇ℓ_n‖ is common to the row). ``factored=False``: always forward-mode (the two
    routes agree to rounding, ~1e-7 relative in float32, both against a float64 oracle).
    ``losses``: a list to which the factored route appends the batch's per-example losses ℓ_n
    (N,) with their autograd graph, so that a training step on the same batch can reuse that
    forward pass (the same operations: the same numbers).
    """
    named = {name: p.detach() for name, p in model.named_parameters()}
    names = list(params if params is not None else named)
    if factored:
        found = _factored_scores(model, per_example_loss, inputs, targets, directions, names,
                                 keep_graph=losses is not None)
        if found is not None:
            if losses is not None:
                losses.append(found[1])
            return found[0]
    return _forward_mode_scores(model, per_example_loss, inputs, targets, directions, names)


def _forward_mode_scores(
    model: nn.Module,
    per_example_loss: PerExampleLoss,
    inputs: Tensor,
    targets: Tensor,
    directions: Tensor,
    names: Sequence[str],
) -> Tensor:
    """:func:`centroid_scores` by K forward-mode derivatives (``torch.func.jvp``), any model."""
    named = {name: p.detach() for name, p in model.named_parameters()}
    fixed = {name: p for name, p in named.items() if name not in names}
    fixed.update(model.named_buffers())
    primals = tuple(named[name] for name in names)
    sizes = [p.numel() for p in primals]

    def losses(*theta: Tensor) -> Tensor:
        outputs = functional_call(model, {**fixed, **dict(zip(names, theta, strict=True))},
                                  (inputs,))
        return per_example_loss(outputs, targets)

    columns = []
    for direction in directions.to(primals[0].dtype):
        tangents = tuple(part.reshape(p.shape) for part, p in
                         zip(direction.split(sizes), primals, strict=True))
        columns.append(jvp(losses, primals, tangents)[1])
    return torch.stack(columns, dim=1)


class _LinearUses(TorchFunctionMode):
    """Records, during one forward pass, every use of the chosen parameters (``{id: name}``)
    that is linear in the parameter with a per-example factor (see :func:`_factored_scores`):

    * ``linear``: ``F.linear(a, W, b)`` (``nn.Linear``), W and/or b chosen;
    * ``matmul``: ``a @ P`` (``torch.matmul``), P chosen, ``a`` with the batch first;
    * ``add``: ``z + P[index]`` or ``z + P`` (index: slices and ints only), broadcast over the
      batch dimension of ``z``.

    Any other operation that takes a chosen parameter (or a recorded slice of one) marks the
    pass ``unsupported``. ``calls``: (kind, names, input, output), the output kept for δ."""

    _MATMUL = ("matmul", "__matmul__")  # torch.matmul, Tensor.matmul, @
    _ADD = ("add", "__add__", "__radd__")  # torch.add, Tensor.add, +

    def __init__(self, chosen: dict[int, str]) -> None:
        super().__init__()
        self.chosen = chosen
        self.views: dict[int, tuple[str, tuple, Tensor]] = {}  # id(slice) -> (name, index, it)
        self.calls: list[tuple[str, Any, Tensor | None, Tensor]] = []
        self.unsupported = False

    def _part(self, value: Any) -> tuple[str, tuple] | None:
        """(name, index) of a chosen parameter (index ()) or of a recorded slice of one."""
        if id(value) in self.chosen:
            return self.chosen[id(value)], ()
        view = self.views.get(id(value))
        return None if view is None or view[2] is not value else (view[0], view[1])

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        operands = [v for value in (*args, *kwargs.values())
                    for v in (value if isinstance(value, (list, tuple)) else (value,))]
        used = [v for v in operands if self._part(v) is not None]
        name = getattr(func, "__name__", "")
        if not used or (name == "__get__" and not isinstance(out, Tensor)):  # shape, dtype …
            return out
        whole = [self.chosen.get(id(v)) for v in args]  # parameter names of the arguments
        if func is F.linear and not kwargs and len(args) >= 2 and whole[0] is None:
            weight, bias = whole[1], whole[2] if len(args) > 2 else None
            if all(v is args[1] or (len(args) > 2 and v is args[2]) for v in used) and all(
                    self._part(v) is None or self.chosen.get(id(v)) for v in args[1:3]):
                self.calls.append(("linear", (weight, bias), args[0], out))
                return out
        elif (name in self._MATMUL and not kwargs and len(args) == 2 and len(used) == 1
              and used[0] is args[1] and whole[1] is not None and args[1].dim() == 2):
            self.calls.append(("matmul", whole[1], args[0], out))
            return out
        elif (name == "__getitem__" and len(used) == 1 and used[0] is args[0]
              and whole[0] is not None):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if all(isinstance(i, (slice, int)) for i in index):
                self.views[id(out)] = (whole[0], index, out)
                return out
        elif name in self._ADD and not kwargs and len(args) == 2 and len(used) == 1:
            other = args[1] if used[0] is args[0] else args[0]
            if (isinstance(other, Tensor) and other is not used[0] and other.dim() == out.dim()
                    and used[0].dim() < out.dim()):
                self.calls.append(("add", self._part(used[0]), None, out))
                return out
        self.unsupported = True
        return out


def _factored_scores(
    model: nn.Module,
    per_example_loss: PerExampleLoss,
    inputs: Tensor,
    targets: Tensor,
    directions: Tensor,
    names: Sequence[str],
    keep_graph: bool = False,
) -> tuple[Tensor, Tensor] | None:
    """(scores, per-example losses): :func:`centroid_scores` from the factors of the
    per-example gradients of parameters used linearly (:class:`_LinearUses`), or None when a
    chosen parameter is used otherwise.

    With δ_nt = ∂ℓ_n/∂z_nt at the output z of a use (one backward pass of Σ_n ℓ_n, the examples
    being independent) and C_k the direction's block of the parameter:

    * ``nn.Linear`` z = W a + b: ∇_W ℓ_n = Σ_t δ_nt a_ntᵀ, ∇_b ℓ_n = Σ_t δ_nt, so
      s_nk += Σ_t δ_ntᵀ (C_k a_nt + c_k);
    * a matmul z = a P (P: in × out): ∇_P ℓ_n = Σ_t a_nt δ_ntᵀ, s_nk += Σ_t δ_ntᵀ (C_kᵀ a_nt);
    * an addend z = y + P[index] broadcast over the batch: ∇_{P[index]} ℓ_n = δ_n summed over
      the broadcast dimensions, s_nk += Σ δ_n ⊙ C_k[index];

    at positions t (a sequence, or a single one): one matmul per use for all K directions,
    no per-example gradient formed. A parameter used several times adds one term per use.
    The losses ℓ_n (N,) of the forward pass are returned too, with their autograd graph kept
    when ``keep_graph`` (for a training step to reuse), else detached.
    """
    params = dict(model.named_parameters())
    offsets: dict[str, tuple[int, int]] = {}
    offset = 0
    for name in names:
        offsets[name] = (offset, offset + params[name].numel())
        offset += params[name].numel()
    recorder = _LinearUses({id(params[name]): name for name in names})
    with torch.enable_grad(), recorder:
        losses = per_example_loss(model(inputs), targets)
    n = inputs.shape[0]
    calls = recorder.calls
    if recorder.unsupported or not calls or not all(
            z.requires_grad and z.shape[0] == n and (a is None or a.shape[0] == n)
            for _, _, a, z in calls):
        return None
    deltas = torch.autograd.grad(losses.sum(), [z for _, _, _, z in calls],
                                 retain_graph=keep_graph)
    directions = directions.to(deltas[0].dtype)
    k = directions.shape[0]

    def block(name: str) -> Tensor:  # C_k of a parameter, (K, *shape)
        start, end = offsets[name]
        return directions[:, start:end].reshape(k, *params[name].shape)

    scores = torch.zeros(n, k, dtype=deltas[0].dtype)
    for (kind, which, a, _), delta in zip(calls, deltas, strict=True):
        if kind == "add":
            name, index = which
            part = block(name)[(slice(None), *index)]
            part = part.reshape(k, *[1] * (delta.dim() - part.dim()), *part.shape[1:])
            part = torch.broadcast_to(part, (k, *delta.shape[1:]))
            scores += delta.reshape(n, -1) @ part.reshape(k, -1).T
            continue
        a = a.detach().reshape(n, -1, a.shape[-1])
        rows = a.reshape(-1, a.shape[-1]).contiguous()  # one GEMM over n and t
        if kind == "matmul":
            out_features = delta.shape[-1]
            delta = delta.reshape(n, -1, out_features)
            c = block(which).permute(1, 0, 2).reshape(a.shape[-1], k * out_features)
            projected = (rows @ c).reshape(n, a.shape[1], k, out_features)
            scores += (projected * delta.unsqueeze(2)).sum(dim=(1, 3))
            continue
        weight, bias = which
        out_features = delta.shape[-1]
        delta = delta.reshape(n, -1, out_features)
        if weight is not None:
            c = block(weight).reshape(k * out_features, a.shape[-1])
            projected = (rows @ c.T).reshape(n, a.shape[1], k, out_features)
            scores += (projected * delta.unsqueeze(2)).sum(dim=(1, 3))
        if bias is not None:
            scores += delta.sum(dim=1) @ block(bias).T
    return scores.detach(), losses if keep_graph else losses.detach()


def flatten_grads(grads: dict[str, Tensor]) -> Tensor:
    """Concatenate ``{name: (N, ...)}`` into the N×M per-example gradient matrix."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def unit_rows(matrix: Tensor, eps: float = 1e-30) -> Tensor:
    """Rows divided by their Euclidean norms, ĝ_n = g_n / ‖g_n‖ (zero rows stay zero)."""
    return matrix / matrix.norm(dim=1, keepdim=True).clamp(min=eps)


# ----------------------------------------------------------------------------- clustering

Affinity = Literal["qdg", "cosine"]


def gradient_affinity(
    unit: Tensor | np.ndarray, kind: Affinity = "qdg", sign_invariant: bool = False
) -> np.ndarray:
    """Affinity of unit gradients from c_nm = ĝ_n·ĝ_m (float64, N×N, symmetric).

    ``"qdg"``: A = 1 − arccos(c)/π (Michaud et al.'s QDG; orthogonal pairs get ½);
    ``"cosine"``: A = max(c, 0) (orthogonal pairs get 0). With ``sign_invariant`` c is
    replaced by |c|, so g and −g (e.g. the two labels of a binary task, whose gradients differ
    by the sign of p − y) count as one direction.
    """
    if isinstance(unit, Tensor):  # the Gram matrix in the gradients' dtype (float32: 2x faster)
        unit = unit.detach()
        gram = (unit @ unit.T).double().cpu().numpy()
    else:
        gram = unit @ unit.T
    cos = np.clip(gram, -1.0, 1.0)
    cos = np.abs(cos) if sign_invariant else cos
    if kind == "qdg":
        return 1.0 - np.arccos(cos) / math.pi
    if kind == "cosine":
        return np.maximum(cos, 0.0)
    raise UsageError(f"unknown affinity {kind!r}; use 'qdg' or 'cosine'")


def eigengap_k(affinity: np.ndarray, max_k: int, min_k: int = 2) -> int:
    """k = argmax_{min_k ≤ i ≤ max_k} (λ_{i+1} − λ_i), λ_1 ≤ λ_2 ≤ … the eigenvalues of the
    normalised Laplacian I − D^{−½} A D^{−½} (D the degrees of the affinity A).

    ``min_k`` = 2 by default: with the QDG affinity every entry is ≥ ½, so λ_2 − λ_1 is large
    whatever the structure (k equal orthogonal blocks give λ = 0, k/(k+1) (k−1 times), 1 …),
    and the gap that counts the blocks is the one after λ_k.
    """
    n = affinity.shape[0]
    if not 1 <= min_k <= max_k < n:
        raise UsageError(f"eigengap needs 1 <= min_k <= max_k < N (got {min_k}, {max_k}, {n})")
    scale = 1.0 / np.sqrt(np.maximum(affinity.sum(axis=1), 1e-300))
    normalised = affinity * scale[:, None] * scale[None, :]
    top = max_k + 1
    if n <= 4 * top + 50:
        eigenvalues = np.linalg.eigvalsh(normalised)[::-1][:top]
    else:
        v0 = np.full(n, 1 / math.sqrt(n))
        eigenvalues = np.sort(eigsh(normalised, k=top, which="LA", v0=v0,
                                    return_eigenvectors=False))[::-1]
    laplacian = 1.0 - eigenvalues  # ascending
    gaps = np.diff(laplacian)  # gaps[i - 1] = λ_{i+1} − λ_i
    return int(min_k + np.argmax(gaps[min_k - 1:max_k]))


def silhouette_k(
    unit: Tensor,
    max_k: int,
    algorithm: Literal["kmeans", "spectral"] = "spectral",
    affinity: Affinity = "qdg",
    sign_invariant: bool = False,
    n_init: int = 10,
    seed: int = 0,
    min_k: int = 2,
) -> int:
    """k in [min_k, max_k] whose clustering has the largest mean silhouette, with the angular
    distance d_nm = arccos(c_nm)/π (c → |c| with ``sign_invariant``) between unit gradients."""
    distance = 1.0 - gradient_affinity(unit, "qdg", sign_invariant)
    np.fill_diagonal(distance, 0.0)
    best, best_score = min_k, -np.inf
    for k in range(min_k, max_k + 1):
        labels = cluster_unit_gradients(unit, k, algorithm, n_init, seed, sign_invariant,
                                        affinity)
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(distance, labels, metric="precomputed")
        if score > best_score:
            best, best_score = k, score
    return best


def cluster_unit_gradients(
    unit: Tensor,
    num_groups: int,
    algorithm: Literal["kmeans", "spectral"] = "spectral",
    n_init: int = 10,
    seed: int = 0,
    sign_invariant: bool = False,
    affinity: Affinity = "qdg",
) -> np.ndarray:
    """Cluster unit gradients ĝ_n (rows of ``unit``) into ``num_groups`` labels (N,).

    ``"kmeans"``: k-means on ĝ_n (``n_init`` restarts). ``"spectral"``: spectral clustering
    (sklearn) on :func:`gradient_affinity` (``affinity``, ``sign_invariant``).
    """
    if algorithm == "kmeans":
        if sign_invariant:
            raise UsageError("sign_invariant clustering needs algorithm='spectral'")
        points = unit.detach().double().cpu().numpy()
        return KMeans(num_groups, n_init=n_init, random_state=seed).fit_predict(points)
    if algorithm != "spectral":
        raise UsageError(f"unknown clustering algorithm {algorithm!r}")
    return spectral_labels(gradient_affinity(unit, affinity, sign_invariant), num_groups,
                           n_init, seed)


def spectral_labels(affinity: np.ndarray, num_groups: int, n_init: int = 10,
                    seed: int = 0) -> np.ndarray:
    """Spectral clustering (sklearn, ``affinity="precomputed"``) of an N×N affinity."""
    spectral = SpectralClustering(
        num_groups, affinity="precomputed", n_init=n_init, random_state=seed
    )
    with warnings.catch_warnings():
        # A disconnected affinity graph is the ideal case here: mutually orthogonal groups.
        warnings.filterwarnings("ignore", "Graph is not fully connected", UserWarning)
        return spectral.fit_predict(affinity)


def cluster_centroids(
    unit: Tensor,
    labels: Tensor,
    previous: Tensor,
    sign_invariant: bool = False,
) -> Tensor:
    """Unit centroid direction of each cluster, (K, M); an empty cluster keeps ``previous``.

    Centroid = normalised mean of its ĝ_n, or with ``sign_invariant`` the top right
    singular vector of its members (the line that best fits ±ĝ_n).
    """
    centroids = previous.clone()
    for g in range(previous.shape[0]):
        members = unit[labels == g]
        if members.shape[0] == 0:
            continue
        if sign_invariant:
            centroids[g] = gradient_svd(members, 1)[2][:, 0].to(unit.dtype)
        else:
            centroids[g] = unit_rows(members.mean(dim=0, keepdim=True))[0]
    return centroids


def assign_to_centroids(scores: Tensor, sign_invariant: bool = False) -> Tensor:
    """Label of each example from its scores s_nk ∝ ĝ_n·c_k (N, K): argmax_k s_nk, or
    argmax_k |s_nk| with ``sign_invariant`` (e.g. ``unit @ centroids.T`` or
    :func:`centroid_scores`)."""
    return (scores.abs() if sign_invariant else scores).argmax(dim=1)


def matching(labels: np.ndarray, reference: np.ndarray, num_groups: int) -> np.ndarray:
    """The relabelling π (num_groups,) that makes π(labels) agree best with ``reference``.

    Solves max_π Σ_n [π(labels_n) = reference_n] over permutations π of 0 … num_groups − 1
    (labels and reference take values below ``num_groups``) with the Hungarian algorithm on
    the contingency table.
    """
    table = np.zeros((num_groups, num_groups), dtype=np.int64)
    np.add.at(table, (labels, reference), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    permutation = np.empty(num_groups, dtype=np.int64)
    permutation[rows] = cols
    return permutation


def match_labels(labels: np.ndarray, reference: np.ndarray, num_groups: int) -> np.ndarray:
    """``labels`` relabelled to agree best with ``reference`` on the same examples:
    π(labels) with π from :func:`matching`."""
    return matching(labels, reference, num_groups)[labels]


def gradient_svd(
    matrix: Tensor, k: int, route: Literal["auto", "gram", "direct"] = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k SVD G = Σ_i σ_i v_i w_iᵀ of an N×M matrix: (σ (k,), V (N, k), W (M, k)).

    ``"gram"`` diagonalises the N×N Gram matrix G Gᵀ = Σ σ_i² v_i v_iᵀ and sets
    w_i = Gᵀ v_i / σ_i (cheap when N ≪ M); ``"direct"`` is ``torch.linalg.svd``; ``"auto"``
    takes the Gram route when N < M. Computed in float64 on a detached copy. Signs are fixed
    deterministically: the entry of v_i with the largest magnitude is positive.
    """
    g = matrix.detach().double()
    if route == "gram" or (route == "auto" and g.shape[0] < g.shape[1]):
        eigenvalues, eigenvectors = torch.linalg.eigh(g @ g.T)
        sigma = eigenvalues.flip(0)[:k].clamp(min=0.0).sqrt()
        left = eigenvectors.flip(1)[:, :k]
        right = (g.T @ left) / sigma.clamp(min=1e-300)
    else:
        u, s, vh = torch.linalg.svd(g, full_matrices=False)
        sigma, left, right = s[:k], u[:, :k], vh[:k].T
    pivot = left.abs().argmax(dim=0)
    signs = torch.sign(left[pivot, torch.arange(left.shape[1])])
    signs[signs == 0] = 1.0
    return sigma, left * signs, right * signs


# ------------------------------------------------------------------- peak memory (Linux)


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class _PeakMemory:
    """Peak resident memory added inside the block, in bytes: VmHWM after − VmRSS before, with
    the high-water mark reset on entry (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0).
    ``bytes`` is None where that is unavailable.

    On entry the C allocator first returns its free memory to the system (glibc
    ``malloc_trim(0)``): without it, a process that freed memory earlier (a worker that ran
    other jobs) serves the block's allocations from pages it already holds, its resident size
    does not grow, and the peak read 0 (or anything between 0 and the true value) for the same
    work. Pages still held by live objects are not counted, so this is the memory the block
    needs beyond what is in use on entry."""

    bytes: int | None = None

    def __enter__(self) -> _PeakMemory:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self._before = _status_kib("VmRSS")
        except OSError:
            self._before = None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_kib("VmHWM")
        if self._before is not None and peak is not None:
            self.bytes = max(0, peak - self._before) * 1024


# ------------------------------------------------------------------ gradient clusterer


@dataclass
class Clustering:
    """One clustering of a batch's unit per-example gradients.

    ``labels`` (N,) in 0 … k−1; ``k`` the number of clusters (given or chosen by
    ``k_rule``); ``centroids`` (k, M) unit directions over the chosen parameters;
    ``seconds_gradients`` / ``seconds_clustering`` the wall time of the per-example gradients
    and of the clustering (affinity, choice of k, spectral or k-means, centroids);
    ``peak_bytes`` the peak resident memory the whole re-clustering added (None where not
    measurable, see :class:`_PeakMemory`); ``gradient_bytes`` the size of the N×M gradient
    matrix; ``parameters`` M.
    """

    labels: np.ndarray
    k: int
    centroids: Tensor
    seconds_gradients: float
    seconds_clustering: float
    peak_bytes: int | None
    gradient_bytes: int
    parameters: int
    k_rule: str | None = None


@dataclass
class GradientClusterer:
    """Clusters the unit per-example gradients ĝ_n = ∇_θℓ_n/‖∇_θℓ_n‖ of a batch.

    ``params`` / ``exclude``: ``fnmatch`` patterns of the parameters whose gradients are used
    (:func:`select_parameters`; default the whole model). ``algorithm``: ``"spectral"`` on
    :func:`gradient_affinity` (``affinity``: ``"qdg"`` or ``"cosine"``; ``sign_invariant``)
    or ``"kmeans"`` on ĝ_n. ``num_clusters``: k given, or None for ``k_rule``
    (``"eigengap"``: :func:`eigengap_k` on the affinity; ``"silhouette"``:
    :func:`silhouette_k`) over 2 … ``max_clusters``. ``examples``: cluster only the first that
    many examples of the batch (None: all). ``chunk_size``: vmap chunk of
    :func:`per_example_grads`.
    """

    per_example_loss: PerExampleLoss
    num_clusters: int | None
    max_clusters: int = 10
    algorithm: Literal["kmeans", "spectral"] = "spectral"
    affinity: Affinity = "qdg"
    sign_invariant: bool = True
    k_rule: Literal["eigengap", "silhouette"] = "eigengap"
    params: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    examples: int | None = None
    chunk_size: int | None = None
    n_init: int = 10
    seed: int = 0
    _names: list[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.algorithm == "kmeans" and self.sign_invariant:
            raise UsageError("sign_invariant clustering needs algorithm='spectral'")
        if self.num_clusters is None and self.k_rule not in ("eigengap", "silhouette"):
            raise UsageError(f"unknown k_rule {self.k_rule!r}; use 'eigengap' or 'silhouette'")

    @property
    def capacity(self) -> int:
        """Largest number of clusters a clustering can have."""
        return self.num_clusters if self.num_clusters is not None else self.max_clusters

    def parameter_names(self, model: nn.Module) -> list[str]:
        if self._names is None:
            self._names = select_parameters(model, self.params, self.exclude)
        return self._names

    def unit_gradients(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        grads = per_example_grads(model, self.per_example_loss, inputs, targets,
                                  self.parameter_names(model), self.chunk_size)
        return unit_rows(flatten_grads(grads))

    def cluster(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Clustering:
        """Cluster the first ``examples`` rows of the batch (all by default)."""
        if self.examples is not None:
            inputs, targets = inputs[: self.examples], targets[: self.examples]
        with _PeakMemory() as memory:
            start = time.perf_counter()
            unit = self.unit_gradients(model, inputs, targets)
            middle = time.perf_counter()
            k, rule, matrix = self.num_clusters, None, None
            if self.algorithm == "spectral" or (k is None and self.k_rule == "eigengap"):
                matrix = gradient_affinity(unit, self.affinity, self.sign_invariant)
            if k is None:
                rule = self.k_rule
                max_k = min(self.max_clusters, unit.shape[0] - 1)
                if rule == "eigengap":
                    k = eigengap_k(matrix, max_k)
                else:
                    k = silhouette_k(unit, max_k, self.algorithm, self.affinity,
                                     self.sign_invariant, self.n_init, self.seed)
            if self.algorithm == "spectral":
                labels = spectral_labels(matrix, k, self.n_init, self.seed)
            else:
                labels = cluster_unit_gradients(unit, k, "kmeans", self.n_init, self.seed)
            centroids = cluster_centroids(unit, torch.as_tensor(labels),
                                          torch.zeros(k, unit.shape[1], dtype=unit.dtype),
                                          self.sign_invariant)
            end = time.perf_counter()
        return Clustering(
            labels=np.asarray(labels, dtype=np.int64), k=int(k), centroids=centroids,
            seconds_gradients=middle - start, seconds_clustering=end - middle,
            peak_bytes=memory.bytes, gradient_bytes=unit.numel() * unit.element_size(),
            parameters=int(unit.shape[1]), k_rule=rule,
        )  # fmt: skip

    def scores(self, model: nn.Module, inputs: Tensor, targets: Tensor,
               centroids: Tensor, factored: bool = True,
               losses: list[Tensor] | None = None) -> Tensor:
        """∇ℓ_n·c_k for the batch (N, K) (:func:`centroid_scores`; ``factored=False``: by
        forward-mode derivatives only; ``losses``: receives the forward pass's ℓ_n)."""
        return centroid_scores(model, self.per_example_loss, inputs, targets, centroids,
                               self.parameter_names(model), factored, losses)


class ClusterGroupedLoss(LossMethod):
    """An objective (default the grouped loss Σ_g ℓ_g²) over groups found by clustering the
    unit per-example gradients (:class:`GradientClusterer`); the true groups are ignored.

    Every ``recluster_every`` steps (step 0 included) ``update`` clusters the batch and stores
    the k unit centroids c_k; the new clusters are renamed to agree best with the previous
    centroids' assignment of the same examples (:func:`match_labels`), so groups keep their
    identity. In between, each example joins the centroid with the largest |∇ℓ_n·c_k| (plain
    argmax without sign invariance), computed from the factors of the gradients (one forward
    and one backward pass) or k forward-mode derivatives (:func:`centroid_scores`), not
    per-example gradients. Examples beyond the clustered ``examples`` are assigned the same
    way at a re-clustering. ``update`` returns ``labels`` (N,), at a re-clustering
    ``clustering``, and between re-clusterings (factored route) ``losses``, the batch's ℓ_n
    from the scoring forward pass for the training step to reuse.
    """

    name = "cluster"

    def __init__(
        self,
        clusterer: GradientClusterer,
        group_objective: GroupObjective | None = None,
        recluster_every: int = 50,
    ) -> None:
        self.clusterer = clusterer
        self.recluster_every = recluster_every
        self.loss = ObjectiveLoss(group_objective or objective("grouped"), clusterer.capacity)
        self.params = dict(self.loss.params)
        self.centroids: Tensor | None = None
        self.used = np.zeros(0, dtype=np.int64)
        self.labels: Tensor | None = None

    def _assign(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                losses: list[Tensor] | None = None) -> np.ndarray:
        """Ids (among the used ones) of the nearest centroids of the examples."""
        scores = self.clusterer.scores(model, inputs, targets, self.centroids[self.used],
                                       losses=losses)
        nearest = assign_to_centroids(scores, self.clusterer.sign_invariant).numpy()
        return self.used[nearest]

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        inputs, targets = batch
        if step % self.recluster_every != 0 and self.centroids is not None:
            losses: list[Tensor] = []
            self.labels = torch.as_tensor(self._assign(model, inputs, targets, losses))
            return {"labels": self.labels.numpy(), **({"losses": losses[0]} if losses else {})}
        found = self.clusterer.cluster(model, inputs, targets)
        clustered = len(found.labels)
        capacity = self.loss.num_groups
        if self.centroids is None:
            ids = np.arange(found.k)
        else:
            ids = matching(found.labels, self._assign(model, inputs[:clustered],
                                                      targets[:clustered]), capacity)[:found.k]
        self.centroids = torch.zeros(capacity, found.centroids.shape[1],
                                     dtype=found.centroids.dtype)
        self.centroids[ids] = found.centroids
        self.used = np.sort(ids)
        labels = ids[found.labels]
        if clustered < inputs.shape[0]:
            rest = self._assign(model, inputs[clustered:], targets[clustered:])
            labels = np.concatenate([labels, rest])
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        found.labels = labels
        return {"labels": labels, "clustering": found}

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if self.labels is None:
            raise RuntimeError("call update(model, batch, step) before the loss")
        return self.loss(losses, self.labels)


class SVDGroupedLoss(LossMethod):
    """SVD-grouped loss: L = Σ_{i≤K} (σ_i Σ_n ℓ_n α̂_i(n))², σ and α̂ constant.

    Every ``recompute_every`` steps (step 0 included) the directions w_1 … w_K are the top right
    singular vectors of the N×M matrix of unit per-example gradients ĝ_n (:func:`gradient_svd`).
    On every batch, example n's coefficients are its gradient's components along them,
    normalised within their span: a_i(n) = (∇ℓ_n·w_i) / ‖(∇ℓ_n·w_j)_j‖ / √N, so that
    Σ_i a_i(n)² = 1/N, and σ_i² = Σ_n a_i(n)² is the share of the batch along w_i
    (Σ_i σ_i² = 1, dimensionless); α̂_i(n) = a_i(n)² / σ_i² (≥ 0, Σ_n α̂_i(n) = 1), so
    Σ_n ℓ_n α̂_i(n) is the mean loss of "capability" i. Squared rather than signed
    coefficients, because the two labels of a binary task have opposite gradients and signed
    weights would cancel their losses. For orthogonal modes with group fractions p_g this gives
    L = Σ_g p_g ℓ_g², i.e. ∇L = Σ_g 2 p_g ℓ_g ∇ℓ_g. The components ∇ℓ_n·w_i come from the
    per-example gradients at a recomputation and from :func:`centroid_scores` in between
    (the factors of linear uses, else K forward-mode derivatives), so only the
    recomputations pay for per-example gradients. ``params``/``exclude``: as
    :class:`GradientClusterer`. ``update`` returns ``labels`` = argmax_i a_i(n)² and, at a
    recomputation, ``clustering`` (k = K, the time and memory of the gradients and the SVD).
    """

    name = "svd"

    def __init__(
        self,
        num_directions: int,
        per_example_loss: PerExampleLoss,
        recompute_every: int = 1,
        params: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        chunk_size: int | None = None,
    ) -> None:
        self.num_directions = num_directions
        self.recompute_every = recompute_every
        self.gradients = GradientClusterer(per_example_loss, num_directions, params=params,
                                           exclude=exclude, chunk_size=chunk_size)
        self.directions: Tensor | None = None
        self.sigma: Tensor | None = None
        self.alpha: Tensor | None = None

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        info: Diagnostics = {}
        if step % self.recompute_every == 0 or self.directions is None:
            with _PeakMemory() as memory:
                start = time.perf_counter()
                unit = self.gradients.unit_gradients(model, *batch)
                middle = time.perf_counter()
                self.directions = gradient_svd(unit, self.num_directions)[2]
                components = unit.double() @ self.directions
                end = time.perf_counter()
            info["clustering"] = Clustering(
                labels=np.zeros(0, dtype=np.int64), k=self.num_directions,
                centroids=self.directions.T, seconds_gradients=middle - start,
                seconds_clustering=end - middle, peak_bytes=memory.bytes,
                gradient_bytes=unit.numel() * unit.element_size(),
                parameters=int(unit.shape[1]),
            )  # fmt: skip
        else:
            # the factored route where the model allows it: its components are as accurate
            # as forward mode's (both ~1e-7 relative to a float64 oracle in float32, parity)
            losses: list[Tensor] = []
            components = self.gradients.scores(model, *batch, self.directions.T,
                                               losses=losses).double()
            if losses:
                info["losses"] = losses[0]
        squared = components**2
        squared = squared / squared.sum(dim=1, keepdim=True).clamp(min=1e-300) / len(squared)
        energy = squared.sum(dim=0)
        self.sigma = energy.sqrt()
        self.alpha = squared / energy.clamp(min=1e-300)
        info["labels"] = squared.argmax(dim=1).numpy()
        info["sigma"] = self.sigma
        if "clustering" in info:
            info["clustering"].labels = info["labels"]
        return info

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if self.alpha is None:
            raise RuntimeError("call update(model, batch, step) before the loss")
        direction_loss = losses @ self.alpha.to(losses.dtype)
        loss = ((self.sigma.to(losses.dtype) * direction_loss) ** 2).sum()
        return loss, {"direction_loss": direction_loss.detach(), "sigma": self.sigma}
