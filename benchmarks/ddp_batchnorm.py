"""One process vs two DDP processes on a BatchNorm backbone: what global-batch statistics change.

Trains the same user backbone (a two-scale denoiser with BatchNorm, written to a temporary
folder) with ``acla-nas train`` three times on the same global batch and seed: one process,
``--nproc 2`` (BatchNorm layers synchronised, the default), and ``--nproc 2`` with
``ACLA_NAS_SYNC_BN=0`` (each process normalises its own half). Prints the test PSNR of each and
the differences to one process. About 4 minutes on 2 cores.

    python benchmarks/ddp_batchnorm.py [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BNNET = '''
import torch
from torch import nn


class TwoScale(nn.Module):
    """A small denoiser with BatchNorm at two scales (what the issue's user tried)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.up = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        low = self.mid(self.down(h))
        up = torch.nn.functional.interpolate(low, size=h.shape[-2:], mode="nearest")  # any size, odd too
        return x + self.tail(h + self.up(up))


def net():
    return TwoScale()
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "bnnet.py").write_text(BNNET)
        arch = {
            "backbone": {"name": "bnnet:net", "sites": "head, mid"},
            "task": {"name": "denoise", "sigma": 25},
            "train": {"steps": args.steps, "batch": 8, "patch": 48, "lr": 1e-3, "seed": 0, "val_every": 0},
        }
        import yaml

        (t / "arch.yaml").write_text(yaml.safe_dump(arch))
        rows = []
        for name, nproc, env in [
            ("1 process", 1, {}),
            ("2 DDP, sync-BN", 2, {}),
            ("2 DDP, per-process BN", 2, {"ACLA_NAS_SYNC_BN": "0"}),
        ]:
            out = t / name.replace(" ", "_").replace(",", "")
            cmd = [sys.executable, "-m", "acla_nas", "train", str(t / "arch.yaml"), "--out", str(out), "--quiet"]
            cmd += ["--nproc", str(nproc), "--allow-import", "bnnet"]
            res = subprocess.run(cmd, cwd=t, env={**os.environ, **env}, capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(res.stderr.strip().splitlines()[-1])
            metrics = json.loads((out / "metrics.json").read_text())
            psnr = metrics.get("test", metrics).get("psnr")
            rows.append((name, float(psnr)))
        base = rows[0][1]
        print(f"steps {args.steps}, global batch 8 x 48^2, denoise sigma 25, seed 0")
        for name, psnr in rows:
            print(f"{name:<24} test PSNR {psnr:.3f} dB   vs one process {psnr - base:+.3f} dB")


if __name__ == "__main__":
    main()
