"""The skills task: its data follow the skill definitions, the model is a causal attention-only
transformer, and the task runs through the shared training loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from validation.grouped import per_example_grads
from validation.skills import SKILLS_REDUCED, AttentionOnlyTransformer, SkillsTask
from validation.tasks import TASKS, make_task, train_task


def small(**kwargs) -> SkillsTask:
    options = {"block": 6, "queries": 3, "width": 16, "heads": 2, "eval_per_group": 8}
    return SkillsTask(**{**options, **kwargs})


def test_examples_follow_the_skill_definitions():
    task = small(offsets=(1, -2, 3))
    tokens, targets, labels = task.batch(torch.Generator().manual_seed(0))
    assert tokens.shape == (task.batch_size, 6 + 3) and targets.shape == (task.batch_size, 3)
    assert set(labels.tolist()) <= {0, 1, 2}
    for row, answer, g in zip(tokens.tolist(), targets.tolist(), labels.tolist(), strict=True):
        context, queries = row[:6], row[6:]
        assert sorted(context) == list(range(6 * g, 6 * g + 6))  # a permutation of block g
        offset = (1, -2, 3)[g]
        for query, target in zip(queries, answer, strict=True):
            where = context.index(query)
            assert 0 <= where + offset < 6
            assert target == context[where + offset]


def test_skill_frequencies_are_zipf_and_sampled_as_such():
    task = small(offsets=(1, 2, -1, -2), alpha=1.0, batch_size=4000)
    expected = np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (1 + 1 / 2 + 1 / 3 + 1 / 4)
    np.testing.assert_allclose(task.probabilities, expected)
    labels = task.batch(torch.Generator().manual_seed(1))[2].numpy()
    counts = np.bincount(labels, minlength=4) / len(labels)
    np.testing.assert_allclose(counts, expected, atol=4 * np.sqrt(0.25 / 4000))
    uniform = small(alpha=0.0)
    np.testing.assert_allclose(uniform.probabilities, np.full(4, 0.25))


def test_queries_cover_every_valid_position():
    task = small(offsets=(-2,), batch_size=2000)
    tokens, _, _ = task.batch(torch.Generator().manual_seed(2))
    context, queries = tokens[:, :6], tokens[:, 6:]
    where = (context.unsqueeze(1) == queries.unsqueeze(2)).int().argmax(dim=2)
    assert set(where.flatten().tolist()) == {2, 3, 4, 5}


def test_data_and_model_are_deterministic_in_the_seed():
    task = small()
    first, second = (task.batch(torch.Generator().manual_seed(5)) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
    other = task.batch(torch.Generator().manual_seed(6))
    assert not torch.equal(first[0], other[0])
    torch.testing.assert_close(task.eval_inputs, small().eval_inputs)
    assert not torch.equal(task.eval_inputs, small(seed=1).eval_inputs)
    models = [task.make_model(torch.Generator().manual_seed(3)) for _ in range(2)]
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q)
    different = task.make_model(torch.Generator().manual_seed(4))
    assert not torch.equal(different.embed, models[0].embed)


def sdpa_forward(model: AttentionOnlyTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The same network through torch's fused causal attention (an independent forward)."""
    z = F.embedding(tokens.long(), model.embed) + model.position[: tokens.shape[1]]
    for qkv, proj in zip(model.qkv, model.proj, strict=True):
        q, k, v = (z @ qkv).split(z.shape[-1], dim=-1)
        heads = [x.view(*x.shape[:2], model.heads, -1).transpose(1, 2) for x in (q, k, v)]
        out = F.scaled_dot_product_attention(*heads, is_causal=True)
        z = z + out.transpose(1, 2).reshape(z.shape) @ proj
    return z[:, -model.readout :] @ model.unembed


def test_model_shapes_causality_and_forward():
    task = small(offsets=(1, -1))
    model = task.make_model(torch.Generator().manual_seed(0))
    tokens = task.batch(torch.Generator().manual_seed(1))[0]
    outputs = model(tokens.float())  # the training loop casts inputs to floats
    assert outputs.shape == (task.batch_size, task.queries, task.vocab)
    torch.testing.assert_close(outputs, sdpa_forward(model, tokens), rtol=1e-4, atol=1e-6)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % task.vocab
    torch.testing.assert_close(model(changed)[:, :-1], outputs[:, :-1])  # causal
    assert not torch.allclose(model(changed)[:, -1], outputs[:, -1])
    with pytest.raises(ValueError, match="multiple of heads"):
        AttentionOnlyTransformer(8, 4, 10, 3, 2, 1, torch.Generator())


