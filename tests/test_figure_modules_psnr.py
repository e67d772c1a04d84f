"""The modules-vs-PSNR figure: its numbers, that it renders, and that every verb picks it up."""

from __future__ import annotations

import pandas as pd

from acla_nas.plots.figures import FIGURES, render
from acla_nas.plots.figures.modules_psnr import modules_psnr_info


def _trials(run_dir, rows) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=["step", "state", "psnr", "n_modules"]).assign(run=run_dir.name, strategy="random")
    df.to_csv(run_dir / "trajectory.csv", index=False)


def test_groups_scored_trials_by_module_count(tmp_path) -> None:
    import acla_nas.plots as D

    _trials(
        tmp_path / "r",
        [
            (0, "COMPLETE", 30.0, 0),
            (1, "COMPLETE", 31.0, 1),
            (2, "COMPLETE", 33.0, 1),
            (3, "FAIL", float("nan"), 2),
            (4, "PRUNED", float("nan"), 3),
            (5, "COMPLETE", 32.0, 1),
        ],
    )
    info = modules_psnr_info(D.load_trajectory(tmp_path / "r"))
    assert info.points["n_modules"].tolist() == [0, 1, 1, 1]  # failed and pruned rows are not scores
    assert info.medians.set_index("n_modules")["psnr"].to_dict() == {0: 30.0, 1: 32.0}
    assert info.medians.set_index("n_modules")["count"].to_dict() == {0: 1, 1: 3}
    _trials(tmp_path / "one", [(0, "COMPLETE", 30.0, 1), (1, "COMPLETE", 31.0, 1)])
    assert modules_psnr_info(D.load_trajectory(tmp_path / "one")) is None


def test_is_in_the_table_and_renders(tmp_path) -> None:
    assert "modules_psnr" in FIGURES.names() and FIGURES.get("modules_psnr").in_report
    _trials(tmp_path / "r", [(i, "COMPLETE", 30.0 + i % 3, i % 3) for i in range(9)])
    figs, notes = render([tmp_path / "r"], names=["modules_psnr"])
    assert [r.stem for r in figs] == ["modules_psnr"] and notes == []
    assert len(figs[0].figure.axes[0].collections) >= 2  # points and median bars
    _trials(tmp_path / "flat", [(0, "COMPLETE", 30.0, 1)])
    figs, notes = render([tmp_path / "flat"], names=["modules_psnr"])
    assert figs == [] and "modules figure skipped" in notes[0]
