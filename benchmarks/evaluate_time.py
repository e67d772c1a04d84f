"""Time of ``acla-nas evaluate`` on the 3 embedded test photographs with the demo child, after import.

The demo's discovered child (results/edsr_x2_demo_evolution/best_arch.yaml) is trained for 2 steps
(the weights do not change the cost: every query samples its K keys) into a temporary folder; then
the command is run in this process, after torch and acla_nas are imported, ``--repeats`` times per
attention core (interleaved), and the median wall time is printed with the resident-set high-water
mark. Issue 25's target: <= 5 s after import, with progress shown.

    python benchmarks/evaluate_time.py [--threads 2] [--repeats 3] [--cores node,plain]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T0 = time.perf_counter()
import torch  # noqa: E402

from acla_nas.cli.main import main as cli  # noqa: E402
from acla_nas.nn.attention_core import use_core  # noqa: E402

IMPORT_S = time.perf_counter() - T0
CHILD = ROOT / "results" / "edsr_x2_demo_evolution" / "best_arch.yaml"


def quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli(argv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", default="auto", help="comma-separated attention cores (auto, node, plain)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "child"
        if quiet(["train", str(CHILD), "--steps", "2", "--out", str(run), "--quiet"]) != 0:
            raise SystemExit("training the demo child failed")
        times: dict[str, list[float]] = {c: [] for c in cores}
        for r in range(args.repeats):
            for core in cores:
                out = Path(tmp) / f"eval_{core}_{r}.csv"
                with use_core(core):
                    t0 = time.perf_counter()
                    rc = quiet(["evaluate", str(run), "--out", str(out), "--device", "cpu"])
                    times[core].append(time.perf_counter() - t0)
                if rc != 0:
                    raise SystemExit(f"evaluate failed under the {core} core")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"acla-nas evaluate, 3 embedded test photographs, demo child ({CHILD.relative_to(ROOT)}), "
        f"{args.threads} threads, torch {torch.__version__}; import took {IMPORT_S:.2f} s"
    )
    for core in cores:
        ts = times[core]
        print(f"  core {core:6s} median {statistics.median(ts):6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"  process peak resident set {peak:.0f} MiB (all runs)")


if __name__ == "__main__":
    main()
