"""Typed, ranged strategy options (``options:`` of a strategy preset).

Each strategy declares ``OPTIONS = {name: Option}``; a preset is checked against them when it is
read, before any supernet is trained, so ``population: 0`` or ``w_lr: .nan`` is one line naming
the file and the option instead of a traceback minutes later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from acla_nas.core.checks import check_int, check_number
from acla_nas.core.errors import UserError


@dataclass(frozen=True)
class Option:
    """One option: ``check(value, field) -> normalised value`` (raises a one-line UserError)."""

    expected: str
    check: Callable[[Any, str], Any]


def integer(lo: int = 1, hi: int | None = None) -> Option:
    text = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    return Option(text, lambda v, f: check_int(v, f, lo, hi))


def number(lo: float = 0.0, lo_open: bool = True, hi: float | None = None) -> Option:
    text = f"a finite number {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
    return Option(text, lambda v, f: check_number(v, f, lo, lo_open, hi))


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"expected true or false, got {value!r}", field=field)
    return value


FLAG = Option("true or false", _flag)


def _steps_or_fraction(value: Any, field: str) -> int | float:
    """A whole number of steps (int >= 0) or a fraction of all steps in [0, 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int(value, field, 0)
    if isinstance(value, float) and 0.0 <= value < 1.0:
        return value
    raise UserError(
        f"expected a fraction of the steps in [0, 1) or a whole number of steps >= 0, got {value!r}", field=field
    )


STEPS_OR_FRACTION = Option("a fraction in [0, 1) or a whole number of steps", _steps_or_fraction)


def check_option(spec: Any, value: Any, field: str) -> Any:
    """Check one value against an :class:`Option`, or against a bare type (or tuple of types),
    which plug-in strategies may still declare."""
    if isinstance(spec, Option):
        return spec.check(value, field)
    types = spec if isinstance(spec, tuple) else (spec,)
    name = " or ".join(getattr(t, "__name__", str(t)) for t in types)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise UserError(f"expected {name}, got {value!r}", field=field)
    return value


__all__ = ["FLAG", "Option", "STEPS_OR_FRACTION", "check_option", "integer", "number"]
