"""The experiment log of a run directory: train.log / search.log, and TensorBoard read back."""

from __future__ import annotations

import io
import logging

import pytest
import yaml

from acla_nas.cli.main import main
from acla_nas.runtime.progress import LogProgress
from acla_nas.runtime.run_log import LOG, log_line, run_log, run_log_open, tensorboard_available
from tests.tiny_space import TINY_SPACE

needs_tensorboard = pytest.mark.skipif(
    tensorboard_available() is not None, reason=f"{tensorboard_available()} (the dev extra installs it)"
)


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p for p in folder.iterdir() if p.name.startswith("events.out.tfevents")]
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_progress_lines_go_to_the_console_and_the_log_file(tmp_path):
    console = io.StringIO()
    clock = iter(float(t) for t in range(100))
    with run_log(tmp_path / "x.log"):
        bar = LogProgress(4, label="run", every=1.0, stream=console, clock=lambda: next(clock))
        for _ in range(4):
            bar.update(1)
            bar.set_postfix(loss="0.5000")
        bar.close()
        log_line("done")
    log_line("after the block: nowhere")
    lines = (tmp_path / "x.log").read_text().splitlines()
    shown = console.getvalue().splitlines()
    assert shown and [line.split(" ", 2)[2] for line in lines[: len(shown)]] == shown  # the same lines, time-stamped
    assert lines[-1].endswith(" done") and not run_log_open() and not LOG.propagate


def test_a_quiet_bar_still_writes_the_log_file(tmp_path, monkeypatch):
    from acla_nas.runtime.progress import progress_bar

    monkeypatch.setenv("ACLA_NAS_PROGRESS_SECONDS", "0.000001")
    with run_log(tmp_path / "q.log"):
        bar = progress_bar(3, enabled=False, label="q", log=True)
        for _ in range(3):
            bar.update(1)
            bar.set_postfix(loss="0.1")
        bar.close()
    assert "acla-nas: q step 3/3 (100%), loss 0.1" in (tmp_path / "q.log").read_text()
    assert not any(str(getattr(h, "baseFilename", "")).endswith("q.log") for h in logging.getLogger().handlers)


def _arch(tmp_path) -> str:
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 2}},
        "task": {"name": "sr", "scale": 2},
        "modules": {"body.1": {"keys": 4, "scope": "all"}},
        "train": {"steps": 20, "patch": 24, "batch": 2, "val_patches": 2, "val_every": 10, "progress": False},
    }
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(arch))
    return str(path)


@needs_tensorboard
def test_train_writes_its_log_and_tensorboard_events(tmp_path, monkeypatch):
    monkeypatch.setenv("ACLA_NAS_PROGRESS_SECONDS", "0.000001")
    out = tmp_path / "run"
    assert main(["train", _arch(tmp_path), "--out", str(out), "--device", "cpu", "--tensorboard"]) == 0
    log = (out / "train.log").read_text()
    assert "acla-nas: run step 20/20 (100%), loss" in log and "validation PSNR" in log and "acla-nas: done:" in log
    scalars = _scalars(out / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [10, 20] and [s for s, _ in scalars["train/lr"]] == [10, 20]
    assert [s for s, _ in scalars["train/val_psnr"]] == [10, 20] and len(scalars["train/val_ssim"]) == 2
    for tag in ("test/psnr", "test/ssim", "keys_kept/body.1"):
        assert scalars[tag][0][0] == 20, tag
    assert 0 < scalars["keys_kept/body.1"][0][1] <= 4
    # a runtime switch: config.yaml keeps it apart from the training settings (a resume may turn it off)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["runtime"]["tensorboard"] is True and "tensorboard" not in config["train"]


def test_train_without_tensorboard_writes_no_events(tmp_path):
    out = tmp_path / "run"
    assert main(["train", _arch(tmp_path), "--out", str(out), "--device", "cpu", "--steps", "2"]) == 0
    assert (out / "train.log").is_file() and not (out / "tensorboard").exists()


@needs_tensorboard
def test_search_logs_each_trial_and_writes_its_scores(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    preset = tmp_path / "random.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "strategy": "random",
                "trials": 3,
                "supernet": {"steps": 2, "batch": 2, "patch": 16},
                "val": {"patches": 2, "patch": 16},
            }
        )
    )
    out = tmp_path / "run"
    args = ["search", str(space), "--strategy", str(preset), "--out", str(out), "--device", "cpu", "--quiet"]
    assert main([*args, "--tensorboard"]) == 0
    assert "search time" in capsys.readouterr().out
    log = (out / "search.log").read_text()
    assert "acla-nas search started" in log and log.count("acla-nas: trial ") == 3 and "best so far" in log
    scalars = _scalars(out / "tensorboard")
    assert sorted(s for s, _ in scalars["search/psnr"]) == [0, 1, 2] and len(scalars["search/mmacs"]) == 3
    # resumed with more trials: the time printed says which part is this session's
    assert main([*args, "--trials", "4"]) == 0
    printed = capsys.readouterr().out
    assert "in all sessions of this run (" in printed and "in this one)" in printed
    assert "acla-nas search resumed" in (out / "search.log").read_text()
