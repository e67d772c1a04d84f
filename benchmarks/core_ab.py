"""A/B of the native core against another checkout's, in one process (issue 25).

Loads ``attention_native.py`` of another checkout of this project (``--other``, e.g. a
``git worktree add /tmp/old 514ee79``) next to this one and times training steps of the
network-step variants under both cores, interleaved step by step, so that the shared machine's
drift hits both alike (benchmarks/README.md, "Second round"). The other core is plugged in by its
interface: one that takes sampling grids (``forward(ctx, weights_fn, scales, n, ...)``, the first
round, 514ee79) through the grid path of this checkout's module, one with this checkout's
interface through the native path. Its kernel is compiled from its own C file.

    python benchmarks/core_ab.py --other /tmp/old [--only edsr/plain,edsr/4xk8-all] [--repeats 11]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import network_step as ns  # noqa: E402

from acla_nas.nn import acla as acla_module  # noqa: E402


def load_other(root: Path):
    """The other checkout's ``attention_native`` module, under another name."""
    path = root / "acla_nas" / "nn" / "attention_native.py"
    spec = importlib.util.spec_from_file_location("other_attention_native", path)
    if spec is None or spec.loader is None or not path.exists():
        raise SystemExit(f"{path}: no native core there")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.available():
        raise SystemExit(f"{path}: its kernel does not build here: {module.unavailable_reason()}")
    return module


class OtherStepper(ns.Stepper):
    """A training step with the other checkout's core in place of this one's."""

    def __init__(self, v: ns.Variant, other) -> None:
        super().__init__(v, 8, 24, torch.device("cpu"))
        self.name = f"{v.name} [other]"
        self.fn = other.NativeAttention
        grids = "scales" in inspect.signature(self.fn.forward).parameters
        self.path = "node" if grids else "native"  # the module path whose call matches its interface

    def __call__(self) -> None:
        with ns.use_core(self.path), ns._patched(acla_module, "core_function", lambda name: self.fn):
            self._step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, type=Path, help="another checkout of this project")
    ap.add_argument("--only", default="edsr/plain,edsr/k8@3-s1,edsr/4xk8-all,edsr/supernet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    other = load_other(args.other)
    names = [n for n in args.only.split(",") if n]
    found = {v.name: v for v in ns.variants(set(names), 0)}
    steppers: list[ns.Stepper] = []
    for name in names:
        v = found[name]
        steppers.append(ns.Stepper(v, 8, 24, torch.device("cpu")))
        if name.endswith("/plain"):
            continue
        steppers.append(OtherStepper(ns.variants({name}, 0)[0], other))  # its own copy, same seed
    times = ns.time_interleaved(steppers, args.warmup, args.repeats, torch.device("cpu"))
    plain = {s.v.name.split("/")[0]: s.name for s in steppers if s.v.name.endswith("/plain")}
    print(f"native core here vs {args.other} ({args.threads} threads, median of {args.repeats}, min in brackets)")
    for s in steppers:
        ts, base = times[s.name], times[plain[s.v.name.split("/")[0]]]
        ratio, rmin = statistics.median(ts) / statistics.median(base), min(ts) / min(base)
        print(f"  {s.name:32s} {statistics.median(ts) * 1e3:7.1f} ms  x{ratio:5.2f}  (x{rmin:5.2f})")


if __name__ == "__main__":
    main()
