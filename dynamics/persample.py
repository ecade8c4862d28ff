"""Per-sample forms: a squared loss summed over N samples, reduced through its statistics.

A per-sample model (:class:`dynamics.model.Model` with ``residual``, ``per_sample``,
``samples``; module docstring of :mod:`dynamics.model`) has

    L = ½ Σ_n r_n²,   r_n = Σ_k tr(X_{k,n}ᵀ F_k(θ)),   F_k = ∂r/∂X_k   (free of every X_k)

With z_n = [vec X_{k,n}]_k (one row of Z, N × m) and f(θ) = [vec F_k(θ)]_k:

    L = ½‖Z f‖² = ½ fᵀ S f,   S = ZᵀZ = Σ_n z_n z_nᵀ   (m × m, m = Σ_k |X_k|)
    ∇_θ L = ∇_θ Σ_k tr(R_kᵀ F_k(θ)) |_{R fixed},   R = unvec(S f) = unvec(Zᵀ Z f)

SymPy derives F_k and the gradient of the surrogate Σ_k tr(R_kᵀ F_k) (R_k a symbol of X_k's
shape); the numbers go through S (reduced: the state is the learned matrices, its size
independent of N) or through Z itself (full). The exact GD step is θ' = θ − η(∇L + λθ) (heavy
ball: b' = μb + g, θ' = θ − ηb'); t = η·step. The modified equation needs ∇²L∇L:
H v = D_v g|_R + ∇_θ Σ_k tr(δR_kᵀ F_k), δR = unvec(S·[vec D_v F_k]_k) (both parts derived).
Training prints r_n as a batched contraction (torch.einsum over the samples).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy as sp
from sympy.matrices.expressions import MatAdd, MatMul, MatrixSymbol, Trace

from .matexpr import MultiDotPrinter, ReductionError, TorchChainPrinter, directional, normalize
from .matexpr import termwise_gradient as _tgrad
from .model import Model, ModelError

__all__ = ["PerSampleFlow", "PerSampleReduced", "derive", "statistics"]

Arrays = dict[str, np.ndarray]
_LAM, _ETA, _MU = sp.symbols("lam eta mu", real=True)


def _r_name(x: MatrixSymbol) -> str:
    return f"R_{x.name}"


def _v_name(w: MatrixSymbol) -> str:
    return f"V_{w.name}"


def _tidy(expr: sp.Basic) -> sp.Basic:
    """normalize, keeping forms it does not expand (an identity: ∂tr(y)/∂y = I)."""
    try:
        return normalize(expr)
    except TypeError:
        return expr.doit()


def _linear_part(r: sp.Expr, x: MatrixSymbol) -> sp.Basic:
    """∂r/∂x, term by term (as :func:`dynamics.matexpr.termwise_gradient`)."""
    parts = [sp.diff(t, x) for t in sp.Add.make_args(_tidy(r)) if x in t.free_symbols]
    return _tidy(MatAdd(*parts)) if parts else sp.ZeroMatrix(*x.shape)


def derive(model: Model, printer: type = MultiDotPrinter) -> dict:
    """Programs of a per-sample model: ``F`` (F_k by per-sample name), ``grad`` (g_W of the
    surrogate at R_k, + λW), ``dF`` (D_V F_k) and ``hv`` (D_V g|_R, λ included).

    Raises :class:`ModelError` when r is not affine in the per-sample constants."""
    from .symbolic import _program  # the one printer of programs

    learned, per = list(model.learned), list(model.per_sample)
    others = [c for c in model.constants if c not in per]
    fs = {}
    for x in per:
        f = _linear_part(model.residual, x)
        if f.free_symbols & set(per):
            raise ModelError(f"model {model.name!r}: residual is not affine in the per-sample "
                             f"constants (∂r/∂{x.name} still holds one)")
        if (model.residual.free_symbols - set(learned)) and not (set(per) & set(
                model.residual.free_symbols)):
            raise ModelError(f"model {model.name!r}: residual holds no per-sample constant")
        fs[x.name] = f
    rest = _tidy(model.residual - sp.Add(*(Trace(x.T * fs[x.name]).doit() for x in per)))
    if rest != 0:
        raise ModelError(f"model {model.name!r}: residual has a term without a per-sample "
                         "constant (write a label y as a per-sample constant: r = ŷ − tr(y))")
    rs = [MatrixSymbol(_r_name(x), *x.shape) for x in per]
    vs = [MatrixSymbol(_v_name(w), *w.shape) for w in learned]
    surrogate = sp.Add(*(Trace(r.T * fs[x.name]) for r, x in zip(rs, per, strict=True)))
    grads = {w.name: normalize(MatAdd(_tgrad(_tidy(surrogate), w), MatMul(_LAM, w)))
             for w in learned}
    along = dict(zip(learned, vs, strict=True))
    args = [*learned, *others]
    return {
        "F": _program(args, {k: f for k, f in fs.items()}, printer),
        "grad": _program([*args, *rs, _LAM], grads, printer),
        "dF": _program([*args, *vs], {k: _tidy(directional(f, along))
                                      for k, f in fs.items()}, printer),
        "hv": _program([*args, *rs, *vs, _LAM], {k: normalize(directional(g, along))
                                                 for k, g in grads.items()}, printer),
    }


def derive_payload(model: Model) -> dict:
    """The cached payload (numpy programs and LaTeX) of :func:`derive`."""
    per = list(model.per_sample)
    latex = [rf"L = \frac{{1}}{{2}} \sum_n r_n^2,\quad r_n = {sp.latex(model.residual)}",
             r"R = \mathrm{unvec}(S f),\quad S = \sum_n z_n z_n^T,\quad "
             r"z_n = [\mathrm{vec}\, X_{k,n}]_k,\quad f = [\mathrm{vec}\, F_k]_k"]
    for x in per:
        latex.append(rf"F_{{{x.name}}} = {sp.latex(_linear_part(model.residual, x))}")
    rs = [MatrixSymbol(_r_name(x), *x.shape) for x in per]
    surrogate = sp.Add(*(Trace(r.T * _linear_part(model.residual, x))
                         for r, x in zip(rs, per, strict=True)))
    for w in model.learned:
        grad = normalize(MatMul(-1, _tgrad(_tidy(surrogate), w)))
        latex.append(rf"\frac{{d{w.name}}}{{dt}} = {sp.latex(grad)} - \lambda {w.name}")
    return {"programs": derive(model), "latex": latex,
            "meta": {"learned": list(model.learned_names)}}


def torch_payload(model: Model) -> dict:
    """The torch programs ``F`` and ``grad`` of :func:`derive` (the trainer's)."""
    from .symbolic import _program

    programs = derive(model, TorchChainPrinter)
    learned, per = set(model.learned), list(model.per_sample)
    fs = {x.name: _linear_part(model.residual, x) for x in per}
    moving = {k: f for k, f in fs.items() if f.free_symbols & learned}
    others = [c for c in model.constants if c not in per]
    programs["F"] = _program([*model.learned, *others], moving, TorchChainPrinter)
    return {"programs": {k: programs[k] for k in ("F", "grad")}, "latex": [],
            "meta": {"learned": list(model.learned_names), "per_sample": [
                x.name for x in model.per_sample]}}


def _rows(model: Model, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Z (N × m): row n is [vec X_{k,n}]_k over the per-sample constants."""
    parts = []
    n = None
    for x in model.per_sample:
        arr = np.asarray(values[x.name], dtype=np.float64)
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ModelError(f"{x.name}: {arr.shape[0]} samples, but "
                             f"{model.per_sample[0].name} has {n}")
        parts.append(arr.reshape(arr.shape[0], -1))
    return np.concatenate(parts, axis=1)


def statistics(model: Model, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """S = ZᵀZ = Σ_n z_n z_nᵀ (m × m), the sufficient statistic of the per-sample constants."""
    z = _rows(model, values)
    return z.T @ z


class _Base:
    """Shared: compiled programs, f(θ), R → gradient, Hessian-vector products."""

    def __init__(self, model: Model, payload: Mapping, derived: bool, modified: bool = False):
        from .symbolic import _Program

        self.model, self.derived, self.modified = model, derived, modified
        self.names = tuple(payload["meta"]["learned"])
        self._programs = {k: _Program(v) for k, v in payload["programs"].items()}
        self.keys = self.names
        self._per = [x.name for x in model.per_sample]
        self._latex = list(payload["latex"])
        self._others = [c for c in model.constant_names if c not in self._per]

    @property
    def kind(self) -> str:
        return self.model.name

    def latex(self) -> list[str]:
        """The loss, S, F_k and dW/dt (LaTeX ``lhs = rhs``)."""
        return list(self._latex)

    def _shapes(self, values: Mapping[str, np.ndarray]) -> list[tuple[int, ...]]:
        return [np.shape(values[k])[1:] for k in self._per]

    def _flat(self, out: Mapping[str, object], shapes: list[tuple[int, ...]]) -> np.ndarray:
        return np.concatenate([np.broadcast_to(np.asarray(out[k], dtype=np.float64), s).ravel()
                               for k, s in zip(self._per, shapes, strict=True)])

    def _split(self, vec: np.ndarray, shapes: list[tuple[int, ...]], prefix: str = "R_") -> Arrays:
        sizes = [int(np.prod(s)) for s in shapes]
        parts = np.split(vec, np.cumsum(sizes)[:-1])
        return {prefix + k: p.reshape(s) for k, p, s in zip(self._per, parts, shapes, strict=True)}

    def _f(self, params: Mapping[str, np.ndarray], shapes: list[tuple[int, ...]]) -> np.ndarray:
        return self._flat(self._programs["F"](params), shapes)

    def _grad(self, params: Mapping[str, object], r: np.ndarray, shapes: list, lam: float
              ) -> Arrays:
        return self._programs["grad"](dict(params) | self._split(r, shapes) | {"lam": lam})

    def _hv(self, params: Mapping[str, object], r: np.ndarray, apply_s, shapes: list,
            v: Mapping[str, np.ndarray], lam: float) -> Arrays:
        """H v of L + ½λ‖θ‖²: D_v g|_R + ∇Σ tr(δRᵀF), δR = S·vec(D_v F)."""
        vv = {"V_" + k: a for k, a in v.items()}
        df = self._flat(self._programs["dF"](dict(params) | vv), shapes)
        part = self._programs["hv"](dict(params) | self._split(r, shapes) | vv | {"lam": lam})
        extra = self._grad(params, apply_s(df), shapes, 0.0)
        return {k: part[k] + extra[k] for k in part}


    def fixed_part(self, values: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        """F_k of per-sample constant ``name`` at ``values`` (numpy; used for the F_k that hold
        no learned matrix, e.g. −1 for a label)."""
        return np.asarray(self._programs["F"](values)[name], dtype=np.float64)


class PerSampleFlow(_Base):
    """Full flow dθ/dt = −g (modified: −g − (η/2)H g) through Z itself (O(N·m) per call);
    ``values`` hold the learned matrices and every constant (per-sample ones N × shape)."""

    def _z(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        key = tuple(id(values[k]) for k in self._per)
        if getattr(self, "_zkey", None) != key:
            self._zkey, self._zval = key, _rows(self.model, values)
        return self._zval

    def loss_value(self, values: Mapping[str, np.ndarray]) -> float:
        """L = ½ Σ_n r_n² (no decay term)."""
        r = self._z(values) @ self._f(values, self._shapes(values))
        return float(0.5 * r @ r)

    def grad(self, values: Mapping[str, np.ndarray], lam: float) -> Arrays:
        """g_W = ∂L/∂W + λW."""
        z, shapes = self._z(values), self._shapes(values)
        return self._grad(values, z.T @ (z @ self._f(values, shapes)), shapes, lam)

    def rhs(self, values: Mapping[str, np.ndarray], *, lam: float, lr: float = 0.0) -> Arrays:
        """dθ/dt per unit t (η enters only the modified equation)."""
        z, shapes = self._z(values), self._shapes(values)
        r = z.T @ (z @ self._f(values, shapes))
        g = self._grad(values, r, shapes, lam)
        if not self.modified:
            return {k: -v for k, v in g.items()}
        hv = self._hv(values, r, lambda u: z.T @ (z @ u), shapes, g, lam)
        return {k: -g[k] - 0.5 * lr * hv[k] for k in g}


class PerSampleReduced(_Base):
    """Reduced flow and exact GD map: state = the learned matrices (+ velocities ``b_W``),
    constants = S (:func:`statistics`) and the other constants; O(m²) per call, any N."""

    def __init__(self, model: Model, payload: Mapping, derived: bool, modified: bool = False,
                 momentum: bool = False) -> None:
        super().__init__(model, payload, derived, modified)
        self.momentum = momentum
        self.keys = self.names + (tuple(f"b_{w}" for w in self.names) if momentum else ())
        self.constants = ("S", *self._others)

    def initial(self, values: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
        """``(state, constants)``: the learned matrices (velocities 0) and S, the others."""
        state = {w: np.array(values[w], dtype=np.float64) for w in self.names}
        if self.momentum:
            state |= {f"b_{w}": np.zeros_like(state[w]) for w in self.names}
        consts = {k: np.asarray(values[k], dtype=np.float64) for k in self._others}
        consts["S"] = statistics(self.model, values)
        consts["_shapes"] = self._shapes(values)  # type: ignore[assignment]
        return state, consts

    def overlaps(self, state: Mapping, consts: Mapping) -> dict:
        return {}

    def loss_value(self, state: Mapping, consts: Mapping) -> float:
        """L = ½ fᵀ S f."""
        f = self._f(dict(state) | dict(consts), consts["_shapes"])
        return float(0.5 * f @ (consts["S"] @ f))

    def _g(self, state: Mapping, consts: Mapping, lam: float) -> tuple[Arrays, np.ndarray]:
        params, shapes = dict(state) | dict(consts), consts["_shapes"]
        r = consts["S"] @ self._f(params, shapes)
        return self._grad(params, r, shapes, lam), r

    def rhs(self, state: Mapping, consts: Mapping, *, lam: float, lr: float = 0.0) -> Arrays:
        """dθ/dt per unit t (η enters only the modified equation)."""
        g, r = self._g(state, consts, lam)
        if not self.modified:
            return {k: -v for k, v in g.items()}
        s = consts["S"]
        hv = self._hv(dict(state) | dict(consts), r, lambda u: s @ u, consts["_shapes"], g, lam)
        return {k: -g[k] - 0.5 * lr * hv[k] for k in g}

    def step(self, state: Mapping, consts: Mapping, *, lam: float, lr: float, mu: float = 0.0
             ) -> Arrays:
        """One GD step (torch.optim.SGD semantics): b' = μb + g, W' = W − ηb'."""
        if mu != 0.0 and not self.momentum:
            raise ValueError("mu != 0 needs reduced_gd(model, momentum=True)")
        g, _ = self._g({w: state[w] for w in self.names}, consts, lam)
        out = {}
        for w in self.names:
            buf = mu * state[f"b_{w}"] + g[w] if self.momentum else g[w]
            out[w] = state[w] - lr * buf
            if self.momentum:
                out[f"b_{w}"] = buf
        return out


def not_reduced(model: Model) -> ReductionError:
    """The error for a per-sample model with a learned matrix holding a large dimension."""
    big = [w.name for w in model.learned if not model.is_small(w)]
    return ReductionError(f"per-sample model {model.name!r}: learned {big[0]} has a large "
                          "dimension (its own state grows with it)")
