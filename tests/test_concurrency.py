"""Many processes on one run: a paused worker, a second process on the same run, kill -9.

Real processes (``python -m acla_nas search``) on a tiny space; the plug-in strategy
``slow_plugin:SlowRandom`` makes every evaluation take DELAY seconds and announce itself, so the
test can pause (SIGSTOP) or kill (SIGKILL) a worker while its trial is RUNNING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.search.storage.owner import Owner
from acla_nas.search.storage.study import load_run_study
from acla_nas.search.strategies.optuna_loop import counted

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")

TESTS = Path(__file__).resolve().parent
TRIALS, DELAY = 4, 0.5
SPACE = TINY_SPACE
STRATEGY = {
    "strategy": "slow_plugin:SlowRandom",
    "trials": TRIALS,
    "options": {"delay": DELAY},
    "supernet": {"steps": 3, "batch": 2, "patch": 24},
    "val": {"patches": 3, "patch": 24},
}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(STRATEGY))
    return str(tmp_path / "space.yaml"), str(tmp_path / "slow.yaml")


def start(
    files: tuple[str, str], out: Path, storage: str | None = None, heartbeat: str | None = None
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    if heartbeat:
        env["ACLA_NAS_HEARTBEAT"] = heartbeat
    cmd = [
        sys.executable,
        "-m",
        "acla_nas",
        "search",
        files[0],
        "--strategy",
        files[1],
        "--out",
        str(out),
        "--quiet",
        "--allow-import",
        "slow_plugin",
    ]  # the plug-in is user code: opted in, as a user would
    if storage:
        cmd += ["--storage", storage]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_scoring(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``proc`` is inside an evaluation (its trial RUNNING in the study)."""
    marker, t0 = out / f"scoring-{proc.pid}", time.monotonic()
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the worker never started a trial"
        time.sleep(0.02)


def check_run(out: Path, storage: str | None = None) -> pd.DataFrame:
    """Exactly TRIALS counted trials, each trial number once in trajectory.csv."""
    study = load_run_study(out, storage)
    assert sum(counted(t) for t in study.trials) == TRIALS
    df = pd.read_csv(out / "trajectory.csv")
    assert len(df) == TRIALS and df.step.is_unique and (df.state == "COMPLETE").all()
    assert set(df.step) == {t.number for t in study.trials if counted(t)}
    return df


def test_paused_worker_and_a_second_process_on_the_same_journal(tmp_path: Path, files) -> None:
    out = tmp_path / "run"
    a = start(files, out)
    wait_scoring(out, a)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        b = start(files, out)
        out_b, err_b = b.communicate(timeout=180)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out_a, err_a = a.communicate(timeout=180)
    assert (a.returncode, b.returncode) == (0, 0), (err_a, err_b)
    # the paused worker is alive on this machine: its trial is left to it, and counted as running
    assert "1 trial(s) still running in other processes" in out_b
    assert "taken over" not in err_a
    check_run(out)


def test_a_worker_paused_past_its_heartbeat_is_taken_over_and_told_nothing(tmp_path: Path, files) -> None:
    out, url = tmp_path / "run", f"sqlite:///{tmp_path / 'studies.db'}"
    a = start(files, out, url, heartbeat="1,2")
    wait_scoring(out, a)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # past the grace period
        b = start(files, out, url, heartbeat="1,2")
        out_b, err_b = b.communicate(timeout=180)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out_a, err_a = a.communicate(timeout=180)
    assert (a.returncode, b.returncode) == (0, 0), (err_a, err_b)
    assert "was taken over while this worker was paused; its result is dropped" in err_a
    check_run(out, url)
    study = load_run_study(out, url)
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert len(retried) == 1 and counted(retried[0])  # the paused trial, run again by the second process


def test_kill_9_then_rerun_without_a_stall(tmp_path: Path, files) -> None:
    out = tmp_path / "run"
    a = start(files, out)
    wait_scoring(out, a)
    os.kill(a.pid, signal.SIGKILL)
    a.communicate(timeout=60)
    # as if killed inside an append: the journal's lock is left behind, naming the dead process
    me = Owner.me()
    os.symlink(f"{Owner(me.host, me.boot, a.pid, '').text()} left-behind", str(out / "study.journal.lock"))
    b = start(files, out)
    out_b, err_b = b.communicate(timeout=600)  # a hang guard only: how fast the dead owner's lock is
    # broken is tested as a mechanism in test_storage.py (test_a_lock_left_by_a_killed_process_is_taken_over_at_once)
    assert b.returncode == 0, err_b
    assert "lock" not in err_b
    check_run(out)
    study = load_run_study(out)
    killed = [t for t in study.trials if t.state.name == "FAIL" and not counted(t)]
    assert len(killed) == 1
    again = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(again) == 1 and again[0].params == killed[0].params and counted(again[0])
