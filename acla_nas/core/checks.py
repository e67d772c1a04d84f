"""Value checks shared by command-line flags and YAML fields, each failing with one line.

Why one place: the same quantity (a seed, a step count, a learning rate) arrives from a flag,
a strategy preset or an arch file, and must be refused the same way before any work starts.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from numbers import Real
from typing import Any

from acla_nas.core.errors import UserError

#: seeds reach numpy's RandomState (Optuna's samplers), which takes 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


#: the largest magnitude a number of acla-nas may have (float32 overflows at 3.4e38 anyway)
MAX_MAGNITUDE = 1e300
_NUMERIC = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def ascii_digits(text: Any) -> bool:
    """Whether ``text`` is a non-empty string of the digits 0-9 (``str.isdigit`` also takes
    superscripts and other scripts' digits, which ``int()`` then refuses)."""
    return isinstance(text, str) and text.isascii() and text.isdigit()


def real_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number, not finite, or beyond
    :data:`MAX_MAGNITUDE`. Takes int (any size), float, Fraction, Decimal and numeric strings
    (YAML 1.1 reads ``5e-4`` as a string); bools are not numbers. Never computes a huge power:
    a string's exponent is bounded before anything is built from it, and a huge int is measured
    by its bit length, not converted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = _NUMERIC.fullmatch(value)
        if not m or len(value) > 400:
            return None
        value = float(value)  # float() parses an exponent of any size without building it
    if isinstance(value, int):
        return float(value) if value.bit_length() <= 996 else None  # 2**996 ~ 6.7e299
    if isinstance(value, (Fraction, Decimal)) or (isinstance(value, Real) and not isinstance(value, float)):
        try:
            value = float(value)
        except (OverflowError, ValueError, ArithmeticError):
            return None
    if not isinstance(value, float) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        return None
    return value


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` short enough for a one-line message (an int of 5000 digits has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(value: Any, field: str, lo: int | None = None, hi: int | None = None, file: str | None = None) -> int:
    """An integer (not a bool) in ``[lo, hi]``."""
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (lo is None or value >= lo)
        and (hi is None or value <= hi)
    )
    if not ok:
        if lo is not None and hi is not None:
            want = f"an integer in {lo}..{hi}"
        elif lo is not None:
            want = f"an integer >= {lo}"
        else:
            want = "an integer"
        raise UserError(f"expected {want}, got {shown(value)}", file=file, field=field)
    return value


def check_seed(value: Any, field: str = "--seed", file: str | None = None) -> int:
    return check_int(value, field, 0, MAX_SEED, file)


def check_number(
    value: Any, field: str, lo: float = 0.0, lo_open: bool = True, hi: float | None = None, file: str | None = None
) -> float:
    """A finite number above ``lo`` (or at least ``lo`` when not ``lo_open``) and at most ``hi``
    (see :func:`real_number` for what counts as a number). Returns an int unchanged, else a float."""
    number = real_number(value)
    bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
    if hi is not None:
        bound += f" and <= {hi:g}"
    if number is None or (number <= lo if lo_open else number < lo) or (hi is not None and number > hi):
        raise UserError(f"expected a finite number {bound}, got {shown(value)}", file=file, field=field)
    return value if isinstance(value, int) and not isinstance(value, bool) else number


__all__ = [
    "MAX_MAGNITUDE",
    "MAX_SEED",
    "ascii_digits",
    "check_int",
    "check_number",
    "check_seed",
    "real_number",
    "shown",
]
