"""``acla-nas spaces``: listing the shipped spaces and validating files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from acla_nas.cli.commands.spaces import shipped_dirs
from acla_nas.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "search_spaces" / "edsr_x2_demo.yaml"


def test_lists_shipped_spaces_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no search_spaces/ here: found next to the package
    assert shipped_dirs() == [(ROOT / "search_spaces").resolve()]
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:7] == ["file", "backbone", "task", "sites", "budgets", "scopes", "size"]
    assert len(lines) == 1 + len(list((ROOT / "search_spaces").glob("*.yaml")))
    demo = next(line for line in lines if "edsr_x2_demo" in line)
    assert "28000000 (~2.8e+07)" in demo and "[0, 2, 4, 8]" in demo and "sr scale 2" in demo
    paper = next(line for line in lines if "edsr_x4_paper" in line)
    assert re.search(r"\b28000000000000000000000000000000 \(~2\.8e\+31\)", paper)


def test_current_directory_spaces_are_listed_too(tmp_path, monkeypatch, capsys):
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "mine.yaml").write_text(DEMO.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "search_spaces/mine.yaml" in out and "edsr_x2_demo" in out


def test_validate_files_ok(capsys):
    assert main(["spaces", str(DEMO), str(ROOT / "search_spaces" / "user_backbone_example.yaml")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"OK {DEMO}: 8 sites, 28000000 architectures (~2.8e+07)")
    assert "with at most 3 modules" in out[0]
    assert out[1].startswith("OK ") and "375 architectures" in out[1]


def test_validate_mixed_files_reports_each_bad_one(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: edsr\ntask: {name: sr, scale: 2}\nkeys: [0, -1]\n")
    assert main(["spaces", str(bad), str(DEMO)]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"acla-nas spaces: error: {bad}: keys[1]: key budget -1 outside 0..256"
    assert out.startswith(f"OK {DEMO}")


def test_verbose_shows_summary_and_sites(capsys):
    assert main(["spaces", "-v", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "max_flops +25% of plain" in out and "body.7" in out and "channels   32" in out


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["spaces", "--help"])
    assert info.value.code == 0
    assert "validate" in capsys.readouterr().out
