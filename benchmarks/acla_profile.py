"""Where the time of a scope-all ACLA module goes, and the floor its cost can be compared with.

One module as in the network-step benchmark's 4 x K=8 scope-all EDSR (C=32, L=8 earlier layers of
the query's size, K=8 keys, batch 8 of 24^2 LR maps, training mode, ``--core``: the CPU default,
``native``, or ``node``), run forward+backward under ``torch.profiler``; the self CPU time of its
operators is grouped into

  fused kernel  the native core's C passes (sampling, logits, weighted sum, all gradients)

  sampling      grid_sampler_2d (one call per earlier layer)
  scatter       grid_sampler_2d_backward (the gradient scattered back to the earlier layers)
  contractions  the logits and the weighted sums (mul/addcmul/sum over channels or keys)
  conv          the query and output 1x1 projections and the offset and gate 3x3 predictors,
                forward and backward (the profiler names them all convolution)
  softmax+gate  the masked softmax, the gate's straight-through mask, its autograd backward
  other         grids, copies, views, the rest

and the memory-traffic lower bound is printed: the bytes that any implementation must move (read
the query map and the L earlier maps, write the output; backward: read them and the output
gradient, write their gradients), and the bytes this core moves for the K samples per layer it
keeps (written once, read by the logits, the weighted sum, the backward contractions and the
scatter), both as milliseconds at a stated bandwidth.

    python benchmarks/acla_profile.py [--threads 2] [--layers 8] [--keys 8] [--bandwidth 10] [--core node]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from acla_nas.nn.acla import ACLA  # noqa: E402
from acla_nas.nn.attention_core import select_core, use_core  # noqa: E402

GROUPS = {
    "fused kernel": ("NativeAttention",),  # the native core: sampling, contractions and scatter in C
    "sampling": ("grid_sampler_2d",),
    "scatter": ("grid_sampler_2d_backward",),
    "conv": ("conv", "mkldnn_convolution", "thnn_conv", "slow_conv"),
    "contractions": ("addcmul", "aten::mul", "aten::sum"),
    "softmax+gate": ("exp", "amax", "masked_fill", "sigmoid", "div", "one_hot", "where", "rand", "log", "gt"),
}


def group_of(name: str) -> str:
    if "grid_sampler_2d_backward" in name:
        return "scatter"
    if name.startswith("NativeAttention"):
        return "fused kernel"
    for g, keys in GROUPS.items():
        if any(k in name for k in keys):
            return g
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bandwidth", type=float, default=10.0, help="GB/s for the traffic-to-time conversion")
    ap.add_argument("--core", default="auto", help="attention core: auto (this machine's CPU default), native, node")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c, n, k, b, s = args.channels, args.layers, args.keys, args.batch, args.size
    torch.manual_seed(0)
    m = ACLA(c, [c] * n, k).train()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # off the zero init, so every gradient is exercised
    x = torch.randn(b, c, s, s, requires_grad=True)
    refs = [torch.randn(b, c, s, s, requires_grad=True) for _ in range(n)]
    grad = torch.randn(b, c, s, s)

    core = select_core(torch.device("cpu")) if args.core == "auto" else args.core

    def step() -> None:
        with use_core(core):
            m(x, refs).backward(grad)

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.repeats):
            step()
    per_group: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        us = ev.self_cpu_time_total / args.repeats
        per_group[group_of(ev.key)] += us
        per_op[ev.key] += us
    total = sum(per_group.values())
    print(f"one ACLA module C={c}, L={n} layers, K={k}, batch {b} of {s}^2, {args.threads} threads, {core} core")
    print(f"forward+backward {total / 1e3:.1f} ms (self CPU time under the profiler, mean of {args.repeats})")
    for g, us in sorted(per_group.items(), key=lambda kv: -kv[1]):
        print(f"  {g:14s} {us / 1e3:7.2f} ms  {100 * us / total:5.1f} %")
    print("top operators:")
    for name, us in sorted(per_op.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {name:40s} {us / 1e3:7.2f} ms")
    fmap = b * c * s * s * 4  # bytes of one feature map
    samples = fmap * k  # bytes of one layer's samples
    fwd_floor = (n + 2) * fmap  # read x and the L maps, write the output
    bwd_floor = (n + 2) * fmap + (n + 1) * fmap  # read grad_out, x, maps; write the maps' and x's gradients
    # the node core: per layer the samples are written once and read by the logits and the weighted sum
    # (forward); read by two contractions, overwritten by their gradient and read by the scatter (backward)
    fwd_node = fwd_floor + n * samples * 3
    bwd_node = bwd_floor + n * samples * 4
    gbps = args.bandwidth * 1e9
    print(f"memory traffic (MB; ms at {args.bandwidth:g} GB/s):")
    for label, byt in (
        ("floor, forward", fwd_floor),
        ("floor, backward", bwd_floor),
        ("node core, forward", fwd_node),
        ("node core, backward", bwd_node),
    ):
        print(f"  {label:22s} {byt / 1e6:8.1f} MB  {1e3 * byt / gbps:7.2f} ms")


if __name__ == "__main__":
    main()
