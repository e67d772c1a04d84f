"""The HTML report is self-contained and escapes file content; the plot/report verbs' CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_plots import BEST, SITES, make_darts, make_trials, write_run

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError

EVIL = '<script>alert("x")</script>'


def _run(tmp_path: Path) -> Path:
    rd = write_run(tmp_path / "run", make_trials("tpe", n=16), BEST, [(s, 64, 1) for s in SITES])
    (rd / "config.yaml").write_text(
        yaml.safe_dump({"space": "search_spaces/edsr.yaml", "note": EVIL, "strategy": {"name": "tpe", "n_trials": 16}})
    )
    pd.DataFrame({"image set": ["Set5", EVIL], "PSNR": [36.1, 32.0]}).to_csv(rd / "final_table.csv", index=False)
    (rd / "metrics.json").write_text(json.dumps({"psnr_y": 36.12, "name": EVIL}))
    return rd


def test_report_self_contained_and_escaped(tmp_path: Path) -> None:
    from acla_nas.plots.report import write_report

    rd = _run(tmp_path)
    out = write_report(rd)
    assert out == rd / "report.html"
    text = out.read_text()
    assert "<script" not in text and "&lt;script&gt;" in text
    assert not re.search(r'(src|href)="(?!data:)', text)  # no external assets
    assert "<link" not in text
    assert text.count('src="data:image/png;base64,') >= 4  # arch, score, pareto, top-k
    for piece in ("Configuration", "n_trials", "Best architecture", "body_conv", "Top 10", "Set5", "psnr_y", "36.12"):
        assert piece in text, piece
    assert "DARTS heat maps skipped" in text


def test_report_leads_with_results_and_folds_the_configuration(tmp_path: Path) -> None:
    """Results, best architecture and figures come before the top trials and the configuration,
    which sits inside a closed <details> element."""
    from acla_nas.plots.report import build_report

    text = build_report(_run(tmp_path))
    heads = re.findall(r"<h2>([^<]+)</h2>", text)
    assert heads == ["Results", "Best architecture", "Figures", "Top 10 architectures", "Configuration"], heads
    config = text[text.index("<h2>Configuration</h2>") :]
    assert config.index("<details>") < config.index("n_trials")
    assert text.index("Set5") < text.index("body_conv") < text.index('src="data:image/png;base64,')


def test_report_tolerates_bad_optional_files(tmp_path: Path) -> None:
    from acla_nas.plots.report import build_report

    rd = write_run(tmp_path / "d", make_darts(n_steps=8))
    (rd / "metrics.json").write_text("{not json")
    (rd / "config.yaml").write_text("a: [1, 2\n")
    text = build_report(rd, top_k=3)
    assert "malformed JSON" in text and "invalid YAML" in text
    assert "No best_arch.yaml" in text and "Top 3" in text
    assert text.count("data:image/png;base64,") >= 3  # score, DARTS probs, expected keys


def test_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rd = _run(tmp_path)
    assert main(["report", str(rd), "--out", str(tmp_path / "r" / "page.html")]) == 0
    assert (tmp_path / "r" / "page.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run directory not found" in err


def test_plot_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rd = write_run(tmp_path / "run", make_trials(n=10), BEST)
    out = tmp_path / "plots"
    assert main(["plot", str(rd), "--out", str(out), "--format", "png,svg", "--top-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert (out / "score.svg").stat().st_size > 0 and (out / "arch.png").stat().st_size > 0
    assert "note: DARTS heat maps skipped" in printed
    assert main(["plot", str(rd), "--format", "gif"]) == 2
    assert main(["plot", str(tmp_path / "nope")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trajectory.csv").write_text("step,psnr\n0,x1\n")
    assert main(["plot", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "not found" in err and "psnr" in err


def test_report_missing_trajectory_is_user_error(tmp_path: Path) -> None:
    from acla_nas.plots.report import build_report

    with pytest.raises(UserError, match="trajectory.csv"):
        build_report(tmp_path)
