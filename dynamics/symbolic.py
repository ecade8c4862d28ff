"""Symbolic dynamics: SymPy derives every flow and map from the loss, written once.

Each loss is one SymPy expression over ``MatrixSymbol`` targets T_F (n×r) and learned factors
W_F (n×k) with symbolic n, r, k (DESIGN §3):

* ``vector``:        L = ½‖a − x‖²  (a, x: n×1);
* ``factorization``: L = ½ tr[(ABᵀ − XYᵀ)ᵀ(ABᵀ − XYᵀ)]  (targets A, B; learned X, Y);
* ``attention``:     L = ½[‖M‖²‖N‖² − 2⟨M,M̃⟩⟨N,Ñ⟩ + ‖M̃‖²‖Ñ‖²], M = Q⋆K⋆ᵀ, N = O⋆V⋆ᵀ (targets),
  M̃ = QKᵀ, Ñ = OVᵀ (learned), ⟨A,B⟩ = tr(AᵀB).

Weight decay adds ½λ Σ_F ‖W_F‖². From these SymPy derives, in continuous time t (a gradient
step of rate η advances t by η, DESIGN §2):

1. :func:`full_flow` — dW_F/dt = −g_F with g_F = ∂L/∂W_F + λW_F (``sp.diff`` term by term,
   :func:`dynamics.matexpr.termwise_gradient`); with ``modified=True`` the first-order modified
   equation dθ/dt = −g − (η/2) D(g)[g], D(g)[g] = ∇²(L + ½λ‖θ‖²) g the directional derivative
   of the gradient along itself (product rule over the expression tree).
2. :func:`reduced_flow` — the same in the order parameters P_F = T_FᵀW_F (r×k), U_F = W_FᵀW_F
   (k×k), constants G_F = T_FᵀT_F: dP_F/dt = T_Fᵀ dW_F/dt, dU_F/dt = (dW_F/dt)ᵀW_F + W_Fᵀ dW_F/dt,
   expanded and contracted pairwise (:class:`dynamics.matexpr.Contraction`); L reduces alike.
3. :func:`reduced_gd` — one step of full-batch gradient descent with torch.optim.SGD semantics
   (b' = μb + g, b = g at the first step; W' = W − ηb'), exactly, in the order parameters:
   P' = Tᵀ W', U' = W'ᵀW'; with momentum the velocity family M_F = b adds R_F = T_FᵀM_F,
   S_F = W_FᵀM_F, N_F = M_FᵀM_F, which close as well.

The symmetric outputs (U, N and dU/dt) are symmetrised exactly, ½(E + Eᵀ): fed a U with a
rounding-level antisymmetric part, the derived polynomials amplify it (see ``_Reduced._run``).

Cross-entropy (factorization only, full flow): L = Σ_j p_C,j (log p_C,j − log softmax(z)_j),
p_C = softmax(c), z = vec(XYᵀ), c = vec(ABᵀ). SymPy's matrix calculus cannot differentiate
softmax (it returns 0 for the log of a trace), so the derivation has two honest steps:
(i) ∂L/∂z_i by ``sp.diff`` of the indexed sum above (``IndexedBase``, symbolic length m),
evaluated and tidied to softmax(z)_i − softmax(c)_i; (ii) the matrix chain rule through
Z = XYᵀ by ``sp.diff`` of the linearisation tr(EᵀXYᵀ) with E = ∂L/∂Z held fixed: ∂L/∂X = EY,
∂L/∂Y = EᵀX. Step (i) is compiled elementwise (indexed sums become ``numpy.sum``); since L
and ∂L/∂z are invariant under z → z + const, z and c are shifted by their maxima first.

Every result comes as LaTeX (``.latex()``) and as NumPy code from ``sp.lambdify`` (``cse=True``,
:class:`dynamics.matexpr.MultiDotPrinter`: matrix chains via ``numpy.linalg.multi_dot``, so
no n×n matrix is formed for the MSE losses). Derivations are cached in memory and on disk in
``$SCURVE_CACHE`` (default ``~/.cache/scurve/symbolic``) as JSON holding the generated source
and LaTeX, keyed by a hash of the loss's ``srepr``, the derivation kind and the code version
(a hash of this module's and :mod:`dynamics.matexpr`'s source and the SymPy version), written
atomically. The cached source is executed on load (trust the cache directory like any bytecode
cache). ``.derived`` tells whether this process derived the object or loaded it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.matrices.expressions import MatAdd, MatMul, MatrixExpr, MatrixSymbol, Trace, Transpose

from . import matexpr
from .matexpr import (
    Contraction,
    MultiDotPrinter,
    directional,
    latex_form,
    normalize,
    termwise_gradient,
)

__all__ = [
    "KINDS",
    "FullFlow",
    "ReducedFlow",
    "ReducedGD",
    "cache_dir",
    "component_equations",
    "full_flow",
    "reduced_flow",
    "reduced_gd",
    "state_from_params",
    "state_from_spec",
]

KINDS = ("vector", "factorization", "attention")

_N, _R, _K = sp.symbols("n r k", integer=True, positive=True)
_LAM, _ETA, _MU = sp.symbols("lam eta mu", real=True)
_SCALAR_LATEX = {_LAM: r"\lambda", _ETA: r"\eta", _MU: r"\mu"}

Arrays = dict[str, np.ndarray]


# --------------------------------------------------------------------------- the models


def _inner(a: MatrixExpr, b: MatrixExpr) -> sp.Expr:
    """Frobenius inner product ⟨a, b⟩ = tr(aᵀb)."""
    return Trace(a.T * b)


@dataclass(frozen=True)
class _Model:
    """A loss written once: factor name -> target T_F and learned W_F, data loss L."""

    kind: str
    targets: dict[str, MatrixSymbol]
    params: dict[str, MatrixSymbol]
    loss: sp.Expr
    target_latex: dict[str, str]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.params)

    def gradients(self) -> dict[str, MatrixExpr]:
        """g_F = ∂L/∂W_F + λW_F (the gradient of L + ½λ Σ‖W_F‖²)."""
        return {
            f: normalize(MatAdd(termwise_gradient(self.loss, w), MatMul(_LAM, w)), big=(_N,))
            for f, w in self.params.items()
        }


@cache
def _model(kind: str) -> _Model:
    if kind == "vector":
        a, x = MatrixSymbol("a", _N, 1), MatrixSymbol("x", _N, 1)
        return _Model(kind, {"x": a}, {"x": x}, _inner(a - x, a - x) / 2, {"x": "a"})
    if kind == "factorization":
        a, b = MatrixSymbol("A", _N, _R), MatrixSymbol("B", _N, _R)
        x, y = MatrixSymbol("X", _N, _K), MatrixSymbol("Y", _N, _K)
        d = a * b.T - x * y.T
        return _Model(
            kind, {"X": a, "Y": b}, {"X": x, "Y": y}, _inner(d, d) / 2, {"X": "A", "Y": "B"}
        )
    if kind == "attention":
        names = ("Q", "K", "O", "V")
        t = {f: MatrixSymbol(f"{f}s", _N, _R) for f in names}
        w = {f: MatrixSymbol(f, _N, _K) for f in names}
        m, nn = t["Q"] * t["K"].T, t["O"] * t["V"].T
        mt, nt = w["Q"] * w["K"].T, w["O"] * w["V"].T
        loss = (
            _inner(m, m) * _inner(nn, nn)
            - 2 * _inner(m, mt) * _inner(nn, nt)
            + _inner(mt, mt) * _inner(nt, nt)
        ) / 2
        return _Model(kind, t, w, loss, {f: rf"{f}^{{\star}}" for f in names})
    raise ValueError(f"unknown kind {kind!r} (expected one of {KINDS})")


@dataclass(frozen=True)
class _Reduction:
    """Order-parameter symbols of a model and the contraction that produces them."""

    state: dict[str, MatrixSymbol]  # "P_X", "U_X" (+ "R_X", "S_X", "N_X" with velocity)
    gram: dict[str, MatrixSymbol]  # factor name -> G_F
    velocity: dict[str, MatrixSymbol]  # factor name -> M_F (n×k), empty without momentum
    contract: Contraction
    latex_names: dict[sp.Symbol, str]
    symmetric: list[str]  # state keys of symmetric matrices (U, N)


@cache
def _reduction(kind: str, velocity: bool) -> _Reduction:
    model = _model(kind)
    state, gram, vel, pairs, names = {}, {}, {}, {}, dict(_SCALAR_LATEX)
    for f in model.names:
        t, w = model.targets[f], model.params[f]
        r, k = t.shape[1], w.shape[1]
        p, u, g = (
            MatrixSymbol(f"P_{f}", r, k),
            MatrixSymbol(f"U_{f}", k, k),
            MatrixSymbol(f"G_{f}", r, r),
        )
        state |= {p.name: p, u.name: u}
        gram[f] = g
        pairs |= {(t, t): g, (t, w): p, (w, t): p.T, (w, w): u}
        names |= {
            t: model.target_latex[f],
            w: f,
            p: f"P_{{{f}}}",
            u: f"U_{{{f}}}",
            g: f"G_{{{model.target_latex[f]}}}",
        }
        if velocity:
            m = MatrixSymbol(f"M_{f}", *w.shape)
            rr, s, nn = (
                MatrixSymbol(f"R_{f}", r, k),
                MatrixSymbol(f"S_{f}", k, k),
                MatrixSymbol(f"N_{f}", k, k),
            )
            vel[f] = m
            state |= {rr.name: rr, s.name: s, nn.name: nn}
            pairs |= {(t, m): rr, (m, t): rr.T, (w, m): s, (m, w): s.T, (m, m): nn}
            names |= {m: f"M_{{{f}}}", rr: f"R_{{{f}}}", s: f"S_{{{f}}}", nn: f"N_{{{f}}}"}
    symmetric = [key for key in state if key[0] in "UN"]
    contract = Contraction(pairs, _N, [state[key] for key in symmetric] + list(gram.values()))
    return _Reduction(state, gram, vel, contract, names, symmetric)


def _full_latex_names(model: _Model) -> dict[sp.Symbol, str]:
    names = dict(_SCALAR_LATEX)
    for f in model.names:
        names |= {model.targets[f]: model.target_latex[f], model.params[f]: f}
    return names


# --------------------------------------------------------------------------- derivations


def _flow(model: _Model, modified: bool) -> dict[str, MatrixExpr]:
    """dW_F/dt = −g_F, or −g_F − (η/2) D(g_F)[g] (first-order modified equation, step η)."""
    grads = model.gradients()
    if not modified:
        return {f: MatMul(-1, g) for f, g in grads.items()}
    along = {model.params[f]: g for f, g in grads.items()}
    return {
        f: MatAdd(MatMul(-1, g), MatMul(-_ETA / 2, directional(g, along))) for f, g in grads.items()
    }


def _program(args: list[sp.Basic], outs: Mapping[str, sp.Basic]) -> dict:
    """NumPy source of ``outs`` as a function of ``args`` (lambdify, cse, multi_dot chains)."""
    fn = sp.lambdify(args, list(outs.values()), printer=MultiDotPrinter, cse=True, dummify=False)
    return {"args": [str(a) for a in args], "outs": list(outs), "source": inspect.getsource(fn)}


def _equations(lhs_rhs: Mapping[str, sp.Basic], names: Mapping[sp.Symbol, str]) -> list[str]:
    return [
        f"{lhs} = {sp.latex(latex_form(rhs), symbol_names=names)}" for lhs, rhs in lhs_rhs.items()
    ]


def _derive_full(kind: str, modified: bool) -> dict:
    model = _model(kind)
    grads = model.gradients()
    flow = {f: normalize(e, big=(_N,)) for f, e in _flow(model, modified).items()}
    args = [*model.params.values(), *model.targets.values(), _LAM]
    programs = {
        "loss": _program(args[:-1], {"L": normalize(model.loss, big=(_N,))}),
        "grad": _program(args, grads),
    }
    if modified:
        programs["rhs"] = _program([*args, _ETA], flow)
    names = _full_latex_names(model)
    latex = _equations({"L": model.loss}, names) + _equations(
        {rf"\frac{{d{f}}}{{dt}}": e for f, e in flow.items()}, names
    )
    symbols = {f: [model.targets[f].name, model.params[f].name] for f in model.names}
    return {
        "programs": programs,
        "latex": latex,
        "meta": {"names": model.names, "symbols": symbols},
    }


def _reduced_payload(
    kind: str,
    red: _Reduction,
    program: str,
    outs: Mapping[str, sp.Basic],
    scalars: list[sp.Symbol],
    lhs: Callable[[str], str],
) -> dict:
    """Programs ``loss`` (from P, U, G) and ``program`` (``outs`` from state, G, ``scalars``)
    with their LaTeX; ``lhs`` turns an order parameter's LaTeX name into the left-hand side."""
    model = _model(kind)
    loss = red.contract(model.loss)
    position = [s for key, s in red.state.items() if key[0] in "PU"]
    names = red.latex_names
    return {
        "programs": {
            "loss": _program([*position, *red.gram.values()], {"L": loss}),
            program: _program([*red.state.values(), *red.gram.values(), *scalars], outs),
        },
        "latex": _equations({"L": loss}, names)
        + _equations({lhs(names[red.state[key]]): e for key, e in outs.items()}, names),
        "meta": {"names": model.names, "state": list(red.state), "symmetric": red.symmetric},
    }


