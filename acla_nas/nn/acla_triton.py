"""Fused Triton attention core of the ACLA module: no buffer the size of the samples.

The plain formulation (``ACLA.forward``) keeps the samples (B, C_l, k, H, W) of every reference
layer, their products with the query and the weights, and as many gradient buffers; the CPU core
(``attention_node.AttentionNode``) keeps the samples once. This core keeps none of them: every pass
recomputes the four bilinear taps of the samples it needs straight from the reference maps, so
what it stores is the logits and attention weights (B, L, k, H, W): k numbers per layer and
query pixel, C_l times less than the samples. Memory stays linear in pixels and small.

One kernel, three modes, launched per reference layer; a program owns a block of query pixels and
a block of channels and loops over the k keys, recomputing each key's sample ``s_j``:

=====  =========================================================================================
DOT    ``out[j] = scale * <v, s_j>`` (forward: v = query -> logits; backward: v = output gradient
       -> gradient of the attention weights), summed over channel blocks
AGG    ``out = sum_j attn[j] s_j`` (forward: the attention-weighted sum of the samples)
BWD    ``ds_j = attn[j] g + dlogit[j] q`` (dlogit already scaled): the query's gradient
       ``sum_j dlogit[j] s_j``, the reference map's gradient (``ds_j`` scattered to the 4 taps
       with atomics, as ``grid_sample``'s CUDA backward does) and the grid's gradient
       (``sum_c ds_j . ds_j/dgrid``)
=====  =========================================================================================

Between DOT and AGG the attention weights (masked softmax, key gate, budget mix) come from the
module's own ``weights_fn`` on the small logits tensor, run on detached inputs and differentiated
with ``torch.autograd.grad`` in the backward pass exactly like the CPU core: the kernel knows
nothing of gates or budgets, the module keeps one definition of them. Fusing the softmax into the
kernel would save only the round trip of the logits (k values per query and layer, against the
4 x C_l x k taps every pass reads) at the cost of a second, gate- and mix-aware definition of it.

Sampling is ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``, the
module's convention. All arithmetic accumulates in float32 (float64 for float64 inputs); the
outputs take the promoted dtype of the query, reference and grid, as the plain formulation's do.

On CUDA tensors the kernel is compiled by Triton. With ``TRITON_INTERPRET=1`` set before triton is
imported it runs in Triton's interpreter instead, on CPU tensors too: that is how the tests check
its arithmetic without a GPU (tests/conftest.py sets it where no CUDA device is present).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from acla_nas.nn.attention_weights import weights_backward, weights_with_graph

try:
    import triton
    import triton.language as tl
except ImportError:  # the optional extra is not installed
    triton = None
    tl = None

DOT, AGG, BWD = 0, 1, 2  # kernel modes
if tl is not None:  # the kernel may only read globals that are constexpr
    _DOT, _AGG, _BWD = tl.constexpr(DOT), tl.constexpr(AGG), tl.constexpr(BWD)
# (query pixels, channels, warps) per program and mode. Chosen from the register counts of the
# compiled kernels (sm_80 / sm_90 cubins, ``compile_report``) so that none spills and BWD, which
# holds about ten tiles, still fits several programs per SM; not timed on a GPU yet. Tests
# shrink the channel block to run the multi-channel-block (atomic) path.
BLOCKS: dict[int, tuple[int, int, int]] = {DOT: (32, 32, 4), AGG: (32, 32, 4), BWD: (16, 16, 4)}


def available() -> bool:
    """Triton can be imported (the ``gpu`` extra)."""
    return triton is not None


def _acla_kernel(
    ref_ptr,
    grid_ptr,
    v_ptr,
    g_ptr,
    a_ptr,
    d_ptr,
    out_ptr,
    gref_ptr,
    ggrid_ptr,
    H,
    W,
    C,
    K,
    h_in,
    w_in,
    scale,
    s_vb,
    s_gb,
    s_ab,
    s_ob,
    MODE: tl.constexpr,
    NEED_Q: tl.constexpr,
    NEED_REF: tl.constexpr,
    NEED_GRID: tl.constexpr,
    SINGLE_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
    ACC: tl.constexpr,
):
    """Program (pixel block, batch item, channel block). Layouts: ref (B,C,h_in,w_in) contiguous;
    grid rows (B,H*K,W,2) contiguous, row = (query row, key); v, g and out in AGG/BWD: channel
    slices (B,C,H,W) with batch strides s_vb, s_gb, s_ob and (C,H,W) strides (H*W, W, 1); a, d,
    and out in DOT: (B,K,H,W) slices with (K,H,W) strides (H*W, W, 1), batch strides s_ab, s_ob;
    gref like ref, ggrid like grid (zeroed, ACC dtype). Offsets inside one batch item are int32
    (the caller checks that they fit), the batch item's base is a 64-bit scalar."""
    rem = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # query pixels y * W + x
    b = tl.program_id(1).to(tl.int64)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = H * W
    hw_in = h_in * w_in
    pm = rem < hw
    m2 = pm[:, None] & (c < C)[None, :]
    y = rem // W
    x = rem % W
    ref_b = ref_ptr + b * C * hw_in
    c_in = (c * hw_in)[None, :]  # (1, BC) channel offsets in the reference map
    pix = (c * hw)[None, :] + rem[:, None]  # (P, BC) offsets of (c, y, x) in a query-sized map
    grid_b = grid_ptr + b * H * K * W * 2
    row = y * (K * W * 2) + x * 2  # (P,) key 0's (x, y) in the grid rows
    if MODE != _AGG:
        v = tl.load(v_ptr + b * s_vb + pix, mask=m2, other=0.0).to(ACC)
    if MODE == _BWD:
        g = tl.load(g_ptr + b * s_gb + pix, mask=m2, other=0.0).to(ACC)
    acc = tl.zeros([BLOCK_P, BLOCK_C], ACC)
    for j in range(K):
        gofs = row + j * W * 2
        gx = tl.load(grid_b + gofs, mask=pm, other=0.0).to(ACC)
        gy = tl.load(grid_b + gofs + 1, mask=pm, other=0.0).to(ACC)
        # unnormalise (align_corners=False); clamping far-away coordinates changes nothing
        # (all four taps stay outside) but keeps the integer conversion in range
        ix = tl.minimum(tl.maximum(((gx + 1) * w_in - 1) * 0.5, -2.0), w_in + 1.0)
        iy = tl.minimum(tl.maximum(((gy + 1) * h_in - 1) * 0.5, -2.0), h_in + 1.0)
        x0f = tl.floor(ix)
        y0f = tl.floor(iy)
        fx = ix - x0f
        fy = iy - y0f
        x0 = x0f.to(tl.int32)
        y0 = y0f.to(tl.int32)
        okx0 = (x0 >= 0) & (x0 < w_in)
        okx1 = (x0 >= -1) & (x0 + 1 < w_in)
        oky0 = (y0 >= 0) & (y0 < h_in)
        oky1 = (y0 >= -1) & (y0 + 1 < h_in)
        m00 = m2 & (oky0 & okx0)[:, None]
        m01 = m2 & (oky0 & okx1)[:, None]
        m10 = m2 & (oky1 & okx0)[:, None]
        m11 = m2 & (oky1 & okx1)[:, None]
        tap = c_in + (y0 * w_in + x0)[:, None]  # (P, BC) offset of the top-left tap
        r00 = tl.load(ref_b + tap, mask=m00, other=0.0).to(ACC)
        r01 = tl.load(ref_b + tap + 1, mask=m01, other=0.0).to(ACC)
        r10 = tl.load(ref_b + tap + w_in, mask=m10, other=0.0).to(ACC)
        r11 = tl.load(ref_b + tap + w_in + 1, mask=m11, other=0.0).to(ACC)
        w00 = ((1 - fx) * (1 - fy))[:, None]
        w01 = (fx * (1 - fy))[:, None]
        w10 = ((1 - fx) * fy)[:, None]
        w11 = (fx * fy)[:, None]
        s = w00 * r00 + w01 * r01 + w10 * r10 + w11 * r11
        kofs = j * hw + rem  # (P,) key j in a (K,H,W) slice
        if MODE == _DOT:
            part = tl.sum(v * s, axis=1) * scale
            if SINGLE_C:
                tl.store(out_ptr + b * s_ob + kofs, part, mask=pm)
            else:
                tl.atomic_add(out_ptr + b * s_ob + kofs, part, mask=pm, sem="relaxed")
        if MODE == _AGG:
            a = tl.load(a_ptr + b * s_ab + kofs, mask=pm, other=0.0).to(ACC)
            acc += a[:, None] * s
        if MODE == _BWD:
            a = tl.load(a_ptr + b * s_ab + kofs, mask=pm, other=0.0).to(ACC)
            d = tl.load(d_ptr + b * s_ab + kofs, mask=pm, other=0.0).to(ACC)
            if NEED_Q:
                acc += d[:, None] * s
            ds = a[:, None] * g + d[:, None] * v
            if NEED_REF:
                gref_b = gref_ptr + b * C * hw_in
                tl.atomic_add(gref_b + tap, ds * w00, mask=m00, sem="relaxed")
                tl.atomic_add(gref_b + tap + 1, ds * w01, mask=m01, sem="relaxed")
                tl.atomic_add(gref_b + tap + w_in, ds * w10, mask=m10, sem="relaxed")
                tl.atomic_add(gref_b + tap + w_in + 1, ds * w11, mask=m11, sem="relaxed")
            if NEED_GRID:
                dsx = (1 - fy)[:, None] * (r01 - r00) + fy[:, None] * (r11 - r10)
                dsy = (1 - fx)[:, None] * (r10 - r00) + fx[:, None] * (r11 - r01)
                ggx = tl.sum(ds * dsx, axis=1) * (w_in * 0.5)
                ggy = tl.sum(ds * dsy, axis=1) * (h_in * 0.5)
                ggrid_b = ggrid_ptr + b * H * K * W * 2
                if SINGLE_C:
                    tl.store(ggrid_b + gofs, ggx, mask=pm)
                    tl.store(ggrid_b + gofs + 1, ggy, mask=pm)
                else:
                    tl.atomic_add(ggrid_b + gofs, ggx, mask=pm, sem="relaxed")
                    tl.atomic_add(ggrid_b + gofs + 1, ggy, mask=pm, sem="relaxed")
    if MODE == _AGG or (MODE == _BWD and NEED_Q):
        tl.store(out_ptr + b * s_ob + pix, acc.to(out_ptr.dtype.element_ty), mask=m2)


