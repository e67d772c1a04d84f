"""Forward+backward time and peak memory of the ACLA module against two baselines, on CPU.

Methods (C=32 channels, L=3 earlier layers of the query's size, K=8 keys, batch 2, training mode):

  a   our module, ``acla_nas.nn.acla.ACLA`` (adaptive gate on)
  a0  our module with ``adaptive=False``
  ac  our module under ``torch.compile`` (only with ``--compile``; informative, not a target)
  b   per-key loop reference in the authors' style (written below): separate 1x1 key and value
      projections (C->C) of each earlier layer, then for every layer and every key one
      ``grid_sample`` of the keys and one of the values, a dot product with the query, softmax
      over all L*K keys, weighted sum of the values, output projection. Same offset and gate
      predictors (and the same Gumbel/straight-through gate) as ours, so the work is comparable.
  c   standard embedded-Gaussian non-local block (Wang et al. 2018): theta/phi/g 1x1 convs C->C/2,
      softmax over the HW x HW affinity (no subsampling), W_z 1x1 conv C/2->C + BatchNorm,
      residual; attends the query map itself. Skipped where its B x HW x HW attention
      matrices cannot fit in RAM.

Peak memory: one fresh subprocess per (method, size) (see ``memory_worker``). Time: per size one
fresh subprocess runs a, a0, b (, ac) interleaved pass by pass, c in a process of its own; the
median of ``--repeats`` forward+backward passes after ``--warmup`` passes is reported. A check line
compares our module's CPU core with its plain formulation (outputs and all gradients).

Run:  python benchmarks/acla_module.py            # 32, 64, 128, 256 (about 2 min on 2 cores)
      python benchmarks/acla_module.py --quick    # 32, 64 only (about 20 s)
      python benchmarks/acla_module.py --sizes 64,128 --compile   # also torch.compile of ours
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from acla_nas.nn.acla import ACLA, initial_offsets  # noqa: E402

C, L, K, BATCH = 32, 3, 8, 2
METHODS = {
    "a": "ours (ACLA)",
    "a0": "ours, adaptive=False",
    "ac": "ours, torch.compile",
    "b": "per-key loop reference",
    "c": "non-local (emb. Gaussian)",
}
# glibc: serve every allocation >= 64 KiB by mmap and unmap it on free, so that the resident set
# follows the live tensors (no heap caching or fragmentation hides or inflates the peak).
MEM_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}


# --------------------------------------------------------------------------------------------
# (b) per-key loop reference, authors' style
# --------------------------------------------------------------------------------------------
class PerKeyLoopACLA(nn.Module):
    """Cross-layer deformable attention with one ``grid_sample`` per (layer, key) for keys and values."""

    def __init__(self, channels: int, n_layers: int, k: int, offset_kernel: int = 3, tau: float = 1.0) -> None:
        super().__init__()
        self.k, self.n_layers, self.tau = k, n_layers, tau
        pad = offset_kernel // 2
        self.query = nn.Conv2d(channels, channels, 1, bias=False)
        self.keys = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in range(n_layers))
        self.values = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in range(n_layers))
        self.offset = nn.Conv2d(channels, n_layers * k * 2, offset_kernel, padding=pad)
        self.gate = nn.Conv2d(channels, k, offset_kernel, padding=pad)
        self.out = nn.Conv2d(channels, channels, 1)
        with torch.no_grad():
            self.offset.bias.copy_(initial_offsets(k, 1.0).repeat(n_layers, 1).reshape(-1))

    def forward(self, x: torch.Tensor, refs: list[torch.Tensor]) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x)
        off = self.offset(x)
        g_logit = self.gate(x)
        ys = (torch.arange(h, dtype=x.dtype, device=x.device) * 2 + 1) / h - 1
        xs = (torch.arange(w, dtype=x.dtype, device=x.device) * 2 + 1) / w - 1
        base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H,W,2)
        scale = x.new_tensor([2.0 / w, 2.0 / h])
        logits, values = [], []
        for li, ref in enumerate(refs):
            key_map = self.keys[li](ref)
            value_map = self.values[li](ref)
            for j in range(self.k):
                o = off[:, (li * self.k + j) * 2 : (li * self.k + j) * 2 + 2].permute(0, 2, 3, 1)  # (B,H,W,2)
                grid = base + o * scale
                sk = F.grid_sample(key_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                sv = F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                logits.append((sk * q).sum(1) / math.sqrt(c))
                values.append(sv)
        logit = torch.stack(logits, 1)  # (B, L*K, H, W), layer-major
        # Same gate as ours: Gumbel-sigmoid with a straight-through hard mask (hard in eval),
        # a query that dropped every key keeps its highest-gate key.
        if self.training:
            u = torch.rand_like(g_logit).clamp_(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((g_logit + torch.log(u) - torch.log1p(-u)) / self.tau)
            mask = (soft > 0.5).to(x.dtype) + (soft - soft.detach())
        else:
            mask = (g_logit > 0).to(x.dtype)
        empty = mask.detach().sum(1, keepdim=True) == 0
        best = F.one_hot(g_logit.argmax(1), self.k).permute(0, 3, 1, 2).to(x.dtype)
        mask = torch.where(empty, best, mask).repeat(1, self.n_layers, 1, 1)
        peak = logit.masked_fill(mask.detach() == 0, float("-inf")).amax(1, keepdim=True).detach()
        e = torch.exp(logit - peak) * mask
        attn = e / e.sum(1, keepdim=True)
        agg = values[0] * attn[:, 0:1]
        for i in range(1, len(values)):
            agg = agg + values[i] * attn[:, i : i + 1]
        return x + self.out(agg)


# --------------------------------------------------------------------------------------------
# (c) embedded-Gaussian non-local block
# --------------------------------------------------------------------------------------------
class NonLocalBlock(nn.Module):
    """Non-local block, embedded Gaussian (softmax of theta^T phi over all N = H*W positions, no
    subsampling), inter channels C/2, W_z = 1x1 conv + BatchNorm, residual; attends ``x`` itself."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inter = channels // 2
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.w_z = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, refs: list[torch.Tensor] | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B,N,C')
        phi = self.phi(x).flatten(2)  # (B,C',N)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B,N,C')
        f = torch.softmax(torch.bmm(theta, phi), dim=-1)  # (B,N,N)
        y = torch.bmm(f, g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.w_z(y)


def nonlocal_fits(size: int, ram_bytes: int) -> tuple[bool, str]:
    """Forward+backward keeps about 3 live B x N x N float32 matrices (logits/softmax, grads)."""
    n = size * size
    matrix = BATCH * n * n * 4
    need = 3 * matrix
    if need > 0.8 * ram_bytes:
        return (
            False,
            f"needs ~{need / 2**30:.0f} GiB (B x {n}^2 attention matrix = {matrix / 2**30:.0f} GiB, ~3 live) > RAM {ram_bytes / 2**30:.0f} GiB",
        )
    return True, ""


# --------------------------------------------------------------------------------------------
# workers (run in fresh subprocesses)
# --------------------------------------------------------------------------------------------
def build(method: str) -> nn.Module:
    torch.manual_seed(0)
    if method in ("a", "a0", "ac"):
        m = ACLA(C, [C] * L, K, adaptive=(method != "a0"))
    elif method == "b":
        m = PerKeyLoopACLA(C, L, K)
    elif method == "c":
        m = NonLocalBlock(C)
    else:
        raise ValueError(method)
    # Non-trivial weights (ACLA's defaults are an identity); small enough to keep offsets moderate.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("offset.bias"):
                continue
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    m.train()
    if method == "ac":
        m = torch.compile(m)
    return m


def make_inputs(size: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(BATCH, C, size, size, generator=g).requires_grad_(True)
    refs = [torch.randn(BATCH, C, size, size, generator=g).requires_grad_(True) for _ in range(L)]
    grad = torch.randn(BATCH, C, size, size, generator=g)
    return x, refs, grad


def step(m: nn.Module, x: torch.Tensor, refs: list[torch.Tensor], grad: torch.Tensor) -> None:
    for t in [x, *refs, *m.parameters()]:
        t.grad = None
    y = m(x, refs)
    y.backward(grad)


def status_kib(field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/self/status, in KiB (network_step.py uses it too)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_worker(method: str, size: int) -> dict:
    """Peak extra resident memory of one forward+backward over the state after setup.

    Setup = module, inputs (requiring grad) and output gradient, plus one warm-up pass at 8x8 so
    that thread pools and kernels are initialised. Then the kernel's resident-set high-water mark
    (VmHWM, the value ``getrusage(RUSAGE_SELF).ru_maxrss`` reports) is reset to the current RSS by
    writing 5 to /proc/self/clear_refs; peak = VmHWM after the pass - VmRSS at the reset. With
    MEM_ENV every tensor-sized allocation is its own mapping, so this is the peak of live
    allocations made by the pass (activations saved for backward, temporaries, all gradients).
    """
    m = build(method)
    step(m, *make_inputs(8))
    x, refs, grad = make_inputs(size)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = status_kib("VmRSS")
        how = "VmHWM reset"
    except OSError:  # no reset: fall back to the high-water mark so far (includes setup)
        base = status_kib("VmHWM")
        how = "ru_maxrss delta"
    step(m, x, refs, grad)
    peak = status_kib("VmHWM")
    return {"peak_bytes": (peak - base) * 1024, "how": how}


def time_worker(methods: list[str], size: int, repeats: dict[str, int], warmup: int) -> dict:
    """Median forward+backward time of each method, the methods interleaved pass by pass.

    Interleaving (a, a0, b, a, a0, b, ...) in one process makes the ratios robust to load that
    changes during the run (other processes on a shared machine).
    """
    models = {m: build(m) for m in methods}
    x, refs, grad = make_inputs(size)
    warm = {}
    for m in methods:
        t0 = time.perf_counter()
        for _ in range(warmup):
            step(models[m], x, refs, grad)
        warm[m] = time.perf_counter() - t0
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(max(repeats[m] for m in methods)):
        for m in methods:
            if r < repeats[m]:
                t0 = time.perf_counter()
                step(models[m], x, refs, grad)
                times[m].append(time.perf_counter() - t0)
    return {
        m: {
            "median_s": statistics.median(times[m]),
            "min_s": min(times[m]),
            "times": times[m],
            "warm_s": warm[m],
            "threads": torch.get_num_threads(),
        }
        for m in methods
    }


def check_cores(device: str = "cpu", cores: tuple[str, ...] = ("node",)) -> list[str]:
    """Each attention core of our module against its plain formulation on ``device`` (same
    module, weights and Gumbel noise; the output and every gradient), one line per core."""
    from acla_nas.nn.attention_core import use_core

    torch.manual_seed(0)
    m = ACLA(16, [16, 8, 12], 6).train().to(device)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 40, 48, generator=g)
    refs = [
        torch.randn(2, 16, 40, 48, generator=g),
        torch.randn(2, 8, 20, 24, generator=g),
        torch.randn(2, 12, 40, 48, generator=g),
    ]
    gy = torch.randn(2, 16, 40, 48, generator=g).to(device)

    def run(core: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = [t.to(device).clone().requires_grad_() for t in (x, *refs)]
        m.zero_grad(set_to_none=True)
        torch.manual_seed(2)  # same Gumbel noise for the gate
        with use_core(core):
            y = m(leaves[0], leaves[1:])
        y.backward(gy)
        return y.detach(), [t.grad for t in leaves] + [p.grad for p in m.parameters()]

    y0, g0 = run("plain")
    lines = []
    for core in cores:
        y1, g1 = run(core)
        dy = (y0 - y1).abs().max().item()
        dg = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(g0, g1))
        ok = dy < 1e-4 and dg < 1e-4
        lines.append(
            f"check: {core} core vs the plain formulation on {device} (train, gate on, 40x48, 3 layers): max |dy| {dy:.1e}, "
            f"max relative |dgrad| {dg:.1e} -> {'OK' if ok else 'MISMATCH'}"
        )
    return lines


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def run_worker(args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 1800) -> dict:
    env = dict(os.environ)
    env.update(env_extra or {})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def repeats_for(method: str, size: int, repeats: int) -> int:
    """Fewer repeats where one pass takes seconds (said so in the output)."""
    if method == "c" and size >= 128:
        return min(repeats, 3)
    return repeats


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="32,64,128,256", help="comma-separated square sizes (default 32,64,128,256)")
    p.add_argument("--repeats", type=int, default=7, help="timed passes per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes before timing")
    p.add_argument("--quick", action="store_true", help="sizes 32,64 only")
    p.add_argument("--methods", default="a,a0,b,c", help="subset of a,a0,b,c (and ac)")
    p.add_argument(
        "--compile", action="store_true", help="also time our module under torch.compile (method ac; slow to compile)"
    )
    p.add_argument("--json", help="also write all measurements to this file")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        kind = args.worker[0]
        if kind == "mem":
            out = memory_worker(args.worker[1], int(args.worker[2]))
        else:  # time METHODS SIZE REPEATS(comma) WARMUP
            methods = args.worker[1].split(",")
            reps = dict(zip(methods, (int(r) for r in args.worker[3].split(","))))
            out = time_worker(methods, int(args.worker[2]), reps, int(args.worker[4]))
        print(json.dumps(out))
        return

    sizes = [32, 64] if args.quick else [int(s) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    if args.compile and "ac" not in methods:
        methods.insert(methods.index("a0") + 1 if "a0" in methods else 1, "ac")
    ram = ram_bytes()
    print("ACLA module benchmark: forward+backward, training mode, CPU")
    print(
        f"  torch {torch.__version__}, threads {torch.get_num_threads()} (torch default), RAM {ram / 2**30:.1f} GiB, {os.cpu_count()} CPUs"
    )
    print(f"  C={C}, L={L} earlier layers (query size), K={K} keys, batch {BATCH}; inputs and weights require grad")
    print(
        f"  time: median of {args.repeats} passes after {args.warmup} warm-up passes; per size one fresh process runs"
    )
    print("        a, a0, b (, ac) interleaved pass by pass (robust ratios under changing load), c in its own")
    print("  peak: extra resident memory of one pass over the state after setup, one fresh process per")
    print("        (method, size): the RSS high-water mark (VmHWM = ru_maxrss) is reset after setup via")
    print("        /proc/self/clear_refs; glibc is told to mmap every allocation >= 64 KiB so that RSS follows")
    print("        the live tensors. B/px = peak / (B*H*W) query pixels")
    for m in methods:
        print(f"  ({m}) {METHODS[m]}")
    print(*check_cores(), sep="\n")
    print(flush=True)

    results: dict[str, dict[int, dict]] = {m: {} for m in methods}
    notes: list[str] = []
    for size in sizes:
        t_size = time.perf_counter()
        todo = []
        for m in methods:
            if m == "c":
                ok, why = nonlocal_fits(size, ram)
                if not ok:
                    results[m][size] = {"skipped": why}
                    notes.append(f"(c) skipped at {size}^2: {why}")
                    continue
            todo.append(m)
            results[m][size] = {}
            if m == "ac":
                results[m][size]["peak_note"] = "not measured (compilation)"
            else:
                mem = run_worker(["mem", m, str(size)], MEM_ENV)
                if "error" in mem:
                    notes.append(f"({m}) peak at {size}^2 failed: {mem['error']}")
                results[m][size].update(mem)
        groups = [[m for m in todo if m != "c"], [m for m in todo if m == "c"]]
        for group in groups:
            if not group:
                continue
            reps = [repeats_for(m, size, args.repeats) for m in group]
            for m, r in zip(group, reps):
                if r != args.repeats:
                    notes.append(f"({m}) at {size}^2: {r} timed passes (one pass takes seconds)")
            tim = run_worker(["time", ",".join(group), str(size), ",".join(map(str, reps)), str(args.warmup)])
            for m in group:
                if "error" in tim:
                    results[m][size]["error"] = tim["error"]
                    notes.append(f"({m}) time at {size}^2 failed: {tim['error']}")
                else:
                    results[m][size].update(tim[m])
        line = ", ".join(
            f"{m} {fmt(results[m][size].get('median_s') and results[m][size]['median_s'] * 1e3, '.1f')} ms"
            for m in todo
        )
        print(f"  measured {size}^2: {line} ({time.perf_counter() - t_size:.0f} s)", flush=True)

    def get(m: str, size: int, key: str) -> float | None:
        return results.get(m, {}).get(size, {}).get(key)

    cols = [m for m in ("a", "a0", "ac", "b", "c") if m in methods]
    head = (
        f"{'size':>6} | "
        + " ".join(f"{'t_' + m + ' ms':>10}" for m in cols)
        + " | "
        + " ".join(f"{'mem_' + m + ' MB':>10}" for m in cols)
    )
    head += f" | {'b/a':>6} {'c/a':>7} | {'B/px a':>7}"
    print()
    print(head)
    print("-" * len(head))
    for size in sizes:
        t = {m: get(m, size, "median_s") for m in cols}
        mm = {m: get(m, size, "peak_bytes") for m in cols}
        ta = t.get("a")
        row = f"{str(size) + '^2':>6} | " + " ".join(f"{fmt(t[m] and t[m] * 1e3, '.1f'):>10}" for m in cols)
        row += " | " + " ".join(f"{fmt(mm[m] and mm[m] / 2**20, '.1f'):>10}" for m in cols)
        ba = t.get("b") / ta if ta and t.get("b") else None
        ca = t.get("c") / ta if ta and t.get("c") else None
        bpp = mm.get("a") / (BATCH * size * size) if mm.get("a") else None
        row += f" | {fmt(ba, '.2f'):>6} {fmt(ca, '.1f'):>7} | {fmt(bpp, '.0f'):>7}"
        print(row)
    for n in notes:
        print("note: " + n)

    # targets
    print()
    for size in (64, 128):
        ta, tb = get("a", size, "median_s"), get("b", size, "median_s")
        if ta and tb:
            ratio = tb / ta
            print(f"{'PASS' if ratio >= 2 else 'MISS'}: (a) >= 2x faster than (b) at {size}^2: measured {ratio:.2f}x")
        else:
            print(f"N/A : (a) vs (b) at {size}^2 not measured")
    bpp = [(s, get("a", s, "peak_bytes") / (BATCH * s * s)) for s in sizes if get("a", s, "peak_bytes")]
    big = [(s, v) for s, v in bpp if s >= 64]  # at 32^2 a few fixed MB weigh in
    if len(big) >= 2:
        spread = max(v for _, v in big) / min(v for _, v in big)
        print(
            f"{'PASS' if spread <= 1.25 else 'MISS'}: (a) memory linear in pixels: bytes/pixel "
            + ", ".join(f"{s}^2 {v:.0f}" for s, v in bpp)
            + f" (max/min from 64^2 on: {spread:.2f}; pass if <= 1.25)"
        )
    else:
        print("N/A : (a) memory linearity needs two sizes >= 64^2")
    ta, tc = get("a", 128, "median_s"), get("c", 128, "median_s")
    if ta and tc:
        ratio = tc / ta
        print(f"{'PASS' if ratio >= 20 else 'MISS'}: (a) >= 20x faster than (c) at 128^2: measured {ratio:.1f}x")
    elif 128 in sizes and "c" in methods:
        why = results["c"].get(128, {}).get("skipped") or results["c"].get(128, {}).get("error")
        print(f"N/A : (c) at 128^2 not measured ({why})")
    else:
        print("N/A : (a) vs (c) at 128^2 not in this run")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"sizes": sizes, "results": results, "notes": notes}, indent=1, default=str)
        )


if __name__ == "__main__":
    main()
