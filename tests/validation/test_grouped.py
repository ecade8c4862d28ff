"""Loss methods of validation.grouped against their formulas computed directly."""

import numpy as np
import pytest
import torch
from torch import nn

from validation.emergence import adjusted_rand
from validation.grouped import (
    ClusterGroupedLoss,
    GroupDRO,
    GroupedLoss,
    MeanLoss,
    PowerGroupedLoss,
    SVDGroupedLoss,
    cluster_unit_gradients,
    flatten_grads,
    gradient_svd,
    match_labels,
    per_example_grads,
    unit_rows,
)


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


def test_mean_loss_is_the_mean():
    losses = torch.tensor([1.0, 2.0, 6.0])
    loss, info = MeanLoss()(losses)
    assert loss.item() == pytest.approx(3.0) and info == {}


def test_grouped_loss_value_and_gradient_equal_the_formula():
    theta = torch.tensor([0.3, -1.2, 2.0, 0.5, 1.1, -0.4], requires_grad=True)
    groups = torch.tensor([0, 0, 1, 2, 2, 2])
    loss, _ = GroupedLoss(3)(theta**2, groups)
    (grad,) = torch.autograd.grad(loss, theta)
    t = theta.detach()
    ell = [(t[:2] ** 2).mean(), (t[2:3] ** 2).mean(), (t[3:] ** 2).mean()]
    assert loss.item() == pytest.approx(sum(e**2 for e in ell).item())
    # dL/dθ_n = 2 ℓ_g · 2θ_n / n_g
    sizes, owner = torch.tensor([2.0, 1.0, 3.0]), groups
    expected = 2 * torch.stack(ell)[owner] * 2 * t / sizes[owner]
    torch.testing.assert_close(grad, expected)


def test_grouped_loss_skips_and_reports_absent_groups():
    losses = torch.tensor([1.0, 3.0, 4.0])
    loss, info = GroupedLoss(4)(losses, torch.tensor([0, 0, 2]))
    assert loss.item() == pytest.approx(2.0**2 + 4.0**2)
    assert info["absent"] == [1, 3]
    assert torch.isnan(info["group_loss"][[1, 3]]).all()
    torch.testing.assert_close(info["group_loss"][[0, 2]], torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("power, eps", [(0.5, 1e-2), (2.0, 0.0), (1.0, 0.0)])
def test_power_grouped_loss_value_and_gradient_equal_the_formula(power, eps):
    theta = torch.tensor([0.3, -1.2, 2.0, 0.5, 1.1, -0.4], requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1, 1, 3])  # group 2 absent
    method = PowerGroupedLoss(4, power=power, eps=eps)
    loss, info = method(theta**2, groups)
    (grad,) = torch.autograd.grad(loss, theta)
    t = theta.detach()
    ell = torch.stack([(t[:2] ** 2).mean(), (t[2:5] ** 2).mean(), (t[5:] ** 2).mean()])
    assert loss.item() == pytest.approx(((ell + eps) ** power).sum().item())
    # dL/dθ_n = γ (ℓ_g + ε)^(γ−1) · 2θ_n / n_g
    owner, sizes = torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([2.0, 3.0, 1.0])
    expected = power * ((ell + eps) ** (power - 1))[owner] * 2 * t / sizes[owner]
    torch.testing.assert_close(grad, expected)
    assert info["absent"] == [2]
    assert method.name == {0.5: "root", 2.0: "power-2", 1.0: "power-1"}[power]
    if power == 2.0:  # γ = 2, ε = 0 is the grouped loss
        assert loss.item() == pytest.approx(GroupedLoss(4)(theta**2, groups)[0].item())


def test_dro_weights_follow_exponentiated_gradient_and_loss_uses_them():
    dro = GroupDRO(3, step_size=0.5)
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


def svd_method_after_update(model, x, y):
    method = SVDGroupedLoss(3, squared_error)
    method.update(model, (x, y), step=0)
    return method


def test_svd_loss_value_and_gradient_hold_sigma_and_alpha_constant():
    model, x, y = small_problem(n=10)
    method = svd_method_after_update(model, x, y)
    sigma, alpha = method.sigma, method.alpha
    # σ and α̂ from their definitions: unit rows / √N, top-3 right singular vectors
    g = unit_rows(loop_grads(model, x, y)) / np.sqrt(len(x))
    _, s, vh = torch.linalg.svd(g, full_matrices=False)
    a = g @ vh[:3].T
    torch.testing.assert_close(sigma, s[:3])
    torch.testing.assert_close(alpha, a**2 / (a**2).sum(dim=0))
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


def planted(k: int, per: int, dim: int, noise: float, signs: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = np.linalg.qr(rng.standard_normal((dim, k)))[0].T
    labels = np.repeat(np.arange(k), per)
    points = centers[labels] + noise * rng.standard_normal((k * per, dim))
    if signs:
        points *= rng.choice([-1.0, 1.0], size=(k * per, 1))
    return unit_rows(torch.as_tensor(points)), labels


@pytest.mark.parametrize(
    "algorithm, affinity", [("kmeans", "angular"), ("spectral", "angular"), ("spectral", "cosine")]
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


def test_match_labels_undoes_a_permutation():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, size=200)
    permutation = np.array([3, 0, 4, 1, 2])
    np.testing.assert_array_equal(match_labels(permutation[reference], reference, 5), reference)
    noisy = permutation[reference].copy()
    noisy[:10] = 0  # a few disagreements do not change the matching
    assert (match_labels(noisy, reference, 5)[10:] == reference[10:]).all()


def test_cluster_loss_keeps_labels_stable_across_reclusterings():
    groups = torch.arange(4).repeat_interleave(6)
    x = torch.nn.functional.one_hot(groups, 4).double()
    y = torch.ones(24, 1, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    method = ClusterGroupedLoss(4, squared_error, recluster_every=1, n_init=2)
    first = method.update(model, (x, y), step=0)
    assert first["reclustered"] and adjusted_rand(first["labels"], groups.numpy()) == 1.0
    for step, seed in enumerate([5, 11, 23], start=1):
        method.seed = seed  # a fresh clustering numbers its clusters differently
        info = method.update(model, (x, y), step)
        np.testing.assert_array_equal(info["labels"], first["labels"])
    loss, info = method(squared_error(model(x), y))
    assert loss.item() == pytest.approx(4 * 0.5**2) and info["absent"] == []
