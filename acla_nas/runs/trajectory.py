"""The trajectory and architecture schema: column names, the one scope spelling, reading and writing.

One row per trial or per logged DARTS step, same columns for every strategy: the core columns
(always present, in this order) plus ``k:<site>`` and ``scope:<site>`` for every candidate site
of the space; DARTS rows add ``temperature`` and ``p:<site>:<budget>``. The ``arch`` column (and
``exported.csv``'s) is the space's flat encoding as JSON: ``<site>.keys`` and ``<site>.scope``.
A scope is written one way everywhere (:func:`scope_text`): ``2``, ``all`` or ``head,body.3``.
The CSV is rewritten atomically from the full row list, so a crash never leaves half a row.
``sites.csv`` lists the backbone's candidate sites (name, channels, stride).

Search, export, plots and the report all read and write through this module.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from acla_nas.core.atomic import atomic_path, write_text_atomic
from acla_nas.nn.backbones.base import Site
from acla_nas.core.checks import ascii_digits
from acla_nas.core.errors import UserError
from acla_nas.core.yaml_io import read_yaml
from acla_nas.runs.run_dir import RunDir

if TYPE_CHECKING:
    from acla_nas.nn.arch import Arch

CORE_COLUMNS = [
    "run",
    "strategy",
    "evaluator",
    "step",
    "state",
    "psnr",
    "flops",
    "params",
    "seconds",
    "n_modules",
    "arch",
]
REQUIRED_COLUMNS = ("step", "psnr")
NUMERIC_COLUMNS = ("step", "psnr", "flops", "params", "seconds", "n_modules", "temperature")
OK_STATE = "COMPLETE"
TEMPERATURE = "temperature"
K_PREFIX, SCOPE_PREFIX, P_PREFIX = "k:", "scope:", "p:"
KEYS_SUFFIX, SCOPE_SUFFIX = ".keys", ".scope"  # the flat encoding's names
SCOPE_SEPARATOR = ","
_P_COL = re.compile(r"^p:(?P<site>.+):(?P<budget>-?\d+)$")

Canonical = dict[str, tuple[int, Any]]  # site -> (keys, scope), only sites with keys > 0


def k_column(site: str) -> str:
    return f"{K_PREFIX}{site}"


def scope_column(site: str) -> str:
    return f"{SCOPE_PREFIX}{site}"


def p_column(site: str, budget: int) -> str:
    return f"{P_PREFIX}{site}:{budget}"


def parse_p_column(column: str) -> tuple[str, int] | None:
    """(site, budget) of a ``p:<site>:<budget>`` column (site names may hold ':'), else None."""
    m = _P_COL.match(str(column))
    return (m["site"], int(m["budget"])) if m else None


def scope_text(scope: Any) -> str:
    """The one spelling of a scope in files: '2', 'all', or 'head,body.3' for an explicit list."""
    if isinstance(scope, (list, tuple)):
        return SCOPE_SEPARATOR.join(scope)
    return str(scope)


def scope_value(text: Any) -> Any:
    """The inverse of :func:`scope_text`: int r, 'all', a tuple of site names; None when empty."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    if isinstance(text, (list, tuple)):
        return tuple(str(x) for x in text)
    s = str(text).strip()
    if not s:
        return None
    if s == "all":
        return "all"
    if ascii_digits(s):
        return int(s)
    return tuple(s.split(SCOPE_SEPARATOR))


def scope_label(scope: Any) -> str:
    """Alias of :func:`scope_text` (the trajectory's ``scope:<site>`` cells)."""
    return scope_text(scope)


def arch_columns(arch: Arch | None, sites: Sequence[str]) -> dict[str, Any]:
    """Per-site ``k:`` and ``scope:`` columns (0 and empty for sites without a module)."""
    out: dict[str, Any] = {}
    for s in sites:
        choice = arch.modules.get(s) if arch is not None else None
        out[k_column(s)] = choice.keys if choice is not None else 0
        out[scope_column(s)] = scope_text(choice.scope) if choice is not None else ""
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
    fixed = CORE_COLUMNS + [k_column(s) for s in sites] + [scope_column(s) for s in sites]
    for col in fixed:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    df = df[fixed + [c for c in df.columns if c not in fixed]]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
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


# --------------------------------------------------------------------------------------------
# reading


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV, turning every parse problem into a one-line UserError naming the file."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise UserError("file not found", file=str(path)) from None
    except pd.errors.EmptyDataError:
        raise UserError("empty file (expected a CSV header line)", file=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"malformed CSV ({first})", file=str(path)) from None


