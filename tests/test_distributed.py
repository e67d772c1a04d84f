"""Data-parallel training with 2 CPU processes (gloo): the weights of a single process, and resume.

Equality is up to float summation order: DDP averages two half-batch gradients where one process
sums one whole batch. Measured (retraining, weights of magnitude up to 1): max |difference|
1.5e-8 after 1 step, 3.0e-8 after 10, 6.0e-8 after 40; the tolerance TOL is 1e-6 (absolute), far
below what one different batch or one step more changes (>1e-3). ACLA's adaptive gate draws Gumbel noise per rank, so these runs
switch it off to compare with one process; with it on, DDP is as valid but not bitwise the same.
"""

from __future__ import annotations

import json
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
from tiny_space import TINY_SPACE

from acla_nas.data.images import embedded_dir
from acla_nas.search.run import run_search
from acla_nas.train.retrain import train_arch

TOL = 1e-6
STEPS = 16


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Small photo crops (fast full-image test evaluation) and an arch file with one ACLA module."""
    root = tmp_path_factory.mktemp("ddp")
    photos = root / "photos"
    photos.mkdir()
    for i, (name, box) in enumerate(
        [
            ("astronaut.png", (0, 0, 64, 64)),
            ("astronaut.png", (200, 150, 264, 214)),
            ("coffee.png", (100, 100, 164, 164)),
            ("chelsea.png", (150, 80, 214, 144)),
            ("rocket.jpg", (300, 200, 364, 264)),
            ("coffee.png", (300, 200, 364, 264)),
        ]
    ):
        Image.open(embedded_dir() / name).convert("RGB").crop(box).save(photos / f"p{i}.png")
    arch = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 2}},
        "task": {"name": "sr", "scale": 2},
        "modules": {"body.1": {"keys": 4, "scope": "all"}},
        "acla": {"adaptive": False},
        "data": {"kind": "folder", "path": str(photos)},
        "train": {
            "steps": STEPS,
            "patch": 24,
            "batch": 4,
            "lr": 1e-3,
            "val_every": 0,
            "val_patches": 2,
            "ckpt_every": 4,
        },
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
    first = subprocess.Popen(
        cmd + ["--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
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
    resume = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "acla_nas",
        "train",
        str(arch),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    res = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming at step {saved['step']}" in res.stderr and res.stdout.count("model:") == 1  # rank 0 reports, once
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "config.yaml",
        "last.pt",
        "metrics.json",
        "model.pt",
        "train.log",
    ]

    train_arch(arch, workdir / "single", {"device": "cpu"}, progress=False)  # the reference: one process
    single, ddp = weights(workdir / "single" / "model.pt"), weights(out / "model.pt")
    diff = max_diff(ddp, single)
    print(
        f"DDP (2 gloo ranks, killed at step {saved['step']}, resumed) vs one process after {STEPS} steps: max |diff| {diff:.2e}"
    )
    assert diff < TOL
    assert max_diff(ddp, {k: torch.zeros_like(v) for k, v in single.items()}) > 1e4 * TOL  # not trivially equal


SPACE = {**TINY_SPACE, "acla": {"adaptive": False}}


@pytest.mark.parametrize("strategy", ["random", "darts"])
def test_supernet_and_darts_under_ddp_equal_one_process(tmp_path: Path, strategy: str) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    preset = {"strategy": strategy, "val": {"patches": 3, "patch": 24}}
    if strategy == "darts":
        preset["options"] = {"steps": 6, "warmup": 2, "batch": 4, "patch": 24, "log_every": 3, "ckpt_every": 3}
    else:
        preset.update(trials=2, supernet={"steps": 6, "batch": 4, "patch": 24, "ckpt_every": 3})
    ckpt = Path("supernet") / "checkpoints" / "last.pt"  # DARTS trains on the shared Trainer too
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(preset))
    one = run_search(
        str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "one", device="cpu", progress=False
    )
    two = run_search(
        str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "two", device="cpu", progress=False, nproc=2
    )
    a = torch.load(tmp_path / "one" / ckpt, map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "two" / ckpt, map_location="cpu", weights_only=True)
    key = "model"
    assert max_diff(a[key], b[key]) < TOL
    if strategy == "darts":
        assert max_diff(a["extra"]["alpha"], b["extra"]["alpha"]) < TOL
        moved = torch.cat([p.flatten() for p in a["extra"]["alpha"].values()]).abs().max()
        assert float(moved) > 100 * TOL  # the architecture did move
    print(f"{strategy} under DDP (2 gloo ranks) vs one process: max |diff| {max_diff(a[key], b[key]):.2e}")
    assert two.best_arch == one.best_arch and two.best_scores["psnr"] == pytest.approx(
        one.best_scores["psnr"], abs=1e-3
    )


def test_launchers_do_not_nest_and_bad_counts_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from acla_nas.cli.main import main
    from acla_nas.core.errors import UserError
    from acla_nas.pipeline import run_pipeline

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"strategy": "random", "trials": 1}))
    code = main(
        [
            "search",
            str(tmp_path / "space.yaml"),
            "--strategy",
            str(tmp_path / "s.yaml"),
            "--out",
            str(tmp_path / "r"),
            "--nproc",
            "0",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--nproc" in err
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match="torchrun"):
        run_search(str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "r", nproc=2)
    with pytest.raises(UserError, match="--nproc"):
        run_pipeline(str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "p")
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()


def _bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.Conv2d(6, 3, 1)
    )


def _bn_step(batch: torch.Tensor, sync: bool) -> dict:
    """One DDP step of a BatchNorm net on this rank's half of ``batch``: gradients and BN buffers."""
    from acla_nas.runtime import distributed

    net = _bn_net()
    ddp = distributed.wrap(net, torch.device("cpu"), sync_bn=sync)
    (x,) = distributed.shard([batch])
    ddp(x).square().mean().backward()
    out = {f"grad.{k}": p.grad.numpy().copy() for k, p in net.named_parameters()}
    out.update({f"buf.{k}": b.numpy().copy() for k, b in net.named_buffers()})
    return out  # numpy: a tensor would travel through shared memory that dies with the rank