def _derive_reduced(kind: str, modified: bool) -> dict:
    model, red = _model(kind), _reduction(kind, velocity=False)
    rates = {}
    for f, dw in _flow(model, modified).items():
        t, w = model.targets[f], model.params[f]
        rates[f"P_{f}"] = red.contract(MatMul(t.T, dw))
        rates[f"U_{f}"] = red.contract(MatAdd(MatMul(Transpose(dw), w), MatMul(w.T, dw)))
    return _reduced_payload(
        kind, red, "rhs", rates, [_LAM, _ETA], lambda name: rf"\frac{{d{name}}}{{dt}}"
    )


def _derive_gd(kind: str, momentum: bool) -> dict:
    model, red = _model(kind), _reduction(kind, velocity=momentum)
    updates = {}
    for f, g in model.gradients().items():
        t, w = model.targets[f], model.params[f]
        buf = MatAdd(g, MatMul(_MU, red.velocity[f])) if momentum else g
        w_new = MatAdd(w, MatMul(-_ETA, buf))
        updates[f"P_{f}"] = red.contract(MatMul(t.T, w_new))
        updates[f"U_{f}"] = red.contract(MatMul(Transpose(w_new), w_new))
        if momentum:
            updates[f"R_{f}"] = red.contract(MatMul(t.T, buf))
            updates[f"S_{f}"] = red.contract(MatMul(Transpose(w_new), buf))
            updates[f"N_{f}"] = red.contract(MatMul(Transpose(buf), buf))
    scalars = [_ETA, _LAM, _MU] if momentum else [_ETA, _LAM]
    return _reduced_payload(kind, red, "step", updates, scalars, lambda name: f"{name}'")


