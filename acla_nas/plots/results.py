"""The results a report shows: found where the documented flow writes them, read and tidied.

``acla-nas train --out DIR`` writes ``DIR/metrics.json`` (and ``model.pt``), ``acla-nas evaluate``
writes ``evaluation.csv`` next to the checkpoint (or ``--out CSV``), and the pipeline writes
``final_table.csv`` and ``retrain/<variant>/``. A report of a search run looks for all of them
in the run directory and its sub-folders; ``--results`` names more files or folders.

Numbers are formatted once here, as a paper table would print them: PSNR with a fixed number of
decimals, SSIM with four, parameters in K below one million and in M above, MACs in one unit per
column, and "-" where a value does not apply (the input floor has no parameters).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acla_nas.core.errors import UserError

SKIP_DIRS = {"supernet", "checkpoints", "plots"}  # training state and figures, not results
DEPTH = 3  # RUN/retrain/<variant>/metrics.json is the deepest the flow writes
PSNR_DECIMALS = 3


@dataclass(frozen=True)
class ResultFile:
    """One results file and what it holds: ``final_table``, ``metrics`` or ``evaluation``."""

    kind: str
    path: Path


def classify(path: Path) -> str | None:
    """What a results file holds, from its name (None: not a results file)."""
    name = path.name
    if name == "final_table.csv":
        return "final_table"
    if name == "metrics.json" or name.endswith("_metrics.json"):
        return "metrics"
    if name.endswith(".csv") and ("evaluation" in name or name.startswith("eval")):
        return "evaluation"
    return None


def _scan(folder: Path, depth: int) -> list[ResultFile]:
    found = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        if p.is_file() and (kind := classify(p)):
            found.append(ResultFile(kind, p))
    for p in entries:
        if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".") and depth > 0:
            found += _scan(p, depth - 1)
    return found


def find_results(run_dir: Path, extra: Sequence[str | Path] = ()) -> list[ResultFile]:
    """Results files of ``run_dir`` (itself and sub-folders), then those of ``extra`` (files, or
    folders scanned the same way). A named path that is missing or holds no result is an error."""
    found = _scan(run_dir, DEPTH)
    for item in extra:
        p = Path(item)
        if p.is_dir():
            more = _scan(p, DEPTH)
            if not more:
                raise UserError(
                    "no metrics.json, evaluation CSV or final_table.csv here", file=str(p), field="--results"
                )
            found += more
        elif p.is_file():
            kind = classify(p) or ("metrics" if p.suffix == ".json" else "evaluation" if p.suffix == ".csv" else None)
            if kind is None:
                raise UserError("expected a .json metrics file or a .csv table", file=str(p), field="--results")
            found.append(ResultFile(kind, p))
        else:
            raise UserError("not found", file=str(p), field="--results")
    seen: set[Path] = set()
    return [r for r in found if not (r.path.resolve() in seen or seen.add(r.path.resolve()))]


# --------------------------------------------------------------------------------------------
# number formats


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_psnr(v: Any) -> str:
    f = _finite(v)
    return "-" if f is None else f"{f:.{PSNR_DECIMALS}f}"


def fmt_ssim(v: Any) -> str:
    f = _finite(v)
    return "-" if f is None else f"{f:.4f}"


def fmt_params(v: Any) -> str:
    """ "4.52 K" below one million, "1.234 M" above; "-" for none (or 0: the input floor)."""
    f = _finite(v)
    if not f:
        return "-"
    return f"{f / 1e3:.2f} K" if f < 1e6 else f"{f / 1e6:.3f} M"


def macs_unit(values: Iterable[Any]) -> tuple[float, str]:
    """One unit for a whole column of MACs: (divisor, "G"/"M"/"K"/"")."""
    top = max((abs(f) for v in values if (f := _finite(v))), default=0.0)
    return next(((d, p) for d, p in ((1e9, "G"), (1e6, "M"), (1e3, "K")) if top >= d), (1.0, ""))


def fmt_macs(v: Any, divisor: float) -> str:
    f = _finite(v)
    return "-" if not f else f"{f / divisor:.3f}"


def fmt_seconds(v: Any) -> str:
    f = _finite(v)
    return "-" if f is None else f"{f:.0f} s"


# --------------------------------------------------------------------------------------------
# tables: (header, rows) of display strings, or None when the file is not of the expected shape


Table = tuple[list[str], list[list[str]]]


def final_table(df: pd.DataFrame) -> Table | None:
    """The pipeline's final table; None when the columns are not the pipeline's."""
    if not {"model", "psnr", "params", "macs"} <= set(df.columns):
        return None
    div, unit = macs_unit(df["macs"])
    header = ["model", "PSNR (dB)", "SSIM", "params", f"MACs ({unit})" if unit else "MACs", "ACLA modules"]
    rows = []
    for _, r in df.iterrows():
        rows.append(
            [
                str(r["model"]),
                fmt_psnr(r["psnr"]),
                fmt_ssim(r.get("ssim")),
                fmt_params(r["params"]),
                fmt_macs(r["macs"], div),
                str(r.get("modules", "") if pd.notna(r.get("modules", "")) else ""),
            ]
        )
    return header, rows


def metrics_row(folder: str, m: Mapping[str, Any]) -> list[str] | None:
    """One retrained model from its ``metrics.json`` (None: not a training run's file)."""
    test = m.get("test")
    if not isinstance(test, Mapping) and "val_psnr" not in m:
        return None
    test = test if isinstance(test, Mapping) else {}
    return [
        folder,
        str(m.get("steps", "-")),
        fmt_psnr(m.get("val_psnr")),
        fmt_psnr(test.get("psnr")),
        fmt_ssim(test.get("ssim")),
        fmt_psnr(test.get("floor_psnr")),
        fmt_seconds(m.get("seconds")),
    ]


METRICS_HEADER = [
    "model folder",
    "steps",
    "val PSNR (dB)",
    "test PSNR (dB)",
    "test SSIM",
    "input PSNR (dB)",
    "training",
]


def evaluation_table(folder: str, df: pd.DataFrame) -> list[list[str]] | None:
    """The per-set means of an ``evaluate`` CSV (None: not one)."""
    if not {"dataset", "image", "psnr", "ssim"} <= set(df.columns):
        return None
    means = df[df["image"] == "(mean)"]
    if means.empty:
        means = df.groupby("dataset", as_index=False, sort=False).mean(numeric_only=True)
        means["image"] = "(mean)"
    n = df[df["image"] != "(mean)"].groupby("dataset").size()
    return [
        [
            folder,
            str(r["dataset"]),
            str(int(n.get(r["dataset"], 0))),
            fmt_psnr(r["psnr"]),
            fmt_ssim(r["ssim"]),
            fmt_psnr(r.get("floor_psnr")),
            fmt_ssim(r.get("floor_ssim")),
        ]
        for _, r in means.iterrows()
    ]


EVALUATION_HEADER = ["model folder", "dataset", "images", "PSNR (dB)", "SSIM", "input PSNR (dB)", "input SSIM"]


def read_metrics(path: Path) -> Any:
    """The JSON document (ValueError/OSError/UnicodeDecodeError for a bad file)."""
    return json.loads(path.read_text(encoding="utf-8"))


def relative(path: Path, root: Path) -> str:
    """``path``'s folder as the reader knows it: relative to the run when inside it."""
    folder = path.parent
    try:
        rel = folder.resolve().relative_to(root.resolve())
        return str(rel) if str(rel) != "." else root.resolve().name
    except ValueError:
        return str(folder)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


__all__ = [
    "EVALUATION_HEADER",
    "METRICS_HEADER",
    "ResultFile",
    "classify",
    "evaluation_table",
    "final_table",
    "find_results",
    "fmt_macs",
    "fmt_params",
    "fmt_psnr",
    "fmt_ssim",
    "macs_unit",
    "metrics_row",
    "read_metrics",
    "relative",
]
