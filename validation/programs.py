"""Programs: run the PyTorch source that :mod:`dynamics.symbolic` generates from a model's loss.

:func:`dynamics.symbolic.training_program` prints a model's loss and gradients as PyTorch source
(:class:`dynamics.matexpr.TorchChainPrinter`): every matrix a tensor (S, rows, cols) batched over
seeds, every scalar one of shape (S, 1, 1), and three helpers this module supplies —

    _chain(m₁, …, m_k)   m₁ m₂ ⋯ m_k, multiplied in the cheapest order for the shapes (the
                         ``numpy.linalg.multi_dot`` dynamic programme; the order is memoised
                         per tuple of shapes, two factors are just ``a @ b``)
    _trace(m₁, …, m_k)   tr(m₁ ⋯ m_k) = Σ((m₁ ⋯ m_{k−1}) ⊙ m_kᵀ) over the last two axes, (S, 1, 1)
    _entry_sum(x)        Σ of the entries of each seed's matrix, (S, 1, 1)

Two ways to run it, with one meaning:

* :func:`function` executes the source as written, with the helpers above (the reference).
* :class:`Graph` and :class:`Plan` build an expression graph from the program's *terms* — the
  same SymPy expressions, as a node list (:func:`dynamics.terms.dag`, stored with the source in
  the symbolic cache; no source is re-executed) — then compile that graph into one flat
  function per run (once per program and run: ``Plan.compiled`` counts compilations):
  subexpressions that depend only on constants (and λ) are evaluated once, in float64, before
  the run (e.g. C's softmax for the cross-entropy, λ + 1, AᵀA where a chain needs it); a λ that
  is 0 for every seed drops out; every matrix chain and trace of the whole program is split into
  binary products (the planning, :mod:`validation.planning`) by the ``multi_dot`` dynamic
  programme with products that another chain already needs (or its transpose) costing
  nothing, so e.g. the factorization's four gradient chains and two loss traces share the
  four contractions AᵀX, BᵀY, XᵀX, YᵀY; traces are taken at their cheapest rotation and split,
  Σ(W₁ ⊙ W₂ᵀ); gradient sums accumulate in place into the caller's buffers. The result is
  ordinary Python over torch calls (``Plan.source``), so a step costs a handful of batched
  matmuls and small in-place ops with no per-step planning; on the CPU, products into the
  plan's own buffers run as ``numpy.matmul`` on views of the same memory (the same BLAS gemm
  per seed with less per-matrix overhead than ``torch.bmm`` on these small matrices).

:func:`objective` builds the graph of a model's training objective — L − L(0) and
g_W = ∂L/∂W + λW for the MSE-type models (the ``train`` program), or for a cross-entropy model
Z (``logits``), z = Z − max Z and c = C − max C per seed, (L, E) (``ce``) and g_W (``grad``),
C = the model's target logits computed once from the constants.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynamics import symbolic
from dynamics.errors import ModelError
from dynamics.model import Model

from . import planning
from .planning import Products, Word
from .planning import flip as _flip
from .planning import flip_factors as _flip_factors

__all__ = ["Graph", "Node", "Plan", "function", "group_losses", "namespace", "objective"]

F64 = torch.float64


# --------------------------------------------------------------------------- eager helpers


@functools.lru_cache(maxsize=4096)
def _order(dims: tuple[int, ...]) -> tuple[Any, int]:
    """Cheapest parenthesisation of a chain with dimensions ``dims`` (d₀ x d₁, d₁ x d₂, ...):
    (tree, multiply-adds); a tree is a factor index or a pair of trees."""
    m = len(dims) - 1
    cost = [[0] * m for _ in range(m)]
    split = [[0] * m for _ in range(m)]
    for length in range(2, m + 1):
        for i in range(m - length + 1):
            j = i + length - 1
            cost[i][j] = math.inf
            for s in range(i, j):
                c = cost[i][s] + cost[s + 1][j] + dims[i] * dims[s + 1] * dims[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, s

    def tree(i: int, j: int) -> Any:
        return i if i == j else (tree(i, split[i][j]), tree(split[i][j] + 1, j))

    return tree(0, m - 1), cost[0][m - 1]


def _chain(*mats: Tensor) -> Tensor:
    """m₁ m₂ ⋯ m_k of (S, ·, ·) tensors in the cheapest order (memoised per shapes)."""
    if len(mats) == 1:
        return mats[0]
    if len(mats) == 2:
        return mats[0] @ mats[1]
    tree, _ = _order((mats[0].shape[-2], *(m.shape[-1] for m in mats)))

    def run(t: Any) -> Tensor:
        return mats[t] if isinstance(t, int) else run(t[0]) @ run(t[1])

    return run(tree)


def _trace(*mats: Tensor) -> Tensor:
    """tr(m₁ ⋯ m_k) per seed, (S, 1, 1): Σ((m₁ ⋯ m_{k−1}) ⊙ m_kᵀ); one argument: Σ diag."""
    if len(mats) == 1:
        return torch.diagonal(mats[0], 0, -2, -1).sum(-1, keepdim=True).unsqueeze(-1)
    return (_chain(*mats[:-1]) * mats[-1].mT).sum((-2, -1), keepdim=True)


def _entry_sum(x: Tensor) -> Tensor:
    """Σ of the entries of each seed's matrix, (S, 1, 1)."""
    return x.sum((-2, -1), keepdim=True)


