"""The lock around appends to an Optuna journal file, with an owner, so a dead holder costs nothing.

Optuna's own lock (``JournalFileSymlinkLock``) is a symbolic link ``PATH.lock`` that a killed
process leaves behind; every later writer then waits out a 30 s grace period before breaking it
(and forever when the run directory was given as a relative path: the link dangles, so its age
is never read). This lock uses the same link, so it still excludes Optuna's own writers (the
``optuna`` command, optuna-dashboard), but the link's target names the holder
(:class:`acla_nas.search.storage.owner.Owner`). A waiter on the holder's machine breaks the lock as soon as the
holder no longer exists; a holder it cannot check (another machine on a shared file system, or
a lock made by Optuna itself) keeps it for the lease (``grace`` seconds without change), as with
Optuna. Breakers are serialised with ``flock`` on the journal and re-read the link first, so two
waiters never break each other's fresh locks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
import uuid
from collections.abc import Iterator

from acla_nas.search.storage.owner import Owner

try:  # POSIX only; without it breakers are not serialised (still correct for one waiter)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MAX_SLEEP = 0.05  # seconds between attempts; appends take milliseconds


class OwnerLock:
    """Exclusive lock on ``path`` (the journal) through the link ``path + '.lock'``; what
    ``JournalFileBackend(path, lock_obj=...)`` takes (Optuna calls ``acquire`` and ``release``)."""

    def __init__(self, path: str, grace: float = 30.0) -> None:
        self._target = str(path)
        self._lock = self._target + ".lock"
        self.grace = float(grace)
        self._token: str | None = None
        self.broken: list[str] = []  # what this lock broke (for tests and messages)

    def acquire(self) -> bool:
        token = f"{Owner.me().text()} {uuid.uuid4().hex}"
        sleep, seen, since = 0.001, None, time.monotonic()
        while True:
            try:
                os.symlink(token, self._lock)
                self._token = token
                return True
            except FileExistsError:
                pass
            held = self._read()
            if held is None:
                continue  # released in between: try again at once
            if held != seen:
                seen, since = held, time.monotonic()
            owner = Owner.parse(held)
            dead = owner is not None and owner.alive() is False
            if dead or time.monotonic() - since > self.grace:
                if not dead:
                    print(
                        f"acla-nas: the journal lock {self._lock} was held {self.grace:.0f} s without change "
                        f"({owner.describe() if owner else 'by another program'}); breaking it",
                        file=sys.stderr,
                    )
                self._break(held)
                sleep = 0.001
                continue
            time.sleep(sleep)
            sleep = min(2 * sleep, MAX_SLEEP)

    def release(self) -> None:
        token, self._token = self._token, None
        with contextlib.suppress(OSError):
            if token is not None and os.readlink(self._lock) == token:
                os.unlink(self._lock)
        # a lock broken under us (we were paused past the lease) belongs to someone else now

    def _read(self) -> str | None:
        """What the lock link holds: its target, or a stand-in for a plain lock file; None if gone."""
        try:
            return os.readlink(self._lock)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # not a link: e.g. Optuna's JournalFileOpenLock
                raise
            try:
                return f"file {os.stat(self._lock).st_mtime_ns}"
            except FileNotFoundError:
                return None

    def _break(self, held: str) -> None:
        with self._breakers():
            if self._read() == held:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock)
                self.broken.append(held)

    @contextlib.contextmanager
    def _breakers(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        fd = os.open(self._target, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


__all__ = ["OwnerLock"]
