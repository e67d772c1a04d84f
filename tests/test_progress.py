"""Progress in logs: a line every N seconds where stderr is not a terminal, none with --quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml

from acla_nas.cli.main import main
from acla_nas.runtime.progress import ENV_VAR, LogProgress, duration, interval, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_prints_step_loss_rate_and_eta_every_interval() -> None:
    clock, out = Clock(), io.StringIO()
    bar = LogProgress(total=100, initial=10, label="supernet", every=30.0, stream=out, clock=clock)

    def step(loss: str) -> None:  # the trainer's order: update, then the step's loss
        clock.t += 1.0
        bar.update(1)
        bar.set_postfix(loss=loss, refresh=False)

    for _ in range(29):  # 29 steps in 29 s: no line yet
        step("0.0400")
    assert out.getvalue() == ""
    step("0.0312")
    assert out.getvalue().splitlines() == ["acla-nas: supernet step 40/100 (40%), loss 0.0312, 1.00 steps/s, ETA 1m00s"]
    for _ in range(5):
        step("0.0300")
    bar.close()  # a last line, since earlier ones were printed
    assert len(out.getvalue().splitlines()) == 2
    assert out.getvalue().splitlines()[-1].startswith("acla-nas: supernet step 45/100 (45%), loss 0.0300")


def test_close_is_silent_for_a_short_training() -> None:
    out = io.StringIO()
    bar = LogProgress(total=5, every=60.0, stream=out, clock=Clock())
    bar.update(5)
    bar.close()
    assert out.getvalue() == ""


def test_duration_and_interval(monkeypatch) -> None:
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert interval() == 60.0
    monkeypatch.setenv(ENV_VAR, "2.5")
    assert interval() == 2.5
    for bad in ("0", "-1", "nan", "x", "inf"):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(Exception, match=ENV_VAR):
            interval()


def test_bar_kind_follows_the_terminal(monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(10), LogProgress)
    assert not isinstance(progress_bar(10, enabled=False), LogProgress)


@pytest.fixture()
def arch_file(tmp_path: Path) -> Path:
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}},
        "task": {"name": "sr", "scale": 2},
        "modules": {},
        "data": {"kind": "embedded"},
        "train": {"steps": 3, "patch": 16, "batch": 1, "val_patches": 1, "ckpt_every": 100},
    }
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(arch))
    return path


def test_train_logs_progress_lines_unless_quiet(arch_file: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Under pytest stderr is captured (not a terminal), as in a CI log."""
    monkeypatch.setenv(ENV_VAR, "0.000001")
    assert main(["train", str(arch_file), "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    steps = re.findall(r"^acla-nas: a step (\d)/3 \(\d+%\), loss [0-9.]+, [0-9.]+ steps/s, ETA \S+$", err, re.MULTILINE)
    assert steps[:3] == ["1", "2", "3"], err
    assert main(["train", str(arch_file), "--out", str(tmp_path / "b"), "--device", "cpu", "--quiet"]) == 0
    assert "steps/s" not in capsys.readouterr().err
