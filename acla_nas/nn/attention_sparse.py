"""The CPU attention core as sparse products: bilinear sampling is a sparse matrix.

Sampling a reference map at K points per query is multiplying it, laid out as rows of channels,
by a sparse matrix with 4 entries (the bilinear corners) per query and key. So the module's
arithmetic needs no sampled tensor at all:

* logits: ``<q_p, ref_j>`` at each corner j of each key of query p: one sampled dense-dense
  product (``torch.sparse.sampled_addmm``), then the 4 corners mixed by their bilinear weights;
* the weighted sum of values: ``(attention x bilinear weights) @ ref``, one sparse-dense product;
* backward: the same two products with the output gradient, the query gradient as one more
  sparse-dense product, and the reference gradient as the transposed product, done with the
  pattern sorted once by top-left corner (the other 3 corners are that pattern shifted by a
  constant row offset in a zero-padded layout, so one sort serves all four).

Every earlier layer with the same channels and size joins one pattern (block-diagonal over the
layers), so a scope-all module makes a handful of large calls rather than dozens of small ones,
and no ``(B, C, H*K, W)`` sample buffer is written, kept or scattered (``attention_node`` keeps
one per layer). Same interface and function as :class:`acla_nas.nn.attention_node.AttentionNode`;
measured side by side in ``benchmarks/network_step.py`` (``--cores``).
"""

from __future__ import annotations

import functools
import warnings

import torch

