"""Who runs where: a process identity that another process on the same machine can check.

A stale lock or a trial left RUNNING by a killed worker must be recognised at once, without
waiting out a timeout, while a worker that is merely paused (SIGSTOP, a slow disk) must be left
alone. The identity is host, boot id, pid and the pid's start time, so a reused pid or a
rebooted machine does not pass for the original owner. A process on another machine cannot be
checked from here; callers fall back to a lease (time since the owner's last sign of life).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache

PREFIX = "acla-nas-owner"


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()[:8]
    except OSError:
        return ""


@lru_cache(maxsize=1)
def _has_proc() -> bool:
    return os.path.exists("/proc/self/stat")


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name): [] when there is no such process,
    None where there is no /proc to ask."""
    if not _has_proc():
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where unknown)."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def process_alive(pid: int, started: str = "") -> bool:
    """Whether ``pid`` (started at ``started``, when given) still runs on this machine.

    A zombie (killed, not yet reaped by its parent) counts as dead; a stopped process as alive."""
    fields = _proc_stat(pid)
    if fields == []:
        return False
    if fields:
        if fields[0] == "Z" or fields[0] == "X":
            return False
        return not started or len(fields) <= 19 or fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    host: str
    boot: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), _boot_id(), pid, start_time(pid))

    def text(self) -> str:
        return f"{PREFIX} {self.host} {self.boot or '-'} {self.pid} {self.started or '-'}"

    @classmethod
    def parse(cls, text: object) -> Owner | None:
        """The owner written by :meth:`text` (extra trailing words allowed), else None."""
        if not isinstance(text, str):
            return None
        parts = text.split()
        if len(parts) < 5 or parts[0] != PREFIX or not (parts[3].isascii() and parts[3].isdigit()):
            return None
        return cls(parts[1], "" if parts[2] == "-" else parts[2], int(parts[3]), "" if parts[4] == "-" else parts[4])

    def local(self) -> bool:
        me = Owner.me()
        return self.host == me.host and self.boot == me.boot

    def alive(self) -> bool | None:
        """True/False for a process on this machine; None when it cannot be checked from here."""
        if not self.local():
            return None
        return process_alive(self.pid, self.started)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


__all__ = ["Owner", "process_alive", "start_time"]
