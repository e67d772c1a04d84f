"""The trajectory table: one row per trial or per logged DARTS step, same columns for every strategy.

Core columns (always present, in this order) plus ``k:<site>`` and ``scope:<site>`` for every
candidate site of the space; DARTS rows add ``temperature`` and ``p:<site>:<budget>``.
The CSV is rewritten atomically from the full row list, so a crash never leaves half a row.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .arch import Arch

CORE_COLUMNS = ["run", "strategy", "evaluator", "step", "state", "psnr", "flops", "params", "seconds", "n_modules", "arch"]


def scope_label(scope: Any) -> str:
    if isinstance(scope, (list, tuple)):
        return "+".join(scope)
    return str(scope)


def arch_columns(arch: Arch | None, sites: Sequence[str]) -> dict[str, Any]:
    """Per-site ``k:`` and ``scope:`` columns (0 and empty for sites without a module)."""
    out: dict[str, Any] = {}
    for s in sites:
        choice = arch.modules.get(s) if arch is not None else None
        out[f"k:{s}"] = choice.keys if choice is not None else 0
        out[f"scope:{s}"] = scope_label(choice.scope) if choice is not None else ""
    return out


def make_row(
    *,
    run: str,
    strategy: str,
    evaluator: str,
    step: int,
    state: str,
    sites: Sequence[str],
    arch: Arch | None = None,
    encoding: dict | None = None,
    psnr: float = math.nan,
    flops: float = math.nan,
    params: float = math.nan,
    seconds: float = math.nan,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run": run,
        "strategy": strategy,
        "evaluator": evaluator,
        "step": int(step),
        "state": state,
        "psnr": psnr,
        "flops": flops,
        "params": params,
        "seconds": round(float(seconds), 3),
        "n_modules": arch.n_modules() if arch is not None else 0,
        "arch": json.dumps(encoding, sort_keys=True) if encoding is not None else "",
    }
    row.update(arch_columns(arch, sites))
    row.update(extra or {})
    return row


def write_trajectory(rows: Iterable[dict[str, Any]], path: str | Path, sites: Sequence[str]) -> pd.DataFrame:
    """Write rows as CSV (atomic), with the core and per-site columns first."""
    df = pd.DataFrame(list(rows))
    fixed = CORE_COLUMNS + [f"k:{s}" for s in sites] + [f"scope:{s}" for s in sites]
    for col in fixed:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    df = df[fixed + [c for c in df.columns if c not in fixed]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return df


@contextlib.contextmanager
def outputs_lock(run_dir: str | Path) -> Iterator[None]:
    """Serialise "read the study, rewrite the outputs" among the processes of one run directory,
    so a process holding an older view cannot overwrite a newer table (``flock`` on the folder)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: last writer wins
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_trajectory(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)
