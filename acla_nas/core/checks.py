"""Value checks shared by command-line flags and YAML fields, each failing with one line.

Why one place: the same quantity (a seed, a step count, a learning rate) arrives from a flag,
a strategy preset or an arch file, and must be refused the same way before any work starts.
"""

from __future__ import annotations

import math
from typing import Any

from acla_nas.core.errors import UserError

#: seeds reach numpy's RandomState (Optuna's samplers), which takes 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


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
        raise UserError(f"expected {want}, got {value!r}", file=file, field=field)
    return value


def check_seed(value: Any, field: str = "--seed", file: str | None = None) -> int:
    return check_int(value, field, 0, MAX_SEED, file)


def check_number(
    value: Any, field: str, lo: float = 0.0, lo_open: bool = True, hi: float | None = None, file: str | None = None
) -> float:
    """A finite number above ``lo`` (or at least ``lo`` when not ``lo_open``) and at most ``hi``.

    A numeric string is accepted because YAML 1.1 reads ``5e-4`` (no dot) as a string."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
    if hi is not None:
        bound += f" and <= {hi:g}"
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
        or (number <= lo if lo_open else number < lo)
        or (hi is not None and number > hi)
    ):
        raise UserError(f"expected a finite number {bound}, got {value!r}", file=file, field=field)
    return float(number) if isinstance(value, str) else number


__all__ = ["MAX_SEED", "check_int", "check_number", "check_seed"]
