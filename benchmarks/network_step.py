"""The cost of attention in a network: training-step time and peak memory, plain vs ACLA.

One Adam training step (forward, L1 loss + the modules' key penalty, backward, optimiser step) of

  edsr/plain           EDSR 32 features x 8 blocks, x2 (the demo space's backbone)
  edsr/k8@3-s1         one module, K=8, at body.3, scope 1 (attends to body.2)
  edsr/k8@7-all        one module, K=8, at body.7, scope all (8 earlier layers)
  edsr/4xk8-all        four modules, K=8, at body.1/3/5/7, scope all
  edsr/demo-child      the child discovered by the demo (results/edsr_x2_demo_evolution/best_arch.yaml)
  edsr/supernet        the demo space's supernet, one child drawn uniformly (``SearchSpace.sample``) per step
  rcan/plain, rcan/paper   RCAN (32 features, 4 groups x 4 blocks: CPU-sized) and the authors'
                       placement (``SearchSpace.reference_archs()['paper']``: K=8 after each quarter)
  unet/plain, unet/paper   the U-Net denoiser of search_spaces/unet_denoise_sigma25.yaml and its placement

Batch 8 of 24^2 LR patches (48^2 HR; the denoiser gets 48^2 inputs). All variants live in one
process and are timed interleaved, step by step (warm-up steps first), so a load change on a
shared machine hits them alike; the median of ``--repeats`` steps and its ratio to the plain step
of the same backbone are printed. Peak memory: on CUDA ``max_memory_allocated`` over one step minus
what was allocated before it; on CPU the resident-set high-water mark of one step in a fresh
process per variant (glibc mapping every large allocation, as in benchmarks/acla_module.py).

    python benchmarks/network_step.py                      # CPU, 2 threads, all variants
    python benchmarks/network_step.py --only edsr --no-memory
    python benchmarks/network_step.py --device cuda --batch 16 --patch 48
    python benchmarks/network_step.py --only edsr --cores node,plain   # two attention cores side by side

``--cores``: every ACLA variant runs under each named core (``acla_nas.nn.attention_core``), each
core with its own copy of the networks built from the same seed, all interleaved in one process.
``none`` is a measuring core: zeros instead of the attention arithmetic, everything else of the
modules (predictors, projections, gate, softmax) still run; its ratio is the floor of any core.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from acla_module import status_kib  # noqa: E402  (benchmarks/acla_module.py, beside this script)

import acla_nas.nn.acla as acla_module  # noqa: E402
from acla_nas.nn.arch import Arch, ModuleChoice, load_arch_file  # noqa: E402
from acla_nas.nn.attention_core import select_core, use_core  # noqa: E402
from acla_nas.nn.network import ACLANetwork, build  # noqa: E402
from acla_nas.space import SearchSpace  # noqa: E402

MEM_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
DEMO_SPACE = ROOT / "search_spaces" / "edsr_x2_demo.yaml"
DEMO_CHILD = ROOT / "results" / "edsr_x2_demo_evolution" / "best_arch.yaml"
UNET_SPACE = ROOT / "search_spaces" / "unet_denoise_sigma25.yaml"
RCAN_KWARGS = {"n_feats": 32, "n_resgroups": 4, "n_resblocks": 4, "reduction": 16}


@dataclass
class Variant:
    """A network, what it is compared with, and how one training step draws its child."""

    name: str
    family: str
    net: ACLANetwork
    before_step: Callable[[], None] | None = None


def _edsr(modules: dict[str, tuple[int, object]]) -> Arch:
    base = SearchSpace.from_yaml(DEMO_SPACE).template()
    return base.with_modules({s: ModuleChoice(k, sc) for s, (k, sc) in modules.items()})


def _supernet(seed: int) -> tuple[ACLANetwork, Callable[[], None]]:
    space = SearchSpace.from_yaml(DEMO_SPACE)
    net = space.supernet()
    rng = random.Random(seed)
    draws = [space.sample(rng).modules for _ in range(64)]  # drawn up front: the step is timed, not the draw
    it = iter(range(10**9))

    def pick() -> None:
        net.use(draws[next(it) % len(draws)])

    return net, pick


def variants(only: set[str] | None, seed: int) -> list[Variant]:
    """The networks of the benchmark (see the module docstring), built with ``seed``."""
    out: list[Variant] = []

    def add(name: str, family: str, make: Callable[[], ACLANetwork | tuple]) -> None:
        if only and family not in only and name not in only:
            return
        torch.manual_seed(seed)
        made = make()
        net, hook = made if isinstance(made, tuple) else (made, None)
        out.append(Variant(name, family, net, hook))

    add("edsr/plain", "edsr", lambda: build(_edsr({})))
    add("edsr/k8@3-s1", "edsr", lambda: build(_edsr({"body.3": (8, 1)})))
    add("edsr/k8@7-all", "edsr", lambda: build(_edsr({"body.7": (8, "all")})))
    add("edsr/4xk8-all", "edsr", lambda: build(_edsr({f"body.{i}": (8, "all") for i in (1, 3, 5, 7)})))
    add("edsr/demo-child", "edsr", lambda: build(load_arch_file(DEMO_CHILD)[0]))
    add("edsr/supernet", "edsr", lambda: _supernet(seed))
    rcan_doc = yaml.safe_load((ROOT / "search_spaces" / "rcan_x2.yaml").read_text())
    rcan_doc["backbone"]["kwargs"] = dict(RCAN_KWARGS)
    rcan = SearchSpace.from_dict(rcan_doc).reference_archs()
    for key in ("plain", "paper"):
        add(f"rcan/{key}", "rcan", lambda a=rcan[key]: build(a))
    unet = SearchSpace.from_yaml(UNET_SPACE).reference_archs()
    for key in ("plain", "paper"):
        add(f"unet/{key}", "unet", lambda a=unet[key]: build(a))
    return out


def batch_for(v: Variant, batch: int, patch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (input, target) batch: LR patches and their x``scale`` targets."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, patch, patch, generator=g)
    s = v.net.scale
    y = torch.rand(batch, 3, patch * s, patch * s, generator=g)
    if s == 1:  # the denoiser: same-size input, double the LR patch so the pixels match the SR target
        x = torch.rand(batch, 3, 2 * patch, 2 * patch, generator=g)
        y = torch.rand(batch, 3, 2 * patch, 2 * patch, generator=g)
    return x.to(device), y.to(device)


class NoAttention(torch.autograd.Function):
    """``--cores none``: a core with the native core's interface that returns zeros and zero
    gradients, while the weights function (gate and softmax) still runs; with it a network step
    costs everything of its modules (predictors, projections, gate, softmax) but the attention
    arithmetic: the floor that the native core's ratio is bounded by."""

    @staticmethod
    def forward(ctx, weights_fn, spec, *tensors):
        _, n, _, k = spec
        q, refs, extra = tensors[0], tensors[1 : n + 1], tensors[n + 2 :]
        b, h, w, _ = q.shape
        ctx.shapes = [t.shape for t in tensors[: n + 2]]
        ctx.n_extra = len(extra)
        weights_fn(q.new_zeros(b, n, k, h, w), *extra)
        return q.new_zeros(b, h, w, sum(r.shape[1] for r in refs))

    @staticmethod
    def backward(ctx, grad):
        return (None, None, *[grad.new_zeros(s) for s in ctx.shapes], *[None] * ctx.n_extra)


