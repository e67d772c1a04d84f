"""glibc's default allocator settings vs the command line's (acla_nas/runtime/allocator.py), side by side.

The allocator's settings are global to a process, so the two cannot be interleaved step by step
in one; instead ``network_step.py`` runs in fresh processes, alternating default and tuned,
``--rounds`` times each, and the medians of their per-variant medians are compared.

    python benchmarks/allocator.py                      # EDSR rows, 3 rounds
    python benchmarks/allocator.py --only edsr/plain,edsr/4xk8-all --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(setting: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / "network_step.py"), "--only", args.only, "--no-memory"]
        cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--allocator", "tuned" if setting == "tuned" else "default"]
        cmd += ["--json", str(out)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        if setting == "env":
            env.update(MALLOC_MMAP_THRESHOLD_="4000000000", MALLOC_TRIM_THRESHOLD_="40000000000")
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return {r["network"]: r["ms"] for r in json.loads(out.read_text())["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="edsr", help="network_step.py's --only (default: the EDSR rows)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"default": [], "tuned": [], "env": []}
    for r in range(args.rounds):
        for setting in runs:
            runs[setting].append(run(setting, args))
            print(f"round {r + 1}/{args.rounds} {setting} done", file=sys.stderr)
    names = list(runs["default"][0])
    print(f"median over {args.rounds} fresh processes each (ms per training step; {args.threads} threads)")
    print(f"{'network':18s} {'default':>9s} {'tuned':>9s} {'env':>9s} {'tuned/def':>10s} {'env/def':>10s}")
    for name in names:
        d, t, e = (statistics.median(x[name] for x in runs[k]) for k in ("default", "tuned", "env"))
        print(f"{name:18s} {d:9.1f} {t:9.1f} {e:9.1f} {t / d:10.3f} {e / d:10.3f}")


if __name__ == "__main__":
    main()