def _coerce_numeric(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Make the numeric columns numeric; a non-numeric cell is a user error."""
    for col in NUMERIC_COLUMNS:
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        text = raw.astype(str).str.strip().str.lower()
        bad = raw.notna() & num.isna() & ~text.isin({"", "nan", "none", "null", "inf", "-inf"})
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"expected a number on line {i + 2}, got {raw.iloc[i]!r}", file=str(path), field=col)
        df[col] = num
    for col in [c for c in df.columns if c.startswith(P_PREFIX) or c.startswith(K_PREFIX)]:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def trajectory_path(run_or_file: str | Path | Any) -> Path:
    """``RUN_DIR/trajectory.csv`` for a run directory, else the file itself (checked to exist)."""
    path = Path(run_or_file)
    if not path.exists():
        raise UserError("run directory not found", file=str(path))
    if path.is_dir():
        if not RunDir(path).trajectory.exists():
            raise UserError("no trajectory.csv in this run directory (has the search started?)", file=str(path))
        return RunDir(path).trajectory
    return path


def load_trajectory(run_or_file: str | Path | Any) -> pd.DataFrame:
    """A trajectory checked against the column contract; ``run``/``strategy``/``state`` are
    filled when absent so hand-made tables still load."""
    path = trajectory_path(run_or_file)
    df = read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"missing column(s) {', '.join(missing)} (see the trajectory contract in docs/internals.md)",
            file=str(path),
            field=missing[0],
        )
    df = _coerce_numeric(df, path)
    name = path.parent.name
    df["run"] = df["run"].fillna(name).astype(str) if "run" in df.columns else name
    df["strategy"] = df["strategy"].fillna("?").astype(str) if "strategy" in df.columns else "?"
    if "state" in df.columns:
        df["state"] = df["state"].fillna("").astype(str).str.upper()
    else:
        df["state"] = np.where(np.isfinite(df["psnr"]), OK_STATE, "FAIL")
    return df


def read_trajectory(path: str | Path) -> pd.DataFrame:
    return load_trajectory(path)


def site_names(df: pd.DataFrame) -> list[str]:
    """Candidate sites in column order of the ``k:<site>`` columns (the space's order)."""
    return [c[len(K_PREFIX) :] for c in df.columns if str(c).startswith(K_PREFIX)]


def keys_value(value: Any) -> int:
    try:
        return 0 if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return 0


def row_arch(row: Mapping[str, Any], sites: Sequence[str]) -> Canonical:
    """``{site: (keys, scope)}`` of a trajectory row, from its ``k:`` and ``scope:`` columns."""
    out: Canonical = {}
    for s in sites:
        k = keys_value(row.get(k_column(s)))
        if k:
            out[s] = (k, scope_value(row.get(scope_column(s))))
    return out


def encoding_arch(encoding: Any) -> Canonical | None:
    """``{site: (keys, scope)}`` of a flat encoding (a dict or its JSON text, as in the ``arch``
    column); None when the cell is empty or not such an encoding."""
    if isinstance(encoding, str):
        if not encoding.strip():
            return None
        try:
            encoding = json.loads(encoding)
        except ValueError:
            return None
    if not isinstance(encoding, Mapping):
        return None
    out: Canonical = {}
    for key, value in encoding.items():
        if str(key).endswith(KEYS_SUFFIX):
            site = str(key)[: -len(KEYS_SUFFIX)]
            if keys_value(value):
                out[site] = (keys_value(value), scope_value(encoding.get(site + SCOPE_SUFFIX)))
    return out


def doc_scope(value: Any) -> Any:
    """A scope as an Arch YAML writes it (the arch file's own parser; None when invalid)."""
    from acla_nas.nn.scope import parse_scope

    try:
        return parse_scope(value, "scope")
    except UserError:
        return None


def doc_arch(doc: Any) -> Canonical | None:
    """``{site: (keys, scope)}`` of an Arch YAML mapping (``modules: {site: {keys, scope}}``)."""
    if hasattr(doc, "modules") and not isinstance(doc, Mapping):
        return {s: (c.keys, c.scope) for s, c in doc.modules.items() if c.keys}
    modules = doc.get("modules") if isinstance(doc, Mapping) else None
    if not isinstance(modules, Mapping):
        return None
    out: Canonical = {}
    for site, choice in modules.items():
        if isinstance(choice, Mapping) and keys_value(choice.get("keys")):
            out[str(site)] = (keys_value(choice.get("keys")), doc_scope(choice.get("scope", "all")))
    return out


# --------------------------------------------------------------------------------------------
# the other run files


def read_yaml_file(path: str | Path) -> Any:
    """A run file's YAML (may be empty: None), through the one reader (:mod:`acla_nas.core.yaml_io`)."""
    return read_yaml(path, allow_empty=True)


def load_best_arch(run_dir: str | Path) -> dict | None:
    """``RUN_DIR/best_arch.yaml`` as a dict, or None when the run has not written one."""
    path = RunDir(run_dir).best_arch
    if not path.exists():
        return None
    arch = read_yaml_file(path)
    if not isinstance(arch, dict):
        raise UserError("expected a mapping with backbone, task, modules", file=str(path))
    return arch


def write_sites(path: str | Path, sites: Iterable[Any]) -> None:
    """``sites.csv``: name, channels, stride of each candidate site (atomic)."""
    write_text_atomic(
        Path(path), "name,channels,stride\n" + "".join(f"{s.name},{s.channels},{s.stride}\n" for s in sites)
    )


def read_sites(path: str | Path) -> list[Site] | None:
    """The rows of ``sites.csv`` (channels/stride None where unknown); None without a file."""
    path = Path(path)
    if not path.exists():
        return None
    table = read_csv(path)
    if "name" not in table.columns:
        raise UserError("missing column 'name' (expected name,channels,stride)", file=str(path), field="name")

    def _int(v: Any) -> int | None:
        try:
            return None if pd.isna(v) else int(float(v))
        except (TypeError, ValueError):
            return None

    return [Site(str(r["name"]), _int(r.get("channels")), _int(r.get("stride"))) for _, r in table.iterrows()]
