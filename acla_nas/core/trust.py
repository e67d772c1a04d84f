"""Which code a file may make acla-nas import: YAML and model files are data.

A file may name a built-in or registered component freely: a registry name (``edsr``), an
installed plug-in's entry point, or the ``module:attr`` of a registered object. Anything else
named as ``package.module:attr`` is imported only with the user's explicit permission for that
module: ``--allow-import PKG[,PKG]`` on the command line or ``ACLA_NAS_ALLOW_IMPORT=PKG[,PKG]``
in the environment. The standard library and builtins are never imported from a file, with or
without permission, and neither is an object that an allowed module merely re-exports from a
module outside the allow-list (``mynet:system`` after ``from os import system``).

Why: ``torch.load(weights_only=True)`` and ``yaml.safe_load`` keep a file from running code
while it is *read*; a name such as ``os:system`` would otherwise run code when the component
is *built*, so opening a file must never be enough to import anything.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from acla_nas.core.aliases import modern_path
from acla_nas.core.errors import UserError

ENV_VAR = "ACLA_NAS_ALLOW_IMPORT"
FLAG = "--allow-import"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PUBLIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_granted: list[str] = []  # from --allow-import (or allow_imports() in library code)


class ImportRefused(UserError):
    """A file named code that the user has not allowed (or that is never allowed)."""


def parse_prefixes(text: str, source: str) -> list[str]:
    """Module prefixes from ``'pkg1,pkg2.sub'`` (commas or spaces); ``source`` names the flag or
    variable in the error."""
    out = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        if not _DOTTED.fullmatch(item):
            raise UserError(
                f"expected comma-separated module names like mynet,my_project.models, got {item!r}", field=source
            )
        out.append(item)
    return out


def allowed_prefixes() -> tuple[str, ...]:
    """The modules the user allows: ``--allow-import`` plus ``ACLA_NAS_ALLOW_IMPORT``."""
    env = parse_prefixes(os.environ.get(ENV_VAR, ""), ENV_VAR)
    return tuple(dict.fromkeys([*_granted, *env]))


@contextmanager
def allow_imports(prefixes: Iterable[str]) -> Iterator[None]:
    """Allow importing from these modules (and their submodules) inside the block."""
    added = parse_prefixes(",".join(prefixes), FLAG)
    _granted.extend(added)
    try:
        yield
    finally:
        for p in added:
            _granted.remove(p)


def is_protected(module: str) -> bool:
    """The standard library, builtins and ``__main__``: never importable from a file."""
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__main__"


def is_allowed(module: str) -> bool:
    return not is_protected(module) and any(module == p or module.startswith(p + ".") for p in allowed_prefixes())


def _opt_in_hint(module: str) -> str:
    return f"to allow it, pass {FLAG} {module} or set {ENV_VAR}={module}"


def _search_dirs(file: str | None) -> list[str]:
    """The current directory and the directory of the file that names the module."""
    dirs = [os.getcwd()]
    if file:
        d = str(Path(file).resolve().parent)
        if d not in dirs:
            dirs.append(d)
    return dirs


def import_dirs(files: Iterable[str | None]) -> list[str]:
    """The folders user modules named in ``files`` are imported from: the current directory and
    each file's folder."""
    return list(dict.fromkeys(d for f in files for d in _search_dirs(f)))


@contextmanager
def importable_from(dirs: Iterable[str]) -> Iterator[None]:
    """``sys.path`` with ``dirs`` appended for the block only (so nothing there can shadow a
    module imported later); also how another process unpickles objects of such modules."""
    added = [d for d in dict.fromkeys(dirs) if d not in sys.path]
    sys.path.extend(added)
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def _import(module: str, file: str | None, field: str) -> ModuleType:
    """Import an allowed module with the current directory and the file's directory on
    ``sys.path`` for the duration of the import only."""
    try:
        with importable_from(_search_dirs(file)):
            return importlib.import_module(module)
    except Exception as exc:  # ImportError, SyntaxError in user code, ...
        where = ", ".join(_search_dirs(file))
        raise UserError(
            f"cannot import module {module!r} ({type(exc).__name__}: {exc}); searched the installed packages and {where}; "
            f"put {module.split('.')[0]}.py (or its package folder) in one of those folders or install it",
            file=file,
            field=field,
        ) from None


def import_object(
    spec: str, *, kind: str, field: str, file: str | None = None, trusted: Mapping[str, Any] | None = None
) -> Any:
    """The object named by ``package.module:attr`` in ``file`` (at ``field``), under the trust model.

    ``trusted`` maps the ``module:qualname`` of registered objects (built-ins, plug-ins) to the
    objects: these need no permission. ``kind`` ("backbone factory", "strategy class") words
    the messages."""
    spec = modern_path(spec)  # files written before the package was cut into sub-packages
    module_name, _, attr = spec.partition(":")
    if not _DOTTED.fullmatch(module_name) or not _PUBLIC.fullmatch(attr):
        raise UserError(f"expected package.module:name (public names only), got {spec!r}", file=file, field=field)
    if trusted and spec in trusted:
        return trusted[spec]
    if is_protected(module_name):
        raise ImportRefused(
            f"{spec!r} is in Python's standard library or builtins, which a file may never make acla-nas "
            f"import (not even with {FLAG}); name a registered {kind} or your own module",
            file=file,
            field=field,
        )
    if not is_allowed(module_name):
        raise ImportRefused(
            f"{spec!r} is not a registered {kind}, and files may not import code on their own; "
            f"{_opt_in_hint(module_name)} if you trust it",
            file=file,
            field=field,
        )
    obj: Any = _import(module_name, file, field)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"module {module_name!r} has no attribute {attr!r}", file=file, field=field)
        obj = getattr(obj, part)
        if isinstance(obj, ModuleType):
            raise ImportRefused(
                f"{spec!r} names a module, not a {kind} defined in {module_name!r}", file=file, field=field
            )
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str):
        raise UserError(f"{spec!r} is not a function or class (expected a {kind})", file=file, field=field)
    if home != module_name and not is_allowed(home):
        raise ImportRefused(
            f"{spec!r} is defined in {home!r}, which is not allowed ({_opt_in_hint(home)} if you trust it)"
            if not is_protected(home)
            else f"{spec!r} is {home}.{getattr(obj, '__qualname__', attr)} from the standard library or builtins, "
            "which a file may never make acla-nas import",
            file=file,
            field=field,
        )
    if not callable(obj):
        raise UserError(f"{spec!r} is not callable (expected a {kind})", file=file, field=field)
    return obj


def qualified_name(obj: Any) -> str:
    """``module:qualname`` of a registered function or class (what a file may write for it)."""
    return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"


def entry_points(group: str) -> dict[str, Any]:
    """Installed plug-ins of an entry-point group (name -> EntryPoint). Installing a package is
    the user's permission to load it, so these load without ``--allow-import``."""
    from importlib.metadata import entry_points as _eps

    return {ep.name: ep for ep in _eps(group=group)}


__all__ = [
    "ENV_VAR",
    "FLAG",
    "ImportRefused",
    "allow_imports",
    "allowed_prefixes",
    "entry_points",
    "import_dirs",
    "import_object",
    "importable_from",
    "is_allowed",
    "is_protected",
    "parse_prefixes",
    "qualified_name",
]
