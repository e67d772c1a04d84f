"""ACLA on CUDA: the module's forward+backward time and peak memory against a per-key loop and a
non-local block, and EDSR training throughput with and without modules.

Module, training mode, the query map, the earlier maps and all weights requiring gradients;
C=64 channels, L=4 earlier layers of the query's size, K=8 keys, batch 16; 64^2 ... 512^2:

  a-triton, a-node, a-plain  our module, ``acla_nas.nn.acla.ACLA``, with each attention core
                             (``acla_nas.nn.attention_core``: fused Triton kernels / one autograd node /
                             the plain broadcasting formulation)
  b   per-key loop in the authors' style (``PerKeyLoopACLA`` of benchmarks/acla_module.py)
  c   embedded-Gaussian non-local block with its HW x HW affinity in memory (``NonLocalBlock`` of
      benchmarks/acla_module.py); out of memory from 256^2 on at batch 16
  cf  the same block with fused attention (``F.scaled_dot_product_attention``: no HW x HW matrix);
      c and cf up to ``--nonlocal-max`` (256^2: one cf pass at 512^2 takes seconds)

Time: CUDA events around each forward+backward pass; median of ``--repeats`` passes after
``--warmup``, the methods of one size interleaved pass by pass. Peak: ``max_memory_allocated``
over one pass minus what was allocated before it (module, inputs, output gradient), so it counts
what the pass adds: activations kept for backward, temporaries and all gradients. A method that
runs out of memory is reported as OOM.

Training: EDSR baseline (64 features x 16 blocks) x2, L1 loss, Adam, batch 16 of 48^2 LR / 96^2 HR
random patches, autocast off and bf16; plain against the authors' placement of 4 modules (K=8
after each quarter of the blocks, attending to the head and the earlier module sites), steps/s
with the two models interleaved step by step.

Run on a CUDA machine:  python benchmarks/gpu.py           (all sizes, every core; a few minutes)
                        python benchmarks/gpu.py --sizes 64,128 --cores triton --json out.json
Without a CUDA device it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from acla_module import NonLocalBlock, PerKeyLoopACLA, check_cores  # noqa: E402

from acla_nas.nn.acla import ACLA  # noqa: E402
from acla_nas.nn.attention_core import select_core, triton_available, use_core  # noqa: E402
from acla_nas.nn.network import build as build_network  # noqa: E402
from acla_nas.space import SearchSpace  # noqa: E402

C, L, K, BATCH = 64, 4, 8, 16
LR_PATCH, TRAIN_BATCH = 48, 16
EDSR_SPACE = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 64, "n_resblocks": 16}},
    "task": {"name": "sr", "scale": 2},
    "data": {"kind": "embedded"},
    "eval": {"input_size": [LR_PATCH, LR_PATCH]},
    "sites": "body.*",
    "keys": [0, K],
    "scopes": ["all"],
}


class FusedNonLocalBlock(NonLocalBlock):
    """The non-local block with fused attention: the same function, no HW x HW matrix."""

    def forward(self, x: torch.Tensor, refs: list[torch.Tensor] | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        theta, phi, g = (
            f(x).flatten(2).transpose(1, 2).unsqueeze(1) for f in (self.theta, self.phi, self.g)
        )  # (B,1,N,C')
        y = F.scaled_dot_product_attention(theta, phi, g, scale=1.0).squeeze(1)  # embedded Gaussian: no 1/sqrt(d)
        return x + self.w_z(y.transpose(1, 2).reshape(b, -1, h, w))


def build(method: str) -> tuple[nn.Module, Callable[[], object]]:
    """The module of ``method`` on the GPU (non-trivial weights) and the context it runs in."""
    torch.manual_seed(0)
    if method.startswith("a-"):
        m: nn.Module = ACLA(C, [C] * L, K)
    elif method == "b":
        m = PerKeyLoopACLA(C, L, K)
    elif method == "c":
        m = NonLocalBlock(C)
    elif method == "cf":
        m = FusedNonLocalBlock(C)
    else:
        raise ValueError(method)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # ACLA's defaults are an identity; keep the offsets' ring layout
        for name, p in m.named_parameters():
            if not name.startswith("offset.bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    core = method[2:] if method.startswith("a-") else "auto"
    return m.cuda().train(), lambda: use_core(core)


def step(
    m: nn.Module, ctx: Callable[[], object], x: torch.Tensor, refs: list[torch.Tensor], grad: torch.Tensor
) -> None:
    for t in [x, *refs, *m.parameters()]:
        t.grad = None
    with ctx():
        y = m(x, refs)
    y.backward(grad)


def measure_module(methods: list[str], size: int, repeats: int, warmup: int) -> dict[str, dict]:
    """Peak memory (one pass each, after warm-up) and interleaved timing of ``methods`` at ``size``^2."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(BATCH, C, size, size, generator=g).cuda().requires_grad_()
    refs = [torch.randn(BATCH, C, size, size, generator=g).cuda().requires_grad_() for _ in range(L)]
    grad = torch.randn(BATCH, C, size, size, generator=g).cuda()
    out: dict[str, dict] = {}
    live: dict[str, tuple] = {}
    for method in methods:
        try:
            m, ctx = build(method)
            for _ in range(warmup):
                step(m, ctx, x, refs, grad)
            torch.cuda.synchronize()
            for t in [x, *refs, *m.parameters()]:
                t.grad = None
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step(m, ctx, x, refs, grad)
            torch.cuda.synchronize()
            out[method] = {"peak_bytes": torch.cuda.max_memory_allocated() - base, "times_ms": []}
            live[method] = (m, ctx)
        except torch.OutOfMemoryError:
            out[method] = {"oom": True}
        finally:
            m = ctx = None  # an OOM's half-built graph goes with them
            for t in [x, *refs]:
                t.grad = None
            gc.collect()
            torch.cuda.empty_cache()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in live]
    for _ in range(repeats):
        for (method, (m, ctx)), (start, end) in zip(live.items(), events):
            start.record()
            step(m, ctx, x, refs, grad)
            end.record()
            end.synchronize()
            out[method]["times_ms"].append(start.elapsed_time(end))
    for method in live:
        out[method]["median_ms"] = statistics.median(out[method]["times_ms"])
    return out


