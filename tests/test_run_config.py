"""One typed run configuration: the search flags declared once, the RunConfig built once and
handed whole (pickled) to other processes, which never read the space file or the preset again."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.commands import pipeline as pipeline_cmd
from acla_nas.cli.commands import search as search_cmd
from acla_nas.core.errors import UserError
from acla_nas.core.trust import allow_imports
from acla_nas.search.config import RunConfig
from acla_nas.search.flags import SearchFlags
from acla_nas.search.run import search

FAST = {"supernet": {"steps": 2, "batch": 2, "patch": 24}, "val": {"patches": 2, "patch": 24}}
ARGS = ["space.yaml", "--strategy", "s.yaml", "--out", "run", "--trials", "3", "--steps", "2", "--seed", "4"]


def parser(verb) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    verb.add_arguments(p)
    return p


def files(tmp_path: Path, preset: dict) -> tuple[Path, Path]:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(preset))
    return tmp_path / "space.yaml", tmp_path / "s.yaml"


@pytest.mark.parametrize("verb", [search_cmd, pipeline_cmd])
def test_search_and_pipeline_declare_and_read_the_same_flags(verb) -> None:
    args = parser(verb).parse_args([*ARGS, "--device", "cpu", "--workers", "2"])
    flags = SearchFlags.from_args(args)
    assert flags == SearchFlags(trials=3, steps=2, seed=4, device="cpu", workers=2)
    assert str(flags.target) == "cpu"  # resolved with the flags
    assert set(SearchFlags.options()) <= set(parser(verb)._option_string_actions)
    assert "--set" in SearchFlags.options() and "--tensorboard" in SearchFlags.options()


def test_bad_flags_are_refused_before_any_file_is_read(tmp_path: Path) -> None:
    args = parser(search_cmd).parse_args(["missing.yaml", "--strategy", "missing.yaml", "--out", "r", "--nproc", "0"])
    with pytest.raises(UserError) as exc:
        RunConfig.from_args(args)
    assert exc.value.field == "--nproc"


def test_steps_is_applied_once_to_the_preset(tmp_path: Path) -> None:
    darts = {"strategy": "darts", "options": {"steps": 9, "warmup": 1}}
    space, preset = files(tmp_path, darts)
    cfg = RunConfig.from_files(space, preset, tmp_path / "run", steps=3, device="cpu")
    assert cfg.preset["options"]["steps"] == 3 and cfg.steps == 3
    random_ = {"strategy": "random", **FAST}
    space, preset = files(tmp_path, random_)
    cfg = RunConfig.from_files(space, preset, tmp_path / "run2", steps=5, device="cpu")
    assert cfg.preset["supernet"]["steps"] == 5


def _describe(blob: bytes) -> tuple[dict, str]:
    """In a spawned process: the configuration received (nothing is read from disk here)."""
    cfg = pickle.loads(blob)
    return cfg.to_dict(), f"{cfg.strategy.__module__}:{cfg.strategy.__qualname__}"


def test_the_run_config_crosses_to_another_process_whole(tmp_path: Path) -> None:
    """A user strategy next to its preset (not on sys.path) unpickles in a spawned process, with
    the space file and the preset gone: the other process neither parses nor resolves them."""
    mod = f"mystrat_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(
        "from acla_nas.search.strategies.random_search import RandomStrategy\n\n"
        "class Mine(RandomStrategy):\n    name = 'mine'\n"
    )
    space, preset = files(tmp_path, {"strategy": f"{mod}:Mine", "trials": 2, **FAST})
    with allow_imports([mod]):
        cfg = RunConfig.from_files(space, preset, tmp_path / "run", device="cpu")
    blob = pickle.dumps(cfg)
    space.unlink()
    preset.unlink()
    with mp.get_context("spawn").Pool(1) as pool:
        config, strategy = pool.apply(_describe, (blob,))
    assert config == cfg.to_dict() and strategy == f"{mod}:Mine"


def test_workers_run_the_configuration_built_once(tmp_path: Path, capfd) -> None:
    """The space file and preset are broken after the RunConfig is built: the --workers process
    runs the original (it used to parse the space file again and crash on it)."""
    space, preset = files(tmp_path, {"strategy": "random", "trials": 4, **FAST})
    cfg = RunConfig.from_files(space, preset, tmp_path / "run", device="cpu", workers=2)
    space.write_text("backbone: [not, a, space\n")
    preset.write_text("strategy: nonsense\n")
    res = search(cfg, progress=False)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err
    df = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    assert (df.state == "COMPLETE").sum() == 4 and res is not None and res.best_arch is not None
