"""search.storage: where a multi-trial search keeps its trials.

``backend`` opens what the user typed, ``study`` pins one Optuna study per run, ``store``
(:class:`~acla_nas.search.storage.store.TrialStore`: open, claim, heartbeat, sweep) is the one
interface the strategies use and the only module that touches Optuna's private attributes,
``liveness`` decides when a RUNNING trial's worker is gone, ``owner`` names a process, and
``journal_lock`` is a lock that a killed process cannot keep. May import: ``core`` ... ``runs``.

What each storage supports (docs/distributed.md says the same for users):

============  ==========  ==================  ===================================  ==============================
storage       machines    processes           heartbeat                            a gone worker's trial re-runs
============  ==========  ==================  ===================================  ==============================
journal file  one         many (OwnerLock)    ``acla_nas:heartbeat`` attribute      dead pid: at once; else grace
SQLite        one         many (60 s waits)   Optuna's ``record_heartbeat``         dead pid: at once; else grace
PostgreSQL    many        many                Optuna's ``record_heartbeat``         same machine: at once; else grace
============  ==========  ==================  ===================================  ==============================

Every storage resumes: the same command on the same run directory (and ``--storage``) joins the
study and runs only the trials still owed. A journal on a shared file system across machines is
not supported: its lock cannot tell whether a holder on another machine is alive (it waits out a
30 s lease), and appends from several hosts rely on the file system's locking.
"""

from __future__ import annotations
