"""Loss methods of validation.grouped against their formulas computed directly."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dynamics.groups import objective
from validation.emergence import adjusted_rand
from validation.grouped import (
    ClusterGroupedLoss,
    GradientClusterer,
    ObjectiveLoss,
    SVDGroupedLoss,
    assign_to_centroids,
    centroid_scores,
    cluster_unit_gradients,
    eigengap_k,
    flatten_grads,
    gradient_affinity,
    gradient_svd,
    match_labels,
    per_example_grads,
    select_parameters,
    silhouette_k,
    torch_objective,
    unit_rows,
)

QS = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
TAUS = [-2.0, 1.0, 5.0]
OBJECTIVES = [
    ("mean", {}), ("grouped", {}), ("root", {}), ("dro", {}),
    *[("power", {"q": q}) for q in QS], *[("tilted", {"tau": tau}) for tau in TAUS],
]  # fmt: skip


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((outputs - targets) ** 2).sum(dim=1)


def small_problem(seed: int = 0, n: int = 12):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.7, generator=gen)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return model, x, y


def loop_grads(model, x, y) -> torch.Tensor:
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        squared_error(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(rows)


# ----------------------------------------------------------------- objectives in torch


@pytest.mark.parametrize("name, params", OBJECTIVES)
def test_torch_objective_equals_the_numpy_objective(name, params):
    obj = objective(name, **params)
    rng = np.random.default_rng(3)
    ell, w = rng.uniform(0.05, 2.0, size=(4, 6)), rng.dirichlet(np.ones(6), size=4)
    value = torch_objective(obj)
    for row, weights in zip(ell, w, strict=True):
        torch_value = value(torch.as_tensor(row), torch.as_tensor(weights)).item()
        assert torch_value == pytest.approx(float(obj.value(row, weights)), rel=1e-12, abs=1e-12)


def handwritten(name: str, params: dict, ell: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The objectives of dynamics.groups written out by hand (ℓ_g and batch frequencies p_g)."""
    if name == "mean":
        return (p * ell).sum()
    if name == "grouped":
        return (ell**2).sum()
    if name == "root":
        return torch.sqrt(ell + 1e-2).sum()
    if name == "power":
        q = params["q"]
        eps = 1e-2 if q < 0 else 0.0
        if q == -1:
            return torch.log(ell + eps).sum()
        return ((ell + eps) ** (q + 1) / (q + 1)).sum()
    if name == "tilted":
        tau = params["tau"]
        return torch.log((p * torch.exp(tau * ell)).sum()) / tau
    raise AssertionError(name)


@pytest.mark.parametrize("name, params", [o for o in OBJECTIVES if o[0] != "dro"])
def test_objective_loss_value_and_gradient_equal_the_handwritten_formula(name, params):
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(9, generator=gen, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1, 1, 3, 3, 3, 3])  # group 2 absent
    method = ObjectiveLoss(objective(name, **params), 4)
    loss, info = method(theta**2, groups)
    (grad,) = torch.autograd.grad(loss, theta)
    t = theta.detach().clone().requires_grad_(True)
    ell = torch.stack([(t[:2] ** 2).mean(), (t[2:5] ** 2).mean(), (t[5:] ** 2).mean()])
    p = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64) / 9
    expected = handwritten(name, params, ell, p)
    (expected_grad,) = torch.autograd.grad(expected, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-14)
    assert info["absent"] == [2] and torch.isnan(info["group_loss"][2])
    assert method.name == name and method.params == objective(name, **params).params


def test_mean_objective_is_the_mean_over_examples():
    losses = torch.tensor([1.0, 2.0, 6.0, 3.0], dtype=torch.float64)
    loss, _ = ObjectiveLoss(objective("mean"), 3)(losses, torch.tensor([2, 0, 2, 2]))
    assert loss.item() == pytest.approx(3.0, rel=1e-15)


def test_dro_weights_follow_exponentiated_gradient_and_loss_uses_them():
    dro = ObjectiveLoss(objective("dro", step=0.5), 3)
    groups = torch.tensor([0, 1, 1])
    q = np.full(3, 1 / 3)
    for losses in ([1.0, 2.0, 4.0], [0.5, 1.0, 1.0]):
        ell = np.array([losses[0], (losses[1] + losses[2]) / 2, 0.0])  # group 2 absent
        q = q * np.exp(0.5 * ell)
        q /= q.sum()
        loss, info = dro(torch.tensor(losses, dtype=torch.float64), groups)
        np.testing.assert_allclose(dro.weights.numpy(), q, rtol=1e-12)
        assert loss.item() == pytest.approx(q[0] * ell[0] + q[1] * ell[1])
        assert info["absent"] == [2]


