"""Learning-rate schedules with torch.optim.lr_scheduler's names, arguments and values.

A schedule turns the base step size η (torch's initial ``lr``) into one rate per optimizer
step: η_k is the rate of step k (k = 0, 1, ...), the value ``scheduler.get_last_lr()`` returns
after k calls of ``scheduler.step()`` (one per optimizer step, as in a training loop that steps
the scheduler after every ``optimizer.step()``). The values follow the recursions torch
evaluates, operation for operation, so they are torch's to the last bit; the closed forms they
stand for (torch's documentation) are

=====================================  ===========================================================
``StepLR(step_size, gamma=0.1)``       η_k = η·γ^⌊k/step_size⌋
``ExponentialLR(gamma)``               η_k = η·γ^k
``CosineAnnealingLR(T_max, eta_min)``  η_k = η_min + (η − η_min)·(1 + cos(πk/T_max))/2
                                       (periodic in k with period 2·T_max, no restarts)
``LinearLR(start_factor=1/3,           η_k = η·(s + (e − s)·min(k, n)/n), s = start_factor,
end_factor=1, total_iters=5)``         e = end_factor, n = total_iters (linear warm-up)
=====================================  ===========================================================

The recursions drift from the closed forms by rounding (cosine: ~1e-13 relative after a few
thousand steps). ``eta_min`` is an absolute rate, as in torch; the others are factors of η.

Time. With a schedule a step of rate η_k still advances t by η_k, so the time of step k is
cumulative, t_k = Σ_{j<k} η_j (README "Conventions"; without a schedule t_k = η·k exactly).
Crossing times are in this t. The recursion runs in plain Python floats (no torch; NumPy
only holds the arrays), so the trainer (:mod:`validation.training`) and the exact GD map
(:func:`dynamics.integrate.predict` with ``Discrete(lr, schedule=...)``) see the same rates
and the same times, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from itertools import islice
from typing import TYPE_CHECKING, ClassVar

from .errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

__all__ = [
    "SCHEDULES",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearLR",
    "Schedule",
    "StepLR",
    "schedule_from_text",
    "step_times",
    "times",
]


def _positive_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{owner}: {name} must be an integer >= 1, got {value!r}")


def _finite(owner: str, name: str, value: object, low: float, high: float = math.inf,
            low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}"
                                                          if high < math.inf else "")
        raise UsageError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class Schedule:
    """Base of the schedules: η_0, η_1, ... from the base rate η (see module docstring)."""

    name: ClassVar[str] = ""

    def _first(self, lr: float) -> float:
        """η_0 from the base rate."""
        return lr

    def _next(self, prev: float, lr: float, k: int) -> float:
        """η_k from η_{k−1} (k >= 1) and the base rate, as torch's ``get_lr`` computes it."""
        raise NotImplementedError

    def iterate(self, lr: float) -> Iterator[float]:
        """η_0, η_1, ... for base rate ``lr`` (endless)."""
        lr = float(lr)
        rate, k = self._first(lr), 0
        while True:
            yield rate
            k += 1
            rate = self._next(rate, lr, k)

    def text(self) -> str:
        """The ``NAME:KEY=VALUE,...`` form :func:`schedule_from_text` reads back exactly."""
        values = ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}:{values}"

    def rates(self, lr: float, steps: int) -> np.ndarray:
        """η_0 .. η_{steps−1} for base rate ``lr`` (float64)."""
        import numpy as np  # here, so that the CLI's parser needs no NumPy

        return np.fromiter(islice(self.iterate(lr), steps), dtype=np.float64, count=steps)


@dataclass(frozen=True)
class StepLR(Schedule):
    """η_k = η·γ^⌊k/step_size⌋ (``torch.optim.lr_scheduler.StepLR``)."""

    step_size: int
    gamma: float = 0.1
    name: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        _positive_int("StepLR", "step_size", self.step_size)
        _finite("StepLR", "gamma", self.gamma, 0.0, low_open=True)

    def _next(self, prev: float, lr: float, k: int) -> float:
        return prev if k % self.step_size != 0 else prev * self.gamma


@dataclass(frozen=True)
class ExponentialLR(Schedule):
    """η_k = η·γ^k (``torch.optim.lr_scheduler.ExponentialLR``)."""

    gamma: float
    name: ClassVar[str] = "exponential"

    def __post_init__(self) -> None:
        _finite("ExponentialLR", "gamma", self.gamma, 0.0, low_open=True)

    def _next(self, prev: float, lr: float, k: int) -> float:
        return prev * self.gamma


