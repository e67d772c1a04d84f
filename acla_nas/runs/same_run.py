"""The one "same run?" rule: a directory that holds another configuration is refused, naming what differs.

Used by every verb that resumes (search, train): re-running the same command continues a run,
anything else gets one line instead of mixing two runs' results.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from acla_nas.core.errors import UserError


def differences(stored: dict, current: dict, prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted names of the fields that differ (``depth`` levels into sections)."""
    out = []
    for key in sorted(set(stored) | set(current), key=str):
        a, b = stored.get(key), current.get(key)
        if a != b:
            if depth > 0 and isinstance(a, dict) and isinstance(b, dict):
                out += differences(a, b, f"{prefix}{key}.", depth - 1)
            else:
                out.append(f"{prefix}{key}")
    return out


RESUME_ADVICE = "run the same command to resume it, or choose another --out"


def refuse_other_run(
    stored: dict, current: dict, file: str | Path, what: str, depth: int = 0, advice: str = RESUME_ADVICE
) -> None:
    """The one "same run?" rule: compare through YAML (tuples and lists, key order do not
    matter) and refuse a directory that holds another configuration, naming what differs."""
    a, b = (yaml.safe_load(yaml.safe_dump(x)) for x in (stored, current))
    if a != b:
        keys = differences(a if isinstance(a, dict) else {}, b, depth=depth)
        raise UserError(f"{what} (differs in: {', '.join(keys) or 'layout'}); {advice}", file=str(file))


__all__ = ["RESUME_ADVICE", "differences", "refuse_other_run"]
