"""The one YAML reader: every space, preset, arch, config and run file goes through it.

``yaml.safe_load`` builds data only, never objects, but it accepts what a hostile or mistaken file
can use to hurt: a duplicate key silently wins over the first (two ``keys:`` lines), nesting a
few thousand levels deep ends in a RecursionError inside PyYAML's composer, an integer of 5000
digits raises Python's int/str limit error and one of 400 digits overflows every float check
downstream, and a chain of aliases can expand into gigabytes when the data is walked. The loader
below refuses each of these while it parses, with one line naming the file, the line and what
was expected; warnings raised while reading are captured (:mod:`acla_nas.core.quiet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from acla_nas.core.errors import UserError

MAX_DEPTH = 64  # nesting of mappings and sequences (acla-nas files need fewer than 8)
MAX_INT_DIGITS = 30  # beyond this no count, size, seed or budget of acla-nas makes sense
MAX_ALIASES = 100  # anchors are fine (``<<: *defaults``); alias bombs are not
MAX_BYTES = 16 * 2**20  # a YAML file of acla-nas is kilobytes; refuse before parsing a huge one


class _Refused(yaml.YAMLError):
    """A structural limit hit while parsing (turned into a UserError with its line)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, deep nesting, huge integers and alias bombs."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:  # noqa: D102 - PyYAML hook
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML's own error says so below
                    continue
                if first is not None:
                    raise _Refused(
                        f"duplicate key {_short(key)!r} (first at line {first.line + 1}; one of them would be ignored)",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:  # noqa: D102 - PyYAML hook
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark)
        return super().construct_yaml_int(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml_text(text: str, file: str | None = None, field: str | None = None) -> Any:
    """Parse YAML text with :class:`StrictLoader`; a one-line UserError on anything it refuses."""
    from acla_nas.core.quiet import captured_warnings

    try:
        with captured_warnings(file):
            return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or ["syntax error"])[0]
        raise UserError(f"invalid YAML: {where}{problem}", file=file, field=field) from None
    except RecursionError:  # a structure PyYAML recurses on beyond what the depth hook sees
        raise UserError(
            f"invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)", file=file, field=field
        ) from None
    except ValueError as exc:  # e.g. a number PyYAML's own constructors cannot convert
        raise UserError(f"invalid YAML: {_short(exc, 120)}", file=file, field=field) from None


def read_yaml(path: str | Path, *, allow_empty: bool = False) -> Any:
    """A YAML file's data, or a one-line UserError naming the file (missing, unreadable, not
    UTF-8, too large, malformed, or -- unless ``allow_empty`` -- empty)."""
    p = Path(path)
    if not p.is_file():
        raise UserError("no such file" if not p.exists() else "not a file", file=str(p))
    try:
        if p.stat().st_size > MAX_BYTES:
            raise UserError(f"too large for a YAML file of acla-nas (over {MAX_BYTES // 2**20} MiB)", file=str(p))
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("cannot read: not UTF-8 text", file=str(p)) from None
    except OSError as exc:
        raise UserError(f"cannot read ({exc.strerror or type(exc).__name__})", file=str(p)) from None
    data = load_yaml_text(text, str(p))
    if data is None and not allow_empty:
        raise UserError("the file is empty (expected a YAML mapping)", file=str(p))
    return data


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "StrictLoader", "load_yaml_text", "read_yaml"]
