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


def test_smoke_run_compares_every_offset_predictor_from_the_seeds_backbone(tmp_path: Path) -> None:
    import csv

    assert _run(tmp_path).returncode == 0
    with (tmp_path / "runs.csv").open(newline="") as f:
        done = list(csv.DictReader(f))
    variants = {r["variant"] for r in done if r["set"] == "varperiod"}
    assert variants == {"plain", "local", "dilated", "pooled", "frozen", "random"}
    # fine-tuned runs start from that seed's plain backbone, not from scratch
    plain0 = next(r["model"] for r in done if r["set"] == "plain" and r["seed"] == "0")
    pilot0 = next(r["model"] for r in done if r["set"] == "pilot" and r["seed"] == "0")
    assert plain0 in (Path(pilot0).parent / "arch.yaml").read_text()
    assert "Main effects" in (tmp_path / "summary.md").read_text()


def test_a_spent_budget_still_writes_the_summary(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "lattice_table.py"), "--smoke", "--jobs", "1"]
    done = subprocess.run([*cmd, "--budget-s", "0", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runs were not started" in done.stdout
    assert "## Pilot gate" in (tmp_path / "summary.md").read_text()


def test_varperiod_only_trains_just_the_offset_predictor_comparison(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "lattice_table.py"), "--smoke", "--jobs", "1", "--varperiod-only"]
    vp = str(ROOT / "search_spaces" / "lattice_varperiod_denoise_sigma75.yaml")
    done = subprocess.run([*cmd, "--varperiod", vp, "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    assert "## Variable period" in summary and "## Pilot gate" not in summary and "_pooled" in summary
    sets = {line.split(",")[0] for line in (tmp_path / "runs.csv").read_text().splitlines()[1:]}
    assert sets == {"vp-plain", "varperiod"}
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--varperiod-only needs --varperiod" in bad.stderr
