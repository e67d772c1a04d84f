"""A tabulated space read back: stand-alone scores by architecture (used by ``evaluator: table``,
:mod:`acla_nas.search.evaluators.table`).

The CSV is written by :mod:`acla_nas.search.table.build` (one row per (arch, seed) run). A strategy
searching with ``evaluator: table`` gets each candidate's stand-alone score from the table in
microseconds instead of training it, so strategies are compared exactly (regret against the
table's best) and over many seeds.

In a strategy preset::

    evaluator: table
    table: {path: results/table/synthetic_table.csv, value: auto}   # or seed0, mean

``value: auto`` (the default) is ``mean`` when every architecture has two or more seeds in
common (a table built with ``--seeds``), else ``seed0``.

``value: seed0`` answers the seed-0 run, which every architecture has: all answers
then share one seed (same initialisation and batches), so their differences are paired. ``mean``
averages, for every architecture, the seeds that *every* architecture of the table has (seeds 0
and 1 of results/lattice/table.csv; a third seed held by some architectures only is left out, so
no architecture is ranked on another mixture of seed offsets than the rest).
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
VALUES = ("auto", "seed0", "mean")
REQUIRED_COLUMNS = ("arch", "seed", "psnr", "ssim", "macs", "params")


@dataclass
class Entry:
    """The runs of one architecture in a table."""

    psnr: dict[int, float]  # by seed
    ssim: dict[int, float]
    macs: int
    params: int
    seconds: float

    def value(self, how: str = "seed0", seeds: frozenset[int] | None = None) -> tuple[float, float]:
        """(PSNR, SSIM) by ``how``: seed 0's run, or the mean over ``seeds`` (default: all the
        entry holds; the table passes the seeds every architecture has, so an architecture with
        an extra seed is not ranked on another seed mixture than the rest)."""
        if how == "seed0":
            return self.psnr.get(0, math.nan), self.ssim.get(0, math.nan)
        use = [s for s in self.psnr if seeds is None or s in seeds] or list(self.psnr)
        return statistics.fmean(self.psnr[s] for s in use), statistics.fmean(self.ssim[s] for s in use)


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

    def common_seeds(self) -> frozenset[int]:
        """The seeds every architecture of the table has (what ``mean`` averages)."""
        sets = [set(e.psnr) for e in self.entries.values()]
        return frozenset(set.intersection(*sets)) if sets else frozenset()

    def resolve(self, how: str) -> str:
        """``auto`` -> ``mean`` when every architecture shares two or more seeds, else ``seed0``."""
        if how != "auto":
            return how
        return "mean" if len(self.common_seeds()) >= 2 else "seed0"

    def values(self, how: str = "seed0") -> dict[str, float]:
        """PSNR by architecture key."""
        how = self.resolve(how)
        seeds = self.common_seeds()
        return {k: e.value(how, seeds)[0] for k, e in self.entries.items()}

    def noise(self) -> dict[str, float]:
        """Seed noise from the architectures with two or more seeds: the std of the paired
        difference seed 1 - seed 0, and the per-run std (that / sqrt 2)."""
        diffs = [e.psnr[1] - e.psnr[0] for e in self.entries.values() if 0 in e.psnr and 1 in e.psnr]
        if len(diffs) < 2:
            return {"pairs": len(diffs), "diff_std": math.nan, "run_std": math.nan, "diff_mean": math.nan}
        sd = statistics.stdev(diffs)
        return {"pairs": len(diffs), "diff_std": sd, "run_std": sd / math.sqrt(2), "diff_mean": statistics.fmean(diffs)}


def parse_table_section(section: Any, file: str | None = None) -> dict[str, Any]:
    """A preset's ``table:`` section, checked (``path`` required, ``value`` auto|mean|seed0)."""
    if not isinstance(section, dict):
        raise UserError("expected a mapping {path: TABLE.csv, value: auto|mean|seed0}", file=file, field="table")
    for key in section:
        if key not in TABLE_KEYS:
            raise UserError(f"unknown key (expected {', '.join(TABLE_KEYS)})", file=file, field=f"table.{key}")
    if not isinstance(section.get("path"), str) or not section["path"]:
        raise UserError(
            "expected the path of a table CSV (python -m acla_nas.search.table.build builds one)",
            file=file,
            field="table.path",
        )
    value = section.setdefault("value", "auto")
    if value not in VALUES:
        raise UserError(f"expected one of {', '.join(VALUES)}, got {value!r}", file=file, field="table.value")
    if not isinstance(section.setdefault("partial", False), bool):
        raise UserError("expected true or false", file=file, field="table.partial")
    return section


__all__ = ["Entry", "Table", "parse_table_section"]