class _EntrySum(sp.Function):
    """Σ of all entries of an array expression: an index sum Σ_l f(x_l) after vectorising."""

    nargs = 1

    def _numpycode(self, printer: MultiDotPrinter) -> str:
        return f"{printer._module_format('numpy.sum')}({printer._print(self.args[0])})"


def _vectorise(expr: sp.Expr) -> sp.Expr:
    """Indexed scalar expression -> elementwise array expression (x_i -> x, Σ_l -> entry sum).

    Valid when every sum's summand depends on no index but its own (checked).
    """

    def entry_sum(s: sp.Sum) -> sp.Expr:
        ((dummy, _, _),) = s.limits
        body = s.function.replace(
            lambda e: isinstance(e, sp.Indexed) and e.indices == (dummy,),
            lambda e: sp.Symbol(e.base.name),
        )
        if body.has(sp.Indexed):
            raise ValueError(f"summand of {s} depends on another index")
        return _EntrySum(body)

    out = expr.replace(lambda e: isinstance(e, sp.Sum), entry_sum)
    return out.replace(lambda e: isinstance(e, sp.Indexed), lambda e: sp.Symbol(e.base.name))


def _tidy_sums(expr: sp.Expr, dummy: sp.Idx) -> sp.Expr:
    """Pull factors free of a sum's index out of the sum and rename its index to ``dummy``."""

    def tidy(s: sp.Sum) -> sp.Expr:
        ((var, low, high),) = s.limits
        outside, inside = s.function.as_independent(var, as_Add=False)
        return outside * sp.Sum(inside.xreplace({var: dummy}), (dummy, low, high))

    return expr.replace(lambda e: isinstance(e, sp.Sum), tidy)


