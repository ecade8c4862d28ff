"""The gradient methods' scoring forward pass is reused by the training step (one forward
pass fewer a step): the training stays the same, number for number, as a loop that runs its
own forward pass after the method's update (the loop as it was)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from validation.tasks import make_method, make_task, train_task

STEPS, EVERY = 12, 5


def own_forward_loop(task, method, steps: int, lr: float) -> np.ndarray:
    """Oracle: update, then a fresh forward pass for the loss; group losses every step."""
    generator = torch.Generator().manual_seed(0)
    model = task.make_model(generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    for step in range(steps + 1):
        curve.append(task.evaluate(model)[0])
        if step == steps:
            break
        inputs, targets, groups = task.batch(generator)
        inputs = inputs.float()
        method.update(model, (inputs, targets), step)
        loss, _ = method(task.per_example_loss(model(inputs), targets), groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return np.stack(curve)


@pytest.mark.parametrize(("name", "options", "method"), [
    ("parity", {"batch_size": 64, "bits": 20}, "cluster"),  # nn.Linear layers
    ("skills", {}, "svd"),  # matmuls and a sliced addend
])
def test_reusing_the_scoring_forward_pass_leaves_training_unchanged(name, options, method):
    every = {"cluster": "recluster_every", "svd": "recompute_every"}[method]
    exclude = ["embed", "unembed"] if name == "skills" else []

    def fresh():
        task = make_task(name, 0, quick=True, **options)
        return task, make_method(method, task, 0, exclude=exclude, **{every: EVERY})

    task, loss_method = fresh()
    model = task.make_model(torch.Generator().manual_seed(0))
    batch = task.batch(torch.Generator().manual_seed(0))
    batch = (batch[0].float(), batch[1])
    assert "losses" not in loss_method.update(model, batch, 0)  # a re-clustering: none
    shared = loss_method.update(model, batch, 1)["losses"]  # between them: its forward pass
    assert shared.requires_grad
    torch.testing.assert_close(shared, task.per_example_loss(model(batch[0]), batch[1]),
                               rtol=0, atol=0)
    task, loss_method = fresh()
    result = train_task(task, loss_method, STEPS, 1e-3, 0, "adam", 1)
    task, loss_method = fresh()
    np.testing.assert_array_equal(result.group_loss,
                                  own_forward_loop(task, loss_method, STEPS, 1e-3))
