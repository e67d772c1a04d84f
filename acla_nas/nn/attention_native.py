"""The fused CPU attention core: a small C kernel that samples and uses each key in one place.

The ``node`` core (:mod:`acla_nas.nn.attention_node`) composes PyTorch operators: it writes the
K bilinear samples of every earlier layer to memory (``grid_sampler_2d``), reads them back for the
logits and the weighted sum, and scatters their gradient with ``grid_sampler_2d_backward``. At the
sizes of CPU training (24^2 maps) that traffic and the scatter are most of a scope-all module's
cost. ``kernels/acla_cpu.c`` fuses the sampling with the arithmetic instead: three passes forward
and backward (logits; weighted sum; all gradients at once), nothing of size (B, C, H*K, W) stored,
and keys the gate dropped skipped. It reads the offset predictor's output as it is (no sampling
grids are built: the key positions and their gradient are computed in the kernel) and works on
channels-last rows, queries in and attended values out, so that the module's 1x1 projections are
matrix products over the same rows (no layout copies of the sum C_l channels); an earlier layer's
channels-last copy is made once per network pass (``shared_rows``). The node core's function;
equality and gradcheck in tests/test_acla_native.py, speed side by side in
``benchmarks/network_step.py --cores native,node``.

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``/``gcc``/
``clang``: no Python build tools, no torch headers; 1.5 s for both precisions here) into a per-user cache
(``ACLA_NAS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/acla_nas`` or ``~/.cache/acla_nas``), keyed by
the source and the compiler. Where no compiler works the ``node`` core is used; ``python -m
acla_nas.nn.attention_native`` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from acla_nas.nn.attention_weights import weights_backward, weights_with_graph

SOURCE = Path(__file__).with_name("kernels") / "acla_cpu.c"
CACHE_ENV = "ACLA_NAS_KERNEL_CACHE"
#: Tried in order until one compiles: OpenMP threads and this CPU's vector instructions first
#: (-fno-trapping-math: no floating-point traps are used, and it lets floor() be vectorised); the
#: third has no OpenMP runtime (one thread).
FLAG_SETS = (
    ("-O3", "-march=native", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp"),
    ("-O3", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp"),
    ("-O3", "-march=native", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp-simd"),
    ("-O3", "-fPIC", "-shared"),
)
_REAL = {torch.float32: "float", torch.float64: "double"}
_SIZE = {"float": 4, "double": 8}
_reason: str | None = None  # why the kernel is unavailable, once known


class _Job(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("mode", "n", "B", "H", "W", "K", "nthreads")] + [
        *[(name, ctypes.POINTER(ctypes.c_int)) for name in ("C", "h", "w", "ldq", "ldg", "ldo", "offc")],
        ("scale", ctypes.POINTER(ctypes.c_double)),
        *[(name, ctypes.POINTER(ctypes.c_void_p)) for name in ("q", "ref", "g", "out", "gref")],
        ("off", ctypes.c_void_p),
        ("off_sb", ctypes.c_longlong),
        ("goff", ctypes.c_void_p),
        ("goff_sb", ctypes.c_longlong),
        ("logit", ctypes.c_void_p),
        ("attn", ctypes.c_void_p),
        ("glogit", ctypes.c_void_p),
    ]


def _cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "acla_nas"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _machine() -> bytes:
    """What ``-march=native`` depends on, so that a cache shared between machines stays right."""
    flags = b""
    try:
        with open("/proc/cpuinfo", "rb") as fh:
            flags = next((line for line in fh if line.startswith((b"flags", b"Features"))), b"")
    except OSError:
        pass
    return platform.machine().encode() + flags


def _build(real: str) -> Path:
    """The compiled library for ``real`` (float or double), built once per source, compiler and
    machine: with the first of ``FLAG_SETS`` that compiles."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install gcc or clang)")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([src, cc.encode(), repr(FLAG_SETS).encode(), real.encode(), _machine()]))
    folder = _cache_dir()
    lib = folder / f"acla_cpu_{real}_{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    errors = []
    try:
        for flags in FLAG_SETS:
            cmd = [cc, *flags, f"-DREAL={real}", f"-DREAL_SIZE={_SIZE[real]}", "-o", tmp, str(SOURCE), "-lm"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if res.returncode == 0:
                os.replace(tmp, lib)  # atomic: concurrent first uses each build and one wins
                return lib
            errors.append((res.stderr or res.stdout).strip().splitlines()[-1:] or ["failed"])
        raise OSError(f"{cc} could not compile {SOURCE.name}: {errors[-1][0][:300]}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def _library(real: str) -> ctypes.CDLL:
    path = _build(real)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:  # a damaged file in the cache (a full disk, a copied home folder): build it again
        path.unlink(missing_ok=True)
        lib = ctypes.CDLL(str(_build(real)))
    lib.acla_run.argtypes = [ctypes.POINTER(_Job)]
    lib.acla_run.restype = ctypes.c_int
    return lib


@functools.cache
def available() -> bool:
    """The kernel compiles and loads here (both precisions); False, with the reason kept for
    :func:`unavailable_reason`, where it does not."""
    global _reason
    try:
        for real in _REAL.values():
            _library(real)
        return True
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        _reason = str(exc)
        return False


def unavailable_reason() -> str | None:
    """Why the kernel cannot be used here (None where it can, or before :func:`available`)."""
    return _reason


def _ptrs(ts: list[torch.Tensor | None]):
    return (ctypes.c_void_p * len(ts))(*[None if t is None else t.data_ptr() for t in ts])


def _lead(ts: list[torch.Tensor] | None, n: int) -> list[int]:
    """Elements between consecutive query rows of (B,H,W,C) maps whose channels are contiguous
    (views of one (B,H,W,sum C) buffer are), 0 where absent."""
    if ts is None:
        return [0] * n
    out = []
    for t in ts:
        b, h, w, c = t.shape
        sb, sh, sw, sc = t.stride()
        # the strides of size-1 dimensions are arbitrary: read the spacing off another one
        ld = sw if w > 1 else sh // w if h > 1 else sb // (h * w) if b > 1 else c
        want = (h * w * ld, w * ld, ld, 1)
        if any(size > 1 and st != wt for size, st, wt in zip(t.shape, t.stride(), want)):
            raise ValueError(f"rows of {tuple(t.shape)} with strides {t.stride()} are not evenly spaced")
        out.append(ld)
    return out


class Dims(NamedTuple):
    """What one pass needs besides the tensors: n layers, the query map's (B, H, W), k keys per
    layer, each layer's channels, map size (h, w), logit scale and first offset channel, and the
    precision of the arithmetic."""

    n: int
    b: int
    h: int
    w: int
    k: int
    chans: list[int]
    sizes: list[tuple[int, int]]
    scales: list[float]
    offc: list[int]
    dtype: torch.dtype


def _run(
    mode: int, d: Dims, off: torch.Tensor, q=None, ref=None, g=None, out=None, gref=None, goff=None, **arrays
) -> None:
    """One pass of the kernel over the layers (see kernels/acla_cpu.c)."""
    n = d.n
    none = [None] * n
    ints = ctypes.c_int * n
    job = _Job(
        mode,
        n,
        d.b,
        d.h,
        d.w,
        d.k,
        torch.get_num_threads(),
        ints(*d.chans),
        ints(*[s[0] for s in d.sizes]),
        ints(*[s[1] for s in d.sizes]),
        ints(*_lead(q, n)),
        ints(*_lead(g, n)),
        ints(*_lead(out, n)),
        ints(*d.offc),
        (ctypes.c_double * n)(*d.scales),
        *[_ptrs(t if t is not None else none) for t in (q, ref, g, out, gref)],
        off.data_ptr(),
        off.stride(0),
        None if goff is None else goff.data_ptr(),
        0 if goff is None else goff.stride(0),
        *[arrays[name].data_ptr() if name in arrays else None for name in ("logit", "attn", "glogit")],
    )
    if _library(_REAL[d.dtype]).acla_run(ctypes.byref(job)) != 0:
        raise MemoryError("the fused ACLA kernel could not allocate its scratch memory")


def _columns(buf: torch.Tensor, chans: list[int]) -> list[torch.Tensor]:
    """Per-layer (B,H,W,C_l) views of a (B,H,W,sum C) buffer."""
    return list(buf.split(chans, 3))


def _rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B,C,H,W) -> contiguous channels-last (B,H,W,C) in ``dtype``."""
    return t.detach().to(dtype).permute(0, 2, 3, 1).contiguous()


_local = threading.local()  # .rows: the copies shared inside ``shared_rows`` (per thread)


@contextlib.contextmanager
def shared_rows() -> Iterator[None]:
    """Inside the block (one forward pass of a network), the channels-last copy of an earlier
    layer is made once and shared by every module that attends to it: 4 scope-all modules of an
    EDSR read 8 maps 20 times. Outside it each module makes its own (a tensor changed through
    ``.data`` between two modules keeps its version number, so nothing is shared by default)."""
    outer = getattr(_local, "rows", None)
    if outer is None:
        _local.rows = {}
    try:
        yield
    finally:
        if outer is None:
            _local.rows = None


def _ref_rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``_rows(t, dtype)``, inside ``shared_rows`` made once per tensor and in-place version."""
    cache = getattr(_local, "rows", None)
    if cache is None:
        return _rows(t, dtype)
    hit = cache.get(id(t))
    if hit is not None and hit[0] is t and hit[1] == t._version and hit[2] == dtype:
        return hit[3]
    rows = _rows(t, dtype)
    cache[id(t)] = (t, t._version, dtype, rows)  # t kept: its id stays its own until the block ends
    return rows


def _offsets(off: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The predictor's output as the kernel reads it: ``dtype``, each channel a contiguous map
    (a channel slice of a contiguous (B, C, H, W) tensor already is; anything else is copied)."""
    off = off.detach().to(dtype)
    _, _, h, w = off.shape
    if (off.stride(1), off.stride(2), off.stride(3)) != (h * w, w, 1):
        off = off.contiguous()
    return off


class NativeAttention(torch.autograd.Function):
    """Cross-layer attention of one query map over its reference layers, fused in C (CPU).

    ``apply(weights_fn, spec, q, *refs, off, *extra)`` with ``spec = (scales, n, offc, k)``: the
    queries of the ``n`` layers as channels-last rows ``q`` (B, H, W, sum C_l), the earlier
    layers (B, C_l, h_l, w_l), the offset predictor's output ``off`` (B, *, H, W) whose channels
    ``offc[l] + 2 j`` and ``+ 1`` hold the (x, y) offset in query pixels of key j < k of layer l,
    and the weights function's extra tensors (gate, mix weights); returns the attended values as
    rows (B, H, W, sum C_l). The node and Triton cores take (B, C, H, W) maps and sampling grids
    instead: here the key positions are computed in the kernel, and so is their gradient.
    """

    @staticmethod
    def forward(ctx, weights_fn, spec, *tensors):
        if any(t is not None and t.device.type != "cpu" for t in tensors):
            raise ValueError("the native ACLA core runs on CPU tensors (set ACLA_NAS_CORE=plain or node elsewhere)")
        with torch.autocast(tensors[0].device.type, enabled=False):
            return NativeAttention._forward(ctx, weights_fn, spec, *tensors)

    @staticmethod
    def _forward(ctx, weights_fn, spec, *tensors):
        scales, n, offc, k = spec
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors[: n + 2]])
        dtype = out_dtype if out_dtype in _REAL else torch.float32
        q, refs, off, extra = tensors[0], tensors[1 : n + 1], tensors[n + 1], tensors[n + 2 :]
        b, h, w, _ = q.shape
        chans = [r.shape[1] for r in refs]
        sizes = [tuple(r.shape[-2:]) for r in refs]
        d = Dims(n, b, h, w, k, chans, sizes, [float(s) for s in scales], [int(c) for c in offc], dtype)
        q_all = q.detach().to(dtype).contiguous()
        q_rows = _columns(q_all, chans)
        ref_rows = [_ref_rows(r, dtype) for r in refs]
        off_c = _offsets(off, dtype)
        logit = torch.empty(b, n, k, h, w, dtype=dtype)
        _run(0, d, off_c, q=q_rows, ref=ref_rows, logit=logit)
        train = any(ctx.needs_input_grad[2:])
        attn, leaves = weights_with_graph(train, weights_fn, logit, extra)
        attn_c = attn.detach().to(dtype).contiguous()
        out = torch.empty(b, h, w, sum(chans), dtype=dtype)  # all layers in one channels-last buffer
        _run(1, d, off_c, ref=ref_rows, out=_columns(out, chans), attn=attn_c)
        if train:
            ctx.dims, ctx.rows, ctx.off = d, (q_rows, ref_rows), off_c
            ctx.logit, ctx.attn, ctx.attn_c, ctx.leaves = logit, attn, attn_c, leaves
            ctx.dtypes = [t.dtype for t in tensors[: n + 2]]
        return out.to(out_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        d = ctx.dims
        n, b, h, w, k, chans, dtype = d.n, d.b, d.h, d.w, d.k, d.chans, d.dtype
        q_rows, ref_rows = ctx.rows
        g_rows = _columns(grad_out.to(dtype).contiguous(), chans)
        grad_attn = torch.empty(b, n, k, h, w, dtype=dtype)
        _run(0, d._replace(scales=[1.0] * n), ctx.off, q=g_rows, ref=ref_rows, logit=grad_attn)
        grad_logit, grad_extra = weights_backward(ctx.attn, ctx.logit, ctx.leaves, grad_attn)
        scale = torch.tensor(d.scales, dtype=dtype).view(1, n, 1, 1, 1)
        glogit = (grad_logit.to(dtype) * scale).contiguous()
        gq = torch.empty(b, h, w, sum(chans), dtype=dtype)
        gref = [torch.empty_like(r) for r in ref_rows]
        # the kernel writes the offsets of the k keys of the n layers; other channels get zeros
        goff = (torch.empty if 2 * k * n == ctx.off.shape[1] else torch.zeros)(ctx.off.shape, dtype=dtype)
        _run(
            2, d, ctx.off, q=q_rows, ref=ref_rows, g=g_rows, out=_columns(gq, chans), gref=gref, goff=goff,
            attn=ctx.attn_c, glogit=glogit,
        )  # fmt: skip
        need, dt = ctx.needs_input_grad[2:], ctx.dtypes
        grad_q = gq.to(dt[0]) if need[0] else None
        grad_ref = [gref[i].permute(0, 3, 1, 2).to(dt[1 + i]) if need[1 + i] else None for i in range(n)]
        grad_off = goff.to(dt[n + 1]) if need[n + 1] else None
        return (None, None, grad_q, *grad_ref, grad_off, *grad_extra)


if __name__ == "__main__":  # python -m acla_nas.nn.attention_native: can the kernel be used here?
    ok = available()
    print(f"fused CPU ACLA kernel: {'available' if ok else 'unavailable: ' + str(unavailable_reason())}")
    print(f"cache: {_cache_dir()}")
