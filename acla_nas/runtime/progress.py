"""Training progress for terminals and for logs.

On a terminal, tqdm's bar. Where stderr is a file or a pipe (CI logs, ``nohup``, ``| tee``) a bar
is useless and tqdm is disabled, which used to leave a 20-minute supernet training silent; there
one plain line is printed every ``ACLA_NAS_PROGRESS_SECONDS`` seconds (default 60) with the step,
the loss, steps per second and the time left. ``--quiet`` turns both off. The same lines go to
the run directory's log file when one is open (:mod:`acla_nas.runtime.run_log`), on a terminal
and with ``--quiet`` too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from acla_nas.core.errors import UserError

ENV_VAR = "ACLA_NAS_PROGRESS_SECONDS"
DEFAULT_SECONDS = 60.0


def interval() -> float:
    """Seconds between two log lines (``ACLA_NAS_PROGRESS_SECONDS``, > 0)."""
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UserError(f"expected a number of seconds > 0, got {text!r}", field=ENV_VAR)
    return value


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LogProgress:
    """The part of tqdm's interface the trainer uses (``update``, ``set_postfix``, ``close``),
    writing one line every ``every`` seconds instead of redrawing a bar."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        label: str = "training",
        every: float = DEFAULT_SECONDS,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        echo: bool = True,
    ) -> None:
        self.echo = echo  # False: the run log only (the console has tqdm's bar, or --quiet)
        self.total, self.n, self.start_n = total, initial, initial
        self.label, self.every = label, every
        self.stream = stream
        self.clock = clock
        self.t0 = self.last = clock()
        self.postfix: dict[str, Any] = {}
        self.lines = 0
        self.written = initial  # the step of the last line
        self.due = False  # a line is due (printed once the step's loss is known)

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = values
        if self.due:  # the trainer sets the step's loss right after update(): print with it
            self.write(self.clock())

    def update(self, n: int = 1) -> None:
        if self.due:  # no set_postfix since the last update
            self.write(self.clock())
        self.n += n
        self.due = self.clock() - self.last >= self.every

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"acla-nas: {self.label} step {self.n}/{self.total} ({100 * self.n / max(1, self.total):.0f}%)"]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        parts.append(f"{rate:.2f} steps/s")
        parts.append(f"ETA {duration((self.total - self.n) / rate)}" if rate > 0 else "ETA ?")
        return ", ".join(parts)

    def write(self, now: float) -> None:
        from acla_nas.runtime.run_log import log_line

        text = self.line(now)
        if self.echo:
            print(text, file=self.stream or sys.stderr, flush=True)
        log_line(text)
        self.lines += 1
        self.last, self.written, self.due = now, self.n, False

    def close(self) -> None:
        """A last line when earlier ones were printed, so a log shows where training ended."""
        if self.lines and self.n != self.written:
            self.write(self.clock())
        self.lines = 0


class _Tee:
    """A console bar and a run-log-only :class:`LogProgress`, updated together."""

    def __init__(self, *bars: Any) -> None:
        self.bars = bars

    def update(self, n: int = 1) -> None:
        for b in self.bars:
            b.update(n)

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        for b in self.bars:
            b.set_postfix(refresh=refresh, **values)

    def close(self) -> None:
        for b in self.bars:
            b.close()


def progress_bar(total: int, initial: int = 0, enabled: bool = True, label: str = "training", log: bool = False) -> Any:
    """tqdm on a terminal, :class:`LogProgress` where stderr is a file or pipe, a disabled tqdm
    when ``enabled`` is false (``--quiet``, other ranks). ``log``: this process writes the run
    log, which then gets the log lines whatever the console shows."""
    from tqdm import tqdm

    from acla_nas.runtime.run_log import run_log_open

    tty = sys.stderr.isatty()
    if enabled and not tty:
        return LogProgress(total, initial, label, interval())
    bar = tqdm(
        total=total, initial=initial, unit="step", disable=not (enabled and tty), dynamic_ncols=True, leave=False
    )
    if log and run_log_open():
        return _Tee(bar, LogProgress(total, initial, label, interval(), echo=False))
    return bar


__all__ = ["DEFAULT_SECONDS", "ENV_VAR", "LogProgress", "duration", "interval", "progress_bar"]