def namespace() -> dict[str, Any]:
    """The globals generated source runs in: the helpers and ``torch``."""
    return {"_chain": _chain, "_trace": _trace, "_entry_sum": _entry_sum, "torch": torch}


def _load(source: str, names: dict[str, Any]) -> Any:
    exec(compile(source, "<scurve.training-program>", "exec"), names)
    return names["_lambdifygenerated"]


def function(program: Mapping[str, Any]) -> Any:
    """A generated program (``{"args", "outs", "source"}``) as a callable:
    ``values`` by argument name -> ``{output name: tensor}``, run as written (eager)."""
    fn = _load(program["source"], namespace())
    args, outs = tuple(program["args"]), tuple(program["outs"])

    def call(values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(zip(outs, fn(*(values[a] for a in args)), strict=True))

    return call


# --------------------------------------------------------------------------- graph


class Node:
    """One value of a program: a matrix (``shape`` = (rows, cols)) or a scalar (``None``).

    ``op`` is one of leaf, num, add, mul, pow, fn, T, chain, trace, esum, amax; ``args`` its
    operands (nodes; for chain/trace a tuple of (node, transposed) factors). ``const``: depends
    on constants only (evaluated once before a run).
    """

    __slots__ = ("args", "const", "id", "op", "shape", "value")

    def __init__(self, id: int, op: str, args: tuple, shape: tuple[int, int] | None,
                 const: bool, value: Any = None):
        self.id, self.op, self.args, self.shape, self.const = id, op, args, shape, const
        self.value = value  # leaf: its name; num: the number

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.op}, shape={self.shape})"


def _unknown(op: str) -> Node:
    raise ValueError(f"programs: unknown term operation {op!r}")


def _broadcast(*shapes: tuple[int, int] | None) -> tuple[int, int] | None:
    mats = {s for s in shapes if s is not None}
    if len(mats) > 1:
        raise ValueError(f"elementwise operation on matrices of shapes {sorted(mats)}")
    return mats.pop() if mats else None


