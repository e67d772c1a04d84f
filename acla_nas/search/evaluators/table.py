"""``evaluator: table``: a candidate's score answered from a tabulated space (no training).

In a strategy preset::

    evaluator: table
    table: {path: results/table/synthetic_table.csv}   # value: auto (default: mean over common seeds when >= 2), seed0, mean

The table (:mod:`acla_nas.search.table.lookup`, built by :mod:`acla_nas.search.table.build`) must cover the space unless
``partial: true`` (a candidate it lacks then fails).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch
from acla_nas.search.evaluators import Evaluator, SearchData, register_evaluator
from acla_nas.search.table.lookup import Table, parse_table_section


@register_evaluator
class TableEvaluator(Evaluator):
    """Answers a candidate's score from a tabulated space (no training)."""

    name = "table"
    SECTION = "table"
    EXAMPLE = {"path": "results/table/synthetic_table.csv"}

    @classmethod
    def check_section(cls, section: dict, file: str | None = None) -> None:
        parse_table_section(dict(section or {}), file)

    def __init__(self, space: Any, data: SearchData, options: dict | None = None, run_dir: Path | None = None) -> None:
        super().__init__(space, data, parse_table_section(dict(options or {})), run_dir)
        self.table = Table(self.options["path"])
        self.how = self.table.resolve(self.options["value"])
        self.seeds = self.table.common_seeds()  # ``mean``: over the seeds every architecture has

    def prepare(self) -> None:
        """The table must cover the space (unless ``partial: true``: a missing candidate then fails)."""
        from acla_nas.search.table.build import arch_key

        if self.options["partial"]:
            return
        missing = [a for a in self.space.enumerate() if arch_key(self.space, a) not in self.table.entries]
        if missing:
            raise UserError(
                f"the table holds {len(self.table)} architectures; {len(missing)} of the space's are missing "
                f"(e.g. {arch_key(self.space, missing[0])}): finish it with python -m acla_nas.search.table.build, "
                "or set table.partial: true",
                file=str(self.table.path),
            )

    def _score(self, arch: Arch) -> tuple[float, float]:
        from acla_nas.search.table.build import arch_key

        entry = self.table.entries.get(arch_key(self.space, arch))
        if entry is None:
            return math.nan, math.nan  # a FAIL trial: not tabulated (partial table)
        return entry.value(self.how, self.seeds)


__all__ = ["TableEvaluator"]
