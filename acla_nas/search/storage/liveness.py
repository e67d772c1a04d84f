"""Is the worker of a RUNNING trial still there? Owners, heartbeats and the sweep of dead trials.

Every trial a worker asks for is stamped with its owner (:class:`acla_nas.search.storage.owner.Owner`) and,
while it runs, a heartbeat thread keeps it fresh: Optuna's own ``record_heartbeat`` on database
storages, a ``acla_nas:heartbeat`` time on a journal (which has no heartbeat of its own). The
sweep, run by every worker before it asks for a trial, fails and re-queues (Optuna's retry
callback, at most ``MAX_RETRY`` times) the trials whose worker is gone:

* owner on this machine: gone when its process no longer exists -- at once, and never while it
  is merely paused (SIGSTOP);
* owner elsewhere: Optuna's heartbeat grace period on a database; on a journal, the same grace
  since the last ``acla_nas:heartbeat`` (or since the trial started, for a trial without one).

A paused worker whose trial was taken over finds it finished when it wakes up; the trial loop
then drops its result instead of telling a finished trial.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from acla_nas.search.storage.backend import heartbeat_settings, retry_callback
from acla_nas.search.storage.owner import Owner

OWNER = "acla_nas:owner"
BEAT = "acla_nas:heartbeat"


def _uses_optuna_heartbeat(study: optuna.Study) -> bool:
    storage = study._storage
    get = getattr(storage, "get_heartbeat_interval", None)
    return callable(get) and get() is not None


def claim(study: optuna.Study, trial_id: int) -> None:
    """Stamp the trial with this process as its owner (and a first heartbeat)."""
    study._storage.set_trial_system_attr(trial_id, OWNER, Owner.me().text())
    beat(study, trial_id)


def beat(study: optuna.Study, trial_id: int) -> None:
    if _uses_optuna_heartbeat(study):
        study._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    else:
        study._storage.set_trial_system_attr(trial_id, BEAT, time.time())


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Beat for the trial every interval while the block runs (stops when the trial is finished)."""
    interval, _ = heartbeat_settings()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat(study, trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # taken over while this worker was paused: nothing left to keep alive
            except Exception:  # noqa: BLE001 - a missed beat must not kill the trial; the next one may pass
                continue

    thread = threading.Thread(target=loop, name=f"acla-nas-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


def abandon(study: optuna.Study, trial_id: int) -> bool:
    """Fail a trial this process cannot finish and queue it again (as the sweep would)."""
    try:
        if not study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another worker swept it first
    retry_callback()(study, copy.deepcopy(study._storage.get_trial(trial_id)))
    return True


def sweep(study: optuna.Study) -> list[int]:
    """Fail and re-queue the RUNNING trials whose worker is gone; returns their numbers."""
    optuna_heartbeat = _uses_optuna_heartbeat(study)
    if optuna_heartbeat:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # by heartbeat age, with the retry callback
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(t, optuna_heartbeat) and abandon(study, t._trial_id):
            failed.append(t.number)
    return failed


__all__ = ["BEAT", "OWNER", "abandon", "beat", "claim", "heartbeat", "is_stale", "sweep"]