class Graph:
    """An expression graph with structural sharing (equal subexpressions are one node)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._keys: dict[tuple, Node] = {}
        self.inputs: dict[str, Node] = {}
        self.constants: dict[str, tuple[Node, Tensor]] = {}  # name -> (node, float64 value)

    # ------------------------------------------------------------------ building

    def _node(self, op: str, args: tuple, shape, const: bool, value: Any = None,
              key: tuple | None = None) -> Node:
        key = key or (op, tuple(a.id if isinstance(a, Node) else
                                (a[0].id, a[1]) if isinstance(a, tuple) else a for a in args),
                      value)
        node = self._keys.get(key)
        if node is None:
            node = Node(len(self.nodes), op, args, shape, const, value)
            self.nodes.append(node)
            self._keys[key] = node
        return node

    def signature(self) -> tuple:
        """The structure of the graph (every node's operation, operands, shape and value; a
        constant by its name, not its value): equal for the same model, shapes and options,
        the key under which a plan's product choices are reused."""
        return tuple((n.op, tuple(a.id if isinstance(a, Node) else (a[0].id, a[1])
                                  for a in n.args), n.shape, n.const, n.value)
                     for n in self.nodes)

    def input(self, name: str, shape: tuple[int, int]) -> Node:
        """A learned matrix (varies every step), bound to a tensor when a :class:`Plan` runs."""
        node = self._node("leaf", (), tuple(shape), False, name)
        self.inputs[name] = node
        return node

    def constant(self, name: str, value: Tensor) -> Node:
        """A fixed value (S, rows, cols), or a scalar (S, 1, 1) when ``value.ndim`` is 1."""
        value = value.to(F64)
        shape = None if value.ndim == 1 else tuple(value.shape[1:])
        node = self._node("leaf", (), shape, True, "const:" + name)
        self.constants[name] = (node, value.view(-1, 1, 1) if shape is None else value)
        return node

    def num(self, x: float) -> Node:
        if isinstance(x, Node):
            return x
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            raise ValueError(f"unexpected operand {x!r} in a generated program")
        return self._node("num", (), None, True, float(x))

    def neg(self, x: Node) -> Node:
        return self.mul(self.num(-1.0), x)

    def add(self, *xs: Node) -> Node:
        terms: list[Node] = []
        for x in xs:
            terms += list(x.args) if x.op == "add" else [x]
        number = sum(t.value for t in terms if t.op == "num")
        consts = [t for t in terms if t.const and t.op != "num"]
        rest = [t for t in terms if not t.const]
        if len(consts) > 1 or (consts and number):
            consts = [self._make("add", consts + ([self.num(number)] if number else []))]
        elif number:
            consts = [self.num(number)]
        terms = consts + rest
        if not terms:
            return self.num(0.0)
        return terms[0] if len(terms) == 1 else self._make("add", terms)

    def mul(self, *xs: Node) -> Node:
        factors: list[Node] = []
        for x in xs:
            factors += list(x.args) if x.op == "mul" else [x]
        number = math.prod(f.value for f in factors if f.op == "num")
        if number == 0:
            return self.num(0.0)
        consts = [f for f in factors if f.const and f.op != "num"]
        rest = [f for f in factors if not f.const]
        if len(consts) > 1:
            consts = [self._make("mul", consts)]
        factors = consts + rest
        if not factors:
            return self.num(number)
        if number != 1:
            if len(factors) == 1 and factors[0].const:
                return self._make("mul", [self.num(number), factors[0]])
            factors = [self.num(number), *factors]
        return factors[0] if len(factors) == 1 else self._make("mul", factors)

    def _make(self, op: str, args: list[Node]) -> Node:
        args = sorted(args, key=lambda a: a.id)
        shape = _broadcast(*(a.shape for a in args))
        return self._node(op, tuple(args), shape, all(a.const for a in args))

    def pow(self, x: Node, e: float) -> Node:
        if x.op == "num":
            return self.num(x.value ** e)
        if e == 1:
            return x
        return self._node("pow", (x,), x.shape, x.const, float(e))

    def fn(self, name: str, x: Node) -> Node:
        if x.op == "num":
            return self.num(float(getattr(torch, name)(torch.tensor(x.value, dtype=F64))))
        return self._node("fn", (x,), x.shape, x.const, name)

    def transpose(self, x: Node) -> Node:
        if x.shape is None:
            return x
        if x.op == "T":
            return x.args[0]
        if x.op == "chain":
            return self._chain_of(tuple((f, not t) for f, t in reversed(x.args)))
        return self._node("T", (x,), (x.shape[1], x.shape[0]), x.const)

    @staticmethod
    def _factors(xs: Sequence[Node]) -> list[tuple[Node, bool]]:
        out: list[tuple[Node, bool]] = []
        for x in xs:
            if x.op == "chain":
                out += list(x.args)
            elif x.op == "T":
                out.append((x.args[0], True))
            else:
                out.append((x, False))
        return out

    def _chain_of(self, factors: tuple[tuple[Node, bool], ...]) -> Node:
        if len(factors) == 1:
            f, t = factors[0]
            return self.transpose(f) if t else f
        shapes = [(f.shape[::-1] if t else f.shape) for f, t in factors]
        for a, b in itertools.pairwise(shapes):
            if a[1] != b[0]:
                raise ValueError(f"chain of mismatched shapes {shapes}")
        return self._node("chain", factors, (shapes[0][0], shapes[-1][1]),
                          all(f.const for f, _ in factors))

    def chain(self, *xs: Node) -> Node:
        scalars = [x for x in xs if x.shape is None]
        mats = [x for x in xs if x.shape is not None]
        body = self._chain_of(tuple(self._factors(mats)))
        return self.mul(*scalars, body) if scalars else body

    def trace(self, *xs: Node) -> Node:
        if len(xs) == 1 and xs[0].op == "add":  # tr is linear
            return self.add(*(self.trace(t) for t in xs[0].args))
        if len(xs) == 1 and xs[0].op == "mul" and sum(f.shape is not None
                                                       for f in xs[0].args) == 1:
            scalars = [f for f in xs[0].args if f.shape is None]
            (mat,) = [f for f in xs[0].args if f.shape is not None]
            return self.mul(*scalars, self.trace(mat))
        factors = tuple(self._factors(xs))
        shapes = [(f.shape[::-1] if t else f.shape) for f, t in factors]
        if shapes[0][0] != shapes[-1][1]:
            raise ValueError(f"trace of a non-square product {shapes}")
        return self._node("trace", factors, None, all(f.const for f, _ in factors))

    def entry_sum(self, x: Node) -> Node:
        return self._node("esum", (x,), None, x.const)

    def amax(self, x: Node) -> Node:
        """max over each seed's entries, (S, 1, 1)."""
        return self._node("amax", (x,), None, x.const)

    def einsum(self, spec: str, *xs: Node, shape: tuple[int, int]) -> Node:
        """``torch.einsum(spec, *xs)`` (batched contraction, e.g. over per-sample constants),
        a (S, rows, cols) value of ``shape``; a result (S, rows) gets a unit axis (S, rows, 1)."""
        return self._node("einsum", xs, tuple(shape), all(x.const for x in xs), spec)

    def call(self, program: Mapping[str, Any], args: Mapping[str, Node]) -> dict[str, Node]:
        """The outputs of derived ``program`` on nodes ``args`` (by argument name), built from
        its terms (:func:`dynamics.terms.dag`, the SymPy expressions as a node list): output
        nodes by name."""
        terms = program["terms"]
        if "error" in terms:
            raise ModelError(f"programs: the trainer cannot run this program: {terms['error']}")
        built: list[Node] = []
        for op, value, children in terms["nodes"]:
            xs = [built[i] for i in children]
            built.append(
                args[value] if op == "arg" else
                self.num(value) if op == "num" else
                self.add(*xs) if op == "add" else
                self.mul(*xs) if op == "mul" else
                self.chain(*xs) if op == "chain" else
                self.transpose(xs[0]) if op == "T" else
                self.trace(*xs) if op == "trace" else
                self.pow(xs[0], value) if op == "pow" else
                self.fn(value, xs[0]) if op == "fn" else
                self.entry_sum(xs[0]) if op == "esum" else
                _unknown(op))
        return {name: built[i] for name, i in zip(terms["outs"], terms["roots"], strict=True)}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, node: Node, values: Mapping[int, Tensor]) -> Tensor:
        """Eager value of ``node`` (the helpers' semantics); ``values`` by leaf node id."""
        memo: dict[int, Tensor] = dict(values)

        def ev(x: Node) -> Tensor | float:
            if x.id in memo:
                return memo[x.id]
            a = [ev(y) for y in x.args] if x.op not in ("chain", "trace") else \
                [ev(f).mT if t else ev(f) for f, t in x.args]
            out = {
                "num": lambda: x.value,
                "add": lambda: functools.reduce(lambda p, q: p + q, a),
                "mul": lambda: functools.reduce(lambda p, q: p * q, a),
                "pow": lambda: a[0] ** x.value,
                "fn": lambda: getattr(torch, x.value)(a[0]),
                "T": lambda: a[0].mT,
                "chain": lambda: _chain(*a),
                "trace": lambda: _trace(*a),
                "esum": lambda: _entry_sum(a[0]),
                "amax": lambda: a[0].amax((-2, -1), keepdim=True),
                "einsum": lambda: _einsum(x.value, *a),
            }[x.op]()
            memo[x.id] = out
            return out

        return ev(node)


