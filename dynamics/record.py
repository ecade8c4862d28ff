"""What a run saves and when it stops: one record object and one stop object for theory,
training and the report (diffrax's ``SaveAt`` and event, ``predict(spec, method, saveat=…,
stop=…)``).

All times are continuous time t (a gradient step of rate η advances t by η, README
"Conventions"); loss levels are fractions f of L_ref (the zero model's loss).

:class:`SaveAt` — which samples a run keeps:

``SaveAt.every()``   every step of a discrete process (GD map, sign descent, training);
``SaveAt.log()``     the first :attr:`early` steps, then a step whenever t has grown by the factor
                     :attr:`ratio` since the last kept one (discrete processes streamed), or
                     ~:attr:`samples` steps half log-, half linearly spaced (a training run of a
                     known length), always the first and the last;
``SaveAt.grid(n)``   n times half log-, half linearly spaced in t (continuous methods: sampled
                     from the dense output; :meth:`SaveAt.thin`: an existing curve's samples
                     nearest to them);
``SaveAt.at(steps)`` the listed steps (training), or every ``k``-th with ``SaveAt.at(k)``.

Every mode also keeps the *crossings* of the levels f·L_ref, f in :attr:`crossings`: the two
samples around the first crossing of each (discrete processes: :class:`Recorder`; continuous
ones: the crossing time itself, root-found), so crossing times computed from the kept samples
(linear in ln L between them) are exactly those of every step. A training run, whose order
parameters are measured only at its saved steps, keeps its loss at every step as the exact
crossing record (:attr:`dynamics.trajectory.Trajectory.every_loss`).

:class:`Stop` — when a run ends: at ``t_max`` (in t), once L ≤ ``loss``·L_ref, or once it has
stalled (``stall``: relative loss improvement per check below which the run has stopped
changing); ``None`` fields take the method's automatic default (:mod:`dynamics.integrate`).

No SciPy, SymPy or torch here: every layer may import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import UsageError

__all__ = ["CROSSINGS", "MODES", "Recorder", "SaveAt", "Stop", "as_saveat"]

CROSSINGS = (0.5, 0.1, 0.01)  # fractions f whose crossings every record keeps exactly
MODES = ("every", "log", "grid", "at")


def _positive(owner: str, name: str, value: object, integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                           np.floating))
    if ok and integer:
        ok = int(value) == value  # type: ignore[arg-type]
    if not ok or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        kind = "an integer" if integer else "a finite number"
        raise UsageError(f"{owner}: {name} must be {kind} > 0, got {value!r}")


@dataclass(frozen=True)
class SaveAt:
    """Which samples a run keeps (module docstring). Build it with :meth:`every`,
    :meth:`log`, :meth:`grid` or :meth:`at`; ``mode`` is one of :data:`MODES`.

    Attributes:
        mode: ``every``, ``log``, ``grid`` or ``at``.
        samples: ``grid``: the number of times; ``log`` for a run of known length: ~the
            number of steps (half log-, half linearly spaced).
        early: ``log``: every step up to this one is kept.
        ratio: ``log`` streamed: keep a step once t has grown by this factor.
        steps: ``at``: the listed steps; ``every_k``: ``at`` every k-th step.
        crossings: fractions f of L_ref whose first crossing is kept exactly.
    """

    mode: str = "every"
    samples: int = 1500
    early: int = 100
    ratio: float = 1.01
    steps: tuple[int, ...] = ()
    every_k: int = 0
    crossings: tuple[float, ...] = CROSSINGS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"SaveAt: unknown mode {self.mode!r} (expected one of "
                             f"{', '.join(MODES)})")
        _positive("SaveAt", "samples", self.samples, integer=True)
        if not (isinstance(self.ratio, (int, float)) and self.ratio > 1):
            raise UsageError(f"SaveAt: ratio must be a number > 1, got {self.ratio!r}")
        if any(not (math.isfinite(f) and 0 < f) for f in self.crossings):
            raise UsageError(f"SaveAt: crossings must be fractions > 0, got {self.crossings!r}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def every(cls) -> SaveAt:
        """Every step (discrete processes)."""
        return cls("every")

    @classmethod
    def log(cls, samples: int = 400, early: int = 100, ratio: float = 1.01) -> SaveAt:
        """Log-spaced steps: every step up to ``early``, then (streamed) one whenever t grew
        by ``ratio``, or (known length) ~``samples`` steps half log-, half linearly spaced."""
        return cls("log", samples=samples, early=early, ratio=ratio)

    @classmethod
    def grid(cls, samples: int = 1500) -> SaveAt:
        """``samples`` times in t, half log-, half linearly spaced over the run."""
        return cls("grid", samples=samples)

    @classmethod
    def at(cls, steps: int | Sequence[int]) -> SaveAt:
        """The listed steps, or every ``steps``-th step for an int (always 0 and the last)."""
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            _positive("SaveAt.at", "step interval", steps, integer=True)
            return cls("at", every_k=int(steps))
        try:
            listed = tuple(int(s) for s in steps)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise UsageError(f"SaveAt.at: steps must be an int or a list of ints, got "
                             f"{steps!r}") from None
        return cls("at", steps=listed)

    # ------------------------------------------------------------------ schemes
    def times(self, t_end: float, first: float | None = None) -> np.ndarray:
        """Sample times in [0, t_end]: 0, ``samples/2`` log-spaced from max(first, 10⁻⁶
        t_end) and ``samples/2`` linearly spaced, sorted and unique (``first``: the earliest
        positive time worth resolving, default 10⁻⁶ t_end)."""
        half = self.samples // 2
        if t_end <= 0:
            return np.zeros(1)
        low = t_end * 1e-6 if first is None else max(first, t_end * 1e-6)
        return np.unique(np.concatenate([[0.0], np.geomspace(low, t_end, half),
                                         np.linspace(0.0, t_end, half)]))

    def thin(self, t: np.ndarray) -> np.ndarray:
        """Indices of the samples of a curve at times ``t`` (sorted) to keep: all of them when
        there are at most ``samples``, else those at or after :meth:`times` (first and last
        always kept)."""
        t = np.asarray(t, dtype=np.float64)
        if t.size <= self.samples:
            return np.arange(t.size)
        first = t[1] if t[0] == 0 else t[0]
        half = self.samples // 2
        marks = np.concatenate([np.linspace(t[0], t[-1], half),
                                np.geomspace(max(first, t[-1] * 1e-6), t[-1], half)])
        return np.unique(np.concatenate([[0, t.size - 1],
                                         np.searchsorted(t, marks).clip(0, t.size - 1)]))

    def step_indices(self, steps: int) -> np.ndarray:
        """The steps 0..``steps`` of a run of known length to keep, sorted and unique, always
        0 and ``steps`` (``every``: all; ``log``: every step up to ``early`` and ~``samples``
        more, half log-, half linearly spaced; ``grid``: ``samples`` linearly spaced; ``at``:
        the listed steps within [0, steps] or every k-th)."""
        if self.mode == "every":
            return np.arange(steps + 1)
        if self.mode == "log":
            half = self.samples // 2
            early = np.arange(min(steps, self.early) + 1)
            log = np.rint(np.geomspace(1, steps, half))
            linear = np.rint(np.linspace(0, steps, half + 1))
            listed = np.concatenate([early, log, linear])
        elif self.mode == "grid":
            listed = np.rint(np.linspace(0, steps, self.samples))
        elif self.every_k:
            listed = np.arange(0, steps + 1, self.every_k)
        else:
            listed = np.array([s for s in self.steps if 0 <= s <= steps])
        return np.unique(np.concatenate([[0], listed, [steps]]).astype(np.int64))

    def recorder(self, l_ref: float) -> Recorder:
        """A :class:`Recorder` that streams a discrete process's steps through this record."""
        return Recorder(self, l_ref)


