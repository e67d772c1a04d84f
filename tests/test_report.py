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
    assert heads == [
        "Results",
        "Best architecture",
        "Figures",
        "Top 10 of 15 distinct architectures",
        "Configuration",
    ], heads
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
    assert "No best_arch.yaml" in text and "Top 2 of 2 distinct architectures" in text  # 3 asked, 2 exist
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


# ------------------------------------------------------------------ results found where the flow writes them
def _metrics(psnr: float = 20.456789) -> str:
    test = {"psnr": psnr, "ssim": 0.49531, "floor_psnr": 20.58, "floor_ssim": 0.493, "n": 3}
    return json.dumps({"completed": True, "steps": 20, "val_psnr": 20.45, "seconds": 12.3, "test": test, "history": []})


EVALUATION = (
    "dataset,image,psnr,ssim,floor_psnr,floor_ssim\n"
    "Set5,baby,20.1,0.3,20.0,0.29\nSet5,bird,21.3,0.34,21.26,0.33\nSet5,(mean),20.7,0.32,20.63,0.31\n"
)


def _retrain(folder: Path) -> Path:
    """What `acla-nas train --out DIR` then `acla-nas evaluate DIR/model.pt` leave (weights aside)."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(_metrics())
    (folder / "evaluation.csv").write_text(EVALUATION)
    (folder / "config.yaml").write_text(yaml.safe_dump({"arch": BEST, "data": {"kind": "embedded"}}))
    return folder


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_report_of_a_retrain_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from acla_nas.plots.report import build_report

    rd = _retrain(tmp_path / "retrain")
    html = build_report(rd)
    heads = re.findall(r"<h2>([^<]+)</h2>", html)
    assert heads == ["Results", "Architecture", "Configuration"], heads
    text = _text(html)
    assert "20.457" in text and "0.4953" in text  # test PSNR with fixed decimals, SSIM with four
    assert "Set5" in text and "20.700" in text and "20.630" in text  # the evaluation's mean row
    assert "body_conv" in html and 'src="data:image/png;base64,' in html  # the diagram from config.yaml
    assert main(["report", str(rd), "--out", str(tmp_path / "r.html")]) == 0  # no longer refused
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trajectory.csv" in err and "metrics.json" in err


def test_search_report_finds_the_retrain_folder_and_takes_results(tmp_path: Path, capsys) -> None:
    from acla_nas.plots.report import build_report

    rd = write_run(tmp_path / "run", make_trials("tpe", n=12), BEST)
    _retrain(rd / "retrain")  # the user guide's `acla-nas train ... --out runs/mynet/retrain`
    text = _text(build_report(rd))
    assert "No results yet" not in text
    assert "Retrained models" in text and "retrain" in text and "20.457" in text and "Set5" in text
    elsewhere = tmp_path / "elsewhere" / "eval_set14.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text(EVALUATION.replace("Set5", "Set14"))
    assert "Set14" in _text(build_report(rd, results=[elsewhere]))
    assert "Set14" not in _text(build_report(rd))
    assert main(["report", str(rd), "--results", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--results" in err and "nope.csv" in err


def test_report_without_results_says_where_they_come_from(tmp_path: Path) -> None:
    from acla_nas.plots.report import build_report

    text = _text(build_report(write_run(tmp_path / "run", make_trials(n=8), BEST)))
    assert "No results yet" in text and "--results" in text


def test_top_k_and_final_table_formats(tmp_path: Path) -> None:
    from acla_nas.plots import results as R
    from acla_nas.plots.report import build_report

    assert R.fmt_psnr(19) == "19.000" and R.fmt_psnr(19.0061) == "19.006"  # one number of decimals
    assert R.fmt_params(9_000) == "9.00 K" and R.fmt_params(10_400) == "10.40 K"  # not 0.009 / 0.01 M
    assert R.fmt_params(1_520_000) == "1.520 M" and R.fmt_params(0) == "-" and R.fmt_params(None) == "-"
    df = make_trials(n=20, fail_every=0)
    df.loc[df.index[:6], "psnr"] = 30.0 + 1e-3  # re-evaluations of one architecture count once
    for c in [c for c in df.columns if c.startswith(("k:", "scope:"))]:
        df.loc[df.index[:6], c] = df.loc[df.index[0], c]
    rd = write_run(tmp_path / "run", df, BEST)
    pd.DataFrame(
        {
            "model": ["plain", "discovered", "input (floor)"],
            "modules": ["-", "body.1:K2/1", "-"],
            "psnr": [20.5, 20.65, 20.58],
            "ssim": [0.49, 0.4953, 0.493],
            "params": [4521, 9021, 0],
            "macs": [18.6e6, 24.1e6, 0],
        }
    ).to_csv(rd / "final_table.csv", index=False)
    html = build_report(rd, top_k=10)
    n_distinct = int(re.search(r"<h2>Top 10 of (\d+) distinct architectures</h2>", html).group(1))
    assert n_distinct == 20 - 5
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    floor = _text(next(r for r in rows if "input (floor)" in r)).split()
    assert floor[:4] == ["input", "(floor)", "20.580", "0.4930"] and floor[4:6] == ["-", "-"]
    assert "4.52 K" in html and "MACs (M)" in html and "18.600" in html
    top = _text(rows[rows.index(next(r for r in rows if "<th>#</th>" in r)) + 1])
    assert re.search(r"\b\d+\.\d{3}\b", top)  # PSNR with three decimals
