"""Programs: a derived program's :class:`validation.graph.Graph` compiled into one step.

The graph (:mod:`validation.graph`, built from the SymPy terms of
:func:`dynamics.symbolic.training_program`) is compiled into one flat function per run (once
per program and run: ``Plan.compiled`` counts compilations). Planning, then emission:
subexpressions that depend only on constants (and λ) are evaluated once, in float64, before
the run (e.g. C's softmax for the cross-entropy, λ + 1, AᵀA where a chain needs it); a λ that
is 0 for every seed drops out; every matrix chain and trace of the whole program is split into
binary products (:mod:`validation.planning`, cached by graph structure: the same model, shapes
and options plan once per process) by the ``multi_dot`` dynamic programme with products that
another chain already needs (or its transpose) costing nothing, so e.g. the factorization's
four gradient chains and two loss traces share the four contractions AᵀX, BᵀY, XᵀX, YᵀY;
traces are taken at their cheapest rotation and split, Σ(W₁ ⊙ W₂ᵀ); contractions of leaves
sharing an operand are one panel product; gradient sums accumulate in place into the caller's
buffers. :class:`Plan` emits the result as ordinary Python over torch calls (``Plan.source``),
so a step costs a handful of batched matmuls and small in-place ops with no per-step planning;
on the CPU, small products into the plan's own buffers run as ``numpy.matmul`` on views of the
same memory (the same BLAS gemm per seed with less per-matrix overhead than ``torch.bmm`` on
these small matrices).

The graph's names are re-exported here (``programs.objective``, ``programs.Graph``, ...).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import planning
from .graph import (  # re-exported: the graph of a program and its eager reference
    F64,
    Graph,
    Node,
    function,
    group_losses,
    namespace,
    objective,
)
from .planning import Products, Word
from .planning import flip as _flip
from .planning import flip_factors as _flip_factors

__all__ = ["Graph", "Node", "Plan", "function", "group_losses", "namespace", "objective"]


# --------------------------------------------------------------------------- plan


_HOST_MNK = 4 * 65536  # OpenBLAS multiplies m x k @ k x n on one thread up to m·k·n = this
_PLANNED: dict[tuple, tuple] = {}  # graph structure -> planned products (Products.snapshot)
_PLANNED_LOCK = threading.Lock()


class Plan:
    """``outputs`` of a :class:`Graph` compiled into one flat function (module docstring).

    Args:
        graph: the graph; its constants are evaluated here in float64, then cast to ``dtype``.
        outputs: output name -> node.
        inputs: learned name -> tensor (S, rows, cols) of ``dtype`` that the function reads
            (updated in place by the caller between calls); None: the plan allocates them
            (for ``seeds`` on ``device``) where its products read them best — a learned matrix
            that is the shared operand of a row of panels lives in its panel's slot, so no
            step copies it — and ``inputs`` / ``groups`` give them to the caller:
            ``groups`` = [(names, storage, transposed)]: m matrices of one shape each in a
            tensor (m, S, rows, cols) — or (m, S, cols, rows) holding their transposes (a row
            of panels' slots) — every input in one group.
        out: output name -> a tensor (S, rows, cols), contiguous or the transpose of a
            contiguous one, to write that (matrix) output into; outputs not named here are
            returned.
        scaled: the call is ``plan(between)``: once the returned outputs are computed,
            ``between(*returned values)`` gives a per-seed factor s (S, 1, 1), and the ``out``
            outputs are written times s (s folded into each product's smaller operand). The
            trainer's plain SGD passes s = −η (0 for a stopped seed): θ += out is its update.

        own_outputs: (owned inputs) each output named like an input is written into a buffer
            the plan allocates like that input's group: ``out_groups[i]`` holds the outputs
            of ``groups[i]`` (same shape and layout; None where the group has no outputs).

    ``plan()`` runs a step and returns ``{output name: tensor}`` (scalars (S, 1, 1)). ``macs``:
    multiply-adds of the matmuls of one call; ``source``: the compiled step. ``Plan.compiled``
    counts the plans compiled in this process (a test checks one ``train`` compiles once).
    """

    compiled = 0

    def __init__(self, graph: Graph, outputs: Mapping[str, Node],
                 inputs: Mapping[str, Tensor] | None = None,
                 out: Mapping[str, Tensor] | None = None, dtype: torch.dtype = F64,
                 scaled: bool = False, seeds: int | None = None,
                 device: torch.device | str | None = None, own_outputs: bool = False):
        Plan.compiled += 1
        self.graph, self.dtype = graph, dtype
        out = dict(out or {})
        self.owned = inputs is None
        if self.owned:
            self.seeds, self.device = int(seeds), torch.device(device or "cpu")
        else:
            first = next(iter(inputs.values()))
            self.device, self.seeds = first.device, first.shape[0]
        self.macs = 0
        self._lines: list[str] = []
        self._bound: dict[str, Any] = {}
        self._refs: dict[int, tuple[str, bool]] = {}  # node id -> (variable, transposed)
        self._words: dict[Word, tuple[str, bool]] = {}  # computed products this step
        self._products = Products()  # which binary products compute every chain and trace
        self._plans = self._products.plans  # product -> (factors, top split)
        self._traces = self._products.traces  # trace node id -> (rotation, split)
        self._memo: dict[str, str] = {}
        self._panel_of: dict[Word, dict] = {}  # contraction -> its panel product
        self._slices: dict[Word, tuple[str, bool]] = {}
        self._slice_info: dict[str, tuple[str, int, int, int]] = {}  # view -> (of, rows a:b)
        self._panel_by: dict[tuple, dict] = {}
        self._pending: list[dict] = []  # panel products of gradient sums, not yet emitted
        self._count = 0
        self._leaf_values = {node.id: value.to(self.device) for node, value in
                             graph.constants.values()}
        self._tensor_of: dict[int, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self.groups: list[tuple[list[str], Tensor, bool]] = []
        for name, node in graph.inputs.items():
            if not self.owned and name in inputs:
                self._bind(node, inputs[name], f"in_{_ident(name)}")
                self._tensor_of[node.id] = self.inputs[name] = inputs[name]
        order = self._topological(outputs.values())
        key = (graph.signature(), tuple(node.id for node in outputs.values()))
        planned = _PLANNED.get(key)
        if planned is not None:  # the same program structure planned before (another run)
            self._products.load(planned, graph.nodes)
        else:
            for node in order:  # choose every product first, so that later chains can reuse
                if node.op == "chain" and not node.const:
                    self._products.plan(node.args)
                elif node.op == "trace" and not node.const:
                    self._traces[node.id] = self._products.plan_trace(node.args)
            with _PLANNED_LOCK:  # the report trains in several threads
                if len(_PLANNED) >= 64:
                    _PLANNED.pop(next(iter(_PLANNED)))
                _PLANNED[key] = self._products.snapshot()
        self._find_panels()
        if self.owned:
            self._allocate()
        self.out_groups: list[Tensor | None] = []
        if own_outputs:  # a buffer like each group of inputs, for the outputs named like them
            out = self._own_outputs(outputs, out)
        results = {name: self._ref(node) for name, node in outputs.items() if name not in out}
        returned = ", ".join(f"{name!r}: {self._use(ref)}" for name, ref in results.items())
        scale = None
        if scaled:
            values = ", ".join(self._use(ref) for ref in results.values())
            self._lines.append(f"_s = _between({values})")
            scale = "_s"
        pending = [self._into(node, out[name], f"out_{_ident(name)}", scale)
                   for name, node in outputs.items() if name in out]
        self._expansions()  # the panel products of every gradient sum, grouped
        for finish in pending:
            finish()
        self._lines = _fuse_offsets(self._lines, returned)
        if self.device.type == "cpu":
            self._lines = [self._host_matmul(line) for line in self._lines]
        args = ", ".join(["_between"] * scaled + [f"{k}={k}" for k in self._bound])
        body = "\n".join(f"    {line}" for line in self._lines) or "    pass"
        self.source = f"def _step({args}):\n{body}\n    return {{{returned}}}\n"
        names = {"torch": torch, "_bmm": torch.bmm, "_mm": np.matmul, **self._bound}
        exec(compile(self.source, "<scurve.plan>", "exec"), names)
        self._fn = names["_step"]

    _BMM = re.compile(r"_bmm\(\(?(\w+)\)?(\.mT)?, \(?(\w+)\)?(\.mT)?, out=(\w+)(\.mT)?\)")

    def _host_matmul(self, line: str) -> str:
        """A CPU product into a bound buffer, ``_bmm(a, b, out=o)`` with bound tensors, as
        ``numpy.matmul`` on numpy views of the same memory, made once: the same float
        products (BLAS gemm per seed), with a fraction of torch.bmm's per-matrix overhead
        on these small matrices (measured: 18 vs 30 µs for 20 products 10x100 @ 100x20).
        Kept as it is where numpy would not call BLAS (an operand or the output without
        a unit stride), an operand is not a bound tensor, or a product is large enough for
        OpenBLAS to spread it over threads (m·k·n > ``_HOST_MNK``; torch's own thread rule,
        :func:`validation.training.limit_threads`, governs those)."""
        match = self._BMM.fullmatch(line)
        if match is None:
            return line
        a, ta, b, tb, o, to = match.groups()
        views = []
        for name, t in ((a, ta), (b, tb), (o, to)):
            x = self._bound.get(name)
            if not isinstance(x, Tensor) or x.dtype not in (torch.float32, F64) \
                    or x.ndim != 3 or x.requires_grad:
                return line
            views.append(x.mT if t else x)
        (_, m, k), n = views[0].shape, views[1].shape[-1]
        if m * k * n > _HOST_MNK:  # OpenBLAS would thread it, beside torch's thread rule
            return line
        arrays = [v.numpy() for v in views]
        unit = [x.strides[-1] == x.itemsize or x.strides[-2] == x.itemsize for x in arrays]
        if not all(unit) or arrays[2].strides[-1] != arrays[2].itemsize:
            return line  # numpy's matmul calls BLAS only for a C-ordered output
        names = [self._bind(None, x, self._var("np"))[0] for x in arrays]
        return f"_mm({names[0]}, {names[1]}, out={names[2]})  # {line}"

    def _own_outputs(self, outputs: Mapping[str, Node], out: dict[str, Tensor]
                     ) -> dict[str, Tensor]:
        """``out`` plus, for each group of owned inputs whose names are all outputs, one
        zeroed buffer of the group's shape (contiguous) holding those outputs the way the
        group holds the inputs (``out_groups``, None for a group without outputs)."""
        if not self.owned:
            raise ValueError("own_outputs: the plan must own its inputs")
        out = dict(out)
        for names, storage, transposed in self.groups:
            if not all(name in outputs for name in names):
                self.out_groups.append(None)
                continue
            buffer = torch.zeros(storage.shape, dtype=self.dtype, device=self.device)
            self.out_groups.append(buffer)
            out |= {name: buffer[i].mT if transposed else buffer[i]
                    for i, name in enumerate(names)}
        return out

    def __call__(self, *between: Any) -> dict[str, Tensor]:
        return self._fn(*between)

    def contraction(self, m: str, r: str) -> Tensor | None:
        """MᵀR (S, cols of M, cols of R) as of the last call, for an input or constant M and
        R whose product the step computes in a panel (a view of the plan's buffer: read it
        before the next call); None where the step does not compute it that way."""
        def node(name: str) -> Node | None:
            if name in self.graph.inputs:
                return self.graph.inputs[name]
            return self.graph.constants[name][0] if name in self.graph.constants else None

        a, b = node(m), node(r)
        if a is None or b is None:
            return None
        word = self._word([(a, True), (b, False)])
        for w, flip in ((word, False), (_flip(word), True)):
            if w in self._slices and not self._slices[w][1]:
                view = self._bound[self._slices[w][0]]
                return view.mT if flip else view
        return None

    # ------------------------------------------------------------------ helpers

    def _topological(self, roots: Any) -> list[Node]:
        seen: set[int] = set()
        order: list[Node] = []

        def visit(x: Node) -> None:
            if x.id in seen:
                return
            seen.add(x.id)
            if not x.const:
                for a in x.args:
                    visit(a[0] if isinstance(a, tuple) else a)
            order.append(x)

        for root in roots:
            visit(root)
        return order

    def _var(self, prefix: str = "v") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _bind(self, node: Node | None, value: Any, name: str | None = None) -> tuple[str, bool]:
        name = name or self._var("c")
        self._bound[name] = value
        if node is not None:
            self._refs[node.id] = (name, False)
        return (name, False)

    def _emit(self, expr: str, prefix: str = "v") -> tuple[str, bool]:
        var = self._var(prefix)
        self._lines.append(f"{var} = {expr}")
        return (var, False)

    @staticmethod
    def _use(ref: tuple[str, bool]) -> str:
        return f"{ref[0]}.mT" if ref[1] else ref[0]

    def _constant(self, node: Node) -> tuple[str, bool]:
        value = self.graph.evaluate(node, self._leaf_values)
        if not isinstance(value, Tensor):
            return (repr(float(value)), False)
        value = value.to(self.dtype)
        if value.ndim == 3 and value.shape[0] == 1 and self.seeds > 1:
            value = value.expand(self.seeds, *value.shape[1:]).contiguous()
        return self._bind(node, value)

    # ------------------------------------------------------------------ products

    _shape = staticmethod(planning.shape)
    _word = staticmethod(planning.word)

    def _operands(self, factors: Sequence[tuple[Node, bool]]
                  ) -> tuple[tuple[str, bool], tuple[str, bool], int, int]:
        """The two operands of the planned top product of ``factors`` and their sizes
        (entries per seed), counting the product's multiply-adds."""
        left, right = self._products.split(factors)
        rows, inner = self._shape(left[0])[0], self._shape(left[-1])[1]
        cols = self._shape(right[-1])[1]
        self.macs += self.seeds * rows * inner * cols
        return self._value(left), self._value(right), rows * inner, inner * cols

    def _value(self, factors: Sequence[tuple[Node, bool]]) -> tuple[str, bool]:
        """The product of ``factors`` (each product computed once per step)."""
        if len(factors) == 1:
            var, t = self._ref(factors[0][0])
            return (var, t != factors[0][1])
        word = self._word(factors)
        if word == _flip(word):  # a symmetric product (WᵀW, ...): its transpose is itself
            var, _ = self._words.get(word) or self._value_of(factors, word)
            return (var, False)
        if word in self._words:
            return self._words[word]
        return self._value_of(factors, word)

    def _value_of(self, factors: Sequence[tuple[Node, bool]], word: Word) -> tuple[str, bool]:
        if word in self._words:
            return self._words[word]
        if _flip(word) in self._words:
            var, t = self._words[_flip(word)]
            return (var, not t)
        if word in self._panel_of:
            self._contract(self._panel_of[word])
            return self._value_of(factors, word)
        if all(f.const for f, _ in factors):
            ref = self._constant(self.graph._chain_of(tuple(factors)))
        elif word not in self._plans and _flip(word) in self._plans:  # the planned orientation
            var, t = self._value(_flip_factors(factors))
            return (var, not t)
        else:
            a, b, _, _ = self._operands(factors)
            ref = self._emit(f"_bmm({self._use(a)}, {self._use(b)})", "w")
        self._words[word] = ref
        return ref

    # ------------------------------------------------------------------ panels

    def _find_panels(self) -> None:
        """Group the planned contractions MᵢᵀR of leaves sharing R into one product
        [M₁ | M₂ | ⋯]ᵀ R: one batched matmul (S larger products) instead of several."""
        groups: dict[int, list[tuple[Node, Word]]] = {}
        right: dict[int, Node] = {}
        for fs, _ in list(self._plans.values()):
            if len(fs) != 2 or any(f.op != "leaf" for f, _ in fs):
                continue
            (f1, t1), (f2, t2) = fs
            if (t1, t2) != (True, False):
                continue
            m, r = (f1, f2) if not f2.const or f1.const else (f2, f1)  # R: the learned one
            groups.setdefault(r.id, []).append((m, self._word([(m, True), (r, False)])))
            right[r.id] = r
        jobs = []
        for rid, members in groups.items():
            seen: dict[int, Node] = {}
            for m, _ in members:
                seen.setdefault(m.id, m)
            if len(seen) >= 2:
                jobs.append((right[rid], sorted(seen.values(), key=lambda m: (not m.const, m.id)),
                             members))
        rows = self._rows(jobs)
        for r, nodes, members in jobs:
            row = rows.get(r.id)
            panel = self._panel(nodes, row, row["index"][r.id] if row else 0)
            size = panel["cols"]
            row = panel.get("row")
            # the product PᵀR is stored transposed, (RᵀP) contiguous: BLAS runs Rᵀ·P (rows
            # of R against the panel) about 2x faster than Pᵀ·R for these tall-thin shapes
            stored = row["stored"][row["panels"].index(panel)] if row else \
                torch.empty(self.seeds, r.shape[1], size, dtype=self.dtype, device=self.device)
            product = stored.mT
            var = self._bind(None, product, self._var("pp"))[0]
            out_t = self._bind(None, stored, self._var("po"))[0]
            job = {"panel": panel, "right": r, "out": var, "out_t": out_t, "done": False,
                   "row": row}
            for m, word in members:
                a, b = panel["at"][m.id]
                view = self._bind(None, product[:, a:b], self._var("pv"))
                self._slice_info[view[0]] = (var, a, b, size)
                self._panel_of[word] = job
                self._slices[word] = view

    def _rows(self, jobs: list) -> dict[int, dict]:
        """Rows of panels: contractions of one structure whose learned operands R lie one
        after another in memory (the trainer's X and Y, ...) share one (m, S, n, cols)
        panel buffer, so that one matmul does them all. {R node id: row}."""
        buckets: dict[tuple, list] = {}
        learned = list(self.graph.inputs.values())
        for r, nodes, _ in jobs:
            if r.const or (not self.owned and r.id not in self._tensor_of):
                continue
            key = (r.shape, tuple((m.const, m.shape) for m in nodes),
                   [m.id for m in nodes].index(r.id) if r in nodes else -1)
            buckets.setdefault(key, []).append((r, nodes))
        out: dict[int, dict] = {}
        for key, bucket in buckets.items():
            if self.owned:  # R lives in its slot of the row (when it is one of the members)
                bucket.sort(key=lambda job: learned.index(job[0]))
                stacked = None
            else:
                bucket.sort(key=lambda job: self._tensor_of[job[0].id].data_ptr())
                stacked = _consecutive([self._tensor_of[r.id] for r, _ in bucket])
                if stacked is None:
                    continue
            if len(bucket) < 2 or (self.owned and key[2] < 0):
                continue
            n, cols = bucket[0][0].shape[0], sum(m.shape[1] for m in bucket[0][1])
            row = {"buffer": torch.zeros(len(bucket), self.seeds, cols, n, dtype=self.dtype,
                                         device=self.device),
                   "stored": torch.empty(len(bucket), self.seeds, bucket[0][0].shape[1], cols,
                                         dtype=self.dtype, device=self.device),  # product ᵀ
                   "right": stacked, "panels": [None] * len(bucket), "index": {}}
            if self.owned:
                a = sum(m.shape[1] for m in bucket[0][1][:key[2]])
                row["slot"] = (a, a + bucket[0][0].shape[1])
                row["storage"] = row["buffer"][:, :, a:a + bucket[0][0].shape[1]]
                row["right"] = row["storage"].mT
                row["names"] = [r.value for r, _ in bucket]
            for i, (r, _) in enumerate(bucket):
                out[r.id] = row
                row["index"][r.id] = i
        return out

    def _allocate(self) -> None:
        """Owned inputs: the shared operand of a row of panels in its slots, the others in
        tensors of their own; bound for the step and listed in ``inputs`` and ``groups``."""
        rows, placed = [], {}
        for panel in self._panel_by.values():
            row = panel["row"]
            if row is not None and "slot" in row and all(row is not x for x in rows):
                rows.append(row)
        for row in rows:
            self.groups.append((row["names"], row["storage"], True))
            for i, name in enumerate(row["names"]):
                placed[name] = row["right"][i]
            for p in row["panels"]:  # its own slot needs no copy
                p["copies"] = [(slot, m) for slot, m in p["copies"] if p["at"][m.id] !=
                               row["slot"] or row["names"][row["panels"].index(p)] != m.value]
        for name, node in self.graph.inputs.items():
            if name not in placed:
                placed[name] = torch.zeros(self.seeds, *node.shape, dtype=self.dtype,
                                           device=self.device)
                self.groups.append(([name], placed[name].unsqueeze(0), False))
        for name, node in self.graph.inputs.items():
            self._bind(node, placed[name], f"in_{_ident(name)}")
            self._tensor_of[node.id] = self.inputs[name] = placed[name]

    def _panel(self, members: list[Node], row: dict | None = None, index: int = 0) -> dict:
        """A buffer [M₁ | M₂ | ⋯] (S, n, Σ cols): constants written once, learned matrices
        copied in at every step (before the first product that reads it); in a row of
        panels, a slice of the row's buffer."""
        key = tuple(m.id for m in members)
        if key in self._panel_by:
            return self._panel_by[key]
        members = sorted(members, key=lambda m: (not m.const, m.id))
        cols = sum(m.shape[1] for m in members)
        if row is not None:
            buffer = row["buffer"][index]
        else:
            buffer = torch.zeros(self.seeds, cols, members[0].shape[0], dtype=self.dtype,
                                 device=self.device)
        var = self._bind(None, buffer, self._var("panel"))[0]  # [M₁ | M₂ | ⋯]ᵀ, contiguous
        at, copies, offset = {}, [], 0
        for m in members:
            at[m.id] = (offset, offset + m.shape[1])
            part = buffer[:, offset:offset + m.shape[1]]  # Mᵀ
            if m.const:
                part.copy_(self._leaf_values[m.id].to(self.dtype).mT.expand_as(part))
            else:
                copies.append((self._bind(None, part, self._var("slot"))[0], m))
            offset += m.shape[1]
        panel = {"var": var, "at": at, "copies": copies, "cols": cols, "filled": False,
                 "members": {m.id for m in members}, "row": row}
        if row is not None:
            row["panels"][index] = panel
        self._panel_by[key] = panel
        self._panel_by.setdefault(tuple(sorted(panel["members"])), panel)
        return panel

    def _fill(self, panel: dict) -> str:
        """Copy the learned members into ``panel`` (once per step; a whole row of panels at
        once where each slot's members lie one after another in memory)."""
        if panel["filled"]:
            return panel["var"]
        row = panel["row"]
        if row is not None:
            for j, (_, m) in enumerate(panel["copies"]):
                members = [p["copies"][j][1] for p in row["panels"]]
                stacked = _consecutive([self._tensor_of.get(x.id) for x in members])
                if stacked is None:
                    continue
                a, b = panel["at"][m.id]
                slots = self._bind(None, row["buffer"][:, :, a:b], self._var("slots"))[0]
                source = self._bind(None, stacked.mT, self._var("rowin"))[0]
                self._lines.append(f"{slots}.copy_({source})")
                for p in row["panels"]:
                    p["copies"][j] = (None, p["copies"][j][1])
        for p in (row["panels"] if row is not None else [panel]):
            for slot, m in p["copies"]:
                if slot is not None:
                    var, t = self._ref(m)
                    self._lines.append(f"{slot}.copy_({self._use((var, not t))})")
            p["filled"] = True
        return panel["var"]

    def _contract(self, job: dict) -> None:
        if job["done"]:
            return
        panel, r, row = job["panel"], job["right"], job["row"]
        var = self._fill(panel)
        if row is not None:  # the whole row of panels in one matmul
            panels = self._bind(None, row["buffer"].flatten(0, 1), self._var("rowp"))[0]
            right = self._bind(None, row["right"].flatten(0, 1), self._var("rowr"))[0]
            out = self._bind(None, row["stored"].flatten(0, 1), self._var("rowo"))[0]
            self._lines.append(f"_bmm({right}.mT, {panels}.mT, out={out})")  # (PᵀR)ᵀ
            self.macs += len(row["panels"]) * self.seeds * panel["cols"] * r.shape[0] \
                * r.shape[1]
            jobs = {id(j) for j in self._panel_of.values() if j["row"] is row}
            for word, job2 in self._panel_of.items():
                if id(job2) in jobs:
                    self._words[word] = self._slices[word]
                    job2["done"] = True
            return
        self._lines.append(f"_bmm(({self._use(self._ref(r))}).mT, {var}.mT, "
                           f"out={job['out_t']})")  # (PᵀR)ᵀ
        self.macs += self.seeds * panel["cols"] * r.shape[0] * r.shape[1]
        for word, job2 in self._panel_of.items():
            if job2 is job:
                self._words[word] = self._slices[word]
        job["done"] = True

    def _top(self, node: Node) -> tuple[tuple[str, bool], tuple[str, bool], int, int] | None:
        """Operands of a chain node's last product (and their sizes), or None when its value
        exists already."""
        word = self._word(node.args)
        if word in self._words or _flip(word) in self._words:
            return None
        return self._operands(node.args)

    # ------------------------------------------------------------------ nodes

    def _ref(self, node: Node) -> tuple[str, bool]:
        if node.id in self._refs:
            return self._refs[node.id]
        if node.op == "num":
            return (repr(node.value), False)
        if node.const:
            return self._constant(node)
        ref = getattr(self, f"_op_{node.op}")(node)
        self._refs[node.id] = ref
        return ref

    def _op_leaf(self, node: Node) -> tuple[str, bool]:
        raise ValueError(f"program input {node.value!r} has no tensor")

    def _op_T(self, node: Node) -> tuple[str, bool]:
        var, t = self._ref(node.args[0])
        return (var, not t)

    def _op_chain(self, node: Node) -> tuple[str, bool]:
        return self._value(node.args)

    def _op_trace(self, node: Node) -> tuple[str, bool]:
        if node.id not in self._traces:  # (planned up front unless the trace is constant)
            self._traces[node.id] = self._products.plan_trace(node.args)
        plan = self._traces[node.id]
        if plan is None:
            x = self._use(self._value(node.args))
            return self._emit(f"torch.diagonal({x}, 0, -2, -1).sum(-1, keepdim=True)"
                              ".unsqueeze(-1)")
        rot, s = plan
        fs = list(node.args[rot:]) + list(node.args[:rot])
        a = self._value(fs[:s])
        var, t = self._value(fs[s:])
        word = self._word(fs[s:])
        b = (var, t if word == _flip(word) else not t)  # W₂ᵀ
        if a[1] and b[1]:  # Σ(a ⊙ b) = Σ(aᵀ ⊙ bᵀ)
            a, b = (a[0], False), (b[0], False)
        return self._emit(f"({self._use(a)} * {self._use(b)}).sum((-2, -1), keepdim=True)")

    def _op_esum(self, node: Node) -> tuple[str, bool]:
        return self._emit(f"{self._use(self._ref(node.args[0]))}.sum((-2, -1), keepdim=True)")

    def _op_amax(self, node: Node) -> tuple[str, bool]:
        return self._emit(f"{self._use(self._ref(node.args[0]))}.amax((-2, -1), keepdim=True)")

    def _op_einsum(self, node: Node) -> tuple[str, bool]:
        args = ", ".join(self._use(self._ref(x)) for x in node.args)
        tail = ".unsqueeze(-1)" if len(node.value.split("->")[1]) == 2 else ""
        return self._emit(f"torch.einsum({node.value!r}, {args}){tail}")

    def _op_fn(self, node: Node) -> tuple[str, bool]:
        return self._emit(f"torch.{node.value}({self._use(self._ref(node.args[0]))})")

    def _op_pow(self, node: Node) -> tuple[str, bool]:
        x, e = self._use(self._ref(node.args[0])), node.value
        special = {2.0: f"{x}.square()", -1.0: f"{x}.reciprocal()", 0.5: f"{x}.sqrt()"}
        return self._emit(special.get(e, f"{x} ** {e!r}"))

    def _op_mul(self, node: Node) -> tuple[str, bool]:
        number = 1.0
        num, den = [], []
        for f in node.args:
            if f.op == "num":
                number *= f.value
            elif f.op == "pow" and f.value == -1.0 and not f.const:
                den.append(self._use(self._ref(f.args[0])))
            else:
                num.append(self._use(self._ref(f)))
        expr = " * ".join(num) if num else "1.0"
        for d in den:
            expr = f"({expr}) / {d}" if num else f"{d}.reciprocal()"
            num = num or [expr]
        if number != 1.0:
            expr = f"({expr}) * {number!r}" if num or den else repr(number)
        return self._emit(expr)

    def _terms(self, node: Node) -> list[tuple[float, list[Node], Node]]:
        """A sum as terms c · Π scalars · core (core: one matrix or a scalar node)."""
        out = []
        for term in (node.args if node.op == "add" else (node,)):
            if term.op != "mul":
                out.append((1.0, [], term))
                continue
            c = math.prod(f.value for f in term.args if f.op == "num")
            rest = [f for f in term.args if f.op != "num"]
            mats = [f for f in rest if f.shape is not None]
            if len(mats) == 1:
                out.append((c, [f for f in rest if f.shape is None], mats[0]))
            elif len(rest) == 1:
                out.append((c, [], rest[0]))
            else:
                out.append((c, [], self.graph.mul(*rest)))
        return out

    def _scalar(self, scalars: list[Node], c: float = 1.0, scale: str | None = None
                ) -> tuple[str | None, float]:
        """Π scalars · c (· scale) as (an (S, 1, 1) variable or None, the number left over)."""
        ref = None
        if scalars:
            ref = self._use(self._ref(scalars[0] if len(scalars) == 1
                                      else self.graph.mul(*scalars)))
        if scale is not None:
            ref = scale if ref is None else self._once(f"{ref} * {scale}")
        if ref is not None and c != 1.0:
            ref, c = self._once(f"{ref} * {c!r}"), 1.0
        return ref, c

    def _once(self, expr: str) -> str:
        """A variable for ``expr``, emitted once (operands are never reassigned)."""
        if expr not in self._memo:
            self._memo[expr] = self._emit(expr)[0]
        return self._memo[expr]

    def _weighted_traces(self, terms: list) -> list:
        """Σᵢ cᵢ tr(aᵢ bᵢᵀ) where the aᵢ (bᵢ) are disjoint rows of one panel product P (P′):
        one Σ(P ⊙ P′ ⊙ w), w the per-row cᵢ. Returns the terms with such groups replaced."""
        groups: dict[tuple[str, str], list] = {}
        for term in terms:
            c, scalars, core = term
            plan = self._traces.get(core.id) if core.op == "trace" and not scalars else None
            if plan is None or core.id in self._refs:
                continue
            rot, s = plan
            fs = list(core.args[rot:]) + list(core.args[:rot])
            a = self._value(fs[:s])
            var, t = self._value(fs[s:])
            word = self._word(fs[s:])
            b = (var, t if word == _flip(word) else not t)
            ia, ib = (self._slice_info.get(x[0]) if not x[1] else None for x in (a, b))
            if ia is None or ib is None or ia[1:] != ib[1:]:
                continue
            key = tuple(sorted((ia[0], ib[0])))
            groups.setdefault(key, []).append((term, ia))
        out = list(terms)
        for (pa, pb), members in groups.items():
            rows = members[0][1][3]
            numbers, covered = [0.0] * rows, set()
            for (c, _, _), (_, a, b, _) in members:
                if covered & set(range(a, b)):
                    break
                covered |= set(range(a, b))
                numbers[a:b] = [c] * (b - a)
            else:
                if len(members) < 2:
                    continue
                ref = self._weighted_sum(pa, pb, numbers)
                for term, _ in members:
                    out.remove(term)
                out.append((1.0, [], ("ref", ref)))
        return out

    def _weighted_sum(self, pa: str, pb: str, numbers: list[float]) -> tuple[str, bool]:
        """Σ_ij P_ij P′_ij w_i (S, 1, 1): where P and P′ are stored alike (both contiguous or
        both transposed contiguous), one product into a buffer and one matrix-vector product
        with the weights laid out like the buffer; else the three elementwise ops."""
        ta, tb = self._bound.get(pa), self._bound.get(pb)
        if not (isinstance(ta, Tensor) and isinstance(tb, Tensor) and ta.shape == tb.shape
                and ta.stride() == tb.stride()
                and (ta.is_contiguous() or ta.mT.is_contiguous())):
            w = self._numbers(numbers)
            return self._emit(f"({pa} * {pb} * {w}).sum((-2, -1), keepdim=True)")
        flip = not ta.is_contiguous()
        seeds, rows, cols = ta.shape
        weights = torch.tensor(numbers, dtype=self.dtype, device=self.device)
        weights = weights.repeat(cols) if flip else weights.repeat_interleave(cols)
        store = torch.empty((ta.mT if flip else ta).shape, dtype=self.dtype, device=self.device)
        a = self._bind(None, ta.mT if flip else ta, self._var("wa"))[0]
        b = self._bind(None, tb.mT if flip else tb, self._var("wb"))[0]
        buf = self._bind(None, store, self._var("wp"))[0]
        flat = self._bind(None, store.view(seeds, 1, rows * cols), self._var("wf"))[0]
        col = self._bind(None, weights.view(1, -1, 1).expand(seeds, -1, 1), self._var("ww"))[0]
        self._lines.append(f"torch.mul({a}, {b}, out={buf})")
        # per seed (S, 1, R·C) @ (R·C, 1): a seed's sum does not depend on the batch (not one mm)
        return self._emit(f"_bmm({flat}, {col})")

    def _op_add(self, node: Node) -> tuple[str, bool]:
        terms = self._terms(node)
        if node.shape is None:
            terms = self._weighted_traces(terms)
        terms.sort(key=lambda t: t[0] != 1.0)  # a first term with c = 1 needs no scaling
        acc = None
        for c, scalars, core in terms:
            x = self._use(core[1] if isinstance(core, tuple) else self._ref(core))
            s, _ = self._scalar(scalars)
            if s is not None:
                x = f"{x} * {s}"
            if acc is None:
                acc = x if c == 1.0 else f"({x}) * {c!r}"
            elif c == 1.0:
                acc = f"{acc} + {x}"
            elif c == -1.0:
                acc = f"{acc} - {x}"
            else:
                acc = f"torch.add({acc}, {x}, alpha={c!r})"
        return self._emit(acc)

    def _into(self, node: Node, buffer: Tensor, name: str, scale: str | None = None) -> Any:
        """Write matrix ``node`` (times ``scale``) into ``buffer`` each step: a sum accumulates
        in place, its leaf products as one panel product (:meth:`_expand`, emitted with the
        other outputs' by :meth:`_expansions`), every other product straight into the buffer
        or added to it, a per-seed factor folded into the product's smaller operand. Emits
        the panel's stacked operand now; returns what emits the rest."""
        buf = self._bind(None, buffer, name)[0]
        terms = self._terms(node)
        matrix = [t for t in terms if t[2].shape is not None]
        terms = matrix + [t for t in terms if t[2].shape is None]
        written = self._expand(terms, buf, buffer, scale)
        return lambda: self._rest(terms, matrix, buf, scale, written)

    def _rest(self, terms: list, matrix: list, buf: str, scale: str | None,
              written: bool) -> None:
        """The terms of a sum left after its panel product (see :meth:`_into`)."""
        chains = [t for t in matrix if t in terms and t[2].op == "chain" and not t[2].const]
        if not terms:
            return
        first = min(chains, key=lambda t: (bool(t[1]), t[0] != 1.0)) if chains else terms[0]
        terms.remove(first)
        for i, (c, scalars, core) in enumerate([first, *terms], int(written)):
            s, c = self._scalar(scalars, c, scale)
            top = self._top(core) if core.op == "chain" and not core.const else None
            if top is not None:
                a, b, size_a, size_b = top
                a, b = self._use(a), self._use(b)
                factor = s if s is not None else (repr(c) if c != 1.0 and i == 0 else None)
                if factor is not None and min(size_a, size_b) < math.prod(core.shape):
                    if size_a <= size_b:
                        a = self._emit(f"{a} * {factor}")[0]
                    else:
                        b = self._emit(f"{b} * {factor}")[0]
                    s, c = None, 1.0
                if i == 0:
                    self._lines.append(f"_bmm({a}, {b}, out={buf})")
                    if s is not None:
                        self._lines.append(f"{buf}.mul_({s})")
                    elif c != 1.0:
                        self._lines.append(f"{buf}.mul_({c!r})")
                    continue
                x = self._emit(f"_bmm({a}, {b})", "t")[0]
            else:
                x = self._use(self._ref(core))
            if i == 0:
                self._lines.append(f"torch.mul({x}, {s}, out={buf})" if s is not None else
                                   f"torch.mul({x}, {c!r}, out={buf})" if c != 1.0 else
                                   f"{buf}.copy_({x})")
            elif s is not None:
                self._lines.append(f"{buf}.addcmul_({x}, {s})")
            elif c == 1.0:
                self._lines.append(f"{buf}.add_({x})")
            elif c == -1.0:
                self._lines.append(f"{buf}.sub_({x})")
            else:
                self._lines.append(f"{buf}.add_({x}, alpha={c!r})")


    def _expand(self, terms: list, buf: str, buffer: Tensor, scale: str | None) -> bool:
        """Σᵢ cᵢ sᵢ Mᵢ Nᵢ over the terms whose product starts with a plain leaf Mᵢ (n rows) as
        one matmul [M₁ | M₂ | ⋯] [c₁s₁N₁; c₂s₂N₂; ⋯] into ``buf`` (the panel of a contraction
        when one holds these leaves); those terms leave ``terms``. Whether it wrote ``buf``."""
        found = []
        for term in terms:
            c, scalars, core = term
            if core.op != "chain" or core.const or self._word(core.args) in self._words:
                continue
            left, right = self._products.split(core.args)
            if len(left) == 1 and not left[0][1] and left[0][0].op == "leaf":
                found.append((term, left[0][0], right))
        if len({m.id for _, m, _ in found}) < 2 or len({m.id for _, m, _ in found}) < len(found):
            return False
        ids = {m.id for _, m, _ in found}
        panel = next((p for p in self._panel_by.values() if ids <= p["members"]), None) \
            or self._panel([m for _, m, _ in found])
        cols = self._shape(found[0][2][-1])[1]
        row = panel.get("row")
        if row is not None and row.setdefault("cols", cols) == cols:
            if "stack" not in row:  # stored transposed, like the panel products it scales
                row["stack_t"] = torch.zeros(len(row["panels"]), self.seeds, cols,
                                             panel["cols"], dtype=self.dtype,
                                             device=self.device)
                row["stack"] = row["stack_t"].mT
            stack = row["stack"][row["panels"].index(panel)]
        else:
            row = None
            stack = torch.zeros(self.seeds, panel["cols"], cols, dtype=self.dtype,
                                device=self.device)
        stack_var = self._bind(None, stack, self._var("stack"))[0]
        parts = []
        for term, m, right in found:
            terms.remove(term)
            c, scalars, _ = term
            parts.append((c, self._scalar(scalars, 1.0, scale)[0], panel["at"][m.id],
                          self._value(right)))
        whole = self._whole(parts, panel["cols"])
        if whole is not None:  # the parts are the rows of one product: one scaled copy
            of, numbers = whole
            factor = self._numbers(numbers)
            if parts[0][1] is not None:
                factor = self._once(f"{parts[0][1]} * {factor}")
            self._lines.append(f"torch.mul({of}, {factor}, out={stack_var})")
        for c, s, (a, b), ref in parts if whole is None else ():
            if s is not None and c != 1.0:
                s, c = self._once(f"{s} * {c!r}"), 1.0
            part = self._bind(None, stack[:, a:b], self._var("part"))[0]
            x = self._use(ref)
            self._lines.append(f"torch.mul({x}, {s}, out={part})" if s is not None else
                               f"torch.mul({x}, {c!r}, out={part})" if c != 1.0 else
                               f"{part}.copy_({x})")
        self._pending.append({"panel": panel, "row": row, "stack": stack_var, "buf": buf,
                              "buffer": buffer, "n": found[0][1].shape[0], "cols": cols})
        return True

    def _expansions(self) -> None:
        """Emit the pending panel products: one matmul for a row of panels whose outputs lie
        one after another in memory (e.g. the gradients of X and Y), else one each."""
        done: set[int] = set()
        for job in self._pending:
            row = job["row"]
            if row is None or id(job) in done:
                continue
            members = [j for j in self._pending if j["row"] is row]
            order = [row["panels"].index(j["panel"]) for j in members]
            if sorted(order) != list(range(len(row["panels"]))) or len(set(order)) != len(order):
                continue
            members = [members[order.index(i)] for i in range(len(order))]
            stacked = _consecutive([j["buffer"] for j in members])
            transposed = stacked is None
            if transposed:  # outputs stored transposed: (P S)ᵀ = Sᵀ Pᵀ
                stacked = _consecutive([j["buffer"].mT for j in members])
            if stacked is None:
                continue
            for j in members:
                self._fill(j["panel"])
                done.add(id(j))
            out = self._bind(None, stacked.flatten(0, 1), self._var("gout"))[0]
            panels = self._bind(None, row["buffer"].flatten(0, 1), self._var("rowp"))[0]
            stacks = self._bind(None, row["stack_t"].flatten(0, 1), self._var("rows"))[0]
            self._lines.append(f"_bmm({stacks}, {panels}, out={out})" if transposed else
                               f"_bmm({panels}.mT, {stacks}.mT, out={out})")
            self.macs += len(members) * self.seeds * job["n"] * job["panel"]["cols"] * job["cols"]
        for job in self._pending:
            if id(job) not in done:
                panel_var = self._fill(job["panel"])
                if not job["buffer"].is_contiguous() and job["buffer"].mT.is_contiguous():
                    self._lines.append(f"_bmm({job['stack']}.mT, {panel_var}, "
                                       f"out={job['buf']}.mT)")
                else:
                    self._lines.append(f"_bmm({panel_var}.mT, {job['stack']}, "
                                       f"out={job['buf']})")
                self.macs += self.seeds * job["n"] * job["panel"]["cols"] * job["cols"]


    def _numbers(self, numbers: list[float]) -> str:
        """A bound (1, rows, 1) constant of per-row numbers (one per distinct list)."""
        key = ("numbers", tuple(numbers))
        if key not in self._memo:
            value = torch.tensor(numbers, dtype=self.dtype, device=self.device).view(1, -1, 1)
            self._memo[key] = self._bind(None, value)[0]
        return self._memo[key]

    def _whole(self, parts: list, rows: int) -> tuple[str, list[float]] | None:
        """(product, per-row numbers) when the stacked parts cᵢ·s·Nᵢ are, row for row, one
        panel product times s (one per-seed factor for all, numbers cᵢ per block)."""
        info = [self._slice_info.get(ref[0]) if not ref[1] else None for _, _, _, ref in parts]
        if any(i is None for i in info) or len({i[0] for i in info}) != 1 \
                or info[0][3] != rows or len({s for _, s, _, _ in parts}) != 1:
            return None
        numbers = [0.0] * rows
        for (c, _, (a, b), _), (_, a2, b2, _) in zip(parts, info, strict=True):
            if (a, b) != (a2, b2):
                return None
            numbers[a:b] = [c] * (b - a)
        return info[0][0], numbers


_PRODUCT = re.compile(r"(\w+) = _bmm\((\w+(?:\.mT)?), (\w+(?:\.mT)?)\)")
_OFFSET = re.compile(r"(\w+) = (\w+) \+ (\w+)")


def _fuse_offsets(lines: list[str], returned: str) -> list[str]:
    """``v = _bmm(a, b)`` followed by ``w = c + v`` (v used nowhere else, nor ``returned``)
    as one ``w = torch.baddbmm(c, a, b)``: c + a·b in one op (e.g. L = L_ref + Σ P ⊙ P′ ⊙ w)."""
    out: list[str] = []
    for line in lines:
        add = _OFFSET.fullmatch(line)
        prev = _PRODUCT.fullmatch(out[-1]) if out and add else None
        if prev is not None and prev.group(1) in (add.group(2), add.group(3)) \
                and add.group(2) != add.group(3) \
                and not any(re.search(rf"\b{prev.group(1)}\b", x) for x in [*lines, returned]
                            if x not in (line, out[-1])):
            c = add.group(3) if add.group(2) == prev.group(1) else add.group(2)
            out[-1] = f"{add.group(1)} = torch.baddbmm({c}, {prev.group(2)}, {prev.group(3)})"
            continue
        out.append(line)
    return out


def _consecutive(tensors: Sequence[Tensor | None]) -> Tensor | None:
    """The tensors as one (m, ...) view when they are contiguous, of one shape and dtype, and
    lie one after another in one storage; else None."""
    if any(t is None for t in tensors) or not tensors:
        return None
    first = tensors[0]
    step = first.numel() * first.element_size()
    for i, t in enumerate(tensors):
        if t.shape != first.shape or t.dtype != first.dtype or not t.is_contiguous() \
                or t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() \
                or t.data_ptr() != first.data_ptr() + i * step:
            return None
    return first.as_strided((len(tensors), *first.shape),
                            (first.numel(), *first.stride()))


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)
