"""Peak memory of ``acla-nas restore`` against the input size: bounded by the tile, or by the image?

Writes a small x2 EDSR model file and smooth test images of the given sides, runs
``acla-nas restore`` on each in a fresh process (the default tile, 256) and prints the peak
resident memory (ru_maxrss of the child) with the bytes per input pixel. Memory, not time, is
the point: the model is tiny so the 4000^2 case runs in about a minute on 2 cores.

    python benchmarks/restore_memory.py                 # 1000 and 4000
    python benchmarks/restore_memory.py --sides 1000 2000 4000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _model(path: Path) -> None:
    from acla_nas.nn.arch import Arch
    from acla_nas.nn.network import build
    from acla_nas.train.model_file import save_model_file

    arch = Arch.from_dict(
        {"backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 1}}, "task": {"name": "sr", "scale": 2}}
    )
    save_model_file(path, build(arch).eval(), arch.to_dict(), dict(arch.task))


def _image(path: Path, side: int) -> None:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * x * y + 2 * y), np.sin(11 * x - 4 * y)], -1)
    Image.fromarray(((rgb * 0.5 + 0.5) * 255).astype(np.uint8), "RGB").save(path)


def _peak(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (bytes) and seconds of one child process (run alone, so RUSAGE_CHILDREN is its own)."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "restore failed")
    kib = int(res.stdout.strip().splitlines()[-1])
    return kib * 1024.0, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[1000, 4000])
    args = ap.parse_args()
    exe = [sys.executable, "-m", "acla_nas"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _model(t / "model.pt")
        base, _ = _peak([*exe, "--version"])
        print(f"python + acla-nas import: {base / 2**20:.0f} MiB (ru_maxrss of `acla-nas --version`)")
        print(f"{'input':>11} {'output':>11} {'peak MiB':>9} {'B/input px':>10} {'s':>6}")
        for side in args.sides:
            _image(t / f"in{side}.png", side)
            peak, secs = _peak(
                [*exe, "restore", str(t / "model.pt"), str(t / f"in{side}.png"), str(t / f"out{side}.png")]
            )
            print(
                f"{side:>5}x{side:<5} {2 * side:>5}x{2 * side:<5} {peak / 2**20:>9.0f} {peak / side**2:>10.1f} {secs:>6.1f}"
            )


if __name__ == "__main__":
    main()