def test_objective_loss_needs_groups():
    with pytest.raises(ValueError, match="group labels"):
        ObjectiveLoss(objective("grouped"), 2)(torch.ones(3))


# ------------------------------------------------------------------ per-example gradients


@pytest.mark.parametrize("params", [None, ["2.weight", "0.bias"]])
def test_per_example_grads_equal_a_loop_of_backward_calls(params):
    model, x, y = small_problem()
    grads = per_example_grads(model, squared_error, x, y, params=params, chunk_size=5)
    loop = loop_grads(model, x, y)
    if params is None:
        torch.testing.assert_close(flatten_grads(grads), loop, atol=1e-6, rtol=0)
    else:
        offsets = {}
        start = 0
        for name, p in model.named_parameters():
            offsets[name] = slice(start, start + p.numel())
            start += p.numel()
        for name in params:
            torch.testing.assert_close(
                grads[name].reshape(len(x), -1), loop[:, offsets[name]], atol=1e-6, rtol=0
            )


def test_select_parameters_by_patterns():
    model, _, _ = small_problem()
    assert select_parameters(model) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert select_parameters(model, exclude=["*.bias"]) == ["0.weight", "2.weight"]
    assert select_parameters(model, include=["2.*"], exclude=["*bias"]) == ["2.weight"]
    with pytest.raises(ValueError, match="no parameter"):
        select_parameters(model, include=["embed*"])


def test_centroid_scores_equal_per_example_gradients_times_the_directions():
    model, x, y = small_problem()
    names = ["0.weight", "2.bias"]
    g = flatten_grads(per_example_grads(model, squared_error, x, y, names))
    directions = torch.randn(3, g.shape[1], generator=torch.Generator().manual_seed(4),
                             dtype=torch.float64)
    scores = centroid_scores(model, squared_error, x, y, directions, names)
    torch.testing.assert_close(scores, g @ directions.T, rtol=1e-10, atol=1e-12)
    unit = unit_rows(g)
    torch.testing.assert_close(assign_to_centroids(scores, True),
                               (unit @ directions.T).abs().argmax(dim=1))


def test_gradient_svd_gram_route_equals_direct_and_signs_are_fixed():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(8, 30, generator=gen, dtype=torch.float64)
    s_gram, v_gram, w_gram = gradient_svd(g, 4, route="gram")
    s_dir, v_dir, w_dir = gradient_svd(g, 4, route="direct")
    torch.testing.assert_close(s_gram, s_dir)
    torch.testing.assert_close(v_gram, v_dir)
    torch.testing.assert_close(w_gram, w_dir)
    torch.testing.assert_close(g @ w_dir, v_dir * s_dir)
    pivots = v_dir.abs().argmax(dim=0)
    assert (v_dir[pivots, torch.arange(4)] > 0).all()
    # the same matrix with rows and sign flipped gives the same signed vectors (permuted)
    perm = torch.randperm(8, generator=gen)
    _, v_perm, w_perm = gradient_svd(-g[perm], 4)
    torch.testing.assert_close(v_perm, v_dir[perm])
    torch.testing.assert_close(w_perm, -w_dir)


def svd_method_after_update(model, x, y, every: int = 1):
    method = SVDGroupedLoss(3, squared_error, recompute_every=every)
    info = method.update(model, (x, y), step=0)
    assert info["clustering"].k == 3 and info["clustering"].seconds_gradients >= 0
    return method


def svd_coefficients(g: torch.Tensor, directions: torch.Tensor):
    """σ and α̂ from their definition: components on the directions, normalised in their span."""
    c = g @ directions
    a2 = c**2 / (c**2).sum(dim=1, keepdim=True) / len(g)
    return a2.sum(dim=0).sqrt(), a2 / a2.sum(dim=0)


