"""The machine (CPU model, cores, torch version, threads) is recorded with every run."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.runtime.machine import describe, keep_first_machine, machine_info
from acla_nas.search.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_machine_info_names_cpu_torch_and_threads() -> None:
    info = machine_info("cpu")
    assert info["torch"] == str(torch.__version__) and info["threads"] == torch.get_num_threads()
    assert info["cpu"] and info["cores"] >= 1 and "gpu" not in info
    assert yaml.safe_load(yaml.safe_dump(info)) == info  # plain YAML
    assert describe(info).startswith(
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['threads']} threads)"
    )


def test_a_resumed_run_keeps_its_first_machine() -> None:
    a, b = {"cpu": "A", "threads": 2}, {"cpu": "B", "threads": 4}
    assert keep_first_machine({}, a) == {"machine": a}
    assert keep_first_machine({"machine": a}, a) == {"machine": a}
    assert keep_first_machine({"machine": a}, b) == {"machine": a, "resumed_on": b}


def test_search_config_records_the_machine(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    config = RunConfig.from_files(
        str(space), str(ROOT / "strategies" / "random.yaml"), tmp_path / "run", trials=2, steps=1, device="cpu"
    ).to_dict()
    assert config["machine"] == machine_info("cpu")


def test_train_config_records_the_machine(tmp_path: Path) -> None:
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}},
        "task": {"name": "sr", "scale": 2},
        "modules": {},
        "data": {"kind": "embedded"},
        "train": {"steps": 1, "patch": 16, "batch": 1, "val_patches": 1},
    }
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(arch))
    assert (
        main(["train", str(tmp_path / "arch.yaml"), "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 0
    )
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["runtime"]["machine"] == machine_info("cpu")