# --------------------------------------------------------------------------- plan


_HOST_MNK = 4 * 65536  # OpenBLAS multiplies m x k @ k x n on one thread up to m·k·n = this
_PLANNED: dict[tuple, tuple] = {}  # graph structure -> planned products (Products.snapshot)


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
        if key in _PLANNED:  # the same program structure planned before (another run)
            self._products.load(_PLANNED[key], graph.nodes)
        else:
            for node in order:  # choose every product first, so that later chains can reuse
                if node.op == "chain" and not node.const:
                    self._products.plan(node.args)
                elif node.op == "trace" and not node.const:
                    self._traces[node.id] = self._products.plan_trace(node.args)
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


# --------------------------------------------------------------------------- objective


def objective(model: Model, shapes: Mapping[str, tuple[int, int]],
              constants: Mapping[str, Tensor], lam: Tensor | None,
              gradients: bool = True, offset: Tensor | None = None,
              varying: Sequence[str] = ()) -> tuple[Graph, dict[str, Node]]:
    """The graph of ``model``'s training objective for S seeds.

    Args:
        shapes: (rows, cols) of each learned matrix (the inputs), and of each ``varying``
            constant.
        constants: each constant (S, rows, cols), float64.
        lam: (S,) coupled weight decay λ, or None (λ = 0: its terms drop out).
        gradients: also the gradients g_W = ∂L/∂W + λW (outputs by learned name).
        offset: (S,) L(0) = L_ref of an MSE-type model, added to its L.
        varying: constants that are inputs of the step instead (set by the caller before each
            call, not folded): a grouped model's D = diag(∂F/∂ℓ) under a group objective.

    Returns ``(graph, outputs)``: output ``L`` is L − L(0) for MSE-type models (plus
    ``offset``) and the whole loss KL(softmax(vec C) ‖ softmax(vec Z)) for a cross-entropy
    model (``offset`` unused).
    """
    if model.per_sample:
        return _per_sample_objective(model, shapes, constants, lam, gradients)
    programs = symbolic.training_program(model).programs
    g = Graph()
    args: dict[str, Node] = {name: g.input(name, shapes[name]) for name in model.learned_names}
    for name in model.constant_names:
        args[name] = g.input(name, shapes[name]) if name in varying else \
            g.constant(name, constants[name])
    args["lam"] = g.num(0.0) if lam is None or not bool(torch.any(lam != 0)) else \
        g.constant("lam", lam)
    if not model.cross_entropy():
        outs = g.call(programs["train"], args)
        if offset is not None:
            outs["L"] = g.add(g.constant("L_ref", offset), outs["L"])
        return g, outs if gradients else {"L": outs["L"]}
    z = g.call(programs["logits"], args)["Z"]
    c = g.constant("C", _target_logits(model, constants, shapes))
    ce = g.call(programs["ce"], {"z": g.add(z, g.neg(g.amax(z))),
                                 "c": g.add(c, g.neg(g.amax(c)))})
    outs = {"L": ce["L"]}
    if gradients:
        outs |= g.call(programs["grad"], args | {"E": ce["E"]})
    return g, outs