def as_saveat(record: str | int | Sequence[int] | SaveAt | None, default: str) -> SaveAt:
    """The :class:`SaveAt` of a legacy ``record`` argument (``"all"``/``"every"``, ``"log"``,
    an int k: every k-th step, a list of steps), or ``default`` for None."""
    if isinstance(record, SaveAt):
        return record
    record = default if record is None else record
    if isinstance(record, str):
        if record in ("all", "every"):
            return SaveAt.every()
        if record == "log":
            return SaveAt.log()
        raise UsageError(f"unknown record {record!r} (expected all, log, an int or a list of "
                         "steps)")
    return SaveAt.at(record)


class Recorder:
    """Stream a discrete process's steps (GD map, sign descent) through a :class:`SaveAt`:
    keeps step, t, loss and state of the samples the record asks for, plus the two steps
    around the first crossing of each f·L_ref (f in ``saveat.crossings``) and the last step,
    so crossing times from the kept samples equal those from every step."""

    def __init__(self, saveat: SaveAt, l_ref: float) -> None:
        self.saveat = saveat
        self.levels = sorted((f * l_ref for f in saveat.crossings), reverse=True)
        self.wanted = set(saveat.steps)  # ``at`` a list of steps
        self.steps: list[int] = []
        self.t: list[float] = []
        self.loss: list[float] = []
        self.states: list[dict[str, np.ndarray]] = []
        self.pending: tuple | None = None  # the previous step, not (yet) kept

    def _wants(self, step: int, t: float) -> bool:
        s = self.saveat
        if s.mode == "every" or not self.t:
            return True
        if s.mode == "at":
            return step % s.every_k == 0 if s.every_k else step in self.wanted
        if s.mode == "grid":  # streamed: linear spacing unknown in advance; log in t instead
            return t >= (1 + 10.0 / s.samples) * self.t[-1]
        return step <= s.early or t >= s.ratio * self.t[-1]

    def add(self, step: int, t: float, loss: float, state: dict[str, np.ndarray]) -> None:
        """Offer step ``step`` at time ``t`` with its ``loss`` and ``state``."""
        crossing = False
        while self.levels and loss <= self.levels[0]:
            self.levels.pop(0)
            crossing = True
        if crossing and self.pending is not None:
            self._keep(*self.pending)
        if crossing or self._wants(step, t):
            self._keep(step, t, loss, state)
            self.pending = None
        else:
            self.pending = (step, t, loss, state)

    def _keep(self, step: int, t: float, loss: float, state: dict[str, np.ndarray]) -> None:
        self.steps.append(step)
        self.t.append(t)
        self.loss.append(loss)
        self.states.append(state)

    def finish(self) -> None:
        """Keep the last step."""
        if self.pending is not None:
            self._keep(*self.pending)
            self.pending = None


