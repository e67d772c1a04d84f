"""The data-source registry: ``data: {kind: ...}`` of a space file -> a :class:`DataSource`.

Each built-in kind is one module of this package registering itself with
:func:`register_source` (discovered on first use, like backbones and strategies); installed
plug-ins come from the ``acla_nas.data_sources`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.data.sources.base import DataSource, spec_dir


@dataclass(frozen=True)
class SourceKind:
    """One ``data: {kind: ...}`` of a space: its keys (``required`` ones are directory paths),
    a check of the spec that can run before any file is read, and the builder."""

    keys: frozenset[str]
    build: Callable[[dict, int], DataSource]  # (spec, task scale) -> source
    required: tuple[str, ...] = ()
    check: Callable[[dict], Any] | None = None


DATA_SOURCES: Registry[SourceKind] = Registry(
    "data kind",
    "acla_nas.data_sources",
    "data.kind",
    package="acla_nas.data.sources",
    check=lambda o: isinstance(o, SourceKind),
    expected="acla_nas.data.sources.SourceKind",
)


def register_source(
    kind: str, keys: Sequence[str], required: Sequence[str] = (), check: Callable[[dict], Any] | None = None
) -> Callable[[Callable[[dict, int], DataSource]], Callable[[dict, int], DataSource]]:
    """Decorator: make ``build(spec, scale) -> DataSource`` the data source of ``kind``."""

    def deco(build: Callable[[dict, int], DataSource]) -> Callable[[dict, int], DataSource]:
        DATA_SOURCES.add(kind, SourceKind(frozenset({"kind", *keys, *required}), build, tuple(required), check))
        return build

    return deco


def data_kind(spec: dict) -> SourceKind:
    """The registered kind of a ``data:`` spec, with its keys checked."""
    kind = spec.get("kind", "embedded")
    if not isinstance(kind, str) or kind not in DATA_SOURCES.names():
        raise UserError(
            f"unknown data kind {kind!r} (expected one of {', '.join(DATA_SOURCES.names())})", field="data.kind"
        )
    source = DATA_SOURCES.get(kind)
    extra = sorted(set(spec) - source.keys)
    if extra:
        raise UserError(
            f"unknown key {extra[0]!r} for kind {kind} (expected {', '.join(sorted(source.keys))})",
            field=f"data.{extra[0]}",
        )
    return source


def make_source(spec: dict | None = None, scale: int = 1) -> DataSource:
    """A :class:`DataSource` from a ``data:`` spec (None = the embedded photographs).

    ``scale`` is the task's scale, used to find paired LR files and to mod-crop HR images."""
    if spec is None:
        spec = {"kind": "embedded"}
    if not isinstance(spec, dict):
        raise UserError(f"expected a mapping like {{kind: folder, path: DIR}}, got {spec!r}", field="data")
    return data_kind(spec).build(spec, scale)


def source_for_dir(path: str | Path, scale: int = 1) -> DataSource:
    """A whole folder as one test set: ``HR/`` + ``LR/`` (or ``LR_bicubic/``) subfolders make
    it paired, otherwise its images are HR images degraded by the task."""
    root = spec_dir(path, "--data")
    if (root / "HR").is_dir():
        for lr in ("LR", "LR_bicubic", "LQ"):
            if (root / lr).is_dir():
                src = make_source(
                    {
                        "kind": "paired",
                        "hr": str(root / "HR"),
                        "lr": str(root / lr),
                        "val_fraction": 0,
                        "test_fraction": 1.0,
                    },
                    scale,
                )
                src.name = root.name
                return src
    try:
        return make_source({"kind": "folder", "path": str(root), "val_fraction": 0, "test_fraction": 1.0}, scale)
    except UserError as exc:
        fld = "--data" if exc.field in ("data.path", "data") else exc.field
        raise UserError(exc.message, file=exc.file, field=fld) from None


__all__ = ["DATA_SOURCES", "SourceKind", "data_kind", "make_source", "register_source", "source_for_dir"]
