"""search: exploring a space.

``config`` (the typed RunConfig built from the command line), ``run`` (the launcher: local
workers, ``--nproc``, torchrun), ``strategies`` (DARTS, evolution, TPE, random, NNI tuners),
``evaluators`` (one-shot, proxy, table), ``table`` (building and reading a tabulated space) and
``storage`` (Optuna storages, studies, trial ownership). May import: ``core`` ... ``space``.
"""

from __future__ import annotations
