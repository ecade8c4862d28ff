"""Loss methods that weight groups of examples ("capabilities"), as strategy objects.

Every method is a :class:`LossMethod`: a callable
``method(per_example_losses, groups) -> (scalar, diagnostics)`` plus a hook
``method.update(model, (inputs, targets), step)`` that the training loop calls before the
loss of each batch. Methods that need per-example gradients (gradient clusters, SVD)
compute them in the hook; the others ignore it. One training loop therefore serves all::

    for step, (x, y, g) in enumerate(batches):
        method.update(model, (x, y), step)
        loss, info = method(per_example_loss(model(x), y), g)
        opt.zero_grad(); loss.backward(); opt.step()

Methods (ℓ_n the loss of example n, ℓ_g = mean of ℓ_n over the examples of group g):

* :class:`MeanLoss`            L = (1/N) Σ_n ℓ_n
* :class:`GroupedLoss`         L = Σ_g ℓ_g²            (∇L = Σ_g 2 ℓ_g ∇ℓ_g)
* :class:`PowerGroupedLoss`    L = Σ_g (ℓ_g + ε)^γ     (γ = ½: "root", ∇L = Σ_g ∇ℓ_g / 2√(ℓ_g + ε))
* :class:`GroupDRO`            L = Σ_g q_g ℓ_g,  q_g ∝ q_g exp(η ℓ_g) each call
* :class:`ClusterGroupedLoss`  Σ_g ℓ_g² over groups found by clustering per-example gradients
* :class:`SVDGroupedLoss`      L = Σ_i (σ_i Σ_n ℓ_n α̂_i(n))², from the SVD of the gradients
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, SpectralClustering
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "ClusterGroupedLoss",
    "Diagnostics",
    "GroupDRO",
    "GroupedLoss",
    "LossMethod",
    "MeanLoss",
    "PerExampleLoss",
    "PowerGroupedLoss",
    "SVDGroupedLoss",
    "assign_to_centroids",
    "cluster_centroids",
    "cluster_unit_gradients",
    "flatten_grads",
    "gradient_svd",
    "group_means",
    "match_labels",
    "per_example_grads",
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


def _group_diagnostics(means: Tensor, present: Tensor) -> Diagnostics:
    return {
        "group_loss": torch.where(present, means.detach(), torch.nan),
        "absent": torch.nonzero(~present).flatten().tolist(),
    }


class LossMethod:
    """Interface of a loss method: ``update`` hook, then ``__call__`` on per-example losses."""

    name = "method"

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        """Called by the training loop before the loss of ``batch`` at ``step``; no-op here."""
        return {}

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        """Scalar training loss from per-example ``losses`` (N,) and group labels (N,)."""
        raise NotImplementedError


class MeanLoss(LossMethod):
    """Baseline L = (1/N) Σ_n ℓ_n; ``groups`` are ignored."""

    name = "mean"

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        return losses.mean(), {}


class GroupedLoss(LossMethod):
    """L = Σ_g ℓ_g², ℓ_g the mean loss of group g in the batch (q-FFL with q = 1, Li et al. 2020).

    Its gradient Σ_g 2 ℓ_g ∇ℓ_g weights each group by its own current loss and not by its
    frequency. Groups absent from the batch are skipped and listed under ``"absent"``;
    ``"group_loss"`` holds ℓ_g (NaN when absent).
    """

    name = "grouped"

    def __init__(self, num_groups: int) -> None:
        self.num_groups = num_groups

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if groups is None:
            raise ValueError("GroupedLoss needs group labels")
        means, present = group_means(losses, groups, self.num_groups)
        return (means[present] ** 2).sum(), _group_diagnostics(means, present)


class PowerGroupedLoss(LossMethod):
    """L = Σ_g (ℓ_g + ε)^γ over the groups present; γ = ½ (the default) is the "root" loss.

    ∇L = Σ_g γ(ℓ_g + ε)^{γ−1} ∇ℓ_g: each group weighted by a power of its own loss. γ = 1, ε = 0
    is the unweighted sum of group means, γ = 2, ε = 0 the grouped loss. On the modes task a
    capability's strength grows at rate λ_g ∝ s_g^{2γ−1} during its plateau independently of its
    frequency (:func:`dynamics.modes.plateau_rates`): γ = ½ is the one power at which every
    capability grows at the same rate √2, whatever its frequency and scale. ε (loss units)
    keeps the gradient bounded as ℓ_g → 0; diagnostics as :class:`GroupedLoss`.
    """

    def __init__(self, num_groups: int, power: float = 0.5, eps: float = 1e-2) -> None:
        self.num_groups = num_groups
        self.power = power
        self.eps = eps
        self.name = "root" if power == 0.5 else f"power-{power:g}"

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if groups is None:
            raise ValueError("PowerGroupedLoss needs group labels")
        means, present = group_means(losses, groups, self.num_groups)
        loss = ((means[present] + self.eps) ** self.power).sum()
        return loss, _group_diagnostics(means, present)


class GroupDRO(LossMethod):
    """Group DRO (Sagawa et al. 2020): L = Σ_g q_g ℓ_g with q held constant in backward.

    Each call is one step of exponentiated-gradient ascent on the weights, before the loss:
    q_g ← q_g exp(η ℓ_g) for the groups present, then q ← q / Σ_g q_g; q starts uniform.
    ``step_size`` η is per call (per training step), in 1/(loss unit).
    """

    name = "dro"

    def __init__(self, num_groups: int, step_size: float = 0.01) -> None:
        self.num_groups = num_groups
        self.step_size = step_size
        self.weights = torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if groups is None:
            raise ValueError("GroupDRO needs group labels")
        means, present = group_means(losses, groups, self.num_groups)
        exponent = torch.where(present, means.detach().double(), 0.0)
        q = self.weights * torch.exp(self.step_size * exponent)
        self.weights = q / q.sum()
        loss = (self.weights.to(losses.dtype) * means)[present].sum()
        return loss, {**_group_diagnostics(means, present), "weights": self.weights.clone()}


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


def flatten_grads(grads: dict[str, Tensor]) -> Tensor:
    """Concatenate ``{name: (N, ...)}`` into the N×M per-example gradient matrix."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def unit_rows(matrix: Tensor, eps: float = 1e-30) -> Tensor:
    """Rows divided by their Euclidean norms, ĝ_n = g_n / ‖g_n‖ (zero rows stay zero)."""
    return matrix / matrix.norm(dim=1, keepdim=True).clamp(min=eps)