@pytest.mark.parametrize("sync", [True, False])
def test_batchnorm_under_ddp_sees_the_global_batch(sync: bool) -> None:
    """With sync-BN (the default) two processes compute the gradients and running statistics of
    one process on the whole batch; without it each normalises its own half (the control)."""
    from acla_nas.runtime.distributed import launch

    batch = torch.rand(4, 3, 8, 8) * torch.tensor([1.0, 1.0, 3.0, 3.0])[:, None, None, None]  # halves differ
    net = _bn_net()
    net(batch).square().mean().backward()
    one = {f"grad.{k}": p.grad for k, p in net.named_parameters()}
    one.update({f"buf.{k}": b for k, b in net.named_buffers()})
    two = launch(2, _bn_step, (batch, sync))
    diff = max(float((one[k].float() - torch.from_numpy(two[k]).float()).abs().max()) for k in one)
    if sync:
        assert diff < 1e-5, diff
    else:
        assert diff > 1e-3, diff  # the control: per-process statistics do differ


_LEAVE_SCRIPT = """
import json, os, torch
from acla_nas.runtime import distributed
def train():  # the trainer's shape: its DDP wrapper is gone when the group is left
    model = distributed.wrap(torch.nn.Linear(4, 4), torch.device("cpu"))
    model(torch.randn(2, 4)).sum().backward()
    return distributed.broadcast({"done": True})
with distributed.process_group("cpu"):
    train()
tasks = "/proc/self/task"
print(json.dumps(sorted(open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks))))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names are read from /proc (Linux)")
def test_leaving_the_group_joins_the_gloo_threads(tmp_path: Path) -> None:
    """After a DDP run the process group is really gone: no gloo thread outlives it. A leaked group
    let a gloo worker release a collective's tensors during interpreter shutdown, which aborted a
    rank under load (the DDP resume test, once in about ten runs on a loaded machine)."""
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LEAVE_SCRIPT],
            env={
                **os.environ,
                "RANK": str(r),
                "WORLD_SIZE": "2",
                "LOCAL_RANK": str(r),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "OMP_NUM_THREADS": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        names = json.loads(out.strip().splitlines()[-1])
        assert not [n for n in names if "gloo" in n], names
