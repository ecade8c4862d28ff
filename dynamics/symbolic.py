"""Symbolic dynamics: SymPy derives every flow, map and training program from a model's loss.

A model (:class:`dynamics.model.Model`; the built-ins in :mod:`dynamics.models`) is a scalar
loss L over learned matrices W and constants. Weight decay adds ½λ Σ_W ‖W‖². In continuous time
t (a gradient step of rate η advances t by η, README "Conventions") SymPy derives:

1. :func:`full_flow` — dW/dt = −g_W, g_W = ∂L/∂W + λW (``sp.diff`` term by term,
   :func:`dynamics.matexpr.termwise_gradient`); with ``modified=True`` the first-order modified
   equation of GD with step η, dθ/dt = −g − (η/2) D(g)[g], D(g)[g] = ∇²(L + ½λ‖θ‖²) g the
   directional derivative of the gradient along itself (product rule over the expression tree).
2. :func:`reduced_flow` — the same flow in the *order parameters*: the contractions over every
   ``large`` dimension of the matrices that carry it (:class:`dynamics.matexpr.PairReducer`;
   for the factorization Aᵀ X, Bᵀ Y, Xᵀ X, Yᵀ Y with constants Aᵀ A, Bᵀ B), plus the small
   learned matrices themselves. The state is found by closure: the order parameters of the
   contracted loss, then those of their rates d(MᵀN)/dt = (dM/dt)ᵀN + Mᵀ dN/dt, until no new
   one appears. A term that does not reduce to pairwise contractions (an n×n constant between
   two n-row factors) raises :class:`dynamics.matexpr.ReductionError` naming it.
3. :func:`reduced_gd` — one step of full-batch gradient descent with torch.optim.SGD semantics
   (b' = μb + g, b = g at the first step; W' = W − ηb') exactly, in order parameters found the
   same way (with momentum the velocity b_W is one more matrix family).
4. :func:`training_program` — loss and every g_W as PyTorch source batched over seeds
   (:class:`dynamics.matexpr.TorchChainPrinter`), which :mod:`validation.training` runs.

Symmetric order parameters (MᵀM) are symmetrised exactly on output, ½(E + Eᵀ): fed a state
with a rounding-level antisymmetric part, the derived polynomials amplify it (``_Reduced._run``).

Cross-entropy (a model with ``logits=(Z, C)``; full flow only): L = Σ_j p_C,j (log p_C,j −
log softmax(z)_j), p_C = softmax(c), z = vec Z, c = vec C. SymPy's matrix calculus cannot
differentiate softmax, so the derivation has two honest steps: (i) ∂L/∂z_i by ``sp.diff`` of the
indexed sum above (``IndexedBase``, symbolic length m), tidied to softmax(z)_i − softmax(c)_i;
(ii) the chain rule through Z by ``sp.diff`` of the linearisation tr(EᵀZ) with E = ∂L/∂Z held
fixed (for Z = XYᵀ: ∂L/∂X = EY, ∂L/∂Y = EᵀX). Since L and ∂L/∂z are invariant under
z -> z + const, z and c are shifted by their maxima first.

Every result comes as LaTeX (``.latex()``) and as NumPy code from ``sp.lambdify`` (``cse=True``,
:class:`dynamics.matexpr.MultiDotPrinter`: matrix chains via ``numpy.linalg.multi_dot``, so no
n×n matrix is formed unless the loss holds one). Derivations are cached in memory and on disk in
``$SCURVE_CACHE`` (default ``~/.cache/scurve/symbolic``) as JSON holding the generated source,
LaTeX and the state's definition, keyed by a hash of the model (``srepr`` of its loss and
symbols), the derivation kind and the code version (a hash of this module's and
:mod:`dynamics.matexpr`'s source and the SymPy version), written atomically. The cached source
is executed on load (trust the cache directory like any bytecode cache). ``.derived`` tells
whether this process derived the object or loaded it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.matrices.expressions import MatAdd, MatMul, MatrixExpr, MatrixSymbol, Trace, Transpose

from . import matexpr
from .errors import UsageError
from .matexpr import (
    ChainPrinter,
    MultiDotPrinter,
    PairReducer,
    ReductionError,
    TorchChainPrinter,
    directional,
    latex_form,
    normalize,
    termwise_gradient,
)
from .model import Model, ModelError
from .model import get as get_model
from .terms import dag as term_dag

__all__ = [
    "FullFlow",
    "ReducedFlow",
    "ReducedGD",
    "ReductionError",
    "TrainingProgram",
    "cache_dir",
    "component_equations",
    "full_flow",
    "reduced_flow",
    "reduced_gd",
    "resolve",
    "training_program",
]

_LAM, _ETA, _MU = sp.symbols("lam eta mu", real=True)
_SCALAR_LATEX = {_LAM: r"\lambda", _ETA: r"\eta", _MU: r"\mu"}

Arrays = dict[str, np.ndarray]


def resolve(model: Model | str, loss: str | None = None) -> Model:
    """A :class:`Model` from itself or a registered kind (``loss`` picks "mse"/"ce")."""
    if isinstance(model, Model):
        return model
    out = get_model(model, {"loss": loss} if loss else {})
    if loss is not None and loss != ("ce" if out.cross_entropy() else "mse"):
        raise ModelError(f"model {out.name!r} has no {loss!r} loss")
    return out


# --------------------------------------------------------------------------- derivations


def _gradients(model: Model, extra: MatrixSymbol | None = None) -> dict[str, MatrixExpr]:
    """g_W = ∂L/∂W + λW for every learned W (cross-entropy: ∂tr(EᵀZ)/∂W + λW, E = ``extra``)."""
    loss = model.loss if extra is None else Trace(extra.T * model.logits[0])
    return {
        w.name: normalize(MatAdd(termwise_gradient(loss, w), MatMul(_LAM, w)), big=model.large)
        for w in model.learned
    }


def _flow(model: Model, modified: bool) -> dict[str, MatrixExpr]:
    """dW/dt = −g_W, or −g_W − (η/2) D(g_W)[g] (first-order modified equation, step η)."""
    grads = _gradients(model)
    if not modified:
        return {f: MatMul(-1, g) for f, g in grads.items()}
    along = {w: grads[w.name] for w in model.learned}
    return {
        f: MatAdd(MatMul(-1, g), MatMul(-_ETA / 2, directional(g, along))) for f, g in grads.items()
    }


def _group_matrix(model: Model) -> MatrixExpr | None:
    """E = ∂L/∂D for a grouped model (D = ``group_weights``): ℓ_g = E_gg. None otherwise.

    Raises :class:`ModelError` when E still holds D (the loss is not linear in D)."""
    d = model.group_weights
    if d is None:
        return None
    out = normalize(termwise_gradient(model.loss, d), big=model.large)
    if d in out.free_symbols:
        raise ModelError(f"model {model.name!r}: the loss is not linear in its group_weights "
                         f"{d.name} (∂L/∂{d.name} still holds {d.name})")
    return out


def _program(args: list[sp.Basic], outs: Mapping[str, sp.Basic], printer: type = MultiDotPrinter
             ) -> dict:
    """Source of ``outs`` as a function of ``args`` (lambdify, cse, chain printer)."""
    fn = sp.lambdify(args, list(outs.values()), printer=printer, cse=True, dummify=False)
    out = {"args": [str(a) for a in args], "outs": list(outs), "source": inspect.getsource(fn)}
    if printer is TorchChainPrinter:  # the trainer builds its graph from the terms themselves
        try:
            out["terms"] = term_dag(args, outs)
        except ValueError as exc:  # validation.programs says so if it needs these terms
            out["terms"] = {"error": str(exc)}
    return out


def _latex_names(model: Model, reducer: PairReducer | None = None,
                 velocity: Mapping[str, MatrixSymbol] | None = None) -> dict[sp.Symbol, str]:
    """LaTeX of every symbol: the model's names, b_W for velocities, Aᵀ X for pairs (read
    as a product, which is what they are)."""
    names: dict[sp.Symbol, str] = dict(_SCALAR_LATEX)
    for sym in (*model.learned, *model.constants):
        name = model.latex.get(sym.name, sym.name)
        names[sym] = f"{{{name}}}" if "^" in name else name  # {Q^{\star}}^{\top}, not Q^…^…
    for w, b in (velocity or {}).items():
        names[b] = f"b_{{{names[model.symbols[w]]}}}"

    def leaf(x: MatrixExpr) -> str:
        base = matexpr._base(x)
        return names[base] + (r"^{\top}" if isinstance(x, Transpose) else "")

    for sym, (left, right) in (reducer.defs.items() if reducer else ()):
        names[sym] = f"{leaf(left)} {leaf(right)}"
    return names


def _equations(lhs_rhs: Mapping[str, sp.Basic], names: Mapping[sp.Symbol, str]) -> list[str]:
    return [
        f"{lhs} = {sp.latex(latex_form(rhs), symbol_names=names)}" for lhs, rhs in lhs_rhs.items()
    ]


def _derive_full(model: Model, modified: bool) -> dict:
    grads = _gradients(model)
    flow = {f: normalize(e, big=model.large) for f, e in _flow(model, modified).items()}
    args = [*model.learned, *model.constants, _LAM]
    programs = {
        "loss": _program(args[:-1], {"L": normalize(model.loss, big=model.large)}),
        "grad": _program(args, grads),
    }
    if modified:
        programs["rhs"] = _program([*args, _ETA], flow)
    groups = _group_matrix(model)
    if groups is not None:
        programs["groups"] = _program(args[:-1], {"E": groups})
    names = _latex_names(model)
    latex = _equations({"L": model.loss}, names) + _equations(
        {rf"\frac{{d{names[model.symbols[f]]}}}{{dt}}": e for f, e in flow.items()}, names
    )
    return {"programs": programs, "latex": latex, "meta": {"learned": list(model.learned_names)}}


def _dynamic(model: Model, reducer: PairReducer, velocity: Mapping[str, MatrixSymbol]
             ) -> Callable[[MatrixSymbol], bool]:
    moving = set(model.learned) | set(velocity.values())

    def is_dynamic(sym: MatrixSymbol) -> bool:
        if sym in reducer.defs:
            return any(matexpr._base(leaf) in moving for leaf in reducer.defs[sym])
        return sym in moving

    return is_dynamic


def _close(model: Model, reducer: PairReducer, observed: sp.Expr,
           value_of: Callable[[MatrixSymbol], sp.Basic],
           velocity: Mapping[str, MatrixSymbol]) -> dict[MatrixSymbol, sp.Basic]:
    """The closed state: start from the order parameters (and small learned matrices) of the
    reduced ``observed`` (the loss, and the group losses of a grouped model), add every dynamic
    symbol that an output needs, until none is new."""
    is_dynamic = _dynamic(model, reducer, velocity)
    queue = [m for m in model.learned if model.is_small(m)]
    queue += sorted((a for a in observed.atoms(MatrixSymbol) if is_dynamic(a)), key=str)
    outputs: dict[MatrixSymbol, sp.Basic] = {}
    while queue:
        sym = queue.pop(0)
        if sym in outputs:
            continue
        outputs[sym] = expr = value_of(sym)
        atoms = expr.atoms(MatrixSymbol) if isinstance(expr, sp.Basic) else set()
        queue += sorted((a for a in atoms if is_dynamic(a) and a not in outputs), key=str)
    return dict(sorted(outputs.items(), key=lambda kv: (kv[0] not in model.learned, str(kv[0]))))


def _leaf_sub(leaf: MatrixExpr, values: Mapping[MatrixSymbol, MatrixExpr]) -> MatrixExpr | None:
    base = matexpr._base(leaf)
    if base not in values:
        return None
    value = values[base]
    return Transpose(value) if isinstance(leaf, Transpose) else value


def _reduced_groups(model: Model, reducer: PairReducer) -> MatrixExpr | None:
    """E = ∂L/∂D in order parameters (grouped models), or None."""
    groups = _group_matrix(model)
    return None if groups is None else reducer(groups)


def _observed(loss: sp.Expr, groups: MatrixExpr | None) -> sp.Basic:
    return loss if groups is None else sp.Tuple(loss, groups)


def _reduced_payload(model: Model, reducer: PairReducer, loss: sp.Expr,
                     outputs: Mapping[MatrixSymbol, sp.Basic], program: str,
                     scalars: list[sp.Symbol], lhs: Callable[[str], str],
                     velocity: Mapping[str, MatrixSymbol],
                     groups: MatrixExpr | None = None) -> dict:
    """Programs ``loss`` (state, constants), ``groups`` (E = ∂L/∂D, grouped models) and
    ``program`` (``outputs``) with LaTeX and the state's definition (pairs, shapes) for
    numeric evaluation."""
    state = list(outputs)
    is_dynamic = _dynamic(model, reducer, velocity)
    used = set(_observed(loss, groups).atoms(MatrixSymbol))
    for expr in outputs.values():
        used |= expr.atoms(MatrixSymbol)
    consts = sorted((s for s in used if s in reducer.defs and not is_dynamic(s)), key=str)
    consts += [c for c in model.constants if c in used and c not in consts]  # small constants
    position = [s for s in state if s in _observed(loss, groups).atoms(MatrixSymbol)
                or s in model.learned]
    names = _latex_names(model, reducer, velocity)
    pairs = {}
    for sym in (*state, *consts):
        if sym in reducer.defs:
            left, right = reducer.defs[sym]
            pairs[sym.name] = [matexpr._base(left).name, isinstance(left, Transpose),
                               matexpr._base(right).name, isinstance(right, Transpose)]
    programs = {
        "loss": _program([*position, *consts], {"L": loss}, ChainPrinter),
        program: _program([*state, *consts, *scalars], {s.name: e for s, e in outputs.items()},
                          ChainPrinter),
    }
    latex = _equations({"L": loss}, names)
    if groups is not None:
        programs["groups"] = _program([*position, *consts], {"E": groups}, ChainPrinter)
        d = names[model.group_weights]
        latex += _equations({rf"\frac{{\partial L}}{{\partial {d}}}": groups}, names)
    return {
        "programs": programs,
        "latex": latex
        + _equations({lhs(f"({names[s]})" if " " in names[s] else names[s]): e
                      for s, e in outputs.items()}, names),
        "meta": {
            "learned": list(model.learned_names),
            "state": [s.name for s in state],
            "position": [s.name for s in position],
            "consts": [s.name for s in consts],
            "pairs": pairs,
            "symmetric": [s.name for s in (*state, *consts) if s in reducer.symmetric],
            "velocity": {b.name: w for w, b in velocity.items()},
        },
    }


def _reduced_loss(model: Model, reducer: PairReducer) -> sp.Expr:
    """The loss in order parameters; the terms with learned matrices are reduced first, so a
    :class:`ReductionError` names a term that matters for the dynamics."""
    for term in sp.Add.make_args(normalize(model.loss, big=model.large)):
        if term.atoms(MatrixSymbol) & set(model.learned):
            reducer(term)
    return reducer(model.loss)


def _reducer(model: Model) -> PairReducer:
    return PairReducer(model.large, names=model.symbols)


def _derive_reduced(model: Model, modified: bool) -> dict:
    reducer = _reducer(model)
    flow = _flow(model, modified)
    rates = {model.symbols[f]: e for f, e in flow.items()}
    loss = _reduced_loss(model, reducer)

    def rate_of(sym: MatrixSymbol) -> sp.Basic:
        if sym in rates:  # a small learned matrix
            return reducer(rates[sym])
        left, right = reducer.defs[sym]
        parts = []
        dl, dr = _leaf_sub(left, rates), _leaf_sub(right, rates)
        if dl is not None:
            parts.append(MatMul(dl, right))
        if dr is not None:
            parts.append(MatMul(left, dr))
        return reducer(MatAdd(*parts))

    groups = _reduced_groups(model, reducer)
    outputs = _close(model, reducer, _observed(loss, groups), rate_of, {})
    return _reduced_payload(model, reducer, loss, outputs, "rhs", [_LAM, _ETA],
                            lambda name: rf"\frac{{d{name}}}{{dt}}", {}, groups)


def _derive_gd(model: Model, momentum: bool) -> dict:
    reducer = _reducer(model)
    grads = _gradients(model)
    velocity = {w.name: MatrixSymbol(f"b_{w.name}", *w.shape) for w in model.learned} \
        if momentum else {}
    new: dict[MatrixSymbol, MatrixExpr] = {}
    for w in model.learned:
        buf = MatAdd(grads[w.name], MatMul(_MU, velocity[w.name])) if momentum else grads[w.name]
        new[w] = MatAdd(w, MatMul(-_ETA, buf))
        if momentum:
            new[velocity[w.name]] = buf
    loss = _reduced_loss(model, reducer)

    def new_of(sym: MatrixSymbol) -> sp.Basic:
        if sym in new:  # a small learned matrix or its velocity
            return reducer(new[sym])
        left, right = reducer.defs[sym]
        sub = [_leaf_sub(x, new) or x for x in (left, right)]
        return reducer(MatMul(*sub))

    groups = _reduced_groups(model, reducer)
    outputs = _close(model, reducer, _observed(loss, groups), new_of, velocity)
    scalars = [_ETA, _LAM, _MU] if momentum else [_ETA, _LAM]
    return _reduced_payload(model, reducer, loss, outputs, "step", scalars,
                            lambda name: f"{name}'", velocity, groups)


class _EntrySum(sp.Function):
    """Σ of all entries of an array expression: an index sum Σ_l f(x_l) after vectorising."""

    nargs = 1

    def _numpycode(self, printer: MultiDotPrinter) -> str:
        return f"{printer._module_format('numpy.sum')}({printer._print(self.args[0])})"

    def _torchcode(self, printer: TorchChainPrinter) -> str:
        return f"_entry_sum({printer._print(self.args[0])})"


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
def _ce_calculus() -> tuple[sp.Expr, sp.Expr, sp.Idx]:
    """Cross-entropy written once: the indexed KL loss and ∂L/∂z_i derived by ``sp.diff``."""
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
    return loss, _tidy_sums(derivative, l), i


def _derive_ce(model: Model) -> dict:
    loss, derivative, i = _ce_calculus()
    zsym, csym = model.logits
    e = MatrixSymbol("E", *zsym.shape)
    z, c = sp.symbols("z c")
    grads = _gradients(model, extra=e)
    args = [*model.learned, *model.constants]
    programs = {
        "logits": _program(args, {"Z": zsym, "C": csym}),
        "ce_loss": _program([z, c], {"L": _vectorise(loss)}),
        "dz": _program([z, c], {"E": _vectorise(derivative)}),
        "grad": _program([*args, e, _LAM], grads),
    }
    plain = {idx: sp.Symbol(idx.name) for idx in (loss.atoms(sp.Idx) | derivative.atoms(sp.Idx))}
    names = _latex_names(model)
    latex = [
        f"L = {sp.latex(loss.xreplace(plain))}",
        rf"E_{{{i.name}}} = \frac{{\partial L}}{{\partial z_{{{i.name}}}}} = "
        f"{sp.latex(derivative.xreplace(plain))}",
        *_equations({rf"\frac{{d{names[model.symbols[f]]}}}{{dt}}": MatMul(-1, g)
                     for f, g in grads.items()}, names | {e: "E"}),
    ]
    return {"programs": programs, "latex": latex, "meta": {"learned": list(model.learned_names)}}


def _derive_training(model: Model) -> dict:
    """PyTorch source: ``train`` gives (L − L(0), g_W...) batched over seeds (MSE models), or
    the cross-entropy pieces (``logits``, ``ce`` = (L, E), ``grad``)."""
    args = [*model.learned, *model.constants]
    if model.cross_entropy():
        loss, derivative, _ = _ce_calculus()
        zsym = model.logits[0]
        e = MatrixSymbol("E", *zsym.shape)
        z, c = sp.symbols("z c")
        return {"programs": {
            "logits": _program(args, {"Z": zsym}, TorchChainPrinter),
            "ce": _program([z, c], {"L": _vectorise(loss), "E": _vectorise(derivative)},
                           TorchChainPrinter),
            "grad": _program([*args, e, _LAM], _gradients(model, extra=e), TorchChainPrinter),
        }, "latex": [], "meta": {"learned": list(model.learned_names)}}
    terms = sp.Add.make_args(normalize(model.loss, big=model.large))
    varying = sp.Add(*(t for t in terms if t.atoms(MatrixSymbol) & set(model.learned)))
    outs = {"L": varying, **_gradients(model)}
    programs = {"train": _program([*args, _LAM], outs, TorchChainPrinter)}
    groups = _group_matrix(model)
    if groups is not None:
        programs["groups"] = _program(args, {"E": groups}, TorchChainPrinter)
    return {"programs": programs, "latex": [], "meta": {"learned": list(model.learned_names)}}


def cache_dir() -> Path:
    """On-disk cache directory: ``$SCURVE_CACHE`` or ``~/.cache/scurve/symbolic``."""
    env = os.environ.get("SCURVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "scurve" / "symbolic"


@cache
def _code_version() -> str:
    """Hash of the SymPy version and of the source of the modules that derive and print."""
    digest = hashlib.sha256(sp.__version__.encode())
    here = Path(__file__)
    for source in (here, Path(matexpr.__file__), here.with_name("persample.py"),
                   here.with_name("terms.py")):
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
    try:
        payload = {"derivation": derivation, **derive()}
    except RecursionError:  # SymPy or Python's compiler on a very deep expression
        raise ModelError(f"{derivation} derivation: the expression is too deeply nested to "
                         "derive or compile (RecursionError); this method is not available "
                         "for this model") from None
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
    """A compiled NumPy program: ``values`` (by argument name) -> ``{output name: value}``."""

    def __init__(self, spec: Mapping) -> None:
        self.args, self.outs = tuple(spec["args"]), tuple(spec["outs"])
        namespace: dict = {"numpy": np}
        exec(compile(spec["source"], "<scurve.symbolic>", "exec"), namespace)
        self.fn = namespace["_lambdifygenerated"]

    def __call__(self, values: Mapping[str, object]) -> dict:
        result = self.fn(*(values[a] for a in self.args))
        return dict(zip(self.outs, result, strict=True))


def _key_exprs(model: Model) -> tuple:
    body = model.loss if model.loss is not None else sp.Tuple(*model.logits)
    grouped = (model.group_weights,) if model.grouped else ()
    per = (sp.Tuple(*model.per_sample, model.samples),) if model.per_sample else ()
    return (body, sp.Tuple(*model.learned), sp.Tuple(*model.constants), sp.Tuple(*model.large),
            *grouped, *per)


class _Compiled:
    """Shared behaviour: compiled programs, LaTeX, packing for ``solve_ivp``."""

    keys: tuple[str, ...]

    def __init__(self, model: Model, payload: Mapping, derived: bool) -> None:
        self.model = model
        self.names: tuple[str, ...] = tuple(payload["meta"]["learned"])
        self.derived = derived
        self._programs = {k: _Program(v) for k, v in payload["programs"].items()}
        self._latex = list(payload["latex"])

    @property
    def kind(self) -> str:
        return self.model.name

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
    """Gradient flow of all parameters, dW/dt = −g_W, g_W = ∂L/∂W + λW (continuous time t).

    With ``modified`` the first-order modified equation of GD with step η:
    dθ/dt = −g − (η/2)∇²(L + ½λ‖θ‖²) g. ``values`` hold every learned matrix and constant by
    symbol name; the state is the learned matrices (:attr:`keys`).
    """

    def __init__(self, model: Model, modified: bool, payload: Mapping, derived: bool):
        super().__init__(model, payload, derived)
        self.modified = modified
        self.keys = self.names

    def loss_value(self, values: Mapping[str, np.ndarray]) -> float:
        """The data loss L (README "Conventions"), *without* the decay term ½λ‖θ‖²."""
        return float(self._programs["loss"](values)["L"])

    def group_losses(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """ℓ_g = (∂L/∂D)_gg of a grouped model (loss units), shape (G,)."""
        return np.diagonal(self._programs["groups"](values)["E"]).copy()

    def grad(self, values: Mapping[str, np.ndarray], lam: float) -> Arrays:
        """g_W = ∂L/∂W + λW for every learned W."""
        return self._programs["grad"](dict(values) | {"lam": lam})

    def rhs(self, values: Mapping[str, np.ndarray], *, lam: float, lr: float = 0.0) -> Arrays:
        """dW/dt (per unit t): −g_W, minus (lr/2)·D(g_W)[g] if :attr:`modified`."""
        if not self.modified:
            return {f: -g for f, g in self.grad(values, lam).items()}
        return self._programs["rhs"](dict(values) | {"lam": lam, "eta": lr})


class _CrossEntropyFlow(FullFlow):
    """Cross-entropy flow: E = ∂L/∂Z from the derived elementwise program, then the chain rule."""

    def logits(self, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The model's logits Z and the target's C at ``values`` (unshifted)."""
        out = self._programs["logits"](values)
        return np.asarray(out["Z"], dtype=np.float64), np.asarray(out["C"], dtype=np.float64)

    def _logits(self, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        z, c = self.logits(values)
        return z - z.max(), c - c.max()

    def loss_value(self, values: Mapping[str, np.ndarray]) -> float:
        """KL(softmax(vec C) ‖ softmax(vec Z)), without the decay term."""
        z, c = self._logits(values)
        return float(self._programs["ce_loss"]({"z": z, "c": c})["L"])

    def grad(self, values: Mapping[str, np.ndarray], lam: float) -> Arrays:
        z, c = self._logits(values)
        e = self._programs["dz"]({"z": z, "c": c})["E"]
        return self._programs["grad"](dict(values) | {"E": e, "lam": lam})


def pair_value(values: Mapping[str, np.ndarray], pair: list) -> np.ndarray:
    """left · right of a pair definition ``[left base, transposed?, right base, transposed?]``."""
    b1, t1, b2, t2 = pair
    left, right = np.asarray(values[b1], dtype=np.float64), np.asarray(values[b2],
                                                                      dtype=np.float64)
    return (left.T if t1 else left) @ (right.T if t2 else right)


class _Reduced(_Compiled):
    """Shared by the reduced flow and map: the state's definition, its initial value, the loss.

    The state (:attr:`keys`) holds the dynamic order parameters (pairs with a learned matrix or
    velocity) and the small learned matrices; :attr:`constants` the pairs of constants (e.g.
    ``At_A`` = AᵀA) and small constants, computed once from the spec.
    """

    def __init__(self, model: Model, payload: Mapping, derived: bool) -> None:
        super().__init__(model, payload, derived)
        meta = payload["meta"]
        self.keys = tuple(meta["state"])
        self.constants = tuple(meta["consts"])
        self.pairs = {k: list(v) for k, v in meta["pairs"].items()}
        self._symmetric = tuple(k for k in meta["symmetric"] if k in self.keys)
        self.velocity = dict(meta["velocity"])
        self._lookup = {tuple(v): k for k, v in self.pairs.items()}

    def initial(self, values: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        """``(state, constants)`` at the point ``values`` (learned and constants by symbol name);
        velocities start at 0 (the first step then has b = g, as torch's SGD)."""
        full = dict(values)
        for b, w in self.velocity.items():
            full[b] = np.zeros_like(np.asarray(values[w], dtype=np.float64))

        def value(key: str) -> np.ndarray:
            if key in self.pairs:
                return pair_value(full, self.pairs[key])
            return np.array(full[key], dtype=np.float64)

        return {k: value(k) for k in self.keys}, {k: value(k) for k in self.constants}

    def overlaps(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{W: (P = TᵀW, U = WᵀW, G = TᵀT)}`` for each learned W with a target T (model
        ``targets``) whose three pairs the state holds."""
        both = dict(state) | dict(consts)

        def find(a: str, b: str) -> np.ndarray | None:
            key = self._lookup.get((a, True, b, False))
            if key is not None and key in both:
                return both[key]
            key = self._lookup.get((b, True, a, False))
            return both[key].T if key is not None and key in both else None

        out = {}
        for w, t in self.model.targets.items():
            p, u, g = find(t, w), find(w, w), find(t, t)
            if p is not None and u is not None and g is not None:
                out[w] = (p, u, g)
        return out

    def _run(self, program: str, values: Mapping[str, object]) -> Arrays:
        """Run ``program`` and symmetrise its symmetric outputs exactly.

        MᵀM is symmetric by definition, but the derived polynomials, fed a state with a
        rounding-level antisymmetric part, amplify that part (measured: ×e^0.02 per GD step at
        η = 0.1, k > r, λ = 0 — the map blows up after ~2000 steps). Symmetrising the outputs,
        ½(E + Eᵀ), removes that unphysical direction and is exact on physical states.
        """
        out = self._programs[program](values)
        for key in self._symmetric:
            out[key] = 0.5 * (out[key] + out[key].T)
        return out

    def loss_value(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]
                   ) -> float:
        """The data loss L as a function of the order parameters (no decay term)."""
        return float(self._programs["loss"](dict(state) | dict(consts))["L"])

    def group_losses(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray]
                     ) -> np.ndarray:
        """ℓ_g = (∂L/∂D)_gg of a grouped model from the order parameters, shape (G,)."""
        e = self._programs["groups"](dict(state) | dict(consts))["E"]
        return np.diagonal(np.asarray(e, dtype=np.float64)).copy()


class ReducedFlow(_Reduced):
    """Gradient flow in the order parameters (module docstring, item 2), closed for any size of
    the large dimensions; the same ``modified`` choice as :class:`FullFlow`."""

    def __init__(self, model: Model, modified: bool, payload: Mapping, derived: bool) -> None:
        super().__init__(model, payload, derived)
        self.modified = modified

    def rhs(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], *,
            lam: float, lr: float = 0.0) -> Arrays:
        """d(state)/dt per unit t; ``lr`` (η) enters only the modified equation."""
        return self._run("rhs", dict(state) | dict(consts) | {"lam": lam, "eta": lr})


class ReducedGD(_Reduced):
    """One full-batch GD step (torch.optim.SGD semantics) exactly in the order parameters.

    g = ∇L + λθ; b' = μb + g; W' = W − ηb'; a step advances t by η. With ``momentum`` the
    state also holds the velocity's pairs (``b_W``); :meth:`initial` starts them at b = 0, so the
    first step has b' = g, exactly torch's first step (which sets buf = g).
    """

    def __init__(self, model: Model, momentum: bool, payload: Mapping, derived: bool) -> None:
        super().__init__(model, payload, derived)
        self.momentum = momentum

    def step(self, state: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], *,
             lam: float, lr: float, mu: float = 0.0) -> Arrays:
        """The state after one step of rate ``lr`` (η), decay ``lam`` (λ), momentum ``mu`` (μ)."""
        values = dict(state) | dict(consts) | {"eta": lr, "lam": lam}
        if not self.momentum:
            if mu != 0.0:
                raise ValueError("mu != 0 needs reduced_gd(model, momentum=True)")
            return self._run("step", values)
        return self._run("step", values | {"mu": mu})


class TrainingProgram:
    """The PyTorch source of a model's loss and gradients (run by :mod:`validation.training`).

    ``programs[name] = {"args", "outs", "source", "terms"}`` (``terms``: the same expressions
    as a node list, :func:`dynamics.terms.dag`, from which the trainer builds its graph):
    ``train`` (MSE models) returns
    L − L(0) (the loss minus its value at zero learned matrices, i.e. minus L_ref for a
    polynomial loss) and g_W = ∂L/∂W + λW; cross-entropy models have ``logits`` (Z), ``ce``
    ((L, E = ∂L/∂Z) of shifted logits) and ``grad`` (g_W given E).
    """

    def __init__(self, model: Model, payload: Mapping, derived: bool) -> None:
        self.model = model
        self.programs = dict(payload["programs"])
        self.derived = derived


# --------------------------------------------------------------------------- factories


def _per_sample(kind: str, model: Model, flag: bool) -> object:
    """A per-sample model's flow, map or torch programs (:mod:`dynamics.persample`)."""
    from . import persample

    if kind == "torch":
        payload, derived = _load_or_derive("persample-torch", _key_exprs(model),
                                           lambda: persample.torch_payload(model))
        return TrainingProgram(model, payload, derived)
    payload, derived = _load_or_derive("persample", _key_exprs(model),
                                       lambda: persample.derive_payload(model))
    if kind == "full":
        return persample.PerSampleFlow(model, payload, derived, modified=flag)
    if any(not model.is_small(w) for w in model.learned):
        raise persample.not_reduced(model)
    if kind == "reduced":
        return persample.PerSampleReduced(model, payload, derived, modified=flag)
    return persample.PerSampleReduced(model, payload, derived, momentum=flag)


@cache
def _cached(kind: str, model: Model, flag: bool) -> object:
    if model.per_sample:
        return _per_sample(kind, model, flag)
    if kind == "full":
        if model.cross_entropy():
            if flag:
                raise UsageError("cross-entropy: plain gradient flow only (no modified equation)")
            payload, derived = _load_or_derive("full-ce", _key_exprs(model),
                                               lambda: _derive_ce(model))
            return _CrossEntropyFlow(model, False, payload, derived)
        payload, derived = _load_or_derive(f"full-{'modified' if flag else 'plain'}",
                                           _key_exprs(model), lambda: _derive_full(model, flag))
        return FullFlow(model, flag, payload, derived)
    if kind == "torch":
        payload, derived = _load_or_derive("torch", _key_exprs(model),
                                           lambda: _derive_training(model))
        return TrainingProgram(model, payload, derived)
    if model.cross_entropy():
        raise ReductionError(f"model {model.name!r}: cross-entropy has no reduced dynamics")
    if kind == "reduced":
        payload, derived = _load_or_derive(f"reduced-{'modified' if flag else 'plain'}",
                                           _key_exprs(model), lambda: _derive_reduced(model, flag))
        return ReducedFlow(model, flag, payload, derived)
    if kind == "gd":
        payload, derived = _load_or_derive(f"gd-{'momentum' if flag else 'plain'}",
                                           _key_exprs(model), lambda: _derive_gd(model, flag))
        return ReducedGD(model, flag, payload, derived)
    raise ValueError(f"unknown derivation {kind!r}")


def full_flow(model: Model | str, loss: str | None = None, modified: bool = False) -> FullFlow:
    """The derived full-parameter flow of ``model`` (see :class:`FullFlow`); a kind string is
    resolved among the registered models (``loss="ce"``: the factorization's cross-entropy)."""
    return _cached("full", resolve(model, loss), bool(modified))  # type: ignore[return-value]


def reduced_flow(model: Model | str, modified: bool = False) -> ReducedFlow:
    """The derived order-parameter flow of ``model``; raises :class:`ReductionError` (naming
    the term) when it does not close."""
    return _cached("reduced", resolve(model), bool(modified))  # type: ignore[return-value]


def reduced_gd(model: Model | str, momentum: bool = False) -> ReducedGD:
    """The derived exact GD map of ``model`` in order parameters (see :class:`ReducedGD`)."""
    return _cached("gd", resolve(model), bool(momentum))  # type: ignore[return-value]


def training_program(model: Model | str, loss: str | None = None) -> TrainingProgram:
    """The derived PyTorch programs of ``model`` (see :class:`TrainingProgram`)."""
    return _cached("torch", resolve(model, loss), False)  # type: ignore[return-value]


def component_equations(model: Model | str, rank: int, latex: bool = False) -> list[str]:
    """The reduced flow written entry by entry, every dimension symbol set to ``rank``.

    The compiled :func:`reduced_flow` is evaluated on arrays of SymPy symbols (symmetric order
    parameters with X_ij = X_ji), so these are exactly the equations that are integrated,
    expanded: for the rank-1 factorization the scalar ODEs of the seeds, e.g.
    dAt_X/dt = At_A·Bt_Y − At_X·Yt_Y − λ·At_X. Time is continuous t. One string per
    independent entry.
    """
    if isinstance(rank, bool) or int(rank) != rank or rank < 1:
        raise UsageError(f"rank: must be an integer >= 1, got {rank!r}")
    rank = int(rank)
    flow = reduced_flow(model)
    model = flow.model
    lam = sp.Symbol("lambda" if latex else "λ")  # λ: plain text that sympify reads back
    symmetric = {k for k, (b1, t1, b2, t2) in flow.pairs.items() if b1 == b2 and t1 != t2}
    shapes = _shapes_at(model, flow, rank)

    def entries(name: str) -> np.ndarray:
        rows, cols = shapes[name]

        def entry(i: int, j: int) -> sp.Symbol:
            if name in symmetric:
                i, j = min(i, j), max(i, j)
            return sp.Symbol(f"{name}_{i + 1}{j + 1}" if rows * cols > 1 else name)

        return np.array([[entry(i, j) for j in range(cols)] for i in range(rows)], dtype=object)

    state = {key: entries(key) for key in flow.keys}
    consts = {key: entries(key) for key in flow.constants}
    rates = flow.rhs(state, consts, lam=lam)
    out = []
    for key, rate in rates.items():
        rows, cols = shapes[key]
        for i in range(rows):
            for j in range(i if key in symmetric else 0, cols):
                lhs, rhs = state[key][i, j], sp.expand(sp.nsimplify(rate[i, j], rational=True))
                if latex:
                    out.append(rf"\frac{{d{sp.latex(lhs)}}}{{dt}} = {sp.latex(rhs)}")
                else:
                    out.append(f"d{lhs}/dt = {sp.sstr(rhs)}")
    return out


def _shapes_at(model: Model, flow: _Reduced, size: int) -> dict[str, tuple[int, int]]:
    """Shapes of the state and constants with every dimension symbol set to ``size``."""

    def dim(d: sp.Expr) -> int:
        return int(d) if d.is_Integer else size

    sym = model.symbols
    out = {}
    for key in (*flow.keys, *flow.constants):
        if key in flow.pairs:
            b1, t1, b2, t2 = flow.pairs[key]
            s1, s2 = sym[b1].shape, sym[b2].shape
            out[key] = (dim(s1[1] if t1 else s1[0]), dim(s2[0] if t2 else s2[1]))
        else:
            out[key] = tuple(dim(d) for d in sym[key].shape)
    return out