def _per_sample_objective(model: Model, shapes: Mapping[str, tuple[int, int]],
                          constants: Mapping[str, Tensor], lam: Tensor | None,
                          gradients: bool) -> tuple[Graph, dict[str, Node]]:
    """The graph of a per-sample model (:mod:`dynamics.persample`): r_n = Σ_k ⟨X_{k,n}, F_k⟩
    as batched contractions (einsum over the samples; a per-sample constant whose F_k holds no
    learned matrix folds into a fixed offset), L = ½Σ_n r_n² (the whole loss: no L(0) offset),
    g_W = ∇_W Σ_k tr(R_kᵀ F_k) + λW at R_k = Σ_n r_n X_{k,n}."""
    programs = symbolic.training_program(model).programs
    g = Graph()
    args: dict[str, Node] = {name: g.input(name, shapes[name]) for name in model.learned_names}
    per = [x.name for x in model.per_sample]
    for name in model.constant_names:
        if name not in per:
            args[name] = g.constant(name, constants[name])
    args["lam"] = g.num(0.0) if lam is None or not bool(torch.any(lam != 0)) else \
        g.constant("lam", lam)
    fs = g.call(programs["F"], args)
    first = constants[per[0]]
    seeds, samples = first.shape[0], first.shape[1]
    fixed = torch.zeros(seeds, samples, 1, dtype=F64, device=first.device)
    terms = []
    host = {k: v.detach().cpu().numpy() for k, v in constants.items()}
    zero = {k: np.zeros(shape) for k, shape in shapes.items()}
    full = symbolic.full_flow(model)
    for name in per:
        x = constants[name].to(F64)
        if name in fs:
            terms.append((name, g.constant(name, x), fs[name]))
            continue  # F_k free of the learned matrices: a fixed offset Σ⟨X_{k,n}, F_k⟩
        value = np.array([np.broadcast_to(full.fixed_part(
            {k: v[s] for k, v in host.items()} | zero, name), x.shape[2:])
            for s in range(seeds)])
        fixed = fixed + x.reshape(seeds, samples, -1) @ torch.tensor(
            value.reshape(seeds, -1, 1), dtype=F64, device=x.device)
    r = g.add(*(g.einsum("snij,sij->sn", node, f, shape=(samples, 1)) for _, node, f in terms),
              g.constant("r_fixed", fixed))
    outs: dict[str, Node] = {"L": g.mul(g.num(0.5), g.entry_sum(g.pow(r, 2.0)))}
    if gradients:
        rs = {f"R_{name}": g.num(0.0) for name in per}
        rs |= {f"R_{name}": g.einsum("snij,snk->sij", node, r, shape=f.shape)
               for name, node, f in terms}
        outs |= g.call(programs["grad"], args | rs)
    return g, outs


