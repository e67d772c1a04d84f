"""Tabulated spaces: the resumable builder, the table reader and ``evaluator: table``."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.search.run import run_search
from acla_nas.search.table.build import arch_key, build_table, plan, stratified
from acla_nas.search.table.build import main as main_table
from acla_nas.search.table.lookup import Table
from acla_nas.space import SearchSpace

# 2 sites x budgets {0, 2} x one scope: 4 architectures
TABLE_SPACE = {**TINY_SPACE, "sites": ["body.0", "body.1"], "keys": [0, 2], "scopes": [1], "constraints": {}}
RECIPE = {"steps": 2, "batch": 2, "patch": 24, "ckpt_every": 1}


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture()
def space_file(tmp_path: Path) -> str:
    return write(tmp_path / "space.yaml", TABLE_SPACE)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One table built for the module (6 short runs); each test gets its own copy."""
    root = tmp_path_factory.mktemp("table")
    return build_table(
        write(root / "space.yaml", TABLE_SPACE), root / "t.csv", root / "work", jobs=1, second_seed=2, recipe=RECIPE
    )


@pytest.fixture()
def table(tmp_path: Path, built: Path) -> Path:
    for f in (built, built.with_suffix(".meta.yaml")):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / built.name


def test_plan_covers_every_arch_once_and_stratifies_the_second_seed() -> None:
    space = SearchSpace.from_dict(
        {**TINY_SPACE, "sites": ["body.0", "body.1", "body.2"], "keys": [0, 2, 4], "scopes": [1], "constraints": {}}
    )
    jobs = plan(space, second_seed=5)
    keys = [(arch_key(space, a), s) for a, s in jobs]
    assert len(keys) == len(set(keys)) == 27 + 5
    assert {k for k, s in keys if s == 0} == {arch_key(space, a) for a in space.enumerate()}
    second = stratified(space, space.enumerate(), 5)
    macs = sorted(space.cost(a)["macs"] for a in space.enumerate())
    assert space.cost(second[0])["macs"] == macs[0] and space.cost(second[-1])["macs"] == macs[-1]
    assert plan(space, 5) == jobs  # the order is a function of the seed


def test_build_is_resumable_and_never_repeats_a_run(tmp_path: Path, space_file: str, table: Path) -> None:
    df = pd.read_csv(table)
    assert len(df) == 4 + 2 and set(df.seed) == {0, 1}
    assert df.psnr.map(math.isfinite).all() and (df.macs > 0).all() and (df.seconds >= 0).all()
    rows = table.read_text()
    build_table(space_file, table, tmp_path / "work", jobs=1, second_seed=2, recipe=RECIPE)  # nothing left: no new rows
    assert table.read_text() == rows
    # a killed build: drop the last two rows, the next start trains exactly those
    lines = rows.splitlines(keepends=True)
    table.write_text("".join(lines[:-2]))
    build_table(space_file, table, tmp_path / "work", jobs=1, second_seed=2, recipe=RECIPE)
    again = pd.read_csv(table)
    assert len(again) == 6 and sorted(zip(again.arch, again.seed)) == sorted(zip(df.arch, df.seed))
    with pytest.raises(UserError, match="recipe"):  # another recipe never mixes into a table
        build_table(space_file, table, tmp_path / "work", jobs=1, recipe={**RECIPE, "steps": 3})


def test_table_reader_means_and_noise(tmp_path: Path, table: Path) -> None:
    t = Table(table)
    df = pd.read_csv(table)
    assert len(t) == 4
    twice = df.groupby("arch").filter(lambda g: len(g) == 2)
    key = twice.arch.iloc[0]
    seed0 = float(df[(df.arch == key) & (df.seed == 0)].psnr.iloc[0])
    assert t.values("seed0")[key] == pytest.approx(seed0)
    # ``mean`` averages the seeds every architecture has: here seed 0 alone (two archs lack seed 1)
    assert t.common_seeds() == {0} and t.values("mean")[key] == pytest.approx(seed0)
    assert t.noise()["pairs"] == 2
    both = df[df.arch.isin(twice.arch)]  # a table whose architectures all have seeds 0 and 1
    both.to_csv(tmp_path / "both.csv", index=False)
    t2 = Table(tmp_path / "both.csv")
    assert t2.common_seeds() == {0, 1} and t2.resolve("auto") == "mean" and t.resolve("auto") == "seed0"
    assert t2.values("mean")[key] == pytest.approx(twice[twice.arch == key].psnr.mean())


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution"])
def test_search_with_the_table_evaluator_answers_from_the_table(
    tmp_path: Path, space_file: str, table: Path, strategy: str
) -> None:
    options = {"tpe": {"n_startup_trials": 2}, "evolution": {"population": 2, "sample_size": 2}}.get(strategy, {})
    preset = write(
        tmp_path / "s.yaml",
        {
            "strategy": strategy,
            "evaluator": "table",
            "trials": 4,
            "options": options,
            "table": {"path": str(table)},
            "val": {"patches": 2, "patch": 24},
        },
    )
    res = run_search(space_file, preset, tmp_path / "run", progress=False)
    space, t = SearchSpace.from_yaml(space_file), Table(table)
    traj = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    done = traj[traj.state == "COMPLETE"]
    assert len(done) >= 1
    values = t.values("seed0")  # the default (auto) on a table with uneven seeds: every architecture's seed-0 run
    assert res.best_scores["psnr"] == pytest.approx(max(values[arch_key(space, a)] for a in [res.best_arch]))
    assert not (tmp_path / "run" / "supernet").exists()  # nothing trained


