"""The one door to a run's trials: claim, heartbeat, sweep, and the few writes the search needs.

Optuna keeps a trial's storage id and a study's storage behind private attributes
(``Trial._trial_id``, ``Study._storage``, ``Study._study_id``), and its public ``Study.optimize``
has no place for a worker stamp or a re-queue of another worker's trial. Every such use lives
here and nowhere else (``tests/test_storage.py`` greps the package), so an Optuna release that
moves them breaks one module. The policy -- when a RUNNING trial's worker counts as gone -- is
:mod:`acla_nas.search.storage.liveness`; this module carries it out.

* :meth:`TrialStore.open` loads a run's checked study (:mod:`acla_nas.search.storage.study`) with
  a strategy's sampler;
* :meth:`TrialStore.claim` asks for a trial and stamps it with this process as its owner;
* :meth:`TrialStore.heartbeat` keeps it fresh while it runs: Optuna's ``record_heartbeat`` on a
  database, an ``acla_nas:heartbeat`` time on a journal (which has no heartbeat of its own);
* :meth:`TrialStore.sweep` fails and re-queues (Optuna's retry callback, at most ``MAX_RETRY``
  times) the RUNNING trials whose worker is gone; :meth:`TrialStore.abandon` does it for one.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from acla_nas.search.storage.backend import heartbeat_settings, retry_callback
from acla_nas.search.storage.liveness import BEAT, OWNER, is_stale
from acla_nas.search.storage.owner import Owner
from acla_nas.search.storage.study import RunStudy

AnyTrial = Trial | FrozenTrial


class TrialStore:
    """An Optuna study seen as a shared pool of trials that many workers draw from."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study

    @classmethod
    def open(cls, run: RunStudy, sampler: optuna.samplers.BaseSampler | None = None) -> TrialStore:
        """The opened and checked study of a run (``open_run_study``), loaded with ``sampler``."""
        return cls(run.load(sampler))

    # -- what callers may read -------------------------------------------------------------------
    @property
    def storage(self) -> optuna.storages.BaseStorage:
        return self.study._storage

    @property
    def study_id(self) -> int:
        """The study's id in its storage (optuna-dashboard's URLs use it)."""
        return self.study._study_id

    @staticmethod
    def trial_id(trial: AnyTrial) -> int:
        """A trial's id in its storage (not its number, which counts within the study)."""
        return trial._trial_id

    def frozen(self, trial: AnyTrial) -> FrozenTrial:
        """The trial as stored now (another worker may have finished it)."""
        return self.storage.get_trial(self.trial_id(trial))

    def set_system_attr(self, trial: AnyTrial, key: str, value: Any) -> None:
        """A system attribute, also on a FrozenTrial (what a sampler holds) and with no warning."""
        self.storage.set_trial_system_attr(self.trial_id(trial), key, value)

    # -- claim, heartbeat, sweep -----------------------------------------------------------------
    @property
    def optuna_heartbeat(self) -> bool:
        """Whether the storage keeps heartbeats itself (a database opened by ``open_storage``)."""
        get = getattr(self.storage, "get_heartbeat_interval", None)
        return callable(get) and get() is not None

    def claim(self) -> Trial:
        """A new trial (queued ones first), stamped with this process as its owner and a first beat."""
        with warnings.catch_warnings():  # heartbeats are kept by heartbeat(), not Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        self.set_system_attr(trial, OWNER, Owner.me().text())
        self.beat(trial)
        return trial

    def beat(self, trial: AnyTrial) -> None:
        if self.optuna_heartbeat:
            self.storage.record_heartbeat(self.trial_id(trial))  # type: ignore[attr-defined]
        else:
            self.set_system_attr(trial, BEAT, time.time())

    @contextlib.contextmanager
    def heartbeat(self, trial: AnyTrial) -> Iterator[None]:
        """Beat for the trial every interval while the block runs (stops when the trial is finished)."""
        interval, _ = heartbeat_settings()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.beat(trial)
                except optuna.exceptions.UpdateFinishedTrialError:
                    return  # taken over while this worker was paused: nothing left to keep alive
                except Exception:  # noqa: BLE001 - a missed beat must not kill the trial; the next one may pass
                    continue

        thread = threading.Thread(target=loop, name=f"acla-nas-heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def abandon(self, trial: AnyTrial) -> bool:
        """Fail a trial this process cannot finish and queue it again (as the sweep would)."""
        trial_id = self.trial_id(trial)
        try:
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # another worker swept it first
        retry_callback()(self.study, copy.deepcopy(self.storage.get_trial(trial_id)))
        return True

    def sweep(self) -> list[int]:
        """Fail and re-queue the RUNNING trials whose worker is gone; returns their numbers."""
        optuna_heartbeat = self.optuna_heartbeat
        if optuna_heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # by heartbeat age, with the retry callback
        failed = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if is_stale(t, optuna_heartbeat) and self.abandon(t):
                failed.append(t.number)
        return failed


__all__ = ["TrialStore"]