def _einsum(spec: str, *xs: Tensor) -> Tensor:
    out = torch.einsum(spec, *xs)
    return out.unsqueeze(-1) if out.ndim == 2 else out


def group_losses(model: Model, shapes: Mapping[str, tuple[int, int]],
                 constants: Mapping[str, Tensor]) -> tuple[Graph, dict[str, Node]]:
    """The graph of a grouped model's E = ∂L/∂D (S, G, G), whose diagonal is ℓ_g per seed, from
    :func:`dynamics.symbolic.training_program`'s ``groups`` program."""
    program = symbolic.training_program(model).programs["groups"]
    g = Graph()
    args: dict[str, Node] = {name: g.input(name, shapes[name]) for name in model.learned_names}
    for name in model.constant_names:
        args[name] = g.constant(name, constants[name])
    return g, g.call(program, args)


def _target_logits(model: Model, constants: Mapping[str, Tensor],
                   shapes: Mapping[str, tuple[int, int]]) -> Tensor:
    """C of a cross-entropy model per seed, (S, ·, ·) float64, by the derived numpy program."""
    flow = symbolic.full_flow(model)
    host = {k: v.detach().cpu().numpy() for k, v in constants.items()}
    seeds = next(iter(host.values())).shape[0]
    out = []
    for s in range(seeds):
        values = {k: v[s] for k, v in host.items()}
        values |= {k: np.zeros(shape) for k, shape in shapes.items()}
        out.append(flow.logits(values)[1])
    device = next(iter(constants.values())).device
    return torch.tensor(np.array(out), dtype=F64, device=device)
