"""Is the worker of a RUNNING trial still there? The policy; :mod:`acla_nas.search.storage.store` acts on it.

Every trial a worker claims is stamped with its owner (:class:`acla_nas.search.storage.owner.Owner`)
and, while it runs, kept fresh by a heartbeat: Optuna's own ``record_heartbeat`` on database
storages, an ``acla_nas:heartbeat`` time on a journal (which has no heartbeat of its own). The
sweep, run by every worker before it claims a trial, fails and re-queues (Optuna's retry
callback, at most ``MAX_RETRY`` times) the trials whose worker is gone:

* owner on this machine: gone when its process no longer exists -- at once, and never while it
  is merely paused (SIGSTOP);
* owner elsewhere: Optuna's heartbeat grace period on a database; on a journal, the same grace
  since the last ``acla_nas:heartbeat`` (or since the trial started, for a trial without one).

A paused worker whose trial was taken over finds it finished when it wakes up; the trial loop
then drops its result instead of telling a finished trial.
"""

from __future__ import annotations

import time

from optuna.trial import FrozenTrial

from acla_nas.search.storage.backend import heartbeat_settings
from acla_nas.search.storage.owner import Owner

OWNER = "acla_nas:owner"
BEAT = "acla_nas:heartbeat"


def is_stale(trial: FrozenTrial, optuna_heartbeat: bool, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone (see the module docstring)."""
    owner = Owner.parse(trial.system_attrs.get(OWNER))
    alive = owner.alive() if owner is not None else None
    if alive is not None:
        return not alive
    if optuna_heartbeat:
        return False  # Optuna's own heartbeat check (fail_stale_trials) decides
    _, grace = heartbeat_settings()
    last = trial.system_attrs.get(BEAT)
    if not isinstance(last, (int, float)):
        last = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return (now if now is not None else time.time()) - float(last) > grace


__all__ = ["BEAT", "OWNER", "is_stale"]
