"""Output paths: checked before any work starts, never silently overwritten, one line on failure.

Every verb that writes goes through these few functions, so the same mistakes get the same line:
``--out`` that is a file or lies below one, an output image path that is a folder, a read-only
folder, a full disk (``PATH: cannot write (reason)``), and a folder or file holding results that
this command did not write (refused unless ``--overwrite``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from acla_nas.core.errors import UserError

OVERWRITE_FLAG = "--overwrite"
#: what a verb's output folder may hold that is a result: a model, an architecture, metrics, figures
RESULT_FILES = ("model.pt", "arch.yaml", "metrics.json", "model.ts", "model.onnx", "card.json", "model_card.md")
RESULT_SUFFIXES = (".png", ".pdf", ".svg", ".csv", ".html")
_WRITE_ERRNOS = {
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on the device"
        if exc.errno == errno.EROFS:
            return "read-only file system"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            return "a file is in the way where a folder should be"
        if exc.errno == errno.EISDIR:
            return "a folder is in the way where a file should be"
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def cannot_write(path: str | Path, exc: BaseException) -> UserError:
    """``PATH: cannot write (reason)`` for an error met while writing ``path``."""
    return UserError(f"cannot write ({_reason(exc)})", file=str(path))


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into one line. Pillow raises its own
    AttributeError when the disk fills during an encode; it is caught here too."""
    try:
        yield
    except UserError:
        raise
    except OSError as exc:
        raise cannot_write(exc.filename or path, exc) from None
    except AttributeError as exc:  # Pillow on a full disk ('NoneType' object has no attribute ...)
        if "NoneType" not in str(exc):
            raise
        raise cannot_write(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None


def os_error_line(exc: OSError) -> str:
    """The one line the command line prints for an OSError no verb caught."""
    where = exc.filename or "a file"
    if exc.errno in _WRITE_ERRNOS:
        return f"{where}: cannot write ({_reason(exc)})"
    return f"{where}: {_reason(exc)}"


def _file_in_the_way(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return p
    return None


def output_dir(path: str | Path, field: str = "--out", create: bool = True) -> Path:
    """``path`` as a folder that can be written: no file in the way, and the folder (or, when it
    does not exist yet, its nearest existing parent) writable. Created with its parents when
    ``create``; a verb that validates its other inputs first checks with ``create=False``."""
    p = Path(path)
    blocker = _file_in_the_way(p)
    if blocker is not None:
        what = "is a file" if blocker == p else f"lies below the file {blocker}"
        raise UserError(f"cannot write (the output folder {what})", file=str(p), field=field)
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_write(p, exc) from None
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise cannot_write(p, OSError(errno.EACCES, "permission denied"))
    return p


def output_file(path: str | Path, field: str, overwrite: bool = False, make_parent: bool = False) -> Path:
    """``path`` as a file that may be written: its folder exists (or is created, with
    ``make_parent``) and is writable, it is not a folder, and it does not exist yet unless
    ``overwrite``."""
    p = Path(path)
    if make_parent and not p.parent.exists() and _file_in_the_way(p.parent) is None:
        output_dir(p.parent, field)
    if p.is_dir():
        raise UserError("cannot write (a folder has that name; give a file name)", file=str(p), field=field)
    blocker = _file_in_the_way(p.parent)
    if blocker is not None:
        raise UserError(f"cannot write (its folder {p.parent} lies below the file {blocker})", file=str(p), field=field)
    if not p.parent.is_dir():
        raise UserError(f"the output folder {p.parent} does not exist (create it first)", file=str(p), field=field)
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise cannot_write(p, OSError(errno.EACCES, "permission denied"))
    if p.exists() and not overwrite:
        raise UserError(f"already exists; pass {OVERWRITE_FLAG} to replace it", file=str(p), field=field)
    return p


def results_in(folder: Path, names: Iterable[str] = RESULT_FILES, suffixes: Iterable[str] = ()) -> list[str]:
    """The result files a folder already holds (by name, or by suffix when given)."""
    if not folder.is_dir():
        return []
    names, suffixes = set(names), tuple(suffixes)
    return sorted(p.name for p in folder.iterdir() if p.is_file() and (p.name in names or p.name.endswith(suffixes)))


def refuse_foreign_results(
    folder: str | Path,
    overwrite: bool,
    *,
    ours: Callable[[Path], bool],
    what: str,
    field: str = "--out",
    names: Iterable[str] = RESULT_FILES,
    suffixes: Iterable[str] = (),
) -> None:
    """Refuse a folder holding results this command did not write (``ours(folder)`` is False),
    unless ``overwrite``: nothing completed is ever replaced by accident."""
    found = results_in(Path(folder), names, suffixes)
    if found and not overwrite and not ours(Path(folder)):
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise UserError(
            f"already holds {shown}, not written by {what}; choose another folder or pass {OVERWRITE_FLAG} to replace them",
            file=str(folder),
            field=field,
        )


def add_overwrite_flag(parser) -> None:  # noqa: ANN001 - argparse parser or group
    parser.add_argument(
        OVERWRITE_FLAG,
        action="store_true",
        help="replace results already at the output path (refused by default: nothing completed is lost)",
    )


__all__ = [
    "OVERWRITE_FLAG",
    "RESULT_FILES",
    "RESULT_SUFFIXES",
    "add_overwrite_flag",
    "cannot_write",
    "os_error_line",
    "output_dir",
    "output_file",
    "refuse_foreign_results",
    "results_in",
    "writing",
]
