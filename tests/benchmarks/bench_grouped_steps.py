"""Cost of a training step of the gradient methods (cluster, svd) against a mean-loss step,
with the centroid scores by the factored route and by forward mode, in the same run.

On the report's two tasks (:data:`validation.tasks.TASKS`, reduced configurations: parity
N = 512, M = 11 266; skills N = 64, M = 33 792 without the token embeddings), from the same
initialisation and batches, one torch thread: each step is the loop of
:func:`validation.tasks.train_task` (``method.update``, the loss on the update's forward pass
where it made one, backward, an Adam step).
Steps at a re-clustering (every 200 / 100 in the report) are not timed: this is the cost
between them. The forward-mode route is the one the factored route replaced
(``GradientClusterer.scores(..., factored=False)``); both routes' labels are compared on
every timed step (the share of examples labelled alike). CPU seconds (``time.process_time``),
best of ``--repeats`` blocks of ``--steps`` steps. Run as

    python tests/benchmarks/bench_grouped_steps.py [--steps 20] [--repeats 3]

Measured (2-core shared CPU under load, 1 thread, ``--steps 20 --repeats 3``; ratios to the
mean step of the same run, 1.62 ms parity, 8.22 ms skills): parity cluster 7.09x (forward
mode) -> 2.95x (factored), svd 6.53x -> 2.53x; skills cluster 6.74x -> 2.19x, svd 6.88x ->
2.23x; the same labels on every example of every step. (Before the training step reused the
scoring forward pass: skills 2.72x, parity 2.81-3.00x.)
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from validation.grouped import GradientClusterer
from validation.tasks import TASKS, make_method, make_task

EXCLUDE = {"parity": [], "skills": ["embed", "unembed"]}  # as the report's grouped section
EVERY = {"parity": 200, "skills": 100}  # its re-clustering intervals (--steps must be below)


def _forward_mode(clusterer: GradientClusterer) -> None:
    """Make ``clusterer.scores`` take the forward-mode route (the route before the factors)."""
    scores = clusterer.scores

    def forward_mode(model, inputs, targets, centroids, factored=True, losses=None):
        return scores(model, inputs, targets, centroids, factored=False, losses=losses)

    clusterer.scores = forward_mode  # type: ignore[method-assign]


def time_steps(task_name: str, method: str, route: str, steps: int, repeats: int,
               labels: dict[tuple[str, str], list] | None = None) -> float:
    """Best CPU seconds per step of ``method`` (route ``factored``/``forward``) on the task."""
    task = make_task(task_name, 0, quick=True)
    setting = TASKS[task_name]
    generator = torch.Generator().manual_seed(0)
    model = task.make_model(generator)
    every = {"cluster": "recluster_every", "svd": "recompute_every"}
    options = {} if method == "mean" else {"exclude": EXCLUDE[task_name],
                                           every[method]: EVERY[task_name]}
    loss_method = make_method(method, task, 0, **options)
    if route == "forward":
        _forward_mode(getattr(loss_method, "clusterer", None) or loss_method.gradients)
    opt = torch.optim.Adam(model.parameters(), lr=setting.lr)
    batches = [task.batch(generator) for _ in range(steps + 1)]
    state = copy.deepcopy((model.state_dict(), opt.state_dict()))
    best = float("inf")
    for _ in range(repeats):
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
        seen = []
        for step, (inputs, targets, groups) in enumerate(batches):
            if step == 1:
                start = time.process_time()
            info = loss_method.update(model, (inputs.float(), targets), step)
            losses = info.get("losses")  # as train_task: the scoring forward pass, reused
            if losses is None:
                losses = task.per_example_loss(model(inputs.float()), targets)
            loss, _ = loss_method(losses, groups)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step:
                seen.append(info.get("labels"))
        best = min(best, (time.process_time() - start) / steps)
        if labels is not None:
            labels[(task_name, method, route)] = seen
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.steps >= min(EVERY.values()):
        parser.error(f"--steps must be below {min(EVERY.values())} (no re-clustering timed)")
    torch.set_num_threads(args.threads)
    for task_name in ("parity", "skills"):
        mean = time_steps(task_name, "mean", "-", args.steps, args.repeats)
        print(f"{task_name}: mean-loss step {mean * 1e3:.2f} ms (CPU)")
        for method in ("cluster", "svd"):
            labels: dict = {}
            old = time_steps(task_name, method, "forward", args.steps, args.repeats, labels)
            new = time_steps(task_name, method, "factored", args.steps, args.repeats, labels)
            alike = [float((a == b).mean()) for a, b in zip(
                labels[(task_name, method, "forward")], labels[(task_name, method, "factored")],
                strict=True)]
            print(f"  {method}: forward mode {old / mean:.2f}x a mean step, factored "
                  f"{new / mean:.2f}x ({old / new:.2f}x faster); labels alike on "
                  f"{min(alike):.4f}-{max(alike):.4f} of the examples per step")


if __name__ == "__main__":
    main()
