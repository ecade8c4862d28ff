"""The user-error hierarchy of scurve (standard library only, cheap to import).

* :class:`ScurveError` — base of every error caused by the user's input (a ``ValueError``, so
  callers that catch ``ValueError`` keep working);
* :class:`SpecError` — a problem spec (arguments or ``.npz`` file) is invalid;
* :class:`ModelError` — a model (or model file) is malformed;
* :class:`UsageError` — options that do not go together (a method given an option it does
  not take, ...).

The CLI reports these as one line on stderr with exit status 2; any other exception is a bug
and is reported as such (``--debug`` shows the traceback).
"""

from __future__ import annotations

__all__ = ["ModelError", "ScurveError", "SpecError", "UsageError"]


class ScurveError(ValueError):
    """A user error: the message is one line naming what is wrong and where."""


class SpecError(ScurveError):
    """A problem spec (arguments or ``.npz`` file) is invalid; the message names the key."""


class ModelError(ScurveError):
    """A model (or model file) is malformed; the message is one line naming what and where."""


class UsageError(ScurveError):
    """Options that do not go together (e.g. an option the chosen method does not take)."""
