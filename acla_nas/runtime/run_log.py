"""The experiment log of a run directory: ``search.log`` / ``train.log`` and optional TensorBoard.

:func:`run_log` attaches a file handler to the ``acla_nas.run`` logger for the duration of a
search or a training: the progress lines the console shows (:mod:`acla_nas.runtime.progress`),
validation points, trial scores and the final summary land there too, with a time stamp, also
with ``--quiet`` and on a terminal (where the console has tqdm's bar instead). The logger does
not propagate: the console keeps its own lines and a caller's logging is untouched.

:func:`tensorboard_to` opens a ``torch.utils.tensorboard`` writer (the ``tensorboard`` extra) for
the block; :func:`scalar` writes to it when one is open and does nothing otherwise, so the
trainer and the strategies need no writer passed around. Both are per process: rank 0 of a
data-parallel job and the main process of ``--workers`` write; the others do not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acla_nas.core.errors import UserError

LOG = logging.getLogger("acla_nas.run")
LOG.propagate = False
LOG.setLevel(logging.INFO)
FORMAT = "%(asctime)s %(message)s"
TB_DIR = "tensorboard"  # RUN_DIR/tensorboard: the event files
LOSS_EVERY = 10  # steps between two training-loss points in TensorBoard

_writer: Any = None
_files: list[logging.Handler] = []  # the run logs open now (other handlers, e.g. pytest's, do not count)


def run_log_open() -> bool:
    return bool(_files)


def log_line(text: str) -> None:
    """One line in the open run log(s) (nothing when none is open)."""
    if _files:
        LOG.info(text)


@contextlib.contextmanager
def run_log(path: str | Path) -> Iterator[Path]:
    """Append this block's lines to ``path`` (created with its folder on the first line)."""
    path = Path(path)
    if any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in _files):
        yield path  # already logging there (the pipeline's search inside its own log)
        return
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    LOG.addHandler(handler)
    _files.append(handler)
    try:
        yield path
    finally:
        _files.remove(handler)
        LOG.removeHandler(handler)
        handler.close()


def tensorboard_available() -> str | None:
    """None when TensorBoard's writer imports, else why not (one line)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        return f"needs the tensorboard package ({exc}); pip install 'acla-nas[tensorboard]'"
    return None


@contextlib.contextmanager
def tensorboard_to(log_dir: str | Path | None, field: str = "--tensorboard") -> Iterator[Any]:
    """A SummaryWriter on ``log_dir`` for the block (``None``: no TensorBoard; nested: the outer
    writer stays)."""
    global _writer
    if log_dir is None or _writer is not None:
        yield _writer
        return
    why = tensorboard_available()
    if why is not None:
        raise UserError(why, field=field)
    from torch.utils.tensorboard import SummaryWriter

    _writer = SummaryWriter(log_dir=str(log_dir))
    try:
        yield _writer
    finally:
        writer, _writer = _writer, None
        writer.close()


def tensorboard_on() -> bool:
    return _writer is not None


def scalar(tag: str, value: Any, step: int) -> None:
    """``tag`` at ``step`` in the open TensorBoard writer (no writer, or not a finite number: skipped)."""
    if _writer is None or value is None:
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        return
    if v == v and abs(v) != float("inf"):
        _writer.add_scalar(tag, v, int(step))


__all__ = [
    "LOG",
    "LOSS_EVERY",
    "TB_DIR",
    "log_line",
    "run_log",
    "run_log_open",
    "scalar",
    "tensorboard_available",
    "tensorboard_on",
    "tensorboard_to",
]