@pytest.mark.parametrize(
    ("table_section", "field"),
    [
        ({}, "table.path"),
        ({"path": "t.csv", "value": "median"}, "table.value"),
        ({"path": "t.csv", "colour": 1}, "table.colour"),
        ({"path": "missing.csv"}, "missing.csv"),
    ],
)
def test_bad_table_sections_exit_2_with_one_line(
    tmp_path: Path, space_file: str, table: Path, capsys, table_section: dict, field: str
) -> None:
    if table_section.get("path") == "t.csv":
        table_section = {**table_section, "path": str(table)}
    preset = write(
        tmp_path / "bad.yaml", {"strategy": "random", "evaluator": "table", "trials": 2, "table": table_section}
    )
    code = main(["search", space_file, "--strategy", preset, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err


def test_an_incomplete_table_is_refused_unless_partial(tmp_path: Path, space_file: str, table: Path, capsys) -> None:
    lines = table.read_text().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(line for line in lines if not line.startswith("2-2,")))
    preset = write(
        tmp_path / "s.yaml", {"strategy": "random", "evaluator": "table", "trials": 4, "table": {"path": str(short)}}
    )
    assert main(["search", space_file, "--strategy", preset, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "missing" in capsys.readouterr().err and "2-2" not in pd.read_csv(short).arch.tolist()
    preset = write(
        tmp_path / "p.yaml",
        {"strategy": "random", "evaluator": "table", "trials": 4, "table": {"path": str(short), "partial": True}},
    )
    run_search(space_file, preset, tmp_path / "run2", progress=False)
    traj = pd.read_csv(tmp_path / "run2" / "trajectory.csv")
    assert set(traj.state) <= {"COMPLETE", "FAIL"}


def test_warm_start_table_trains_the_plain_model_once_per_seed_and_resumes(tmp_path: Path, space_file: str) -> None:
    keys = tmp_path / "archs.txt"
    keys.write_text("0-0\n2-2  # both sites\n")
    out = tmp_path / "w.csv"

    def run() -> Path:
        return build_table(
            space_file, out, tmp_path / "work", jobs=1, recipe=RECIPE, seeds=[0, 1], archs_file=keys, warm_start=2
        )

    run()
    df = pd.read_csv(out)
    assert sorted(zip(df.arch, df.seed)) == [("0-0", 0), ("0-0", 1), ("2-2", 0), ("2-2", 1)]
    assert (df.warm_start == 2).all() and (df.device == "cpu").all() and df.psnr.map(math.isfinite).all()
    plain = {s: tmp_path / "warm" / "w" / f"plain_seed{s}.pt" for s in (0, 1)}
    stamps = {s: p.stat().st_mtime_ns for s, p in plain.items()}
    cfg = yaml.safe_load((tmp_path / "work" / "w" / "2-2_s1" / "config.yaml").read_text())
    bb = cfg["arch"]["backbone"]
    assert bb["weights"] == str(plain[1].resolve()) and len(bb["weights_sha256"]) == 64
    assert cfg["train"]["clip_groups"] is True  # the table recipe clips backbone and modules apart
    # a killed build retrains only the missing row and reuses the plain models
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]))
    run()
    assert len(pd.read_csv(out)) == 4
    assert {s: p.stat().st_mtime_ns for s, p in plain.items()} == stamps
    with pytest.raises(UserError, match="warm start"):  # another warm start never mixes into a table
        build_table(space_file, out, tmp_path / "work", jobs=1, recipe=RECIPE, seeds=[2], warm_start=3)
    t = Table(out)
    assert t.resolve("auto") == "mean" and t.values("auto")["2-2"] == pytest.approx(df[df.arch == "2-2"].psnr.mean())


def test_table_archs_file_errors_are_one_line(tmp_path: Path, space_file: str) -> None:
    keys = tmp_path / "archs.txt"
    keys.write_text("9-9\n")
    with pytest.raises(UserError, match="not an architecture key"):
        build_table(space_file, tmp_path / "x.csv", tmp_path / "work", jobs=1, recipe=RECIPE, archs_file=keys)
    code = main_table([space_file, "--out", str(tmp_path / "x.csv"), "--seeds", "0", "0"])
    assert code == 2
