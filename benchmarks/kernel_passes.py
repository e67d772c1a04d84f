"""Time each pass of the fused CPU kernel (acla_nas/nn/kernels/acla_cpu.c) per key.

The three passes on synthetic inputs at the sizes of CPU training: ``n`` earlier layers of ``c``
channels, batch 8 of 24^2 query maps, K keys; offsets N(0, ``spread``) query pixels, attention
weights uniform (no key dropped). Prints the median time of each pass and the time per key and
thread, the figure that the kernel's changes were judged by (benchmarks/README.md, issue 25).

    python benchmarks/kernel_passes.py [--threads 1] [--channels 32] [--layers 8] [--spread 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from acla_nas.nn import attention_native as an


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--spread", type=float, default=2.0, help="std of the offsets in query pixels")
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    if not an.available():
        raise SystemExit(f"the kernel is unavailable here: {an.unavailable_reason()}")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n, b, h, w, k, c = args.layers, 8, 24, 24, args.keys, args.channels
    q = list(torch.randn(b, h, w, n * c, generator=g).split(c, 3))
    ref = [torch.randn(b, h, w, c, generator=g) for _ in range(n)]
    off = torch.randn(b, 2 * n * k + k, h, w, generator=g) * args.spread
    attn, glogit = torch.rand(b, n, k, h, w, generator=g), torch.randn(b, n, k, h, w, generator=g)
    d = an.Dims(n, b, h, w, k, [c] * n, [(h, w)] * n, [c**-0.5] * n, [2 * k * i for i in range(n)], torch.float32)
    logit = torch.empty(b, n, k, h, w)
    outs, gq = (list(torch.empty(b, h, w, n * c).split(c, 3)) for _ in range(2))
    gref, goff = [torch.empty_like(r) for r in ref], torch.zeros_like(off)
    passes = {
        "logits": lambda: an._run(0, d, off, q=q, ref=ref, logit=logit),
        "weighted sum": lambda: an._run(1, d, off, ref=ref, out=outs, attn=attn),
        "backward": lambda: an._run(
            2, d, off, q=q, ref=ref, g=q, out=gq, gref=gref, goff=goff, attn=attn, glogit=glogit
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in passes}
    for r in range(args.repeats + 3):
        for name, run in passes.items():
            t0 = time.perf_counter()
            run()
            if r >= 3:
                times[name].append(time.perf_counter() - t0)
    keys = n * b * h * w * k
    print(f"fused kernel, {n} layers x {c} channels, K={k}, batch {b} of {h}x{w}, {args.threads} thread(s)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:13s} {med * 1e3:7.2f} ms   {med * 1e9 / keys * args.threads:5.1f} ns per key and thread")


if __name__ == "__main__":
    main()
