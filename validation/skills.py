"""The ``skills`` task: in-context look-up skills of a two-layer attention-only transformer.

Each skill (group) g has its own block of B tokens, ids g·B … g·B + B − 1, and an offset
k_g (default k = +1, +2, −1, −2: "successor", "skip-successor", "predecessor",
"skip-predecessor"). An example of skill g is a sequence of B + m tokens::

    c_0 … c_{B−1}  q_1 … q_m          (context: a uniformly random permutation of block g)
    target at q_j:  c_{i_j + k_g}     where q_j = c_{i_j}, i_j uniform over 0 ≤ i_j + k_g < B

so the answer is determined by the context alone: find the earlier occurrence of the query
token and read the token k_g places after it. Every token of the block occurs exactly once,
so no token statistic helps: the best guess without the skill is uniform over the block
minus the query, cross-entropy ln(B − 1), and the reference (know-nothing) loss is ln B.
Solving a skill needs two composed attention layers (a relative-position head in layer 1,
a content-matching head in layer 2: an induction head for k > 0, its value-composition
mirror for k < 0), which is why the loss sits on a plateau and then drops abruptly.
The query tokens name their skill through their block, so no extra routing is needed.

Skills are drawn with frequencies p_g ∝ g^−α. The loss of an example is the mean over its
m query positions of the cross-entropy (nats) of the B logits of its own block
(:meth:`SkillsTask.per_example_loss`). Time unit: steps. Model:
:class:`AttentionOnlyTransformer`.

Measured under the mean loss (``python tests/benchmarks/bench_skills.py [--reduced]``,
shared loop ``train_task``, torch on CPU, 1 thread, Adam η = 2·10⁻³, batch 64, recorded
every 10 steps; plateau = steps until ℓ_g ≤ 0.9 ℓ_g(0), drop = steps from 0.9 ℓ_g(0) to
0.2 ℓ_g(0); emergence time t_half = half the group's own drop; skills in the order
+1, +2, −1, −2, p_g = 0.48, 0.24, 0.16, 0.12):

* full run (:data:`SKILLS_FULL`, B = 16, 4000 steps, 50–60 s per run on a lightly shared
  2-core machine, ≈ 130 s under load), seeds 0, 1, 2:
  plateau/drop 4.0, 4.9, 17.5, 21.9 | 5.0, 5.4, 18.2, 19.3 | 23.3, 3.4, 19.1, 20.8
  (median 11.2, 11.8, 20.0; smallest 3.4); t_half 1137, 2043, 1447, 2191 |
  1380, 2064, 1460, 2094 | 903, 2996, 1400, 1624; spread t_last/t_first 1.9, 1.5, 3.3;
  every skill at accuracy ≥ 0.98 at the end.
* reduced run (:data:`SKILLS_REDUCED`, B = 12, 2000 steps, ≈ 13 s per run), seeds 0, 1, 2:
  plateau/drop 2.7, 8.6, 9.9, 12.5 | 3.4, 2.2, 8.8, 15.7 | 9.9, 14.0, 16.7, 17.4
  (median 9.3, 6.1, 15.3; smallest 2.2); t_half 632, 914, 701, 928 | 588, 1425, 570,
  1175 | 798, 1418, 835, 1395; spread 1.5, 2.5, 1.8. Seed 0 with the other methods:
  grouped spread 1.1 (14 s), cluster 2.5 (54 s), svd leaves skills 2–4 unlearned (78 s).

The drop is sharpest for the value-composition skills (k < 0, 50–100 steps) and widest for
+2 (up to 730 steps). The plateau exists because the skill needs two composed layers; copying a
repeated segment, which one positional head solves, showed none (issue 13's probe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamics.errors import UsageError
from validation.sampled import SampledTask

__all__ = [
    "SKILLS_FULL",
    "SKILLS_REDUCED",
    "AttentionOnlyTransformer",
    "SkillsTask",
]

SKILLS_FULL: dict[str, Any] = {"steps": 4000, "lr": 2e-3, "optimizer": "adam", "record": 10}
"""Training settings of the full run (``TASKS["skills"]`` in :mod:`validation.tasks.registry`)."""

SKILLS_REDUCED: dict[str, Any] = {
    "task": {"block": 12, "eval_per_group": 128},
    "steps": 2000,
    "lr": 2e-3,
    "optimizer": "adam",
    "record": 10,
}
"""The reduced run for the default report: ``task`` are keyword overrides of
:class:`SkillsTask`, the rest training settings as in :data:`SKILLS_FULL`."""


class AttentionOnlyTransformer(nn.Module):
    """Causal attention-only transformer (no MLPs, no layer norm) read out at the last m positions.

    z⁰_t = E[x_t] + P_t;  zˡ = zˡ⁻¹ + Σ_h softmax_causal(Q_h Kᵀ_h / √d_h) V_h W_O (per layer);
    logits_t = U zᴸ_t for the last ``readout`` positions t. Shapes: input (N, T) token ids
    (any dtype: the training loop casts inputs to floats, they are rounded back to integers),
    output (N, readout, vocab).

    Initialisation from ``generator``: E, P ~ N(0, 1); attention weights ~ N(0, 1/d); U ~
    N(0, (0.01)²/d), so that the initial logits are ≈ 0 and the loss starts at ln(vocab).
    The softmax is written out (no fused kernel) so that ``torch.func.vmap`` can take
    per-example gradients through it.
    """

    def __init__(
        self,
        vocab: int,
        length: int,
        width: int,
        heads: int,
        layers: int,
        readout: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if width % heads:
            raise UsageError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.readout = heads, readout
        self.embed = nn.Parameter(torch.empty(vocab, width))
        self.position = nn.Parameter(torch.empty(length, width))
        self.qkv = nn.ParameterList(
            [nn.Parameter(torch.empty(width, 3 * width)) for _ in range(layers)]
        )
        self.proj = nn.ParameterList(
            [nn.Parameter(torch.empty(width, width)) for _ in range(layers)]
        )
        self.unembed = nn.Parameter(torch.empty(width, vocab))
        with torch.no_grad():
            self.embed.normal_(generator=generator)
            self.position.normal_(generator=generator)
            for weight in [*self.qkv, *self.proj]:
                weight.normal_(std=width**-0.5, generator=generator)
            self.unembed.normal_(std=0.01 * width**-0.5, generator=generator)
        self.register_buffer("mask", torch.ones(length, length).tril().bool(), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens.round().long()
        length = tokens.shape[-1]
        z = self.embed[tokens] + self.position[:length]
        mask = self.mask[:length, :length]
        for qkv, proj in zip(self.qkv, self.proj, strict=True):
            q, k, v = (z @ qkv).chunk(3, dim=-1)
            q, k, v = (x.unflatten(-1, (self.heads, -1)).transpose(-3, -2) for x in (q, k, v))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            attention = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            z = z + (attention @ v).transpose(-3, -2).flatten(-2) @ proj
        return z[..., -self.readout :, :] @ self.unembed



@dataclass
class SkillsTask(SampledTask):
    """In-context look-up skills (module docstring): skill g reads the token k_g places
    after the earlier occurrence of the query, in a context that is a permutation of its
    own block of ``block`` tokens; ``queries`` = m query positions per example.

    ``alpha``: skill frequencies p_g ∝ g^−α. Model: :class:`AttentionOnlyTransformer` with
    ``width`` d, ``heads`` per layer and ``layers`` layers. Batches of ``batch_size`` are
    fresh each step from the training generator; per-group loss and accuracy are measured
    on a fixed evaluation set of ``eval_per_group`` examples per skill (from ``seed``).
    """

    offsets: tuple[int, ...] = (1, 2, -1, -2)
    block: int = 16
    queries: int = 4
    alpha: float = 1.0
    width: int = 64
    heads: int = 4
    layers: int = 2
    batch_size: int = 64
    eval_per_group: int = 256
    name: str = "skills"

    def __post_init__(self) -> None:
        self.offsets = tuple(int(k) for k in self.offsets)
        if not self.offsets or any(k == 0 or abs(k) >= self.block for k in self.offsets):
            raise UsageError(f"offsets must be nonzero with |k| < block = {self.block}")
        if self.queries < 1:
            raise UsageError(f"queries must be at least 1, got {self.queries}")
        self.evaluation_set(self.eval_per_group, torch.Generator().manual_seed(self.seed))

    @property
    def num_groups(self) -> int:
        return len(self.offsets)

    @property
    def group_names(self) -> list[str]:
        """A display name per group: the skill's offset k."""
        return [f"skill {k:+d}" for k in self.offsets]

    @property
    def vocab(self) -> int:
        """Number of token ids, G·B (skill g owns ids g·B … g·B + B − 1)."""
        return self.num_groups * self.block

    @property
    def length(self) -> int:
        """Sequence length B + m."""
        return self.block + self.queries

    @property
    def reference_loss(self) -> np.ndarray:
        """Cross-entropy of a uniform guess over the skill's block, ln B per skill."""
        return np.full(self.num_groups, np.log(self.block))

    def examples(self, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Token sequences (N, B + m) and targets (N, m), global token ids, for ``labels``."""
        n, block = len(labels), self.block
        context = torch.rand(n, block, generator=generator).argsort(dim=1)
        offset = torch.as_tensor(self.offsets)[labels]
        low = (-offset).clamp(min=0)
        span = block - offset.abs()
        draws = torch.rand(n, self.queries, generator=generator)
        where = low[:, None] + (draws * span[:, None]).long()
        base = (labels * block)[:, None]
        queries = context.gather(1, where)
        targets = context.gather(1, where + offset[:, None])
        return torch.cat([context, queries], dim=1) + base, targets + base

    def make_model(self, generator: torch.Generator) -> nn.Module:
        return AttentionOnlyTransformer(
            self.vocab, self.length, self.width, self.heads, self.layers, self.queries, generator
        )

    def block_logits(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The B logits of each target's own block, (..., m, B), from (..., m, G·B)."""
        first = torch.div(targets, self.block, rounding_mode="floor") * self.block
        index = first.unsqueeze(-1) + torch.arange(self.block, device=targets.device)
        return outputs.gather(-1, index)

    def per_example_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """ℓ = (1/m) Σ_j −ln softmax(block logits at q_j)[target_j], nats, one per example."""
        logits = self.block_logits(outputs, targets)
        losses = F.cross_entropy(logits.transpose(-1, -2), targets % self.block, reduction="none")
        return losses.mean(dim=-1)

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per example, the fraction of query positions whose largest block logit is the
        target."""
        hit = self.block_logits(outputs, targets).argmax(dim=-1) == targets % self.block
        return hit.double().mean(dim=-1)
