"""benchmarks/lattice_table.py end to end in its seconds-long smoke mode: warm start, pilot gate,
table v2 in the table format, the variable-period comparison, and a resume that trains nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from acla_nas.search.table.lookup import Table

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "lattice_table.py"),
        "--smoke",
        "--jobs",
        "1",
        "--table",
        "always",
        "--out",
        str(out),
        "--varperiod",
        str(ROOT / "search_spaces" / "lattice_varperiod_denoise_sigma75.yaml"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_smoke_run_writes_the_gate_the_table_and_resumes(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    for part in (
        "## Pilot gate",
        "Kendall tau seed 0 vs seed 1",
        "Gate:",
        "## Table v2",
        "## Variable period",
        "_random (control)",
    ):
        assert part in summary, part
    table = Table(tmp_path / "table.csv")
    assert len(table) >= 4 and table.common_seeds() == {0, 1}
    runs = (tmp_path / "runs.csv").read_text().splitlines()
    again = _run(tmp_path)
    assert again.returncode == 0 and (tmp_path / "runs.csv").read_text().splitlines() == runs  # nothing retrained
    assert "] pilot" not in again.stdout
