"""The fused CPU attention core: a small C kernel that samples and uses each key in one place.

The ``node`` core (:mod:`acla_nas.nn.attention_node`) composes PyTorch operators: it writes the
K bilinear samples of every earlier layer to memory (``grid_sampler_2d``), reads them back for the
logits and the weighted sum, and scatters their gradient with ``grid_sampler_2d_backward``. At the
sizes of CPU training (24^2 maps) that traffic and the scatter are most of a scope-all module's
cost. ``kernels/acla_cpu.c`` fuses the sampling with the arithmetic instead: three passes forward
and backward (logits; weighted sum; all gradients at once), nothing of size (B, C, H*K, W) stored,
and keys the gate dropped skipped. Same interface and function as the node core; equality and
gradcheck in tests/test_acla_native.py, speed side by side in ``benchmarks/network_step.py
--cores native,node``.

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``/``gcc``/
``clang``: no Python build tools, no torch headers; 1.5 s for both precisions here) into a per-user cache
(``ACLA_NAS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/acla_nas`` or ``~/.cache/acla_nas``), keyed by
the source and the compiler. Where no compiler works the ``node`` core is used; ``python -m
acla_nas.nn.attention_native`` says why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from acla_nas.nn.attention_weights import weights_backward, weights_with_graph

SOURCE = Path(__file__).with_name("kernels") / "acla_cpu.c"
CACHE_ENV = "ACLA_NAS_KERNEL_CACHE"
#: Tried in order until one compiles: OpenMP threads and this CPU's vector instructions first.
FLAG_SETS = (
    ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp"),
    ("-O3", "-fPIC", "-shared", "-fopenmp"),
    ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp-simd"),  # no OpenMP runtime: one thread
    ("-O3", "-fPIC", "-shared"),
)
_REAL = {torch.float32: "float", torch.float64: "double"}
_reason: str | None = None  # why the kernel is unavailable, once known


class _Job(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("mode", "n", "B", "H", "W", "K", "nthreads")] + [
        ("C", ctypes.POINTER(ctypes.c_int)),
        ("h", ctypes.POINTER(ctypes.c_int)),
        ("w", ctypes.POINTER(ctypes.c_int)),
        ("ldq", ctypes.POINTER(ctypes.c_int)),
        ("ldg", ctypes.POINTER(ctypes.c_int)),
        ("ldo", ctypes.POINTER(ctypes.c_int)),
        ("scale", ctypes.POINTER(ctypes.c_double)),
        *[(name, ctypes.POINTER(ctypes.c_void_p)) for name in ("q", "ref", "grid", "g", "out", "gref", "ggrid")],
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
            cmd = [cc, *flags, f"-DREAL={real}", "-o", tmp, str(SOURCE), "-lm"]
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


def _run(mode: int, dims: tuple, q=None, ref=None, grid=None, g=None, out=None, gref=None, ggrid=None, **arrays):
    """One pass of the kernel over the layers (see kernels/acla_cpu.c)."""
    n, b, h, w, k, chans, sizes, scales, dtype = dims
    none = [None] * n
    ints = ctypes.c_int * n
    job = _Job(
        mode,
        n,
        b,
        h,
        w,
        k,
        torch.get_num_threads(),
        ints(*chans),
        ints(*[s[0] for s in sizes]),
        ints(*[s[1] for s in sizes]),
        ints(*_lead(q, n)),
        ints(*_lead(g, n)),
        ints(*_lead(out, n)),
        (ctypes.c_double * n)(*scales),
        *[_ptrs(t if t is not None else none) for t in (q, ref, grid, g, out, gref, ggrid)],
        *[arrays[name].data_ptr() if name in arrays else None for name in ("logit", "attn", "glogit")],
    )
    if _library(_REAL[dtype]).acla_run(ctypes.byref(job)) != 0:
        raise MemoryError("the fused ACLA kernel could not allocate its scratch memory")


def _columns(buf: torch.Tensor, chans: list[int]) -> list[torch.Tensor]:
    """Per-layer (B,H,W,C_l) views of a (B,H,W,sum C) buffer."""
    return list(buf.split(chans, 3))


def _rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B,C,H,W) -> contiguous channels-last (B,H,W,C) in ``dtype``."""
    return t.detach().to(dtype).permute(0, 2, 3, 1).contiguous()