def cluster_unit_gradients(
    unit: Tensor,
    num_groups: int,
    algorithm: Literal["kmeans", "spectral"] = "kmeans",
    n_init: int = 10,
    seed: int = 0,
    sign_invariant: bool = False,
    affinity: Literal["angular", "cosine"] = "angular",
) -> np.ndarray:
    """Cluster unit gradients ĝ_n (rows of ``unit``) into ``num_groups`` labels (N,).

    ``"kmeans"``: k-means on ĝ_n (``n_init`` restarts). ``"spectral"``: spectral clustering
    on an affinity of c_nm = ĝ_n·ĝ_m: ``"angular"`` A_nm = 1 − arccos(c_nm)/π (orthogonal
    pairs get 1/2), ``"cosine"`` A_nm = max(c_nm, 0) (orthogonal pairs get 0). With
    ``sign_invariant`` c_nm is replaced by |c_nm|, so g and −g (e.g. the two labels of a
    binary task, whose gradients differ by the sign of p − y) count as one direction.
    """
    points = unit.detach().double().cpu().numpy()
    if algorithm == "kmeans":
        if sign_invariant:
            raise ValueError("sign_invariant clustering needs algorithm='spectral'")
        return KMeans(num_groups, n_init=n_init, random_state=seed).fit_predict(points)
    if algorithm != "spectral":
        raise ValueError(f"unknown clustering algorithm {algorithm!r}")
    cos = np.clip(points @ points.T, -1.0, 1.0)
    cos = np.abs(cos) if sign_invariant else cos
    if affinity == "angular":
        affinity_matrix = 1.0 - np.arccos(cos) / math.pi
    elif affinity == "cosine":
        affinity_matrix = np.maximum(cos, 0.0)
    else:
        raise ValueError(f"unknown affinity {affinity!r}")
    spectral = SpectralClustering(
        num_groups, affinity="precomputed", n_init=n_init, random_state=seed
    )
    with warnings.catch_warnings():
        # A disconnected affinity graph is the ideal case here: mutually orthogonal groups.
        warnings.filterwarnings("ignore", "Graph is not fully connected", UserWarning)
        return spectral.fit_predict(affinity_matrix)


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
            centroids[g] = gradient_svd(members, 1)[2][:, 0]
        else:
            centroids[g] = unit_rows(members.mean(dim=0, keepdim=True))[0]
    return centroids


