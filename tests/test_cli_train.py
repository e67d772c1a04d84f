"""`acla-nas train / evaluate / restore` end to end on a tiny EDSR with one ACLA module."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from acla_nas.cli.main import main
from acla_nas.data.images import embedded_dir
from acla_nas.train.model_file import load_model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder of real photograph crops (fast to train and evaluate on) and an arch file."""
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    photos.mkdir()
    for i, (name, box) in enumerate(
        [
            ("astronaut.png", (0, 0, 64, 64)),
            ("astronaut.png", (200, 150, 264, 214)),
            ("coffee.png", (100, 100, 164, 164)),
            ("chelsea.png", (150, 80, 214, 144)),
            ("rocket.jpg", (300, 200, 364, 264)),
        ]
    ):
        Image.open(embedded_dir() / name).convert("RGB").crop(box).save(photos / f"p{i}.png")
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 2}},
        "task": {"name": "sr", "scale": 2},
        "modules": {"body.1": {"keys": 4, "scope": "all"}},
        "data": {"kind": "folder", "path": str(photos), "val_fraction": 0.2, "test_fraction": 0.2},
        "train": {"steps": 5, "patch": 24, "batch": 2, "val_patches": 2, "progress": False},
    }
    (root / "arch.yaml").write_text(yaml.safe_dump(arch))
    return root


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    out = workdir / "run"
    assert main(["train", str(workdir / "arch.yaml"), "--out", str(out), "--device", "cpu", "--seed", "1"]) == 0
    return out


def test_train_writes_the_run_directory(trained):
    for name in ("config.yaml", "metrics.json", "model.pt", "checkpoints/last.pt"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["completed"] and metrics["steps"] == 5 and metrics["test"]["n"] == 1
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["train"]["seed"] == 1 and config["arch"]["modules"] == {"body.1": {"keys": 4, "scope": "all"}}
    model, arch, payload = load_model(trained / "model.pt")
    assert payload["task"] == {"name": "sr", "scale": 2} and "body.1" in arch.modules
    with torch.no_grad():
        assert model(torch.rand(1, 3, 10, 12)).shape == (1, 3, 20, 24)


def test_rerun_keeps_the_completed_run(workdir, trained, capsys):
    before = {
        p: p.read_bytes() for p in (trained / "metrics.json", trained / "model.pt", trained / "checkpoints/last.pt")
    }
    assert main(["train", str(workdir / "arch.yaml"), "--out", str(trained), "--device", "cpu", "--seed", "1"]) == 0
    assert all(p.read_bytes() == b for p, b in before.items())
    assert main(["train", str(workdir / "arch.yaml"), "--out", str(trained), "--seed", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another config" in err and "train.seed" in err and len(err.splitlines()) == 1
    assert all(p.read_bytes() == b for p, b in before.items())


def test_evaluate_prints_and_writes_csv(workdir, trained, capsys):
    out_csv = workdir / "eval.csv"
    assert (
        main(
            [
                "evaluate",
                str(trained / "model.pt"),
                "--data",
                str(workdir / "photos"),
                "--out",
                str(out_csv),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "photos" in printed and "floor PSNR" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["image"] for r in rows] == ["p0", "p1", "p2", "p3", "p4", "(mean)"]
    assert 25 < float(rows[-1]["floor_psnr"]) < 45 and float(rows[-1]["psnr"]) > 0


def test_restore_upscales_with_tiles(workdir, trained):
    out = workdir / "restored.png"
    assert (
        main(
            [
                "restore",
                str(trained / "model.pt"),
                str(workdir / "photos" / "p0.png"),
                str(out),
                "--tile",
                "24",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (128, 128)


@pytest.mark.parametrize(
    "argv, text",
    [
        (["restore", "{run}/model.pt", "{dir}/missing.png", "{dir}/o.png"], "missing.png: image file not found"),
        (["restore", "{run}/model.pt", "{dir}/corrupt.png", "{dir}/o.png"], "corrupt.png: cannot read image"),
        (["restore", "{dir}/corrupt.png", "{dir}/photos/p0.png", "{dir}/o.png"], "cannot load the model file"),
        (["evaluate", "{run}/model.pt", "--data", "{dir}/nowhere"], "--data: folder"),
        (
            ["train", "{dir}/arch.yaml", "--out", "{dir}/other", "--patch", "25"],
            "--patch: expected a multiple of the task's scale (2)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(workdir, trained, capsys, argv, text):
    (workdir / "corrupt.png").write_bytes(b"not an image")
    args = [a.format(run=trained, dir=workdir) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (workdir / "o.png").exists() and not (workdir / "other").exists()


def test_train_takes_set_overrides_of_the_arch_file(workdir, capsys):
    """``--set`` changes the arch file's values (typed, checked like the file) and is recorded."""
    out = workdir / "run-set"
    arch = str(workdir / "arch.yaml")
    assert main(["train", arch, "--out", str(out), "--device", "cpu", "--set", "train.steps=3"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["steps"] == 3 and config["runtime"]["overrides"] == ["train.steps=3"]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    bad = workdir / "run-bad"
    assert main(["train", arch, "--out", str(bad), "--device", "cpu", "--set", "train.lr=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lr" in err and "(set by --set train.lr=fast)" in err, err