#: The dtypes the sparse kernels take; other inputs (half, bfloat16) are computed in float32.
KERNEL_DTYPES = (torch.float32, torch.float64)


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are not
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _sddmm(crow: torch.Tensor, col: torch.Tensor, a: torch.Tensor, b_rows: torch.Tensor) -> torch.Tensor:
    """``<a[p], b_rows[col]>`` for every entry of the pattern, in the pattern's order (nnz,)."""
    pattern = _csr(crow, col, a.new_zeros(col.numel()), (a.shape[0], b_rows.shape[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse.sampled_addmm(pattern, a, b_rows.t(), beta=0.0).values()


class _Group:
    """Consecutive reference layers ``lo..hi-1`` with one channel count and one spatial size,
    sampled through one block-diagonal pattern over a zero-padded, channels-last copy of them."""

    def __init__(self, lo: int, hi: int, refs, grids, b: int, h: int, w: int, k: int, dtype) -> None:
        n = hi - lo
        c, rh, rw = refs[lo].shape[1:]
        hp, wp = rh + 2, rw + 2
        self.lo, self.hi, self.n, self.c, self.rh, self.rw, self.wp = lo, hi, n, c, rh, rw, wp
        self.rows = n * b * hp * wp
        ref_buf = refs[lo].new_zeros(n, b, hp, wp, c, dtype=dtype)
        for i in range(n):
            ref_buf[i, :, 1:-1, 1:-1].copy_(refs[lo + i].permute(0, 2, 3, 1))
        self.ref = ref_buf.view(self.rows, c)
        # (n,B,H,W,k,2) query-major sampling coordinates, normalised (align_corners=False)
        g = torch.stack([grids[lo + i].view(b, h, k, w, 2) for i in range(n)]).to(dtype).permute(0, 1, 2, 4, 3, 5)
        ix = ((g[..., 0] + 1) * rw - 1) / 2
        iy = ((g[..., 1] + 1) * rh - 1) / 2
        x0, y0 = ix.floor(), iy.floor()
        # a key whose 4 corners all lie outside the map samples zeros and has no gradient (the
        # zero padding ring holds the corners of keys that straddle the border)
        inside = (x0 >= -1) & (x0 <= rw - 1) & (y0 >= -1) & (y0 <= rh - 1)
        zero = ix.new_zeros(())
        fx = torch.where(inside, ix - x0, zero)
        fy = torch.where(inside, iy - y0, zero)
        gx, gy = 1 - fx, 1 - fy
        m = inside.to(dtype)
        self.wts = torch.stack((gx * gy * m, fx * gy * m, gx * fy * m, fx * fy * m), -1)  # (n,B,H,W,k,4)
        self.fx, self.fy, self.inside = fx, fy, inside
        xi = torch.where(inside, x0, zero).long() + 1
        yi = torch.where(inside, y0, zero).long() + 1
        lb = torch.arange(n * b, device=g.device).view(n, b, 1, 1, 1)
        self.base = (lb * hp + yi) * wp + xi  # (n,B,H,W,k) padded row of the top-left corner
        self.shifts = (0, 1, wp, wp + 1)  # rows of the 4 corners relative to the top-left one
        itype = torch.int32 if self.rows * 2 < 2**31 and self.base.numel() * 8 < 2**31 else torch.int64
        self.itype = itype
        corner = torch.tensor(self.shifts, device=g.device)
        self.col = (self.base.unsqueeze(-1) + corner).to(itype).reshape(-1)
        self.p = n * b * h * w  # queries of the group
        self.crow = torch.arange(0, self.col.numel() + 1, 4 * k, device=g.device, dtype=itype)

    def rows_of(self, maps, dtype) -> torch.Tensor:
        """The group's (B,C,H,W) query-side maps as (n*B*H*W, C) rows."""
        first = maps[self.lo]
        b, c, h, w = first.shape
        out = first.new_empty(self.n, b, h, w, c, dtype=dtype)
        for i in range(self.n):
            out[i].copy_(maps[self.lo + i].permute(0, 2, 3, 1))
        return out.view(-1, c)

    def corner_dots(self, rows: torch.Tensor) -> torch.Tensor:
        """``<rows[p], ref[corner]>`` for every key corner: (n,B,H,W,k,4)."""
        return _sddmm(self.crow, self.col, rows, self.ref).view(self.wts.shape)

    def gather(self, key_weights: torch.Tensor) -> torch.Tensor:
        """``sum_k key_weights[p, k] * sample_k(p)`` for (n,B,H,W,k) weights: (P, C) rows."""
        vals = (self.wts * key_weights.unsqueeze(-1)).view(-1)  # wts first: a contiguous product
        return _csr(self.crow, self.col, vals, (self.p, self.rows)) @ self.ref

    def scatter(self, key_weights: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
        """The transposed product: ``sum_i`` of ``rows[i][p] * key_weights[i][p, k]`` spread to the
        reference rows by the bilinear weights, (rows, C). One sort of the top-left corners serves
        the 4 corners and every term (their entries interleave in one pattern)."""
        flat = self.base.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.rows)
        t = len(rows)
        crow = torch.zeros(self.rows + 1, dtype=self.itype, device=flat.device)
        crow[1:] = counts.cumsum(0) * t
        k = self.base.shape[-1]
        query = (order // k).view(-1, 1)
        col = torch.cat([query + i * self.p for i in range(t)], 1).to(self.itype).reshape(-1)
        dense = torch.cat(rows) if t > 1 else rows[0]
        out = self.ref.new_zeros(self.rows, self.c)
        for d, shift in enumerate(self.shifts):
            vals = torch.stack([(self.wts[..., d] * kw).reshape(-1)[order] for kw in key_weights], 1)
            y = _csr(crow, col, vals.reshape(-1), (self.rows, t * self.p)) @ dense
            out[shift:] += y[: self.rows - shift]
        return out

    def unpad(self, ref_rows: torch.Tensor, i: int) -> torch.Tensor:
        """Layer ``lo + i``'s (B,C,h,w) map from padded rows."""
        r = ref_rows.view(self.n, -1, self.rh + 2, self.wp, self.c)[i, :, 1:-1, 1:-1]
        return r.permute(0, 3, 1, 2)

    def grid_grad(self, grad_w: torch.Tensor) -> torch.Tensor:
        """Gradient of the normalised sampling coordinates from that of the corner weights,
        (n,B,H,W,k,2)."""
        fx, fy = self.fx, self.fy
        gfx = (grad_w[..., 1] - grad_w[..., 0]) * (1 - fy) + (grad_w[..., 3] - grad_w[..., 2]) * fy
        gfy = (grad_w[..., 2] - grad_w[..., 0]) * (1 - fx) + (grad_w[..., 3] - grad_w[..., 1]) * fx
        zero = gfx.new_zeros(())
        gx = torch.where(self.inside, gfx * (self.rw / 2), zero)
        gy = torch.where(self.inside, gfy * (self.rh / 2), zero)
        return torch.stack((gx, gy), -1)


def _groups(refs, grids, b: int, h: int, w: int, k: int, dtype) -> list[_Group]:
    out, lo = [], 0
    n = len(refs)
    for i in range(1, n + 1):
        if i == n or refs[i].shape[1:] != refs[lo].shape[1:]:
            out.append(_Group(lo, i, refs, grids, b, h, w, k, dtype))
            lo = i
    return out


class SparseAttention(torch.autograd.Function):
    """Cross-layer attention of one query map over its reference layers, as sparse products.

    ``apply(weights_fn, scales, n, *qs, *refs, *grids, *extra)``: the interface of
    :class:`acla_nas.nn.attention_node.AttentionNode` (grids (B, H*k, W, 2), rows ordered
    (query row, key)); returns (B, sum C_l, H, W).
    """

    @staticmethod
    def forward(ctx, weights_fn, scales, n, *tensors):
        with torch.autocast(tensors[0].device.type, enabled=False):
            return SparseAttention._forward(ctx, weights_fn, scales, n, *tensors)

    @staticmethod
    def _forward(ctx, weights_fn, scales, n, *tensors):
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors[: 3 * n]])
        dtype = out_dtype if out_dtype in KERNEL_DTYPES else torch.float32
        qs, refs, grids = (list(tensors[i * n : (i + 1) * n]) for i in range(3))
        extra = tensors[3 * n :]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        groups = _groups(refs, grids, b, h, w, k, dtype)
        logit = qs[0].new_empty(b, n, k, h, w, dtype=dtype)
        q_rows, dots = [], []
        for gr in groups:
            rows = gr.rows_of(qs, dtype)
            d = gr.corner_dots(rows)
            sc = torch.tensor(scales[gr.lo : gr.hi], dtype=dtype).view(-1, 1, 1, 1, 1)
            logit[:, gr.lo : gr.hi] = ((d * gr.wts).sum(-1) * sc).permute(1, 0, 4, 2, 3)
            q_rows.append(rows)
            dots.append(d)
        train = any(ctx.needs_input_grad[3:])
        if train:
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_() if t is not None and t.requires_grad else t for t in extra]
                logit.requires_grad_()
                attn = weights_fn(logit, *leaves)
        else:
            attn = weights_fn(logit, *extra)
        out = qs[0].new_empty(b, sum(q.shape[1] for q in qs), h, w, dtype=dtype)
        start, keys = 0, []
        for gr in groups:
            a = attn[:, gr.lo : gr.hi].detach().permute(1, 0, 3, 4, 2).contiguous()  # (n,B,H,W,k)
            agg = gr.gather(a)
            keys.append(a)
            width = gr.n * gr.c
            out[:, start : start + width].view(b, gr.n, gr.c, h, w).copy_(
                agg.view(gr.n, b, h, w, gr.c).permute(1, 0, 4, 2, 3)
            )
            start += width
        if train:
            ctx.groups, ctx.q_rows, ctx.dots, ctx.keys = groups, q_rows, dots, keys
            ctx.logit, ctx.attn, ctx.leaves = logit, attn, leaves
            ctx.n, ctx.scales, ctx.dtype = n, scales, dtype
            ctx.dtypes = [t.dtype for t in tensors[: 3 * n]]
        return out.to(out_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        n, dtype, attn = ctx.n, ctx.dtype, ctx.attn
        need = ctx.needs_input_grad[3:]
        b, _, h, w = grad_out.shape
        grad_out = grad_out.to(dtype)
        grad_attn = torch.empty_like(attn)
        g_rows, e_dots, start = [], [], 0
        for gr in ctx.groups:
            width = gr.n * gr.c
            g = grad_out[:, start : start + width].reshape(b, gr.n, gr.c, h, w).permute(1, 0, 3, 4, 2)
            g = g.contiguous().view(-1, gr.c)
            start += width
            e = gr.corner_dots(g)
            grad_attn[:, gr.lo : gr.hi] = (e * gr.wts).sum(-1).permute(1, 0, 4, 2, 3)
            g_rows.append(g)
            e_dots.append(e)
        wrt = [ctx.logit] + [t for t in ctx.leaves if t is not None and t.requires_grad]
        grads = torch.autograd.grad(attn, wrt, grad_attn, retain_graph=True, allow_unused=True)
        grad_logit = grads[0]
        grad_q, grad_ref, grad_grid = [None] * n, [None] * n, [None] * n
        for gr, q, g, d, e, a in zip(ctx.groups, ctx.q_rows, g_rows, ctx.dots, e_dots, ctx.keys):
            layers = range(gr.lo, gr.hi)
            sc = torch.tensor(ctx.scales[gr.lo : gr.hi], dtype=dtype).view(-1, 1, 1, 1, 1)
            gl = (grad_logit[:, gr.lo : gr.hi].permute(1, 0, 3, 4, 2) * sc).contiguous()  # (n,B,H,W,k)
            if any(need[i] for i in layers):
                gq = gr.gather(gl).view(gr.n, b, h, w, gr.c)
                for i in layers:
                    grad_q[i] = gq[i - gr.lo].permute(0, 3, 1, 2).to(ctx.dtypes[i]) if need[i] else None
            if any(need[n + i] for i in layers):
                gref = gr.scatter([a, gl], [g, q])
                for i in layers:
                    grad_ref[i] = gr.unpad(gref, i - gr.lo).to(ctx.dtypes[n + i]) if need[n + i] else None
            if any(need[2 * n + i] for i in layers):
                grad_w = (e * a.unsqueeze(-1)).add_(d * gl.unsqueeze(-1))
                gg = gr.grid_grad(grad_w)  # (n,B,H,W,k,2)
                for i in layers:
                    if need[2 * n + i]:
                        rows = gg[i - gr.lo].permute(0, 1, 3, 2, 4).reshape(b, h * gg.shape[4], w, 2)
                        grad_grid[i] = rows.to(ctx.dtypes[2 * n + i])
        it = iter(grads[1:])
        grad_extra = [next(it) if t is not None and t.requires_grad else None for t in ctx.leaves]
        return (None, None, None, *grad_q, *grad_ref, *grad_grid, *grad_extra)
