"""The graph of a derived program: eager helpers, :class:`Graph`, and the model objectives.

:func:`dynamics.symbolic.training_program` prints a model's loss and gradients as PyTorch source
(:class:`dynamics.matexpr.TorchChainPrinter`) and stores beside it the program's *terms* — the
same SymPy expressions as a node list (:func:`dynamics.terms.dag`). Every matrix is a tensor
(S, rows, cols) batched over seeds, every scalar one of shape (S, 1, 1). Two ways to run it,
with one meaning:

* :func:`function` executes the source as written, with three helpers (the reference) —

    _chain(m₁, …, m_k)   m₁ m₂ ⋯ m_k, multiplied in the cheapest order for the shapes (the
                         ``numpy.linalg.multi_dot`` dynamic programme; the order is memoised
                         per tuple of shapes, two factors are just ``a @ b``)
    _trace(m₁, …, m_k)   tr(m₁ ⋯ m_k) = Σ((m₁ ⋯ m_{k−1}) ⊙ m_kᵀ) over the last two axes, (S, 1, 1)
    _entry_sum(x)        Σ of the entries of each seed's matrix, (S, 1, 1)

* :meth:`Graph.call` builds an expression graph from the terms (structural sharing: equal
  subexpressions are one node; constants folded where they meet), which
  :class:`validation.programs.Plan` compiles into one step.

:func:`objective` builds the graph of a model's training objective — L − L(0) and
g_W = ∂L/∂W + λW for the MSE-type models (the ``train`` program), or for a cross-entropy model
Z (``logits``), z = Z − max Z and c = C − max C per seed, (L, E) (``ce``) and g_W (``grad``),
C = the model's target logits computed once from the constants; :func:`group_losses` the graph
of a grouped model's E = ∂L/∂D.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynamics import symbolic
from dynamics.errors import ModelError
from dynamics.model import Model

__all__ = ["Graph", "Node", "function", "group_losses", "namespace", "objective"]

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