def assign_to_centroids(unit: Tensor, centroids: Tensor, sign_invariant: bool = False) -> Tensor:
    """Label of each ĝ_n: argmax_g ĝ_n·c_g (argmax_g |ĝ_n·c_g| with ``sign_invariant``)."""
    similarity = unit @ centroids.T
    return (similarity.abs() if sign_invariant else similarity).argmax(dim=1)


def match_labels(labels: np.ndarray, reference: np.ndarray, num_groups: int) -> np.ndarray:
    """Relabel ``labels`` to agree best with ``reference`` on the same examples.

    Solves max_π Σ_n [π(labels_n) = reference_n] over permutations π of the K labels with
    the Hungarian algorithm on the K×K contingency table, and returns π(labels).
    """
    table = np.zeros((num_groups, num_groups), dtype=np.int64)
    np.add.at(table, (labels, reference), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    permutation = np.empty(num_groups, dtype=np.int64)
    permutation[rows] = cols
    return permutation[labels]


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


class _GradientMethod(LossMethod):
    """Shared part of the methods that look at unit per-example gradients each step."""

    def __init__(
        self,
        per_example_loss: PerExampleLoss,
        refresh_every: int,
        params: Sequence[str] | None,
        chunk_size: int | None,
    ) -> None:
        self.per_example_loss = per_example_loss
        self.refresh_every = refresh_every
        self.params = params
        self.chunk_size = chunk_size
        self._refreshed_at: int | None = None

    def _unit_gradients(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        grads = per_example_grads(
            model, self.per_example_loss, inputs, targets, self.params, self.chunk_size
        )
        return unit_rows(flatten_grads(grads))

    def _refresh_due(self, step: int) -> bool:
        """Whether ``step`` refreshes the clusters or directions; records it when it does."""
        due = self._refreshed_at is None or step - self._refreshed_at >= self.refresh_every
        if due:
            self._refreshed_at = step
        return due


class ClusterGroupedLoss(_GradientMethod):
    """Grouped loss Σ_g ℓ_g² on groups found by clustering unit per-example gradients.

    ``update`` computes ĝ_n = ∇ℓ_n/‖∇ℓ_n‖ for the batch (``params``: names of the parameters
    whose gradients are used; default all). Every ``recluster_every`` steps it clusters them
    (:func:`cluster_unit_gradients`), relabels the clusters to match the previous clustering
    (Hungarian matching of the new labels against the old centroids' assignment of the same
    examples) so groups keep their identity, and stores the K unit centroids. In between
    each example joins its nearest centroid (cosine). The loss ignores the true ``groups``.
    ``update`` returns ``labels`` (N,) and ``reclustered`` (bool).
    """

    name = "cluster"

    def __init__(
        self,
        num_groups: int,
        per_example_loss: PerExampleLoss,
        recluster_every: int = 50,
        algorithm: Literal["kmeans", "spectral"] = "kmeans",
        n_init: int = 10,
        params: Sequence[str] | None = None,
        chunk_size: int | None = None,
        sign_invariant: bool = False,
        affinity: Literal["angular", "cosine"] = "angular",
        seed: int = 0,
    ) -> None:
        super().__init__(per_example_loss, recluster_every, params, chunk_size)
        self.affinity = affinity
        self.grouped = GroupedLoss(num_groups)
        self.algorithm = algorithm
        self.n_init = n_init
        self.sign_invariant = sign_invariant
        self.seed = seed
        self.centroids: Tensor | None = None
        self.labels: Tensor | None = None

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        unit = self._unit_gradients(model, batch)
        reclustered = self._refresh_due(step)
        k, sign_invariant = self.grouped.num_groups, self.sign_invariant
        if reclustered:
            labels = cluster_unit_gradients(
                unit, k, self.algorithm, self.n_init, self.seed, sign_invariant, self.affinity
            )
            if self.centroids is None:
                self.centroids = torch.zeros(k, unit.shape[1], dtype=unit.dtype)
            else:
                old = assign_to_centroids(unit, self.centroids, sign_invariant).numpy()
                labels = match_labels(labels, old, k)
            self.labels = torch.as_tensor(labels, dtype=torch.long)
            self.centroids = cluster_centroids(unit, self.labels, self.centroids, sign_invariant)
        else:
            self.labels = assign_to_centroids(unit, self.centroids, sign_invariant)
        return {"labels": self.labels.numpy(), "reclustered": reclustered}

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if self.labels is None:
            raise RuntimeError("call update(model, batch, step) before the loss")
        return self.grouped(losses, self.labels)


class SVDGroupedLoss(_GradientMethod):
    """SVD-grouped loss: L = Σ_{i≤K} (σ_i Σ_n ℓ_n α̂_i(n))², σ and α̂ constant.

    G is the N×M matrix of unit per-example gradients scaled by 1/√N, G_n = ĝ_n/√N, so that
    Σ_i σ_i² = 1 and σ_i² is the share of the batch along direction w_i (dimensionless). The
    coefficient of example n on w_i is a_i(n) = G_n·w_i; it is normalised over the batch to
    α̂_i(n) = a_i(n)² / Σ_m a_i(m)² (≥ 0, Σ_n α̂_i(n) = 1), so Σ_n ℓ_n α̂_i(n) is the mean loss
    of "capability" i. Squared rather than signed coefficients, because the two labels of a
    binary task have opposite gradients and signed weights would cancel their losses. For
    orthogonal modes with group fractions p_g this gives L = Σ_g p_g ℓ_g², i.e.
    ∇L = Σ_g 2 p_g ℓ_g ∇ℓ_g. Directions W come from :func:`gradient_svd` every
    ``recompute_every`` steps; a_i, σ_i = ‖a_i‖ and α̂ are recomputed on each batch.
    ``update`` returns ``labels`` = argmax_i α̂_i(n) σ_i² and ``reclustered``.
    """

    name = "svd"

    def __init__(
        self,
        num_directions: int,
        per_example_loss: PerExampleLoss,
        recompute_every: int = 1,
        params: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(per_example_loss, recompute_every, params, chunk_size)
        self.num_directions = num_directions
        self.directions: Tensor | None = None
        self.sigma: Tensor | None = None
        self.alpha: Tensor | None = None

    def update(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> Diagnostics:
        g = self._unit_gradients(model, batch).double() / math.sqrt(batch[0].shape[0])
        recomputed = self._refresh_due(step)
        if recomputed:
            self.directions = gradient_svd(g, self.num_directions)[2]
        coefficients = g @ self.directions
        squared = coefficients**2
        energy = squared.sum(dim=0)
        self.sigma = energy.sqrt()
        self.alpha = squared / energy.clamp(min=1e-300)
        labels = squared.argmax(dim=1)
        return {"labels": labels.numpy(), "reclustered": recomputed, "sigma": self.sigma}

    def __call__(self, losses: Tensor, groups: Tensor | None = None) -> tuple[Tensor, Diagnostics]:
        if self.alpha is None:
            raise RuntimeError("call update(model, batch, step) before the loss")
        direction_loss = losses @ self.alpha.to(losses.dtype)
        loss = ((self.sigma.to(losses.dtype) * direction_loss) ** 2).sum()
        return loss, {"direction_loss": direction_loss.detach(), "sigma": self.sigma}