def test_per_example_loss_uses_the_own_block_and_averages_the_queries():
    task = small(offsets=(1, -1))
    model = task.make_model(torch.Generator().manual_seed(0))
    tokens, targets, labels = task.batch(torch.Generator().manual_seed(1))
    outputs = model(tokens)
    losses = task.per_example_loss(outputs, targets)
    assert losses.shape == (task.batch_size,)
    logits = outputs.detach().double().numpy()
    expected = []
    for n, g in enumerate(labels.tolist()):
        block = logits[n, :, 6 * g : 6 * g + 6]
        log_p = block - np.log(np.exp(block).sum(axis=1, keepdims=True))
        expected.append(-np.mean([log_p[j, t - 6 * g] for j, t in enumerate(targets[n])]))
    np.testing.assert_allclose(losses.detach().numpy(), expected, rtol=1e-5)
    # the initial logits are ≈ 0: the loss starts at the reference ln B
    assert losses.mean().item() == pytest.approx(math.log(6), abs=1e-2)
    np.testing.assert_allclose(task.reference_loss, [math.log(6)] * 2)
    np.testing.assert_allclose(task.threshold, [math.log(6) / 2] * 2)
    # logits outside the target's block do not count
    perfect = F.one_hot(targets, task.vocab).double() * 50
    outside = torch.arange(task.vocab) // 6 != (targets // 6).unsqueeze(-1)
    assert task.per_example_loss(perfect, targets).max() < 1e-12
    assert task.per_example_loss(perfect + 1e3 * outside, targets).max() < 1e-12
    assert F.cross_entropy((perfect + 1e3 * outside).transpose(1, 2), targets).item() > 900


def test_evaluate_gives_per_skill_loss_and_accuracy():
    task = small(offsets=(1, 2, -1))
    model = task.make_model(torch.Generator().manual_seed(0))
    loss, accuracy = task.evaluate(model)
    assert loss.shape == accuracy.shape == (3,)
    outputs = model(task.eval_inputs)
    per_example = task.per_example_loss(outputs, task.eval_targets).detach().numpy()
    labels = task.eval_labels.numpy()
    np.testing.assert_allclose(loss, [per_example[labels == g].mean() for g in range(3)])
    guess = np.stack(
        [outputs[n, :, 6 * g : 6 * g + 6].argmax(dim=-1).numpy() + 6 * g
         for n, g in enumerate(labels)]
    )  # fmt: skip
    hits = (guess == task.eval_targets.numpy()).mean(axis=1)
    np.testing.assert_allclose(accuracy, [hits[labels == g].mean() for g in range(3)])


def test_per_example_gradients_match_autograd():
    task = small(offsets=(1, -1), batch_size=5)
    model = task.make_model(torch.Generator().manual_seed(0))
    tokens, targets, _ = task.batch(torch.Generator().manual_seed(1))
    grads = per_example_grads(model, task.per_example_loss, tokens.float(), targets)
    for n in range(len(tokens)):
        model.zero_grad()
        task.per_example_loss(model(tokens[n : n + 1]), targets[n : n + 1]).sum().backward()
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(grads[name][n], parameter.grad, rtol=1e-4, atol=1e-7)


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match="offsets"):
        SkillsTask(offsets=(0, 1))
    with pytest.raises(ValueError, match="offsets"):
        SkillsTask(offsets=(16,), block=16)
    with pytest.raises(ValueError, match="queries"):
        SkillsTask(queries=0)


@pytest.mark.parametrize("method", ["mean", "svd"])
def test_skills_train_through_the_shared_loop(method):
    assert isinstance(make_task("skills"), SkillsTask)
    setting = TASKS["skills"]
    assert (setting.optimizer, setting.lr) == ("adam", 2e-3)
    task = make_task("skills", block=6, queries=2, width=16, heads=2, eval_per_group=8)
    runs = [
        train_task(task, method, steps=6, lr=1e-2, optimizer="adam", record=3) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].group_loss, runs[1].group_loss)
    assert runs[0].group_loss.shape == runs[0].group_accuracy.shape == (3, 4)
    assert runs[0].time.tolist() == [0.0, 3.0, 6.0]
    assert np.all(np.isfinite(runs[0].group_loss))
    assert not np.array_equal(runs[0].group_loss[0], runs[0].group_loss[-1])  # it trained


def test_a_skill_is_learned_in_a_short_run():
    # one skill, small block: the loss leaves its plateau ln B within a few hundred steps
    task = SkillsTask(offsets=(-1,), block=6, queries=4, eval_per_group=64)
    result = train_task(task, "mean", steps=400, lr=3e-3, optimizer="adam", record=100)
    assert result.group_loss[0, 0] == pytest.approx(math.log(6), abs=5e-3)
    assert result.group_loss[-1, 0] < 0.2 * math.log(6)
    assert result.group_accuracy[-1, 0] > 0.9


@pytest.mark.slow
def test_reduced_run_emerges_abruptly():
    # the default report's run: the median skill's plateau lasts at least twice its drop
    setting = dict(SKILLS_REDUCED)
    task = make_task("skills", 0, **setting.pop("task"))
    result = train_task(task, "mean", seed=0, **setting)
    start = result.group_loss[0]
    ratios = []
    for g in range(task.num_groups):
        curve = result.group_loss[:, g]
        t90 = result.time[np.argmax(curve <= 0.9 * start[g])]
        t20 = result.time[np.argmax(curve <= 0.2 * start[g])]
        assert curve[-1] <= 0.2 * start[g]
        ratios.append(t90 / (t20 - t90))
    assert np.median(ratios) >= 2