def test_svd_loss_value_and_gradient_hold_sigma_and_alpha_constant():
    model, x, y = small_problem(n=10)
    method = svd_method_after_update(model, x, y)
    sigma, alpha = method.sigma, method.alpha
    # directions: top-3 right singular vectors of the unit per-example gradients (by a loop)
    g = loop_grads(model, x, y)
    _, _, vh = torch.linalg.svd(unit_rows(g), full_matrices=False)
    expected_sigma, expected_alpha = svd_coefficients(g, vh[:3].T)
    torch.testing.assert_close(sigma, expected_sigma)
    torch.testing.assert_close(alpha, expected_alpha)
    assert (sigma**2).sum().item() == pytest.approx(1.0)
    losses = squared_error(model(x), y)
    loss, _ = method(losses)
    model.zero_grad()
    loss.backward()
    autograd = torch.cat([p.grad.flatten() for p in model.parameters()])
    # formula with σ, α̂ constant: ∇L = Σ_i 2 c_i σ_i Σ_n α̂_i(n) ∇ℓ_n, c_i = σ_i Σ_n ℓ_n α̂_i(n)
    c = sigma * (losses.detach() @ alpha)
    assert loss.item() == pytest.approx((c**2).sum().item())
    expected = ((2 * c * sigma) * alpha).sum(dim=1) @ loop_grads(model, x, y)
    torch.testing.assert_close(autograd, expected)


def test_svd_between_recomputations_uses_the_held_directions():
    model, x, y = small_problem(n=10)
    method = svd_method_after_update(model, x, y, every=5)
    directions = method.directions.clone()
    _, x2, y2 = small_problem(seed=1, n=7)
    info = method.update(model, (x2, y2), step=1)
    assert "clustering" not in info
    torch.testing.assert_close(method.directions, directions)
    sigma, alpha = svd_coefficients(loop_grads(model, x2, y2), directions)
    torch.testing.assert_close(method.sigma, sigma)
    torch.testing.assert_close(method.alpha, alpha)


def test_svd_loss_on_orthogonal_groups_is_frequency_weighted_grouped_loss():
    # ℓ_n = ½(θ_g − y_n)² for x_n = e_g: per-example gradients of different groups are
    # orthogonal, so L = Σ_g p_g ℓ_g² (σ_g² = p_g, α̂ = 1/n_g on group g).
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    x = torch.nn.functional.one_hot(groups, 3).double()
    y = torch.linspace(1.0, 2.0, 10, dtype=torch.float64)[:, None]
    model = nn.Linear(3, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    method = svd_method_after_update(model, x, y)
    losses = squared_error(model(x), y)
    loss, _ = method(losses)
    p = torch.bincount(groups) / 10.0
    ell = torch.stack([losses[groups == g].mean() for g in range(3)])
    assert loss.item() == pytest.approx((p * ell**2).sum().item())
    assert adjusted_rand(method.alpha.argmax(dim=1).numpy(), groups.numpy()) == 1.0


# ----------------------------------------------------------------------------- clustering


def planted(k: int, per: int, dim: int, noise: float, signs: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = np.linalg.qr(rng.standard_normal((dim, k)))[0].T
    labels = np.repeat(np.arange(k), per)
    points = centers[labels] + noise * rng.standard_normal((k * per, dim))
    if signs:
        points *= rng.choice([-1.0, 1.0], size=(k * per, 1))
    return unit_rows(torch.as_tensor(points)), labels


@pytest.mark.parametrize(
    "algorithm, affinity", [("kmeans", "qdg"), ("spectral", "qdg"), ("spectral", "cosine")]
)
def test_clustering_recovers_planted_clusters(algorithm, affinity):
    unit, labels = planted(k=4, per=15, dim=20, noise=0.05, signs=False)
    found = cluster_unit_gradients(unit, 4, algorithm, n_init=4, affinity=affinity)
    assert adjusted_rand(found, labels) == 1.0


def test_sign_invariant_spectral_clustering_treats_g_and_minus_g_alike():
    unit, labels = planted(k=3, per=20, dim=12, noise=0.05, signs=True)
    found = cluster_unit_gradients(unit, 3, "spectral", n_init=4, sign_invariant=True)
    assert adjusted_rand(found, labels) == 1.0
    with pytest.raises(ValueError):
        cluster_unit_gradients(unit, 3, "kmeans", sign_invariant=True)


def test_qdg_affinity_is_one_minus_the_angle_over_pi():
    unit = unit_rows(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64))
    a = gradient_affinity(unit, "qdg")
    np.testing.assert_allclose(a, [[1, 0.5, 0.25], [0.5, 1, 0.75], [0.25, 0.75, 1]], atol=1e-12)
    np.testing.assert_allclose(gradient_affinity(unit, "qdg", sign_invariant=True)[0, 2], 0.75)
    np.testing.assert_allclose(gradient_affinity(unit, "cosine")[0], [1, 0, 0], atol=1e-12)


@pytest.mark.parametrize("sizes", [[10, 10, 10], [5, 8, 12, 20], [6] * 7])
def test_eigengap_counts_the_blocks_of_a_block_diagonal_affinity(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    block = (labels[:, None] == labels[None, :]).astype(float)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 0.05, block.shape)
    assert eigengap_k(block + (noise + noise.T) / 2, max_k=10) == len(sizes)
    # the QDG form of orthogonal groups: 1 within, ½ between (every λ_2 − λ_1 gap is large)
    assert eigengap_k(0.5 + 0.5 * block, max_k=10) == len(sizes)


def test_eigengap_on_planted_gradients_and_the_silhouette_rule():
    unit, _ = planted(k=5, per=12, dim=30, noise=0.1, signs=True)
    assert eigengap_k(gradient_affinity(unit, "qdg", sign_invariant=True), max_k=9) == 5
    unit, _ = planted(k=4, per=12, dim=30, noise=0.1, signs=False)
    assert silhouette_k(unit, max_k=7, n_init=3) == 4
    with pytest.raises(ValueError):
        eigengap_k(np.eye(4), max_k=4)


def test_match_labels_undoes_a_permutation():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, size=200)
    permutation = np.array([3, 0, 4, 1, 2])
    np.testing.assert_array_equal(match_labels(permutation[reference], reference, 5), reference)
    noisy = permutation[reference].copy()
    noisy[:10] = 0  # a few disagreements do not change the matching
    assert (match_labels(noisy, reference, 5)[10:] == reference[10:]).all()