@cache
def _ce_model() -> tuple[sp.Expr, sp.Expr, sp.Expr, dict[str, MatrixSymbol], sp.Idx]:
    """Cross-entropy written once: the indexed KL loss, ∂L/∂z_i derived, and the chain rule."""
    m = sp.Symbol("m", integer=True, positive=True)
    i, j, l = (sp.Idx(s, m) for s in "ijl")
    z, c = sp.IndexedBase("z"), sp.IndexedBase("c")

    def log_softmax(x: sp.IndexedBase, a: sp.Idx) -> sp.Expr:
        return x[a] - sp.log(sp.Sum(sp.exp(x[l]), l))

    loss = sp.Sum(sp.exp(log_softmax(c, j)) * (log_softmax(c, j) - log_softmax(z, j)), j)
    derivative = sp.diff(loss, z[i]).doit()
    if isinstance(derivative, sp.Piecewise):  # branch i ∈ [0, m−1], true for the Idx i
        (derivative, condition), *_ = derivative.args
        if condition.subs(i, m - 1) is not sp.true:
            raise ValueError(f"unexpected branch condition {condition}")
    derivative = _tidy_sums(derivative, l)
    e = MatrixSymbol("E", _N, _N)
    model = _model("factorization")
    x, y = model.params["X"], model.params["Y"]
    linear = Trace(e.T * x * y.T)
    return loss, derivative, linear, {"E": e, "X": x, "Y": y}, i