@dataclass(frozen=True)
class Stop:
    """When a run ends (module docstring); ``None``: the method's automatic default.

    Attributes:
        t_max: end time in t (continuous time, t = η·step).
        loss: stop once L ≤ ``loss``·L_ref (a fraction of L_ref).
        stall: stop once a check (a doubling of t or of the step count) improved the loss by
            less than this fraction (relative): the run has stopped changing.
    """

    t_max: float | None = None
    loss: float | None = None
    stall: float | None = None

    def __post_init__(self) -> None:
        for name in ("t_max", "loss", "stall"):
            value = getattr(self, name)
            if value is not None:
                _positive("Stop", name, value)

    def with_defaults(self, t_max: float | None = None, loss: float | None = None,
                      stall: float | None = None) -> Stop:
        """This stop with each ``None`` field replaced by the given default (if any)."""
        return replace(self, t_max=t_max if self.t_max is None else self.t_max,
                       loss=loss if self.loss is None else self.loss,
                       stall=stall if self.stall is None else self.stall)

    def level(self, l_ref: float) -> float:
        """The loss level ``loss``·L_ref (0 without a loss rule)."""
        return 0.0 if self.loss is None else self.loss * l_ref

    def reached(self, t: float, loss: float, l_ref: float) -> bool:
        """Whether a run at time ``t`` with this ``loss`` has met the time or the loss rule."""
        return ((self.t_max is not None and t >= self.t_max)
                or (self.loss is not None and loss < self.loss * l_ref))
