"""Names the command line offers before torch loads (``scurve --help`` imports no torch).

:mod:`figures.cli` builds its parser from here; :mod:`validation.optim` takes its
``OPTIMIZERS`` from here. The task and loss-method names mirror :mod:`validation.tasks`
(``tests/figures/test_cli_startup.py`` checks that they agree).
"""

from __future__ import annotations

__all__ = ["GROUP_METHODS", "OPTIMIZERS", "TASKS"]

#: the batched optimizers of :mod:`validation.optim` (torch.optim's update rules)
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
#: the capability tasks of :mod:`validation.tasks` (``scurve grouped --task``)
TASKS = ("modes", "modes-scale", "parity", "skills")
#: the loss methods of :mod:`validation.tasks` (``scurve grouped --method``)
GROUP_METHODS = ("mean", "power", "grouped", "root", "tilted", "dro", "cluster", "svd")
