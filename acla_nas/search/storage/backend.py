"""Optuna storages from what the user types: a journal file path, ``sqlite:///FILE``, ``postgresql://...``.

* A bare path (or the older ``journal:PATH``) is an Optuna journal file, the run directory's
  ``study.journal`` by default: the same file ``optuna ... --storage PATH`` and
  ``optuna-dashboard PATH`` open. Appends go through :class:`acla_nas.search.storage.journal_lock.OwnerLock`, so
  a lock left by a killed process is taken over at once.
* Anything with ``://`` is an SQLAlchemy URL for :class:`optuna.storages.RDBStorage`, opened with
  heartbeats: a trial whose worker stopped beating is failed after the grace period and queued
  again by Optuna's retry callback. ``postgresql://`` gets the psycopg 3 driver (the ``postgres``
  extra) whichever SQLAlchemy is installed (2.0 would pick psycopg2). A new SQLite file is created
  under a lock, so several processes may open it at once.

Passwords never reach ``config.yaml`` or messages (:attr:`StorageSpec.shown`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from acla_nas.core.errors import UserError
from acla_nas.runs.run_dir import DEFAULT_JOURNAL  # the run directory owns the name
from acla_nas.search.storage.journal_lock import OwnerLock

HEARTBEAT_ENV = "ACLA_NAS_HEARTBEAT"  # "INTERVAL[,GRACE]" in seconds
DEFAULT_HEARTBEAT = (10, 60)
MAX_RETRY = 3  # a trial whose worker died is run again at most this many times
OWNER_ATTRS = ("acla_nas:owner", "acla_nas:heartbeat")  # per-worker, never copied to a retry


@dataclass(frozen=True)
class StorageSpec:
    """Where a run's study lives: ``kind`` journal or rdb; ``location`` the path or URL to open;
    ``shown`` the same with any password hidden (for config.yaml and messages)."""

    kind: str
    location: str
    shown: str

    @property
    def is_rdb(self) -> bool:
        return self.kind == "rdb"


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace) in seconds: ``ACLA_NAS_HEARTBEAT=INTERVAL[,GRACE]`` or the defaults."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT
    parts = raw.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1 or (len(values) == 2 and values[1] <= values[0]):
        raise UserError(
            f"expected INTERVAL[,GRACE] in whole seconds, GRACE > INTERVAL >= 1, got {raw!r}", field=HEARTBEAT_ENV
        )
    return (values[0], values[1] if len(values) == 2 else 6 * values[0])


def parse_storage(url: str | None, run_dir: str | Path) -> StorageSpec:
    """Classify ``--storage`` (None: the journal in the run directory); checks the form only."""
    if url is None or url == "":
        path = str(Path(run_dir) / DEFAULT_JOURNAL)
        return StorageSpec("journal", path, path)
    if url.startswith("journal:"):  # the form acla-nas used before; Optuna's tools want the bare path
        url = url[len("journal:") :]
    if "://" not in url:
        p = Path(url)
        if p.is_dir():
            raise UserError(
                f"{url!r} is a directory; expected a journal file path, sqlite:///FILE or postgresql://...",
                field="--storage",
            )
        if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00":
            raise UserError(f"{url!r} is an SQLite database; give it as sqlite:///{url}", field="--storage")
        return StorageSpec("journal", url, url)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(
            f"not a storage URL ({exc}); expected a journal file path, sqlite:///FILE or postgresql://USER@HOST/DB",
            field="--storage",
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=_postgres_driver())
    shown = parsed.render_as_string(hide_password=True)
    return StorageSpec("rdb", parsed.render_as_string(hide_password=False), shown)


def _postgres_driver() -> str:
    """psycopg 3 (the ``postgres`` extra) when installed, else psycopg2; one line otherwise."""
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg"
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2"
    raise UserError(
        "no PostgreSQL driver is installed; pip install 'acla-nas[postgres]' (psycopg 3)", field="--storage"
    )


@functools.lru_cache(maxsize=1)
def retry_callback() -> Callable[[optuna.Study, Any], None]:
    """Optuna's retry callback (renamed in Optuna 5) for a trial whose worker died: the trial is
    queued again with its parameters, without the dead worker's owner attributes."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with _quiet_optuna():
        inner = cls(max_retry=MAX_RETRY)

    def retry(study: optuna.Study, trial: Any) -> None:
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in OWNER_ATTRS}
        with _quiet_optuna():
            inner(study, trial)

    return retry


def open_storage(spec: StorageSpec) -> optuna.storages.BaseStorage:
    """The storage of ``spec`` (creating a new database or journal file); errors are one line."""
    if spec.kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec.location)
        if not path.parent.is_dir():
            raise UserError(f"the folder of the journal file {spec.shown!r} does not exist", field="--storage")
        try:
            return JournalStorage(JournalFileBackend(str(path), lock_obj=OwnerLock(str(path))))  # type: ignore[arg-type]
        except OSError as exc:
            raise UserError(
                f"cannot open the journal file {spec.shown!r}: {exc.strerror or exc}", field="--storage"
            ) from None
    return _open_rdb(spec)


def _open_rdb(spec: StorageSpec) -> optuna.storages.RDBStorage:
    import sqlalchemy.exc

    interval, grace = heartbeat_settings()
    kwargs: dict[str, Any] = {"heartbeat_interval": interval, "grace_period": grace}
    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    kwargs[
        "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
    ] = retry_callback()
    engine: dict[str, Any] = {}
    if spec.location.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # wait for another process's write instead of failing
    with _creating(spec.location):
        for attempt in range(6):
            try:
                with _quiet_optuna():
                    return optuna.storages.RDBStorage(spec.location, engine_kwargs=engine, **kwargs)
            except (
                sqlalchemy.exc.IntegrityError,
                sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError,
            ) as exc:
                # another process is creating the same tables right now: its work is ours once done
                if attempt < 5 and _creation_race(exc):
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise UserError(
                    f"cannot open the Optuna storage {spec.shown!r}: {_first_line(exc)}", field="--storage"
                ) from None
            except (ImportError, sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
                raise UserError(
                    f"cannot open the Optuna storage {spec.shown!r}: {_first_line(exc)}", field="--storage"
                ) from None
    raise AssertionError("unreachable")


def _creation_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("already exists", "duplicate", "unique constraint", "database is locked"))


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@contextlib.contextmanager
def _creating(url: str) -> Iterator[None]:
    """For an SQLite file: hold ``flock`` on its folder while the tables are created."""
    try:
        import fcntl

        from sqlalchemy.engine import make_url

        db = make_url(url).database if url.startswith("sqlite") else None
    except ImportError:  # pragma: no cover - Windows
        db = None
    if not db or db == ":memory:" or db.startswith("file:"):
        yield
        return
    folder = Path(db).resolve().parent
    if not folder.is_dir():
        raise UserError(f"the folder of the SQLite file {db!r} does not exist", field="--storage")
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = [
    "DEFAULT_JOURNAL",
    "HEARTBEAT_ENV",
    "StorageSpec",
    "heartbeat_settings",
    "open_storage",
    "parse_storage",
    "retry_callback",
]
