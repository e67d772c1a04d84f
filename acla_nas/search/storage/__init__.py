"""search.storage: where a multi-trial search keeps its trials.

``backend`` opens what the user typed (a journal file on one machine, SQLite, PostgreSQL across
machines), ``study`` pins one Optuna study per run, ``owner`` and ``liveness`` tell whether the
worker of a RUNNING trial is still there, ``journal_lock`` is a lock that a killed process cannot
keep. May import: ``core`` ... ``runs``.
"""

from __future__ import annotations
