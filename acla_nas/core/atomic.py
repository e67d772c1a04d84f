"""Atomic file writes: write a temporary file beside the target, then rename it over the target,
so a crash or a kill never leaves half a file where a reader (or a resume) would find it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block succeeds and is
    removed when it fails. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` flushed to disk before the rename (checkpoints must survive a power cut)."""
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())


__all__ = ["atomic_path", "torch_save_atomic", "write_text_atomic"]