def orthogonal_groups(interleaved: bool = False):
    groups = torch.arange(4).repeat(6) if interleaved else torch.arange(4).repeat_interleave(6)
    x = torch.nn.functional.one_hot(groups, 4).double()
    y = torch.ones(24, 1, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    return model, x, y, groups


def test_cluster_loss_keeps_labels_stable_across_reclusterings():
    model, x, y, groups = orthogonal_groups()
    clusterer = GradientClusterer(squared_error, 4, algorithm="kmeans", sign_invariant=False,
                                  n_init=2)
    method = ClusterGroupedLoss(clusterer, recluster_every=1)
    first = method.update(model, (x, y), step=0)
    assert adjusted_rand(first["labels"], groups.numpy()) == 1.0
    record = first["clustering"]
    assert record.k == 4 and record.parameters == 4 and record.gradient_bytes == 24 * 4 * 8
    assert record.peak_bytes is None or record.peak_bytes >= 0
    for step, seed in enumerate([5, 11, 23], start=1):
        clusterer.seed = seed  # a fresh clustering numbers its clusters differently
        info = method.update(model, (x, y), step)
        np.testing.assert_array_equal(info["labels"], first["labels"])
    loss, info = method(squared_error(model(x), y))
    assert loss.item() == pytest.approx(4 * 0.5**2) and info["absent"] == []


def test_cluster_loss_assigns_between_reclusterings_and_chooses_k_by_eigengap():
    model, x, y, groups = orthogonal_groups(interleaved=True)
    clusterer = GradientClusterer(squared_error, None, max_clusters=6, examples=16)
    method = ClusterGroupedLoss(clusterer, objective("power", q=0.5), recluster_every=3)
    info = method.update(model, (x, y), step=0)
    assert info["clustering"].k == 4 and info["clustering"].k_rule == "eigengap"
    assert adjusted_rand(info["labels"], groups.numpy()) == 1.0  # the 8 unclustered too
    assert method.loss.num_groups == 6
    between = method.update(model, (x[[5, 0, 23]], y[[5, 0, 23]]), step=1)
    assert "clustering" not in between
    np.testing.assert_array_equal(between["labels"], info["labels"][[5, 0, 23]])
    loss, _ = method(squared_error(model(x[[5, 0, 23]]), y[[5, 0, 23]]))
    assert loss.item() == pytest.approx(3 * 0.5**1.5 / 1.5)
    assert math.isfinite(loss.item())
