"""Storages as users type them, the owner-stamped journal lock, safe SQLite creation, one study per run,
the trial store (claim, heartbeat, sweep) as the only user of Optuna's private attributes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.search.storage import journal_lock
from acla_nas.search.storage.backend import heartbeat_settings, open_storage, parse_storage
from acla_nas.search.storage.journal_lock import OwnerLock
from acla_nas.search.storage.liveness import BEAT, OWNER
from acla_nas.search.storage.owner import Owner, process_alive
from acla_nas.search.storage.store import TrialStore
from acla_nas.search.storage.study import config_hash, open_run_study, study_name

ROOT = Path(__file__).resolve().parents[1]


def _config(seed: int = 0, trials: int = 3) -> dict:
    return {
        "acla_nas": "0.1.0",
        "space": {"backbone": {"name": "edsr"}},
        "strategy": {
            "strategy": "random",
            "evaluator": "oneshot",
            "trials": trials,
            "objectives": ["psnr"],
            "seed": seed,
        },
        "storage": None,
    }


def test_storage_forms(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert parse_storage(None, run).location == str(run / "study.journal")
    bare = parse_storage(str(tmp_path / "s.journal"), run)
    assert (bare.kind, bare.location) == ("journal", str(tmp_path / "s.journal"))
    assert parse_storage(f"journal:{tmp_path / 's.journal'}", run) == bare  # the older form still works
    pg = parse_storage("postgresql://acla:secret@db.example:5432/studies", run)
    assert pg.kind == "rdb" and pg.location == "postgresql+psycopg://acla:secret@db.example:5432/studies"
    assert "secret" not in pg.shown and "***" in pg.shown
    assert (
        parse_storage("postgresql+psycopg2://u@h/d", run).location == "postgresql+psycopg2://u@h/d"
    )  # an explicit driver is kept
    with pytest.raises(UserError, match="directory"):
        parse_storage(str(tmp_path), run)
    db = tmp_path / "x.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}")
    with pytest.raises(UserError, match="sqlite:///"):
        parse_storage(str(db), run)
    monkeypatch.setenv("ACLA_NAS_HEARTBEAT", "2,5")
    assert heartbeat_settings() == (2, 5)
    for bad in ("0", "5,2", "x", "1,2,3"):
        monkeypatch.setenv("ACLA_NAS_HEARTBEAT", bad)
        with pytest.raises(UserError, match="ACLA_NAS_HEARTBEAT"):
            heartbeat_settings()


def test_owner_identity_and_liveness() -> None:
    me = Owner.me()
    assert Owner.parse(me.text() + " extra-token") == me and me.alive() is True
    assert Owner.parse("something else") is None and Owner.parse(None) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)
    elsewhere = Owner("another-host", "b00t", 1, "")
    assert elsewhere.alive() is None  # cannot be checked from here: callers use a lease


def test_only_the_store_touches_optunas_private_attributes() -> None:
    """One module to mend when Optuna moves them (``Study._storage``, ``Trial._trial_id``, ...)."""
    private = re.compile(r"\._(storage|trial_id|study_id)\b")
    store = ROOT / "acla_nas" / "search" / "storage" / "store.py"
    users = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "acla_nas").rglob("*.py")
        if p != store and private.search(p.read_text(encoding="utf-8"))
    }
    assert users == set()
    assert private.search(store.read_text(encoding="utf-8"))  # the pattern finds what it is meant to


def _journal_store(tmp_path: Path) -> TrialStore:
    spec = parse_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=open_storage(spec), direction="maximize")
    study.enqueue_trial({"x": 1})
    return TrialStore(study)


def test_the_store_claims_beats_and_sweeps_back_a_dead_workers_trial(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACLA_NAS_HEARTBEAT", "1,30")
    store = _journal_store(tmp_path)
    assert not store.optuna_heartbeat  # a journal: heartbeats are acla_nas's own attribute
    mine = store.claim()
    mine.suggest_categorical("x", [1, 2])
    stamped = store.frozen(mine).system_attrs
    assert Owner.parse(stamped[OWNER]) == Owner.me() and isinstance(stamped[BEAT], float)
    with store.heartbeat(mine):  # beats every second while the block runs (waits for one, however slow)
        deadline = time.time() + 60
        while store.frozen(mine).system_attrs[BEAT] == stamped[BEAT] and time.time() < deadline:
            time.sleep(0.2)
    assert store.frozen(mine).system_attrs[BEAT] > stamped[BEAT]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store.set_system_attr(mine, OWNER, Owner(Owner.me().host, Owner.me().boot, child.pid, "").text())
    alive = store.claim()  # this process's: never swept
    assert store.sweep() == [mine.number]
    trials = {t.number: t for t in store.study.get_trials()}
    assert trials[mine.number].state == optuna.trial.TrialState.FAIL
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING
    again = [t for t in trials.values() if t.state == optuna.trial.TrialState.WAITING]
    assert [t.params for t in again] == [{"x": 1}] and OWNER not in again[0].system_attrs  # queued with its params
    assert store.sweep() == [] and not store.abandon(mine)  # finished already: nothing to give back
    store.set_system_attr(store.frozen(alive), "note", 7)  # a FrozenTrial too (what a sampler holds)
    assert store.frozen(alive).system_attrs["note"] == 7
    assert store.abandon(alive) and store.frozen(alive).state == optuna.trial.TrialState.FAIL


def _plant(path: Path, owner: Owner) -> None:
    os.symlink(f"{owner.text()} planted", str(path) + ".lock")


def test_a_lock_left_by_a_killed_process_is_taken_over_at_once(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    journal.touch()
    victim = subprocess.Popen(["sleep", "30"])
    owner = Owner(Owner.me().host, Owner.me().boot, victim.pid, "")
    _plant(journal, owner)
    victim.kill()  # kill -9 while "holding" the lock; not reaped yet: a zombie is dead too
    lock = OwnerLock(str(journal), grace=3600)  # a lease that is never waited out here
    slept: list[float] = []
    real_sleep = journal_lock.time.sleep
    journal_lock.time.sleep = lambda s: (slept.append(s), real_sleep(s))[1]
    try:
        lock.acquire()  # only the dead owner's check can let this return within the test's time
    finally:
        journal_lock.time.sleep = real_sleep
    victim.wait()
    # the mechanism, not the clock: the lock was broken at once, after a few ms of polls at most
    assert len(lock.broken) == 1 and sum(slept) < 0.1
    assert os.readlink(str(journal) + ".lock").startswith(Owner.me().text())
    lock.release()
    assert not os.path.lexists(str(journal) + ".lock")


def test_a_live_holder_keeps_the_lock_until_its_lease_ends(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    journal.touch()
    paused = subprocess.Popen(["sleep", "30"])  # alive (think: SIGSTOPped inside an append)
    try:
        _plant(journal, Owner(Owner.me().host, Owner.me().boot, paused.pid, ""))
        lock = OwnerLock(str(journal), grace=1.0)
        t0 = time.monotonic()
        lock.acquire()
        assert time.monotonic() - t0 >= 1.0 and len(lock.broken) == 1  # the lease was waited out
        lock.release()
    finally:
        paused.kill()
        paused.wait()


def test_the_lock_excludes_other_writers(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    journal.touch()
    first, second = OwnerLock(str(journal)), OwnerLock(str(journal))
    first.acquire()
    got = threading.Event()
    t = threading.Thread(target=lambda: (second.acquire(), got.set()))
    t.start()
    assert not got.wait(0.3)  # a live holder in this very process: wait
    first.release()
    assert got.wait(2.0)
    t.join()
    second.release()
    assert not first.broken and not second.broken


def test_a_new_sqlite_storage_opens_from_many_processes_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    go = tmp_path / "go"
    code = (
        "import sys, time, pathlib, optuna\n"
        "from acla_nas.search.storage.backend import open_storage, parse_storage\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.005)\n"
        f"s = open_storage(parse_storage({url!r}, '.'))\n"
        "optuna.create_study(study_name='shared', storage=s, load_if_exists=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(3.0)  # let every process import and wait at the line
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert optuna.get_all_study_names(url) == ["shared"]


def test_one_study_per_run_checked_on_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = parse_storage(url, tmp_path)
    a = open_run_study(tmp_path / "a" / "demo", _config(seed=0), spec)
    assert a.name == "demo" == study_name(tmp_path / "a" / "demo")
    study = a.load()
    assert study.user_attrs["config_hash"] == config_hash(_config(seed=0)) and study.user_attrs["seed"] == 0
    assert study.metric_names == ["psnr"]
    open_run_study(tmp_path / "a" / "demo", _config(seed=0, trials=9), spec)  # a larger budget joins it
    assert a.load().user_attrs["trials"] == 9
    with pytest.raises(UserError, match="seed: 0 there, 1 here") as err:
        open_run_study(tmp_path / "b" / "demo", _config(seed=1), spec)  # same name elsewhere, another search
    assert len(str(err.value).splitlines()) == 1 and "***" not in str(err.value)
    other = open_run_study(tmp_path / "b" / "demo2", _config(seed=1), spec)
    assert other.name == "demo2" and sorted(optuna.get_all_study_names(open_storage(spec))) == ["demo", "demo2"]


def test_a_run_journal_from_before_named_studies_is_adopted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    spec = parse_storage(None, run)
    old = optuna.create_study(study_name="acla-nas", storage=open_storage(spec), direction="maximize")
    old.enqueue_trial({"x": 1})
    opened = open_run_study(run, _config(), spec)
    assert opened.name == "acla-nas" and opened.load().user_attrs["strategy"] == "random"
    assert len(opened.load().trials) == 1


SPACE = TINY_SPACE
STRATEGY = {
    "strategy": "random",
    "trials": 3,
    "supernet": {"steps": 3, "batch": 2, "patch": 24},
    "val": {"patches": 3, "patch": 24},
}


def _files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "random.yaml").write_text(yaml.safe_dump(STRATEGY))
    return str(tmp_path / "space.yaml"), str(tmp_path / "random.yaml")


@pytest.mark.parametrize(
    "storage,expect",
    [
        ("postgresql://nobody@127.0.0.1:9/none", "cannot open the Optuna storage"),
        ("mysql://nobody@127.0.0.1/none", "cannot open the Optuna storage"),
        ("{tmp}/no/such/folder/study.journal", "does not exist"),
    ],
)
def test_a_bad_storage_is_one_line_before_any_training(tmp_path: Path, capsys, storage: str, expect: str) -> None:
    space, strategy = _files(tmp_path)
    out = tmp_path / "run"
    code = main(
        [
            "search",
            space,
            "--strategy",
            strategy,
            "--out",
            str(out),
            "--storage",
            storage.format(tmp=tmp_path),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expect in err and "--storage" in err
    assert not (out / "supernet").exists() and not (out / "config.yaml").exists()


def test_a_second_run_of_the_same_name_with_another_seed_stops_before_training(tmp_path: Path, capsys) -> None:
    space, strategy = _files(tmp_path)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert (
        main(
            [
                "search",
                space,
                "--strategy",
                strategy,
                "--out",
                str(tmp_path / "a" / "demo"),
                "--storage",
                url,
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    other = tmp_path / "b" / "demo"
    code = main(
        ["search", space, "--strategy", strategy, "--out", str(other), "--storage", url, "--seed", "1", "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert (
        code == 2
        and len(err.splitlines()) == 1
        and "belongs to another search" in err
        and "seed: 0 there, 1 here" in err
    )
    assert not (other / "supernet").exists() and not (other / "config.yaml").exists()
    study = optuna.load_study(study_name="demo", storage=url)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3  # the first run's study is untouched


def test_optuna_tools_read_the_run_journal(tmp_path: Path) -> None:
    """The journal is given to Optuna's CLI (and optuna-dashboard) as the bare path."""
    space, strategy = _files(tmp_path)
    out = tmp_path / "demo"
    assert main(["search", space, "--strategy", strategy, "--out", str(out), "--quiet"]) == 0
    optuna_cli = Path(sys.executable).with_name("optuna")
    res = subprocess.run(
        [str(optuna_cli), "trials", "--storage", str(out / "study.journal"), "--study-name", "demo", "-f", "yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    rows = yaml.safe_load(res.stdout)
    assert sum(r["state"] == "COMPLETE" for r in rows) == 3