def _derive_ce() -> dict:
    loss, derivative, linear, mats, i = _ce_model()
    z, c = sp.symbols("z c")
    grads = {
        f: normalize(MatAdd(termwise_gradient(linear, mats[f]), MatMul(_LAM, mats[f])), big=(_N,))
        for f in ("X", "Y")
    }
    programs = {
        "loss": _program([z, c], {"L": _vectorise(loss)}),
        "dz": _program([z, c], {"E": _vectorise(derivative)}),
        "grad": _program([mats["X"], mats["Y"], mats["E"], _LAM], grads),
    }
    plain = {idx: sp.Symbol(idx.name) for idx in (loss.atoms(sp.Idx) | derivative.atoms(sp.Idx))}
    latex = [
        f"L = {sp.latex(loss.xreplace(plain))}",
        rf"E_{{{i.name}}} = \frac{{\partial L}}{{\partial z_{{{i.name}}}}} = "
        f"{sp.latex(derivative.xreplace(plain))}",
        *_equations({rf"\frac{{d{f}}}{{dt}}": -g for f, g in grads.items()}, _SCALAR_LATEX),
    ]
    symbols = {"X": ["A", "X"], "Y": ["B", "Y"]}
    return {"programs": programs, "latex": latex, "meta": {"names": ["X", "Y"], "symbols": symbols}}


# --------------------------------------------------------------------------- caching


