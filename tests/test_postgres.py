"""A real PostgreSQL server: two processes with two workers each on one study (as on two machines).

The fixture starts a throw-away server from the Debian package (``postgresql``) as a non-root
user (initdb refuses root, and CI runs as root), on a temporary folder and a free port of
127.0.0.1. When the server programs are missing it installs the package (root with apt-get, as
on CI); it skips, saying why, only where that is impossible.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.search.storage.study import load_run_study
from acla_nas.search.strategies.optuna_loop import SURPLUS, counted

TESTS = Path(__file__).resolve().parent
TRIALS = 8


def _server_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
    )
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def _install_server() -> str | None:
    """Install the Debian package where we may; returns why not otherwise."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL server programs (initdb, pg_ctl) not found; install the 'postgresql' package"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing the Debian package postgresql for the PostgreSQL tests", file=sys.stderr)
    for cmd in (
        ["apt-get", "install", "-y", "-q", "postgresql"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "postgresql"],
    ):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if cmd[1] == "install" and res.returncode == 0:
            return None
    return f"apt-get install postgresql failed: {res.stderr.strip()[-300:]}"


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", user, "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg 3 is not installed (pip install -e '.[postgres]')")
    bindir = _server_bin()
    if bindir is None:
        why = _install_server()
        bindir = _server_bin()
        if bindir is None:
            pytest.skip(why or "PostgreSQL server programs not found after installing the package")
    user = None
    if os.geteuid() == 0:  # initdb refuses root: run the server as an unprivileged user
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                user = name
                break
            except KeyError:
                continue
        if user is None:
            pytest.skip("running as root and no unprivileged user (postgres, nobody) to run the server")
    root = Path(tempfile.mkdtemp(prefix="acla-nas-pg-"))
    if user is not None:
        shutil.chown(root, user)
    data, port, t0 = root / "data", _free_port(), time.monotonic()
    try:
        subprocess.run(
            _as_user(
                user, [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "acla", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=60"
        subprocess.run(
            _as_user(
                user,
                [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "start"],
            ),
            check=True,
            capture_output=True,
        )
        with psycopg.connect(f"postgresql://acla@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE studies")
        print(f"PostgreSQL server on 127.0.0.1:{port} ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        yield f"postgresql://acla@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            _as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


SPACE = TINY_SPACE
STRATEGY = {
    "strategy": "slow_plugin:SlowRandom",
    "trials": TRIALS,
    "options": {"delay": 0.3},
    "supernet": {"steps": 3, "batch": 2, "patch": 24},
    "val": {"patches": 3, "patch": 24},
}


def test_two_processes_with_two_workers_on_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(STRATEGY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    runs = [tmp_path / "machine-a" / "demo", tmp_path / "machine-b" / "demo"]  # one study: same run name, same files
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "acla_nas",
                "search",
                str(tmp_path / "space.yaml"),
                "--strategy",
                str(tmp_path / "slow.yaml"),
                "--out",
                str(run),
                "--storage",
                postgres_url,
                "--workers",
                "2",
                "--quiet",
                "--allow-import",
                "slow_plugin",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for run in runs
    ]
    finished = []
    for p, run in zip(procs, runs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        finished.append((run.joinpath("best_arch.yaml").stat().st_mtime, run))
    study = load_run_study(runs[0], postgres_url)
    assert study.study_name == "demo"
    done = [t for t in study.trials if counted(t)]
    assert len(done) == TRIALS and all(t.state.name == "COMPLETE" for t in done)
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)
    assert all(
        t.system_attrs.get(SURPLUS) for t in study.trials if not counted(t)
    )  # only surplus asks, never a second count
    last = max(finished)[1]
    df = __import__("pandas").read_csv(last / "trajectory.csv")
    assert len(df) == TRIALS and df.step.is_unique
    best = yaml.safe_load((last / "best_arch.yaml").read_text())["provenance"]
    assert best["trial"] == study.best_trial.number and best["psnr"] == pytest.approx(study.best_value)
    owners = {t.system_attrs["acla_nas:owner"].split()[3] for t in done}
    assert len(owners) >= 2  # the trials were shared among the processes
