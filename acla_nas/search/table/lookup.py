"""A tabulated space read back: stand-alone scores by architecture (used by ``evaluator: table``,
:mod:`acla_nas.search.evaluators.table`).

The CSV is written by :mod:`acla_nas.search.table.build` (one row per (arch, seed) run). A strategy
searching with ``evaluator: table`` gets each candidate's stand-alone score from the table in
microseconds instead of training it, so strategies are compared exactly (regret against the
table's best) and over many seeds.

In a strategy preset::

    evaluator: table
    table: {path: results/table/synthetic_table.csv, value: seed0}   # or value: mean

``value: seed0`` (the default) answers the seed-0 run, which every architecture has: all answers
then share one seed (same initialisation and batches), so their differences are paired. ``mean``
averages the seeds the table holds for the architecture; where only some architectures have a
second seed this mixes seed offsets into the ranking (on results/table/synthetic_table.csv the
seed-1 runs are 0.2 dB below their seed-0 runs on average), so use it only on a table whose
architectures all have the same seeds.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acla_nas.core.errors import UserError

TABLE_KEYS = ("path", "value", "partial")
VALUES = ("seed0", "mean")
REQUIRED_COLUMNS = ("arch", "seed", "psnr", "ssim", "macs", "params")


@dataclass
class Entry:
    """The runs of one architecture in a table."""

    psnr: dict[int, float]  # by seed
    ssim: dict[int, float]
    macs: int
    params: int
    seconds: float

    def value(self, how: str = "seed0") -> tuple[float, float]:
        """(PSNR, SSIM) by ``how``: the mean over seeds, or seed 0's run."""
        if how == "seed0":
            return self.psnr.get(0, math.nan), self.ssim.get(0, math.nan)
        return statistics.fmean(self.psnr.values()), statistics.fmean(self.ssim.values())


class Table:
    """The rows of a table CSV grouped by architecture key (see :func:`acla_nas.search.table.build.arch_key`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(
                "no such table (build it with: python -m acla_nas.search.table.build SPACE --out FILE)", file=str(path)
            )
        self.entries: dict[str, Entry] = {}
        try:
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise UserError(
                        f"not a table CSV: missing column {missing[0]!r} (expected {', '.join(REQUIRED_COLUMNS)})",
                        file=str(path),
                    )
                for i, row in enumerate(reader, start=2):
                    self._add(row, i)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"cannot read the table: {exc}", file=str(path)) from None

    def _add(self, row: dict[str, Any], line: int) -> None:
        try:
            seed, p, s = int(row["seed"]), float(row["psnr"]), float(row["ssim"])
            macs, params = int(row["macs"]), int(row["params"])
            seconds = float(row.get("seconds") or 0.0)
        except (TypeError, ValueError):
            raise UserError(
                f"line {line}: expected numbers in seed, psnr, ssim, macs, params", file=str(self.path), field="psnr"
            ) from None
        e = self.entries.setdefault(row["arch"], Entry({}, {}, macs, params, 0.0))
        e.psnr[seed], e.ssim[seed] = p, s
        e.seconds += seconds

    def __len__(self) -> int:
        return len(self.entries)

    def values(self, how: str = "seed0") -> dict[str, float]:
        """PSNR by architecture key."""
        return {k: e.value(how)[0] for k, e in self.entries.items()}

    def noise(self) -> dict[str, float]:
        """Seed noise from the architectures with two or more seeds: the std of the paired
        difference seed 1 - seed 0, and the per-run std (that / sqrt 2)."""
        diffs = [e.psnr[1] - e.psnr[0] for e in self.entries.values() if 0 in e.psnr and 1 in e.psnr]
        if len(diffs) < 2:
            return {"pairs": len(diffs), "diff_std": math.nan, "run_std": math.nan, "diff_mean": math.nan}
        sd = statistics.stdev(diffs)
        return {"pairs": len(diffs), "diff_std": sd, "run_std": sd / math.sqrt(2), "diff_mean": statistics.fmean(diffs)}


def parse_table_section(section: Any, file: str | None = None) -> dict[str, Any]:
    """A preset's ``table:`` section, checked (``path`` required, ``value`` mean|seed0)."""
    if not isinstance(section, dict):
        raise UserError("expected a mapping {path: TABLE.csv, value: mean|seed0}", file=file, field="table")
    for key in section:
        if key not in TABLE_KEYS:
            raise UserError(f"unknown key (expected {', '.join(TABLE_KEYS)})", file=file, field=f"table.{key}")
    if not isinstance(section.get("path"), str) or not section["path"]:
        raise UserError(
            "expected the path of a table CSV (python -m acla_nas.search.table.build builds one)",
            file=file,
            field="table.path",
        )
    value = section.setdefault("value", "seed0")
    if value not in VALUES:
        raise UserError(f"expected one of {', '.join(VALUES)}, got {value!r}", file=file, field="table.value")
    if not isinstance(section.setdefault("partial", False), bool):
        raise UserError("expected true or false", file=file, field="table.partial")
    return section


__all__ = ["Entry", "Table", "parse_table_section"]
