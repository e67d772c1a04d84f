"""acla-nas: search where to insert Adaptive Cross-Layer Attention into restoration CNNs.

The Python API (docs/api.md): :func:`run_search`, :func:`export_run`, :func:`train_arch` and
:func:`evaluate`, returning :class:`SearchRun`, a list of export folders, :class:`TrainRun` and
:class:`Evaluation`. Importing the package is light: torch, Optuna and the rest load when a
function is called, and no logging is configured here.
"""

from __future__ import annotations

from acla_nas.api import Evaluation, SearchRun, TrainRun, evaluate, export_run, run_search, train_arch
from acla_nas.core.version import __version__

__all__ = [
    "Evaluation",
    "SearchRun",
    "TrainRun",
    "__version__",
    "evaluate",
    "export_run",
    "run_search",
    "train_arch",
]
