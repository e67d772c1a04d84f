"""Data-parallel training with 2 CPU processes (gloo): the weights of a single process, and resume.

Equality is up to float summation order: DDP averages two half-batch gradients where one process
sums one whole batch. Measured (retraining, weights of magnitude up to 1): max |difference|
1.5e-8 after 1 step, 3.0e-8 after 10, 6.0e-8 after 40; the tolerance TOL is 1e-6 (absolute), far
below what one different batch or one step more changes (>1e-3). ACLA's adaptive gate draws Gumbel noise per rank, so these runs
switch it off to compare with one process; with it on, DDP is as valid but not bitwise the same.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from acla_nas.data import embedded_dir
from acla_nas.retrain import train_arch

TOL = 1e-6
STEPS = 16


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Small photo crops (fast full-image test evaluation) and an arch file with one ACLA module."""
    root = tmp_path_factory.mktemp("ddp")
    photos = root / "photos"
    photos.mkdir()
    for i, (name, box) in enumerate([("astronaut.png", (0, 0, 64, 64)), ("astronaut.png", (200, 150, 264, 214)),
                                     ("coffee.png", (100, 100, 164, 164)), ("chelsea.png", (150, 80, 214, 144)),
                                     ("rocket.jpg", (300, 200, 364, 264)), ("coffee.png", (300, 200, 364, 264))]):
        Image.open(embedded_dir() / name).convert("RGB").crop(box).save(photos / f"p{i}.png")
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 2}},
        "task": {"name": "sr", "scale": 2},
        "modules": {"body.1": {"keys": 4, "scope": "all"}},
        "acla": {"adaptive": False},
        "data": {"kind": "folder", "path": str(photos)},
        "train": {"steps": STEPS, "patch": 24, "batch": 4, "lr": 1e-3, "val_every": 0, "val_patches": 2, "ckpt_every": 4},
    }
    (root / "arch.yaml").write_text(yaml.safe_dump(arch))
    return root


def weights(model_file: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_file, map_location="cpu", weights_only=True)["state_dict"]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_killed_two_process_run_resumes_under_torchrun_with_the_weights_of_one_process(workdir: Path) -> None:
    """``--nproc 2`` killed mid-run (every rank, SIGKILL), resumed by torchrun: the weights after
    STEPS steps equal one process's with the same global batch; only rank 0 wrote files."""
    arch, out = workdir / "arch.yaml", workdir / "ddp"
    cmd = [sys.executable, "-m", "acla_nas", "train", str(arch), "--out", str(out), "--device", "cpu"]
    first = subprocess.Popen(cmd + ["--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    ckpt, t0 = out / "checkpoints" / "last.pt", time.monotonic()
    while not ckpt.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() - t0 < 300
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGKILL)  # every rank at once, mid-run
    first.communicate(timeout=60)
    assert not (out / "metrics.json").exists()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert 0 < saved["step"] < STEPS and len(saved["rng_ranks"]) == 2  # every rank's RNG, written by rank 0
    resume = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port()), "-m", "acla_nas", "train", str(arch), "--out", str(out), "--device", "cpu"]
    res = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming at step {saved['step']}" in res.stderr and res.stdout.count("model:") == 1  # rank 0 reports, once
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["config.yaml", "last.pt", "metrics.json", "model.pt"]

    train_arch(arch, workdir / "single", {"device": "cpu"}, progress=False)  # the reference: one process
    single, ddp = weights(workdir / "single" / "model.pt"), weights(out / "model.pt")
    diff = max_diff(ddp, single)
    print(f"DDP (2 gloo ranks, killed at step {saved['step']}, resumed) vs one process after {STEPS} steps: max |diff| {diff:.2e}")
    assert diff < TOL
    assert max_diff(ddp, {k: torch.zeros_like(v) for k, v in single.items()}) > 1e4 * TOL  # not trivially equal