class NativeAttention(torch.autograd.Function):
    """Cross-layer attention of one query map over its reference layers, fused in C (CPU).

    ``apply(weights_fn, scales, n, *qs, *refs, *grids, *extra)``: the interface of
    :class:`acla_nas.nn.attention_node.AttentionNode` (grids (B, H*k, W, 2), rows ordered
    (query row, key)); returns (B, sum C_l, H, W).
    """

    @staticmethod
    def forward(ctx, weights_fn, scales, n, *tensors):
        if any(t is not None and t.device.type != "cpu" for t in tensors):
            raise ValueError("the native ACLA core runs on CPU tensors (set ACLA_NAS_CORE=plain or node elsewhere)")
        with torch.autocast(tensors[0].device.type, enabled=False):
            return NativeAttention._forward(ctx, weights_fn, scales, n, *tensors)

    @staticmethod
    def _forward(ctx, weights_fn, scales, n, *tensors):
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors[: 3 * n]])
        dtype = out_dtype if out_dtype in _REAL else torch.float32
        qs, refs, grids = (tensors[i * n : (i + 1) * n] for i in range(3))
        extra = tensors[3 * n :]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        chans = [q.shape[1] for q in qs]
        dims = (n, b, h, w, k, chans, [tuple(r.shape[-2:]) for r in refs], [float(s) for s in scales], dtype)
        q_rows = [_rows(q, dtype) for q in qs]
        ref_rows = [_rows(r, dtype) for r in refs]
        grid_rows = [g.detach().to(dtype).contiguous() for g in grids]
        logit = torch.empty(b, n, k, h, w, dtype=dtype)
        _run(0, dims, q=q_rows, ref=ref_rows, grid=grid_rows, logit=logit)
        train = any(ctx.needs_input_grad[3:])
        attn, leaves = weights_with_graph(train, weights_fn, logit, extra)
        attn_c = attn.detach().to(dtype).contiguous()
        out_rows = torch.zeros(b, h, w, sum(chans), dtype=dtype)  # all layers in one channels-last buffer
        _run(1, dims, ref=ref_rows, grid=grid_rows, out=_columns(out_rows, chans), attn=attn_c)
        out = out_rows.permute(0, 3, 1, 2)  # (B, sum C, H, W) in channels-last memory: no copy
        if train:
            ctx.dims, ctx.rows = dims, (q_rows, ref_rows, grid_rows)
            ctx.logit, ctx.attn, ctx.attn_c, ctx.leaves = logit, attn, attn_c, leaves
            ctx.dtypes = [t.dtype for t in tensors[: 3 * n]]
        return out.to(out_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        dims = ctx.dims
        n, b, h, w, k, chans, sizes, scales, dtype = dims
        q_rows, ref_rows, grid_rows = ctx.rows
        g_all = grad_out.to(dtype).permute(0, 2, 3, 1)
        g_rows = _columns(g_all if g_all.is_contiguous() else g_all.contiguous(), chans)
        grad_attn = torch.empty(b, n, k, h, w, dtype=dtype)
        _run(0, dims[:7] + ([1.0] * n, dtype), q=g_rows, ref=ref_rows, grid=grid_rows, logit=grad_attn)
        attn = ctx.attn
        grad_logit, grad_extra = weights_backward(attn, ctx.logit, ctx.leaves, grad_attn)
        scale = torch.tensor(scales, dtype=dtype).view(1, n, 1, 1, 1)
        glogit = (grad_logit.to(dtype) * scale).contiguous()
        gq = _columns(torch.zeros(b, h, w, sum(chans), dtype=dtype), chans)
        gref = [torch.zeros_like(r) for r in ref_rows]
        ggrid = [torch.zeros_like(g) for g in grid_rows]
        _run(
            2, dims, q=q_rows, ref=ref_rows, grid=grid_rows, g=g_rows, out=gq, gref=gref, ggrid=ggrid,
            attn=ctx.attn_c, glogit=glogit,
        )  # fmt: skip
        need = ctx.needs_input_grad[3:]
        dt = ctx.dtypes

        def give(i: int, t: torch.Tensor, channels_last: bool) -> torch.Tensor | None:
            if not need[i]:
                return None
            return (t.permute(0, 3, 1, 2) if channels_last else t).to(dt[i])

        grad_q = [give(i, gq[i], True) for i in range(n)]
        grad_ref = [give(n + i, gref[i], True) for i in range(n)]
        grad_grid = [give(2 * n + i, ggrid[i], False) for i in range(n)]
        return (None, None, None, *grad_q, *grad_ref, *grad_grid, *grad_extra)


if __name__ == "__main__":  # python -m acla_nas.nn.attention_native: can the kernel be used here?
    ok = available()
    print(f"fused CPU ACLA kernel: {'available' if ok else 'unavailable: ' + str(unavailable_reason())}")
    print(f"cache: {_cache_dir()}")
