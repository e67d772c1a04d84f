"""``--set a.b=c``: change one value of a YAML file from the command line (like Hydra's ``a.b=c``).

The value is parsed by the one YAML reader (:func:`~acla_nas.core.yaml_io.load_yaml_text`), so
``--set train.lr=2e-4`` is a float (``2e-4`` without a dot, a string to PyYAML's YAML 1.1, is
read as the number a command line means), ``--set keys=[0,4,8]`` a list and ``--set data.path=x`` a
string. The result is checked by the same parser as the file itself, so a bad value is the same
one-line error naming the dotted key; the overrides are kept in the run's ``config.yaml``.
Missing intermediate mappings are created (``--set options.mutation=0.3`` on a preset without
``options``); a value in the way that is not a mapping is refused.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from acla_nas.core.errors import UserError

FLAG = "--set"
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # 2e-4: a string to YAML 1.1, a float here
_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$")


@dataclass(frozen=True)
class Override:
    """One ``--set KEY=VALUE``: the dotted key, the parsed value and the text as given."""

    key: str
    value: Any
    text: str

    @property
    def top(self) -> str:
        return self.key.split(".", 1)[0]


def parse_overrides(items: Iterable[str] | None) -> list[Override]:
    """``["a.b=1", ...]`` -> overrides; one line naming ``--set`` on a malformed item."""
    from acla_nas.core.yaml_io import load_yaml_text

    out = []
    for item in items or ():
        key, eq, text = str(item).partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise UserError(f"expected KEY=VALUE with a dotted key like train.lr=2e-4, got {item!r}", field=FLAG)
        value = load_yaml_text(text, field=f"{FLAG} {key}")
        if isinstance(value, str) and _EXPONENT.match(value.strip()):
            value = float(value)
        out.append(Override(key, value, str(item)))
    return out


def apply_overrides(data: Any, overrides: Sequence[Override], file: str | None = None) -> Any:
    """A copy of the file's mapping ``data`` with every override set (later ones win)."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping at the top level, got {type(data).__name__}", file=file)
    out = copy.deepcopy(data)
    for o in overrides:
        node, parts = out, o.key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise UserError(
                    f"cannot set {o.key}: {where} is a {type(child).__name__}, not a mapping", file=file, field=o.key
                )
            node = child
        node[parts[-1]] = copy.deepcopy(o.value)
    return out


def route_overrides(overrides: Sequence[Override], targets: dict[str, Sequence[str]]) -> dict[str, list[Override]]:
    """Split overrides between files by their top-level key (``targets``: file label -> its
    top-level keys); a key that no file has is one line listing what each file takes."""
    routed: dict[str, list[Override]] = {label: [] for label in targets}
    for o in overrides:
        owner = next((label for label, keys in targets.items() if o.top in keys), None)
        if owner is None:
            known = "; ".join(f"{label}: {', '.join(keys)}" for label, keys in targets.items())
            raise UserError(f"unknown top-level key {o.top!r} (expected a key of the {known})", field=f"{FLAG} {o.key}")
        routed[owner].append(o)
    return routed


@contextlib.contextmanager
def naming_overrides(overrides: Sequence[Override]) -> Iterator[None]:
    """An error about a field an override set says so (the file alone would mislead)."""
    try:
        yield
    except UserError as exc:
        f = exc.field or ""
        hit = next(
            (
                o
                for o in reversed(overrides)
                if f == o.key or f.startswith(o.key + ".") or o.key.startswith(f + ".") and f
            ),
            None,
        )
        if hit is None:
            raise
        new = copy.copy(exc)
        new.message = f"{exc.message} (set by {FLAG} {hit.text})"
        new.args = (str(new),)
        raise new from None


def recorded(overrides: Sequence[Override]) -> list[str]:
    """What ``config.yaml`` keeps: the overrides as given, in order."""
    return [o.text for o in overrides]


def add_set_flag(parser: Any, what: str = "the file") -> None:
    """The repeatable ``--set KEY=VALUE`` option of every verb that reads a YAML file."""
    parser.add_argument(
        FLAG,
        dest="set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one value of {what} (repeatable; dotted key, YAML value: --set train.lr=2e-4)",
    )


__all__ = [
    "FLAG",
    "Override",
    "add_set_flag",
    "apply_overrides",
    "naming_overrides",
    "parse_overrides",
    "recorded",
    "route_overrides",
]