@dataclass(frozen=True)
class CosineAnnealingLR(Schedule):
    """η_k = η_min + (η − η_min)(1 + cos(πk/T_max))/2
    (``torch.optim.lr_scheduler.CosineAnnealingLR``; ``eta_min`` absolute)."""

    T_max: int  # torch's name
    eta_min: float = 0.0
    name: ClassVar[str] = "cosine"

    def __post_init__(self) -> None:
        _positive_int("CosineAnnealingLR", "T_max", self.T_max)
        _finite("CosineAnnealingLR", "eta_min", self.eta_min, 0.0)

    def _next(self, prev: float, lr: float, k: int) -> float:
        t_max, low = self.T_max, self.eta_min
        if (k - 1 - t_max) % (2 * t_max) == 0:
            return prev + (lr - low) * (1 - math.cos(math.pi / t_max)) / 2
        return ((1 + math.cos(math.pi * k / t_max)) / (1 + math.cos(math.pi * (k - 1) / t_max))
                * (prev - low) + low)


@dataclass(frozen=True)
class LinearLR(Schedule):
    """η_k = η·(s + (e − s)·min(k, n)/n) (``torch.optim.lr_scheduler.LinearLR``; a warm-up
    from s·η to e·η over n = ``total_iters`` steps)."""

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5
    name: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        _finite("LinearLR", "start_factor", self.start_factor, 0.0, 1.0, low_open=True)
        _finite("LinearLR", "end_factor", self.end_factor, 0.0, 1.0)
        _positive_int("LinearLR", "total_iters", self.total_iters)

    def _first(self, lr: float) -> float:
        return lr * self.start_factor

    def _next(self, prev: float, lr: float, k: int) -> float:
        if k > self.total_iters:
            return prev
        s, e = self.start_factor, self.end_factor
        return prev * (1.0 + (e - s) / (self.total_iters * s + (k - 1) * (e - s)))


#: the schedules by their short name (the CLI's ``--schedule NAME:...``)
SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (StepLR, ExponentialLR, CosineAnnealingLR, LinearLR)}


def times(lr: float, steps: int, schedule: Schedule | None = None) -> np.ndarray:
    """t_0 .. t_steps of ``steps`` steps from base rate ``lr``: t_k = η·k without a schedule,
    t_k = Σ_{j<k} η_j (summed in order) with one."""
    import numpy as np

    if schedule is None:
        return float(lr) * np.arange(steps + 1)
    out = np.zeros(steps + 1)
    np.cumsum(schedule.rates(lr, steps), out=out[1:])
    return out


def step_times(lr: float, steps: ArrayLike, schedule: Schedule | None = None) -> np.ndarray:
    """t at the listed steps k (integers >= 0): t_k of :func:`times`, η·k without a schedule
    (the same float64 values as ``times(lr, max(k))[k]``)."""
    import numpy as np

    k = np.asarray(steps, dtype=int)
    if schedule is None:
        return float(lr) * k
    return times(lr, int(k.max(initial=0)), schedule)[k]


def schedule_from_text(text: str) -> Schedule:
    """``NAME:KEY=VALUE,...`` -> a schedule, e.g. ``step:step_size=100,gamma=0.5``,
    ``exponential:gamma=0.999``, ``cosine:T_max=1000,eta_min=0``, ``linear:total_iters=100``.

    NAME is a short name of :data:`SCHEDULES` or torch's class name (``StepLR``, ...); the keys
    are the class's (torch's) argument names. Raises ``ValueError`` (one line) on bad input.
    """
    name, _, rest = text.strip().partition(":")
    by_class = {cls.__name__: cls for cls in SCHEDULES.values()}
    cls = SCHEDULES.get(name) or by_class.get(name)
    if cls is None:
        raise UsageError(f"unknown schedule {name!r} (expected one of "
                         f"{', '.join(SCHEDULES)}, e.g. step:step_size=100,gamma=0.5)")
    kinds = {f.name: f.type for f in fields(cls)}
    options: dict[str, int | float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in kinds:
            raise UsageError(f"schedule {cls.name}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(kinds)}, got {part!r}")
        try:
            options[key] = int(value) if kinds[key] == "int" else float(value)
        except ValueError:
            what = "an integer" if kinds[key] == "int" else "a number"
            raise UsageError(f"schedule {cls.name}: {key} must be {what}, got "
                             f"{value!r}") from None
    try:
        return cls(**options)
    except TypeError:
        missing = [k for k in kinds if k not in options]
        raise UsageError(f"schedule {cls.name}: missing {', '.join(missing)}") from None
