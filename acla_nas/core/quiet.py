"""Warnings raised while reading a user's file are captured, not printed.

Reading a file can make torch (a legacy pickle protocol, quantized tensors), Pillow (a corrupt
EXIF block) or PyYAML warn. Printed, they stand before the one error line a bad input should
give, or clutter a run that goes on fine. They are logged instead to the ``acla_nas.files``
logger, which the command line shows with ``--verbose``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LOG = logging.getLogger("acla_nas.files")


@contextmanager
def captured_warnings(file: str | None = None) -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings raised inside the block and log them (INFO) naming ``file``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            for w in caught:
                text = " ".join(str(w.message).split())
                LOG.info("%s: %s: %s", file or "reading a file", w.category.__name__, text[:300])


@contextmanager
def quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """A library's logger (e.g. Optuna's INFO line per trial) at ``level`` for the block only,
    restored after: importing or calling acla-nas never changes a caller's logging for good."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(max(level, before))
    try:
        yield
    finally:
        log.setLevel(before)


def show_file_warnings(verbose: bool) -> None:
    """Let the captured warnings reach stderr (``--verbose``) or keep them quiet."""
    LOG.setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose and not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("acla-nas: note: %(message)s"))
        LOG.addHandler(handler)
    LOG.propagate = False


__all__ = ["LOG", "captured_warnings", "quiet_logger", "show_file_warnings"]
