"""A tabulated space read back: stand-alone scores by architecture, and ``evaluator: table``.

The CSV is written by :mod:`acla_nas.tabulate` (one row per (arch, seed) run). A strategy
searching with ``evaluator: table`` gets each candidate's stand-alone score from the table in
microseconds instead of training it, so strategies are compared exactly (regret against the
table's best) and over many seeds.

In a strategy preset::

    evaluator: table
    table: {path: results/table/synthetic_table.csv, value: mean}   # or value: seed0

``value: mean`` answers the mean over the seeds the table holds for the architecture (the best
estimate); ``seed0`` answers the seed-0 run alone (every architecture has one).
"""
from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import Arch
from .errors import UserError
from .evaluators import Evaluator, SearchData

TABLE_KEYS = ("path", "value", "partial")
VALUES = ("mean", "seed0")
REQUIRED_COLUMNS = ("arch", "seed", "psnr", "ssim", "macs", "params")


@dataclass
class Entry:
    """The runs of one architecture in a table."""

    psnr: dict[int, float]  # by seed
    ssim: dict[int, float]
    macs: int
    params: int
    seconds: float

    def value(self, how: str = "mean") -> tuple[float, float]:
        """(PSNR, SSIM) by ``how``: the mean over seeds, or seed 0's run."""
        if how == "seed0":
            return self.psnr.get(0, math.nan), self.ssim.get(0, math.nan)
        return statistics.fmean(self.psnr.values()), statistics.fmean(self.ssim.values())


class Table:
    """The rows of a table CSV grouped by architecture key (see :func:`acla_nas.tabulate.arch_key`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError("no such table (build it with: python -m acla_nas.tabulate SPACE --out FILE)", file=str(path))
        self.entries: dict[str, Entry] = {}
        try:
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise UserError(f"not a table CSV: missing column {missing[0]!r} (expected {', '.join(REQUIRED_COLUMNS)})",
                                    file=str(path))
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
            raise UserError(f"line {line}: expected numbers in seed, psnr, ssim, macs, params", file=str(self.path),
                            field="psnr") from None
        e = self.entries.setdefault(row["arch"], Entry({}, {}, macs, params, 0.0))
        e.psnr[seed], e.ssim[seed] = p, s
        e.seconds += seconds

    def __len__(self) -> int:
        return len(self.entries)

    def values(self, how: str = "mean") -> dict[str, float]:
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
        raise UserError("expected the path of a table CSV (python -m acla_nas.tabulate builds one)", file=file, field="table.path")
    value = section.setdefault("value", "mean")
    if value not in VALUES:
        raise UserError(f"expected one of {', '.join(VALUES)}, got {value!r}", file=file, field="table.value")
    if not isinstance(section.setdefault("partial", False), bool):
        raise UserError("expected true or false", file=file, field="table.partial")
    return section


class TableEvaluator(Evaluator):
    """Answers a candidate's score from a tabulated space (no training)."""

    name = "table"

    def __init__(self, space: Any, data: SearchData, options: dict | None = None, run_dir: Path | None = None) -> None:
        super().__init__(space, data, parse_table_section(dict(options or {})), run_dir)
        self.table = Table(self.options["path"])
        self.how = self.options["value"]

    def prepare(self) -> None:
        """The table must cover the space (unless ``partial: true``: a missing candidate then fails)."""
        from .tabulate import arch_key

        if self.options["partial"]:
            return
        missing = [a for a in self.space.enumerate() if arch_key(self.space, a) not in self.table.entries]
        if missing:
            raise UserError(f"the table holds {len(self.table)} architectures; {len(missing)} of the space's are missing "
                            f"(e.g. {arch_key(self.space, missing[0])}): finish it with python -m acla_nas.tabulate, "
                            "or set table.partial: true", file=str(self.table.path))

    def _score(self, arch: Arch) -> tuple[float, float]:
        from .tabulate import arch_key

        entry = self.table.entries.get(arch_key(self.space, arch))
        if entry is None:
            return math.nan, math.nan  # a FAIL trial: not tabulated (partial table)
        return entry.value(self.how)


__all__ = ["Entry", "Table", "TableEvaluator", "parse_table_section"]