def training_rates(cores: list[str], amp: bool, steps: int, warmup: int) -> dict[str, float]:
    """Steps/s of plain EDSR and of EDSR with 4 modules (per core), interleaved step by step."""
    archs = SearchSpace.from_dict(EDSR_SPACE).reference_archs()
    variants: dict[str, tuple] = {}
    for name, arch, core in [("plain", archs["plain"], "auto")] + [
        (f"4 modules, {c}", archs["paper"], c) for c in cores
    ]:
        torch.manual_seed(0)
        model = build_network(arch).cuda().train()
        variants[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), core)
    g = torch.Generator().manual_seed(3)
    lq = torch.rand(TRAIN_BATCH, 3, LR_PATCH, LR_PATCH, generator=g).cuda()
    hr = torch.rand(TRAIN_BATCH, 3, 2 * LR_PATCH, 2 * LR_PATCH, generator=g).cuda()

    def one(model: nn.Module, opt: torch.optim.Optimizer, core: str) -> None:
        opt.zero_grad(set_to_none=True)
        with use_core(core), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            y = model(lq)
        F.l1_loss(y.float(), hr).backward()
        opt.step()

    times: dict[str, list[float]] = {n: [] for n in variants}
    for i in range(warmup + steps):
        for name, (model, opt, core) in variants.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            one(model, opt, core)
            end.record()
            end.synchronize()
            if i >= warmup:
                times[name].append(start.elapsed_time(end))
    return {n: 1000.0 / statistics.median(t) for n, t in times.items()}


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64,128,256,512", help="comma-separated square sizes (default 64,128,256,512)")
    p.add_argument(
        "--cores", default="triton,node,plain", help="our module's attention cores to measure (those available)"
    )
    p.add_argument("--methods", default="b,c,cf", help="baselines to measure: subset of b,c,cf")
    p.add_argument(
        "--nonlocal-max", type=int, default=256, help="largest size at which the non-local blocks (c, cf) run"
    )
    p.add_argument("--repeats", type=int, default=10, help="timed passes per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes first (Triton compiles in the first)")
    p.add_argument("--train-steps", type=int, default=30, help="timed EDSR training steps per variant (0: skip)")
    p.add_argument("--json", help="also write all measurements to this file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "benchmarks/gpu.py needs a CUDA device and none is present here (torch.cuda.is_available() is False); "
            "run it on a GPU machine: python benchmarks/gpu.py"
        )

    dev = torch.device("cuda")
    cores = [c for c in args.cores.split(",") if c and (c != "triton" or triton_available())]
    default = select_core(dev)
    ours = f"a-{default}" if default in cores else f"a-{cores[0]}"
    methods = [f"a-{c}" for c in cores] + [m for m in args.methods.split(",") if m]
    sizes = [int(s) for s in args.sizes.split(",")]
    props = torch.cuda.get_device_properties(dev)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    print("ACLA on CUDA: module forward+backward (training mode) and EDSR training throughput")
    print(
        f"  {props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, triton {triton_version}"
    )
    print(
        f"  TF32: convolutions {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32} (torch defaults)"
    )
    print(
        f"  module: C={C}, L={L} earlier layers (query size), K={K} keys, batch {BATCH}; median of {args.repeats} passes after "
        f"{args.warmup} warm-up passes, methods interleaved; peak = max_memory_allocated over one pass minus the setup"
    )
    print(f"  default core on this machine: {default}; cores measured: {', '.join(cores)}")
    print(*check_cores("cuda", tuple(c for c in cores if c != "plain")), sep="\n")
    print(flush=True)

    results: dict[int, dict[str, dict]] = {}
    for size in sizes:
        todo = [m for m in methods if m not in ("c", "cf") or size <= args.nonlocal_max]
        results[size] = measure_module(todo, size, args.repeats, args.warmup)
        line = ", ".join(
            f"{m} " + ("OOM" if r.get("oom") else f"{r['median_ms']:.1f} ms") for m, r in results[size].items()
        )
        print(f"  measured {size}^2: {line}", flush=True)

    def get(method: str, size: int, key: str) -> float | None:
        return results.get(size, {}).get(method, {}).get(key)

    head = (
        f"{'size':>6} | "
        + " ".join(f"{'t_' + m + ' ms':>13}" for m in methods)
        + " | "
        + " ".join(f"{'mem_' + m + ' MB':>13}" for m in methods)
    )
    head += f" | {'b/' + ours[2:]:>8} {'c/' + ours[2:]:>8} {'cf/' + ours[2:]:>9} | {'B/px':>6}"
    print()
    print(head)
    print("-" * len(head))
    for size in sizes:
        t = {m: get(m, size, "median_ms") for m in methods}
        mem = {m: get(m, size, "peak_bytes") for m in methods}
        row = f"{str(size) + '^2':>6} | " + " ".join(
            f"{'OOM' if get(m, size, 'oom') else fmt(t[m], '.1f'):>13}" for m in methods
        )
        row += " | " + " ".join(
            f"{'OOM' if get(m, size, 'oom') else fmt(mem[m] and mem[m] / 2**20, '.0f'):>13}" for m in methods
        )
        ratio = {b: (t[b] / t[ours] if t.get(b) and t.get(ours) else None) for b in ("b", "c", "cf")}
        bpp = mem[ours] / (BATCH * size * size) if mem.get(ours) else None
        row += f" | {fmt(ratio['b'], '.2f'):>8} {fmt(ratio['c'], '.1f'):>8} {fmt(ratio['cf'], '.1f'):>9} | {fmt(bpp, '.0f'):>6}"
        print(row)

    rates: dict[str, dict[str, float]] = {}
    if args.train_steps > 0:
        print()
        print(
            f"EDSR 64x16 x2 training, batch {TRAIN_BATCH} of {LR_PATCH}^2 LR patches: steps/s (median step time, {args.train_steps} steps after 5)"
        )
        for amp in (False, True):
            key = "autocast bf16" if amp else "float32"
            try:
                rates[key] = training_rates(cores, amp, args.train_steps, 5)
            except torch.OutOfMemoryError:
                rates[key] = {}
                print(f"  {key}: out of memory")
                continue
            plain = rates[key]["plain"]
            print(
                f"  {key:>13}: "
                + ", ".join(
                    f"{n} {r:.2f}" + ("" if n == "plain" else f" ({plain / r:.2f}x the plain step)")
                    for n, r in rates[key].items()
                )
            )

    print()
    for size in sizes:
        tb, ta = get("b", size, "median_ms"), get(ours, size, "median_ms")
        if tb and ta:
            print(
                f"{'PASS' if tb / ta >= 3 else 'MISS'}: ({ours}) >= 3x faster than the per-key loop (b) at {size}^2: {tb / ta:.2f}x"
            )
        elif get("b", size, "oom"):
            print(f"N/A : (b) out of memory at {size}^2")
    ta = get(ours, 256, "median_ms")
    nl = next(((m, get(m, 256, "median_ms")) for m in ("c", "cf") if get(m, 256, "median_ms")), None)
    if ta and nl:
        print(
            f"{'PASS' if nl[1] / ta >= 50 else 'MISS'}: ({ours}) >= 50x faster than the non-local block ({nl[0]}) at 256^2: {nl[1] / ta:.1f}x"
            + (
                ""
                if nl[0] == "c"
                else " (its HW x HW matrix does not fit; the fused-attention block is the one that runs)"
            )
        )
    else:
        print("N/A : ours vs the non-local block at 256^2 not measured")
    bpp = [(s, get(ours, s, "peak_bytes") / (BATCH * s * s)) for s in sizes if get(ours, s, "peak_bytes")]
    if len(bpp) >= 2:
        spread = max(v for _, v in bpp) / min(v for _, v in bpp)
        print(
            f"{'PASS' if spread <= 1.25 else 'MISS'}: ({ours}) memory linear in pixels: bytes/pixel "
            + ", ".join(f"{s}^2 {v:.0f}" for s, v in bpp)
            + f" (max/min {spread:.2f}; pass if <= 1.25)"
        )
    for key, r in rates.items():
        name = f"4 modules, {default}" if f"4 modules, {default}" in r else next((n for n in r if n != "plain"), None)
        if name and "plain" in r:
            ratio = r["plain"] / r[name]
            print(
                f"{'PASS' if ratio <= 1.5 else 'MISS'}: EDSR step with 4 modules ({name.split(', ')[1]} core) <= 1.5x the plain step, {key}: {ratio:.2f}x"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": props.name, "results": results, "training_steps_per_s": rates}, indent=1)
        )


if __name__ == "__main__":
    main()