_kernel = triton.jit(_acla_kernel) if triton is not None else None
# Triton's interpreter is chosen when triton is imported (TRITON_INTERPRET=1 in the environment):
# its standard library is wrapped then. Only an interpreted kernel can run on CPU tensors.
INTERPRETED = type(_kernel).__name__ == "InterpretedFunction"


def can_run_on(device: torch.device) -> bool:
    """The kernel can run on tensors of ``device``: compiled on CUDA, interpreted anywhere."""
    return triton is not None and (INTERPRETED or device.type == "cuda")


def _chw(t: torch.Tensor) -> torch.Tensor:
    """``t`` (B,C,H,W) with (C,H,W) strides (H*W, W, 1); only the batch stride may differ."""
    _, _, h, w = t.shape
    return t if t.stride()[1:] == (h * w, w, 1) else t.contiguous()


def _launch(
    mode: int,
    ref: torch.Tensor,
    grid: torch.Tensor,
    out: torch.Tensor,
    *,
    k: int,
    hw: tuple[int, int],
    v: torch.Tensor | None = None,
    g: torch.Tensor | None = None,
    a: torch.Tensor | None = None,
    d: torch.Tensor | None = None,
    gref: torch.Tensor | None = None,
    ggrid: torch.Tensor | None = None,
    scale: float = 1.0,
    need: tuple[bool, bool, bool] = (False, False, False),
    acc: torch.dtype = torch.float32,
) -> None:
    """One kernel launch over all query pixels of one reference layer (see ``_acla_kernel``)."""
    b, c, h_in, w_in = ref.shape
    h, w = hw
    if b * h * w == 0 or c == 0:
        return
    if not can_run_on(ref.device):
        raise RuntimeError(
            f"the triton ACLA core runs on CUDA tensors, or anywhere under TRITON_INTERPRET=1 set before triton is imported (got {ref.device} tensors)"
        )
    if max(c * h_in * w_in, c * h * w, h * k * w * 2) >= 2**31:
        raise ValueError(
            f"the triton ACLA core indexes one batch item with int32: {c} channels at {h_in}x{w_in} / {h}x{w} is too large (set ACLA_NAS_CORE=node)"
        )
    block_p, block_c, warps = BLOCKS[mode]
    block_c = min(block_c, triton.next_power_of_2(c))
    dummy = ref
    _kernel[(triton.cdiv(h * w, block_p), b, triton.cdiv(c, block_c))](
        ref,
        grid,
        v if v is not None else dummy,
        g if g is not None else dummy,
        a if a is not None else dummy,
        d if d is not None else dummy,
        out,
        gref if gref is not None else dummy,
        ggrid if ggrid is not None else dummy,
        h,
        w,
        c,
        k,
        h_in,
        w_in,
        float(scale),
        v.stride(0) if v is not None else 0,
        g.stride(0) if g is not None else 0,
        a.stride(0) if a is not None else 0,
        out.stride(0),
        MODE=mode,
        NEED_Q=need[0],
        NEED_REF=need[1],
        NEED_GRID=need[2],
        SINGLE_C=c <= block_c,
        BLOCK_P=block_p,
        BLOCK_C=block_c,
        ACC=tl.float64 if acc == torch.float64 else tl.float32,
        num_warps=warps,
    )


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class TritonAttentionCore(torch.autograd.Function):
    """Cross-layer attention of one query map over its reference layers, fused (CUDA).

    Same interface and function as ``attention_node.AttentionNode``: ``apply(weights_fn, scales, n, *qs,
    *refs, *grids, *extra)`` with, per layer ``l < n``, the query ``qs[l]`` (B,C_l,H,W), the
    reference map ``refs[l]`` (B,C_l,h_l,w_l) and the sampling grid ``grids[l]`` (B, H*k, W, 2),
    rows ordered (query row, key); ``weights_fn(logit, *extra)`` maps the (B,n,k,H,W) logits to
    attention weights. Returns the weighted sums of the samples, layers concatenated
    (B, sum C_l, H, W).
    """

    @staticmethod
    def forward(
        ctx: Any, weights_fn: Callable[..., torch.Tensor], scales: Sequence[float], n: int, *tensors: torch.Tensor
    ) -> torch.Tensor:
        with torch.autocast(tensors[0].device.type, enabled=False):  # the promoted dtype throughout
            return TritonAttentionCore._forward(ctx, weights_fn, scales, n, *tensors)

    @staticmethod
    def _forward(
        ctx: Any, weights_fn: Callable[..., torch.Tensor], scales: Sequence[float], n: int, *tensors: torch.Tensor
    ) -> torch.Tensor:
        qs = [_chw(t) for t in tensors[:n]]
        refs = [t.contiguous() for t in tensors[n : 2 * n]]
        grids = [t.contiguous() for t in tensors[2 * n : 3 * n]]
        extra = tensors[3 * n :]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in (*qs, *refs, *grids)])
        acc = _acc_dtype(dtype)
        logit_acc = torch.zeros(b, n, k, h, w, dtype=acc, device=qs[0].device)
        for i in range(n):
            _launch(DOT, refs[i], grids[i], logit_acc[:, i], k=k, hw=(h, w), v=qs[i], scale=scales[i], acc=acc)
        logit = logit_acc.to(dtype)
        train = any(ctx.needs_input_grad[3:])
        attn, leaves = weights_with_graph(train, weights_fn, logit, extra)
        a = attn.detach().contiguous()
        dims = [q.shape[1] for q in qs]
        out = qs[0].new_empty(b, sum(dims), h, w, dtype=dtype)
        start = 0
        for i in range(n):
            _launch(AGG, refs[i], grids[i], out[:, start : start + dims[i]], k=k, hw=(h, w), a=a[:, i], acc=acc)
            start += dims[i]
        if train:
            ctx.save_for_backward(*qs, *refs, *grids)
            ctx.logit, ctx.attn, ctx.leaves = logit, attn, leaves
            ctx.n, ctx.scales = n, list(scales)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        n, scales = ctx.n, ctx.scales
        saved = ctx.saved_tensors
        qs, refs, grids = saved[:n], saved[n : 2 * n], saved[2 * n :]
        need = ctx.needs_input_grad[3:]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        attn = ctx.attn
        acc = _acc_dtype(attn.dtype)
        dims = [q.shape[1] for q in qs]
        g_parts = [_chw(t) for t in grad_out.split(dims, 1)]
        grad_attn = torch.zeros(b, n, k, h, w, dtype=acc, device=grad_out.device)
        for i in range(n):
            _launch(DOT, refs[i], grids[i], grad_attn[:, i], k=k, hw=(h, w), v=g_parts[i], acc=acc)
        grad_logit, grad_extra = weights_backward(attn, ctx.logit, ctx.leaves, grad_attn)
        grad_logit = grad_logit if grad_logit is not None else torch.zeros_like(ctx.logit)
        scale_t = torch.tensor(scales, dtype=acc, device=grad_out.device).view(1, n, 1, 1, 1)
        dl = (grad_logit.to(acc) * scale_t).contiguous()
        a = attn.detach().contiguous()
        grad_q, grad_ref, grad_grid = [None] * n, [None] * n, [None] * n
        for i in range(n):
            nq, nr, ng = need[i], need[n + i], need[2 * n + i]
            if not (nq or nr or ng):
                continue
            gq = torch.empty_like(qs[i]) if nq else qs[i]
            gref = torch.zeros(refs[i].shape, dtype=acc, device=refs[i].device) if nr else refs[i]
            ggrid = torch.zeros(grids[i].shape, dtype=acc, device=grids[i].device) if ng else grids[i]
            _launch(
                BWD,
                refs[i],
                grids[i],
                gq,
                k=k,
                hw=(h, w),
                v=qs[i],
                g=g_parts[i],
                a=a[:, i],
                d=dl[:, i],
                gref=gref,
                ggrid=ggrid,
                need=(nq, nr, ng),
                acc=acc,
            )
            grad_q[i] = gq if nq else None
            grad_ref[i] = gref.to(refs[i].dtype) if nr else None
            grad_grid[i] = ggrid.to(grids[i].dtype) if ng else None
        return (None, None, None, *grad_q, *grad_ref, *grad_grid, *grad_extra)


