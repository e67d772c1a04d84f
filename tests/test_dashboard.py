"""`acla-nas dashboard RUN_DIR`: start it on a free port, fetch the study through its API, stop it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.search.run import run_search

ROOT = Path(__file__).resolve().parents[1]
FAST = {"supernet": {"steps": 2, "batch": 2, "patch": 24}, "val": {"patches": 2, "patch": 24}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    (root / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    (root / "random.yaml").write_text(yaml.safe_dump({"strategy": "random", "trials": 3, **FAST}))
    run_search(str(root / "space.yaml"), str(root / "random.yaml"), root / "run", progress=False)
    return root / "run"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read().decode())


def _start(run_dir: Path, log: Path) -> subprocess.Popen:
    """The dashboard verb on a free port; its stderr to ``log`` (a file: a full pipe would block it)."""
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "acla_nas", "dashboard", str(run_dir), "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def test_dashboard_serves_the_run_study_on_loopback(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "optuna_dashboard", reason="optuna-dashboard is not installed (pip install 'acla-nas[dashboard]')"
    )
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would block the server
    proc = _start(run_dir, log)
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:(\d+))/dashboard/studies/(\d+)", line)
        assert m, (line, log.read_text())
        base, study_id = m.group(1), int(m.group(3))
        studies = _get(f"{base}/api/studies")["study_summaries"]
        names = {s["study_id"]: s["study_name"] for s in studies}
        assert names[study_id] in line and len(studies) == 1
        detail = _get(f"{base}/api/studies/{study_id}")
        trials = detail["trials"]
        table = pd.read_csv(run_dir / "trajectory.csv")
        assert len([t for t in trials if t["state"] == "Complete"]) == int((table.state == "COMPLETE").sum()) == 3
        assert {p["name"] for p in trials[0]["params"]} >= {"body.0.keys", "body.1.keys", "body.2.keys"}
    finally:
        proc.send_signal(signal.SIGTERM)  # like Ctrl-C (SIGINT is ignored in background jobs): stops, exits 0
        try:
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
    assert code == 0 and "dashboard stopped" in log.read_text(), log.read_text()


def test_dashboard_refuses_what_is_not_a_run(tmp_path: Path, run_dir: Path, capsys) -> None:
    pytest.importorskip(
        "optuna_dashboard", reason="optuna-dashboard is not installed (pip install 'acla-nas[dashboard]')"
    )
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "not a search run directory" in capsys.readouterr().err
    assert main(["dashboard", str(run_dir), "--port", "70000"]) == 2
    assert "--port: expected a port in 0..65535" in capsys.readouterr().err


def test_dashboard_without_optuna_dashboard_is_one_line(run_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    assert main(["dashboard", str(run_dir)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "acla-nas dashboard: error: optuna-dashboard is not installed; pip install 'acla-nas[dashboard]'"
    )


def test_dashboard_stops_while_requests_are_in_flight(run_dir: Path, tmp_path: Path) -> None:
    """`kill PID` during a stream of requests stops the server: a stop raised inside a request
    would be caught by wsgiref's handler (answered 500) and the server would serve on forever."""
    pytest.importorskip(
        "optuna_dashboard", reason="optuna-dashboard is not installed (pip install 'acla-nas[dashboard]')"
    )
    import threading
    import time

    log = tmp_path / "stderr.txt"
    proc = _start(run_dir, log)
    served, done = [0], threading.Event()

    def hammer(url: str) -> None:
        while not done.is_set():
            try:
                _get(url)
                served[0] += 1
            except OSError:
                time.sleep(0.01)  # refused once the server is down

    try:
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/dashboard", proc.stdout.readline())
        assert m, log.read_text()
        clients = [threading.Thread(target=hammer, args=(f"{m.group(1)}/api/studies",)) for _ in range(3)]
        for c in clients:
            c.start()
        t0 = time.monotonic()
        while served[0] < 20 and time.monotonic() - t0 < 120:
            time.sleep(0.01)
        assert served[0] >= 20, log.read_text()
        proc.send_signal(signal.SIGTERM)  # while requests keep arriving
        try:
            code = proc.wait(timeout=60)
        finally:
            done.set()
            for c in clients:
                c.join()
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
    finally:
        done.set()
    assert code == 0 and "dashboard stopped" in log.read_text(), log.read_text()