def cache_dir() -> Path:
    """On-disk cache directory: ``$SCURVE_CACHE`` or ``~/.cache/scurve/symbolic``."""
    env = os.environ.get("SCURVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "scurve" / "symbolic"


@cache
def _code_version() -> str:
    """Hash of the SymPy version and of the source of the modules that derive and print."""
    digest = hashlib.sha256(sp.__version__.encode())
    for source in (Path(__file__), Path(matexpr.__file__)):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _load_or_derive(
    derivation: str, key_exprs: tuple, derive: Callable[[], dict]
) -> tuple[dict, bool]:
    """The payload of ``derivation`` from the disk cache, else derived and stored atomically.

    Returns ``(payload, derived)``; an unreadable or corrupt entry is derived again.
    """
    text = "|".join([_code_version(), derivation, *map(sp.srepr, key_exprs)])
    path = cache_dir() / f"{derivation}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    try:
        payload = json.loads(path.read_text())
        if payload.get("derivation") == derivation:
            return payload, False
    except (OSError, ValueError):
        pass
    payload = {"derivation": derivation, **derive()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"symbolic cache not written ({exc})", RuntimeWarning, stacklevel=3)
    return payload, True


class _Program:
    """A compiled program: ``values`` (by argument name) -> ``{output name: value}``."""

    def __init__(self, spec: Mapping) -> None:
        self.args, self.outs = tuple(spec["args"]), tuple(spec["outs"])
        namespace: dict = {"numpy": np}
        exec(compile(spec["source"], "<scurve.symbolic>", "exec"), namespace)
        self.fn = namespace["_lambdifygenerated"]

    def __call__(self, values: Mapping[str, object]) -> dict:
        result = self.fn(*(values[a] for a in self.args))
        return dict(zip(self.outs, result, strict=True))


class _Compiled:
    """Shared behaviour: compiled programs, LaTeX, flat packing for ``solve_ivp``."""

    keys: tuple[str, ...]

    def __init__(self, payload: Mapping, derived: bool) -> None:
        self.names: tuple[str, ...] = tuple(payload["meta"]["names"])
        self.derived = derived
        self._programs = {k: _Program(v) for k, v in payload["programs"].items()}
        self._latex = list(payload["latex"])

    def latex(self) -> list[str]:
        """The derived equations as LaTeX strings (``lhs = rhs``)."""
        return list(self._latex)

    def pack(self, state: Mapping[str, np.ndarray]) -> np.ndarray:
        """Flat float64 vector of ``state[key]`` for key in :attr:`keys` (for ``solve_ivp``)."""
        return np.concatenate([np.asarray(state[k], dtype=np.float64).ravel() for k in self.keys])

    def unpack(self, y: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> Arrays:
        """Inverse of :meth:`pack`: ``shapes[key]`` gives each array's shape."""
        sizes = [int(np.prod(shapes[key])) for key in self.keys]
        if sum(sizes) != np.size(y):
            raise ValueError(f"vector of length {np.size(y)} does not match shapes ({sum(sizes)})")
        parts = np.split(np.asarray(y), np.cumsum(sizes)[:-1])
        return {
            key: np.reshape(part, shapes[key]) for key, part in zip(self.keys, parts, strict=True)
        }


# --------------------------------------------------------------------------- public classes


class FullFlow(_Compiled):
    """Gradient flow of all parameters, dW_F/dt = −g_F, g_F = ∂L/∂W_F + λW_F.

    With ``modified`` the first-order modified equation of GD with step η:
    dθ/dt = −g − (η/2)∇²(L + ½λ‖θ‖²) g. ``params`` and ``targets`` are keyed by factor name
    (``targets[F]`` is T_F, so ``spec.factors()`` maps directly); time is continuous t.
    """

    def __init__(self, kind: str, loss: str, modified: bool, payload: Mapping, derived: bool):
        super().__init__(payload, derived)
        self.kind, self.loss, self.modified = kind, loss, modified
        self.keys = self.names
        self._symbols = {f: tuple(s) for f, s in payload["meta"]["symbols"].items()}

    def _values(self, params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> dict:
        values = {}
        for f, (target, learned) in self._symbols.items():
            values[target], values[learned] = targets[f], params[f]
        return values

    def loss_value(
        self, params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], lam: float = 0.0
    ) -> float:
        """The data loss L (DESIGN §2), *without* the decay term ½λ‖θ‖².

        ``lam`` is accepted for symmetry with :meth:`grad` and does not change the value.
        """
        return float(self._programs["loss"](self._values(params, targets))["L"])

    def grad(
        self, params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], lam: float
    ) -> Arrays:
        """g_F = ∂L/∂W_F + λW_F for every factor."""
        return self._programs["grad"](self._values(params, targets) | {"lam": lam})

    def rhs(
        self,
        params: Mapping[str, np.ndarray],
        targets: Mapping[str, np.ndarray],
        lam: float,
        lr: float = 0.0,
    ) -> Arrays:
        """dW_F/dt (per unit t): −g_F, minus (lr/2)·D(g_F)[g] if :attr:`modified`."""
        if not self.modified:
            return {f: -g for f, g in self.grad(params, targets, lam).items()}
        values = self._values(params, targets) | {"lam": lam, "eta": lr}
        return self._programs["rhs"](values)


class _CrossEntropyFlow(FullFlow):
    """Cross-entropy flow: E = ∂L/∂Z from the derived elementwise program, then g = chain rule."""

    def _values(self, params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> dict:
        z, c = self._logits(params, targets)
        return super()._values(params, targets) | self._programs["dz"]({"z": z, "c": c})

    @staticmethod
    def _logits(params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> tuple:
        z, c = params["X"] @ params["Y"].T, targets["X"] @ targets["Y"].T
        return z - z.max(), c - c.max()

    def loss_value(
        self, params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], lam: float = 0.0
    ) -> float:
        """KL(softmax(vec ABᵀ) ‖ softmax(vec XYᵀ)), without the decay term."""
        z, c = self._logits(params, targets)
        return float(self._programs["loss"]({"z": z, "c": c})["L"])


class _Reduced(_Compiled):
    """Shared by the reduced flow and map: state/gram arguments and the reduced loss."""

    def __init__(self, kind: str, payload: Mapping, derived: bool) -> None:
        super().__init__(payload, derived)
        self.kind = kind
        self.keys = tuple(payload["meta"]["state"])
        self._symmetric = tuple(payload["meta"]["symmetric"])

    def _run(self, program: str, values: Mapping[str, object]) -> Arrays:
        """Run ``program`` and symmetrise its U / N outputs exactly.

        U = WᵀW and N = MᵀM are symmetric by definition, but the derived polynomials, fed a U
        with a rounding-level antisymmetric part, amplify that part (measured: ×e^0.02 per GD
        step at η = 0.1, k > r, λ = 0 — the map blows up after ~2000 steps). Symmetrising the
        outputs, ½(E + Eᵀ), removes that unphysical direction and is exact on physical states.
        """
        out = self._programs[program](values)
        for key in self._symmetric:
            out[key] = 0.5 * (out[key] + out[key].T)
        return out

    def _values(self, state: Mapping[str, np.ndarray], gram: Mapping[str, np.ndarray]) -> dict:
        return dict(state) | {f"G_{f}": gram[f] for f in self.names}

    def loss_value(self, state: Mapping[str, np.ndarray], gram: Mapping[str, np.ndarray]) -> float:
        """The data loss L as a function of the order parameters (no decay term)."""
        return float(self._programs["loss"](self._values(state, gram))["L"])


class ReducedFlow(_Reduced):
    """Gradient flow in the order parameters P_F = T_FᵀW_F, U_F = W_FᵀW_F (G_F = T_FᵀT_F fixed).

    dP_F/dt = T_Fᵀ dW_F/dt and dU_F/dt = (dW_F/dt)ᵀW_F + W_Fᵀ dW_F/dt with dW_F/dt from
    :class:`FullFlow` (the same ``modified`` choice), closed in (P, U, G) for any n.
    State keys ``"P_F"``, ``"U_F"``; gram keys are factor names.
    """

    def __init__(self, kind: str, modified: bool, payload: Mapping, derived: bool) -> None:
        super().__init__(kind, payload, derived)
        self.modified = modified

    def rhs(
        self,
        state: Mapping[str, np.ndarray],
        gram: Mapping[str, np.ndarray],
        lam: float,
        lr: float = 0.0,
    ) -> Arrays:
        """d(state)/dt per unit t; ``lr`` (η) enters only the modified equation."""
        values = self._values(state, gram) | {"lam": lam, "eta": lr}
        return self._run("rhs", values)


class ReducedGD(_Reduced):
    """One full-batch GD step (torch.optim.SGD semantics) exactly in the order parameters.

    g = ∇L + λθ; b' = μb + g; W' = W − ηb'; a step advances t by η. State keys ``"P_F"``,
    ``"U_F"`` and, with ``momentum``, the velocity's ``"R_F"`` = T_FᵀM_F, ``"S_F"`` = W_FᵀM_F,
    ``"N_F"`` = M_FᵀM_F (M_F = b). A state without them starts from M = 0, so the first step
    has b' = μ·0 + g = g, exactly torch's first step (which sets buf = g).
    """

    def __init__(self, kind: str, momentum: bool, payload: Mapping, derived: bool) -> None:
        super().__init__(kind, payload, derived)
        self.momentum = momentum

    def step(
        self,
        state: Mapping[str, np.ndarray],
        gram: Mapping[str, np.ndarray],
        lr: float,
        lam: float,
        mu: float = 0.0,
    ) -> Arrays:
        """The state after one step of rate ``lr`` (η), decay ``lam`` (λ), momentum ``mu`` (μ)."""
        if not self.momentum:
            if mu != 0.0:
                raise ValueError("mu != 0 needs reduced_gd(kind, momentum=True)")
            return self._run("step", self._values(state, gram) | {"eta": lr, "lam": lam})
        values = self._values(_with_velocity(state), gram) | {"eta": lr, "lam": lam, "mu": mu}
        return self._run("step", values)


# --------------------------------------------------------------------------- factories


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {KINDS})")


@cache
def _full_flow(kind: str, loss: str, modified: bool) -> FullFlow:
    if loss == "ce":
        ce_loss, _, linear, _, _ = _ce_model()
        payload, derived = _load_or_derive("full-ce", (ce_loss, linear), _derive_ce)
        return _CrossEntropyFlow(kind, loss, modified, payload, derived)
    derivation = f"full-{kind}-{'modified' if modified else 'plain'}"
    payload, derived = _load_or_derive(
        derivation, (_model(kind).loss,), lambda: _derive_full(kind, modified)
    )
    return FullFlow(kind, loss, modified, payload, derived)


def full_flow(kind: str, loss: str = "mse", modified: bool = False) -> FullFlow:
    """The derived full-parameter flow of problem ``kind`` (see :class:`FullFlow`).

    ``loss="ce"`` (cross-entropy) exists for ``kind="factorization"`` only, without
    ``modified``.
    """
    _check_kind(kind)
    if loss not in ("mse", "ce"):
        raise ValueError(f"unknown loss {loss!r} (expected 'mse' or 'ce')")
    if loss == "ce" and (kind != "factorization" or modified):
        raise ValueError("cross-entropy: factorization only, plain gradient flow only")
    return _full_flow(kind, loss, bool(modified))


@cache
def _reduced_flow(kind: str, modified: bool) -> ReducedFlow:
    derivation = f"reduced-{kind}-{'modified' if modified else 'plain'}"
    payload, derived = _load_or_derive(
        derivation, (_model(kind).loss,), lambda: _derive_reduced(kind, modified)
    )
    return ReducedFlow(kind, modified, payload, derived)


def reduced_flow(kind: str, modified: bool = False) -> ReducedFlow:
    """The derived order-parameter flow of problem ``kind`` (MSE; see :class:`ReducedFlow`)."""
    _check_kind(kind)
    return _reduced_flow(kind, bool(modified))


@cache
def _reduced_gd(kind: str, momentum: bool) -> ReducedGD:
    derivation = f"gd-{kind}-{'momentum' if momentum else 'plain'}"
    payload, derived = _load_or_derive(
        derivation, (_model(kind).loss,), lambda: _derive_gd(kind, momentum)
    )
    return ReducedGD(kind, momentum, payload, derived)


def reduced_gd(kind: str, momentum: bool = False) -> ReducedGD:
    """The derived exact GD map of problem ``kind`` (MSE; see :class:`ReducedGD`)."""
    _check_kind(kind)
    return _reduced_gd(kind, bool(momentum))


def _with_velocity(state: Mapping[str, np.ndarray]) -> Arrays:
    """``state`` plus zero velocity order parameters R_F, S_F, N_F where absent (M_F = 0)."""
    out = dict(state)
    for key in state:
        if key.startswith("P_"):
            f, (r, k) = key[2:], state[key].shape
            out.setdefault(f"R_{f}", np.zeros((r, k)))
            out.setdefault(f"S_{f}", np.zeros((k, k)))
            out.setdefault(f"N_{f}", np.zeros((k, k)))
    return out


def state_from_params(
    params: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], momentum: bool = False
) -> tuple[Arrays, Arrays]:
    """``(state, gram)``: P_F = T_FᵀW_F, U_F = W_FᵀW_F and G_F = T_FᵀT_F for every factor F.

    With ``momentum`` the state also holds the velocity order parameters of M_F = 0 (R_F, S_F,
    N_F zero), the start of :meth:`ReducedGD.step` with momentum (first step b = g).
    """
    state, gram = {}, {}
    for f, w in params.items():
        t = np.asarray(targets[f], dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        state[f"P_{f}"], state[f"U_{f}"], gram[f] = t.T @ w, w.T @ w, t.T @ t
    return (_with_velocity(state) if momentum else state), gram


def state_from_spec(spec: object, momentum: bool = False) -> tuple[Arrays, Arrays]:
    """``(state, gram)`` at a problem spec's initial point (:mod:`dynamics.problems`); see
    :func:`state_from_params` for ``momentum``."""
    factors = spec.factors()  # type: ignore[attr-defined]
    params = {f: w for f, (_, w) in factors.items()}
    return state_from_params(params, {f: t for f, (t, _) in factors.items()}, momentum)


def component_equations(kind: str, rank: int, latex: bool = False) -> list[str]:
    """The reduced flow written entry by entry for target rank r = model rank k = ``rank``.

    The compiled :func:`reduced_flow` is evaluated on arrays of SymPy symbols (P_F[i, j],
    symmetric U_F[i, j] = U_F[j, i], symmetric G_F[i, j]), so these are exactly the equations
    that are integrated, expanded: for rank 1 the scalar ODEs of the seeds, e.g.
    dP_X/dt = G_X P_Y − P_X U_Y − λP_X. Time is continuous t. One string per independent entry.
    """
    _check_kind(kind)
    if isinstance(rank, bool) or int(rank) != rank or rank < 1:
        raise ValueError(f"rank: must be an integer >= 1, got {rank!r}")
    rank = int(rank)
    flow = reduced_flow(kind)
    lam = sp.Symbol("lambda" if latex else "λ")  # λ: plain text that sympify reads back

    def entries(name: str, symmetric: bool) -> np.ndarray:
        def entry(i: int, j: int) -> sp.Symbol:
            i, j = (min(i, j), max(i, j)) if symmetric else (i, j)
            return sp.Symbol(f"{name}_{i + 1}{j + 1}" if rank > 1 else name)

        return np.array([[entry(i, j) for j in range(rank)] for i in range(rank)], dtype=object)

    model = _model(kind)
    state = {f"{p}_{f}": entries(f"{p}_{f}", p == "U") for f in model.names for p in "PU"}
    gram = {f: entries(f"G_{model.targets[f].name}", True) for f in model.names}
    rates = flow.rhs(state, gram, lam, 0.0)
    out = []
    for key, rate in rates.items():
        symmetric = key.startswith("U")
        for i in range(rank):
            for j in range(i if symmetric else 0, rank):
                lhs, rhs = state[key][i, j], sp.expand(sp.nsimplify(rate[i, j], rational=True))
                if latex:
                    out.append(rf"\frac{{d{sp.latex(lhs)}}}{{dt}} = {sp.latex(rhs)}")
                else:
                    out.append(f"d{lhs}/dt = {sp.sstr(rhs)}")
    return out