def compile_report(arch: int = 90, dtype: str = "fp32") -> dict[str, dict[str, int]]:
    """Compile every mode of the kernel ahead of time for CUDA compute capability ``arch`` (no
    GPU needed) with query, reference and output-gradient maps of ``dtype`` (fp16, bf16, fp32 or
    fp64), and read each cubin's resource usage: registers per thread and stack bytes (spills).
    Checks that the kernel compiles for real, which the interpreter does not."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if triton is None or INTERPRETED:
        raise RuntimeError("compile_report needs Triton imported without TRITON_INTERPRET")
    acc = "fp64" if dtype == "fp64" else "fp32"
    names = _kernel.arg_names
    flags = ("MODE", "NEED_Q", "NEED_REF", "NEED_GRID", "SINGLE_C", "BLOCK_P", "BLOCK_C", "ACC")
    maps = ("ref_ptr", "v_ptr", "g_ptr")
    signature = {
        n: "constexpr"
        if n in flags
        else f"*{dtype}"
        if n in maps
        else f"*{acc}"
        if n.endswith("_ptr")
        else "fp32"
        if n == "scale"
        else "i32"
        for n in names
    }
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    report = {}
    for label, mode, single in (
        ("dot", DOT, True),
        ("dot+atomic", DOT, False),
        ("agg", AGG, True),
        ("bwd", BWD, True),
        ("bwd+atomic", BWD, False),
    ):
        block_p, block_c, warps = BLOCKS[mode]
        consts = {
            "MODE": mode,
            "NEED_Q": True,
            "NEED_REF": True,
            "NEED_GRID": True,
            "SINGLE_C": single,
            "BLOCK_P": block_p,
            "BLOCK_C": block_c,
            "ACC": tl.float64 if acc == "fp64" else tl.float32,
        }
        src = ASTSource(_kernel, signature, constexprs={(names.index(k),): v for k, v in consts.items()})
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
            fh.write(compiled.asm["cubin"])
            fh.flush()
            usage = subprocess.run(
                [str(cuobjdump), "--dump-resource-usage", fh.name], capture_output=True, text=True, check=True
            ).stdout
        found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
        if found is None:
            raise RuntimeError(f"no resource usage in cuobjdump's output: {usage!r}")
        report[label] = {"regs": int(found.group(1)), "stack": int(found.group(2))}
    return report
