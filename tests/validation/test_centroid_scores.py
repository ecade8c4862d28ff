"""centroid_scores through the factors of linear layers (one forward, one backward) against
an independent oracle: per-example gradients by a loop of backward calls, times the
directions; on sequences, a layer applied twice, and a model with a non-linear parameter
(which takes the forward-mode route)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from validation.grouped import _factored_scores, _forward_mode_scores, centroid_scores


class Shared(nn.Module):
    """Sequence model: the same linear layer applied twice, a LayerNorm, a readout."""

    def __init__(self, norm: bool) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4) if norm else nn.Identity()
        self.out = nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:  # x: (N, T, 4)
        h = torch.tanh(self.inner(torch.tanh(self.inner(x))))
        return self.out(self.norm(h)).sum(dim=(1, 2))


def squared(outputs: Tensor, targets: Tensor) -> Tensor:
    return 0.5 * (outputs - targets) ** 2


def _scores(*args: object) -> Tensor | None:
    """The scores of the factored route alone (None where it does not apply)."""
    found = _factored_scores(*args)  # type: ignore[arg-type]
    return None if found is None else found[0]


def loop_scores(model: nn.Module, x: Tensor, y: Tensor, names: list[str],
                directions: Tensor) -> Tensor:
    """Oracle: ∇ℓ_n by one backward per example, flattened over ``names``, times the c_k."""
    params = dict(model.named_parameters())
    rows = []
    for n in range(len(x)):
        loss = squared(model(x[n : n + 1]), y[n : n + 1]).sum()
        grads = torch.autograd.grad(loss, [params[name] for name in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows) @ directions.T


def random_case(model: nn.Module, names: list[str], examples: int, tokens: int,
                directions: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs (examples, tokens, 4), targets, random directions over ``names`` and the scores
    of :func:`loop_scores` (the oracle), all float64."""
    x = torch.randn(examples, tokens, 4, dtype=torch.float64)
    y = torch.randn(examples, dtype=torch.float64)
    size = sum(dict(model.named_parameters())[name].numel() for name in names)
    d = torch.randn(directions, size, dtype=torch.float64)
    return x, y, d, loop_scores(model, x, y, names, d)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("names", [["inner.weight", "inner.bias", "out.weight"],
                                   ["out.bias", "inner.weight"]])
def test_scores_equal_a_loop_of_backward_calls(norm: bool, names: list[str]) -> None:
    torch.manual_seed(0)
    model = Shared(norm).double()
    x, y, directions, expected = random_case(model, names, 7, 3, 3)
    torch.testing.assert_close(centroid_scores(model, squared, x, y, directions, names),
                               expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_scores(model, squared, x, y, directions, names),
                               expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_forward_mode_scores(model, squared, x, y, directions, names),
                               expected, rtol=1e-10, atol=1e-12)


def test_a_non_linear_parameter_takes_the_forward_mode_route() -> None:
    torch.manual_seed(1)
    model = Shared(True).double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    y = torch.randn(5, dtype=torch.float64)
    names = ["norm.weight", "inner.weight"]
    directions = torch.randn(2, 4 + 16, dtype=torch.float64)
    assert _scores(model, squared, x, y, directions, names) is None
    torch.testing.assert_close(centroid_scores(model, squared, x, y, directions, names),
                               loop_scores(model, x, y, names, directions),
                               rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


class RawParameters(nn.Module):
    """Parameters used by matmul and as a sliced addend (like the skills transformer's
    attention weights and positions), plus one used non-linearly when ``squash``."""

    def __init__(self, squash: bool) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(5, 4))
        self.weight = nn.Parameter(torch.randn(4, 3))
        self.gate = nn.Parameter(torch.randn(3))
        self.squash = squash

    def forward(self, x: Tensor) -> Tensor:  # x: (N, T ≤ 5, 4)
        z = x + self.position[: x.shape[1]]
        h = torch.tanh(z @ self.weight) @ torch.ones(3, 3, dtype=x.dtype)
        h = h + self.gate
        h = torch.tanh(h @ torch.ones(3, 4, dtype=x.dtype)) @ self.weight  # weight used twice
        if self.squash:  # a transposed parameter and a gate: not linear uses
            h = h * torch.sigmoid(self.gate) + torch.tanh(x @ self.weight.T.T)
        return h.sum(dim=(1, 2))


@pytest.mark.parametrize("names", [["position", "weight", "gate"], ["weight"], ["position"]])
def test_matmul_and_sliced_addend_scores_equal_a_loop_of_backward_calls(names: list[str]) -> None:
    torch.manual_seed(2)
    model = RawParameters(squash=False).double()
    x, y, directions, expected = random_case(model, names, 6, 3, 4)
    torch.testing.assert_close(_scores(model, squared, x, y, directions, names),
                               expected, rtol=1e-10, atol=1e-12)


def test_a_parameter_used_non_linearly_takes_the_forward_mode_route() -> None:
    torch.manual_seed(3)
    model = RawParameters(squash=True).double()
    x = torch.randn(4, 2, 4, dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64)
    names = ["weight", "gate"]
    directions = torch.randn(2, 15, dtype=torch.float64)
    assert _scores(model, squared, x, y, directions, names) is None
    assert _scores(model, squared, x, y, directions[:, :12], ["weight"]) is None  # .T
    torch.testing.assert_close(centroid_scores(model, squared, x, y, directions, names),
                               loop_scores(model, x, y, names, directions),
                               rtol=1e-10, atol=1e-12)


def test_skills_transformer_takes_the_factored_route() -> None:
    from validation.tasks import make_task

    task = make_task("skills", 0, quick=True)
    model = task.make_model(torch.Generator().manual_seed(0)).double()
    inputs, targets, _ = task.batch(torch.Generator().manual_seed(1))
    inputs, targets = inputs[:6].double(), targets[:6]
    names = ["position", "qkv.0", "proj.1"]
    size = sum(dict(model.named_parameters())[name].numel() for name in names)
    directions = torch.randn(3, size, dtype=torch.float64)
    params = dict(model.named_parameters())
    rows = []
    for n in range(len(inputs)):  # oracle: one backward per example
        loss = task.per_example_loss(model(inputs[n : n + 1]), targets[n : n + 1]).sum()
        grads = torch.autograd.grad(loss, [params[name] for name in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    expected = torch.stack(rows) @ directions.T
    torch.testing.assert_close(_scores(model, task.per_example_loss, inputs, targets,
                                              directions, names),
                               expected, rtol=1e-10, atol=1e-12)
