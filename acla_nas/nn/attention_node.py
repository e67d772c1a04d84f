"""The CPU attention core: one autograd node for the cross-layer attention of a query map.

``AttentionNode.apply(weights_fn, scales, n, *qs, *refs, *grids, *extra)`` samples every
reference layer once, keeps the samples for the backward pass and computes the gradients by
hand, which saves the memory traffic of autograd's per-op graph. :mod:`acla_nas.nn.attention_core`
chooses it on CPU; the fused CUDA kernel (:mod:`acla_nas.nn.acla_triton`) has the same interface.
"""

from __future__ import annotations

import functools

import torch

from acla_nas.nn.attention_weights import weights_backward, weights_with_graph

_SMALL = 1 << 14  # outputs smaller than this: one broadcast product and sum (fewer, larger ops)


def _dot(a: torch.Tensor, b: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """``out = (a * b).sum(dim)`` for broadcastable ``a``, ``b`` (``out`` may be strided),
    accumulated slice by slice along ``dim`` without a temporary of the broadcast shape."""
    if out.numel() < _SMALL:
        return torch.sum(a * b, dim, out=out)
    torch.mul(a.select(dim, 0), b.select(dim, 0), out=out)
    for i in range(1, a.shape[dim]):
        out.addcmul_(a.select(dim, i), b.select(dim, i))
    return out


class AttentionNode(torch.autograd.Function):
    """Cross-layer attention of one query map over its reference layers (CPU fast path).

    ``apply(weights_fn, scales, n, *qs, *refs, *grids, *extra)``: per layer ``l < n`` the query
    ``qs[l]`` (B,C_l,H,W), the reference map ``refs[l]`` (B,C_l,h_l,w_l) and the sampling grid
    ``grids[l]`` (B, H*k, W, 2), rows ordered (query row, key). ``weights_fn(logit, *extra)`` maps
    the (B,n,k,H,W) logits to attention weights of the same shape. Returns the weighted sums of
    the samples, all layers concatenated (B, sum C_l, H, W).
    """

    @staticmethod
    def forward(ctx, weights_fn, scales, n, *tensors):
        with torch.autocast(tensors[0].device.type, enabled=False):  # one dtype throughout, see below
            return AttentionNode._forward(ctx, weights_fn, scales, n, *tensors)

    @staticmethod
    def _forward(ctx, weights_fn, scales, n, *tensors):
        # one dtype for the arithmetic, as the plain formulation's type promotion gives (autocast
        # hands over half-precision maps and float32 grids); autograd casts the gradients back
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors[: 3 * n]])
        qs, refs, grids = ([t.to(dtype) for t in tensors[i * n : (i + 1) * n]] for i in range(3))
        extra = tensors[3 * n :]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        samples = []
        logit = qs[0].new_empty(b, n, k, h, w)
        for i in range(n):
            c = qs[i].shape[1]
            s = torch.grid_sampler_2d(refs[i], grids[i], 0, 0, False)
            samples.append(s)
            lg = logit[:, i].permute(0, 2, 1, 3)  # (B,H,k,W)
            _dot(s.view(b, c, h, k, w), qs[i].unsqueeze(3), 1, lg).mul_(scales[i])
        train = any(ctx.needs_input_grad[3:])
        attn, leaves = weights_with_graph(train, weights_fn, logit, extra)
        out = qs[0].new_empty(b, sum(q.shape[1] for q in qs), h, w)
        start = 0
        for i in range(n):
            c = qs[i].shape[1]
            a = attn[:, i].detach().permute(0, 2, 1, 3).unsqueeze(1)  # (B,1,H,k,W)
            _dot(samples[i].view(b, c, h, k, w), a, 3, out[:, start : start + c])
            start += c
        if train:
            ctx.save_for_backward(*qs, *refs, *grids)
            ctx.samples, ctx.logit, ctx.attn, ctx.leaves = samples, logit, attn, leaves
            ctx.n, ctx.scales, ctx.fresh = n, scales, True
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        n, scales = ctx.n, ctx.scales
        saved = ctx.saved_tensors
        qs, refs, grids = saved[:n], saved[n : 2 * n], saved[2 * n :]
        need = ctx.needs_input_grad[3:]
        b, _, h, w = qs[0].shape
        k = grids[0].shape[1] // h
        attn = ctx.attn
        if ctx.fresh:
            samples = ctx.samples
            ctx.fresh = False  # overwritten below; a second backward pass samples again
        else:
            samples = [torch.grid_sampler_2d(r, g, 0, 0, False) for r, g in zip(refs, grids)]
        dims = [q.shape[1] for q in qs]
        g_parts = grad_out.split(dims, 1)
        grad_attn = torch.empty_like(attn)
        for i in range(n):
            g5 = g_parts[i].unsqueeze(3)  # (B,C,H,1,W)
            _dot(samples[i].view(b, dims[i], h, k, w), g5, 1, grad_attn[:, i].permute(0, 2, 1, 3))
        grad_logit, grad_extra = weights_backward(attn, ctx.logit, ctx.leaves, grad_attn)
        grad_q, grad_ref, grad_grid = [None] * n, [None] * n, [None] * n
        for i in range(n):
            c = dims[i]
            s5 = samples[i].view(b, c, h, k, w)
            gl = (grad_logit[:, i] * scales[i]).permute(0, 2, 1, 3).unsqueeze(1)  # (B,1,H,k,W)
            q5 = qs[i].unsqueeze(3)
            if need[i]:
                grad_q[i] = _dot(s5, gl, 3, qs[i].new_empty(qs[i].shape))
            if need[n + i] or need[2 * n + i]:
                a = attn[:, i].detach().permute(0, 2, 1, 3).unsqueeze(1)
                torch.mul(g_parts[i].unsqueeze(3), a, out=s5)  # the samples' gradient, in place
                s5.addcmul_(q5, gl)
                grad_ref[i], grad_grid[i] = torch.ops.aten.grid_sampler_2d_backward(
                    samples[i], refs[i], grids[i], 0, 0, False, [need[n + i], need[2 * n + i]]
                )
        return (None, None, None, *grad_q, *grad_ref, *grad_grid, *grad_extra)