@contextlib.contextmanager
def _patched(obj: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


class Stepper:
    """One training step of a variant: Adam over all parameters, L1 loss plus the key penalty."""

    def __init__(self, v: Variant, batch: int, patch: int, device: torch.device, core: str = "auto") -> None:
        self.v, self.core = v, core
        self.name = v.name if core == "auto" else f"{v.name} [{core}]"
        self.net = v.net.to(device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        self.x, self.y = batch_for(v, batch, patch, device)

    def __call__(self) -> None:
        if self.core == "none":  # the module without its attention arithmetic (see NoAttention)
            with use_core("native"), _patched(acla_module, "core_function", lambda name: NoAttention):
                self._step()
            return
        with use_core(self.core):
            self._step()

    def _step(self) -> None:
        if self.v.before_step is not None:
            self.v.before_step()
        self.opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(self.net(self.x), self.y)
        aux = self.net.auxiliary_loss()
        if aux is not None:
            loss = loss + aux
        loss.backward()
        self.opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steppers: list[Stepper], warmup: int, repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per step of each variant, the variants interleaved step by step."""
    times: dict[str, list[float]] = {s.name: [] for s in steppers}
    for r in range(warmup + repeats):
        for s in steppers:
            _sync(device)
            t0 = time.perf_counter()
            s()
            _sync(device)
            if r >= warmup:
                times[s.name].append(time.perf_counter() - t0)
    return times


def cuda_peak(s: Stepper, device: torch.device) -> int:
    """Bytes one step adds on the GPU over what was allocated before it."""
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    s()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def cpu_peak_worker(name: str, batch: int, patch: int, seed: int, core: str) -> dict:
    """Peak extra resident memory of one training step of ``name`` after two warm-up steps."""
    (v,) = [v for v in variants({name}, seed) if v.name == name]
    s = Stepper(v, batch, patch, torch.device("cpu"), core)
    s()
    s()  # Adam's state exists from here on
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = status_kib("VmRSS")
    except OSError:
        return {"peak_bytes": None}
    s()
    return {"peak_bytes": (status_kib("VmHWM") - base) * 1024}


def cpu_peak(s: Stepper, args: argparse.Namespace) -> int | None:
    name = s.v.name
    cmd = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch), "--patch", str(args.patch)]
    cmd += ["--threads", str(args.threads), "--seed", str(args.seed), "--cores", s.core]
    env = {**os.environ, **MEM_ENV}
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"]
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"  ({name}: peak memory not measured: {exc})", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2: the issue's recipe)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=24, help="LR patch side (default 24)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per variant (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated families (edsr,rcan,unet) or variant names")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument(
        "--cores",
        default="auto",
        help="comma-separated attention cores to compare side by side (auto, sparse, node, ...)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(cpu_peak_worker(args.worker, args.batch, args.patch, args.seed, args.cores)))
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        sys.exit(1)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    # every variant under every core (each core its own copy of the networks, built with the same
    # seed); the plain networks have no attention, so they run once
    per_core = [variants(only, args.seed) for _ in cores]
    steppers = [
        Stepper(vs[i], args.batch, args.patch, device, core)
        for i in range(len(per_core[0]))
        for vs, core in zip(per_core, cores)
        if core == cores[0] or not vs[i].name.endswith("/plain")
    ]
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} threads'}), "
        f"attention core {', '.join(select_core(device) if c == 'auto' else c for c in cores)}, torch {torch.__version__}; "
        f"batch {args.batch} of {args.patch}^2 LR patches, Adam; median of {args.repeats} after {args.warmup} warm-up, "
        "interleaved"
    )
    times = time_interleaved(steppers, args.warmup, args.repeats, device)
    peaks: dict[str, int | None] = {}
    if not args.no_memory:
        for s in steppers:
            peaks[s.name] = cuda_peak(s, device) if device.type == "cuda" else cpu_peak(s, args)
    plain = {s.v.family: statistics.median(times[s.name]) for s in steppers if s.v.name.endswith("/plain")}
    plain_min = {s.v.family: min(times[s.name]) for s in steppers if s.v.name.endswith("/plain")}
    rows = []
    # on a shared machine the medians move with other tenants' load; the ratio of the fastest
    # steps (min vs min) is the steadier figure, so both are printed
    print(f"{'network':27s} {'params':>9s} {'ms/step':>9s} {'min':>8s} {'vs plain':>9s} {'(min)':>6s} {'peak MB':>9s}")
    for s in steppers:
        med = statistics.median(times[s.name])
        ratio = med / plain[s.v.family] if s.v.family in plain else float("nan")
        ratio_min = min(times[s.name]) / plain_min[s.v.family] if s.v.family in plain_min else float("nan")
        peak = peaks.get(s.name)
        params = sum(p.numel() for p in s.net.parameters())
        rows.append(
            {"network": s.v.name, "core": s.core, "params": params, "ms": med * 1e3}
            | {"min_ms": min(times[s.name]) * 1e3, "ratio": ratio, "ratio_min": ratio_min, "peak_bytes": peak}
        )
        print(
            f"{s.name:27s} {params:9,d} {med * 1e3:9.1f} {min(times[s.name]) * 1e3:8.1f} {ratio:9.2f} {ratio_min:6.2f} "
            f"{'-' if peak is None else f'{peak / 2**20:9.1f}':>9s}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
