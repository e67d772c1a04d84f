"""Tiled inference: a large image restored in bounded memory, tile by tile.

:func:`restore_image` cuts the input into ``tile`` x ``tile`` tiles that overlap their
neighbours by ``overlap`` pixels, runs the network on each and blends the outputs with weights
that are 0 within ``overlap/4`` of an inner tile edge and ramp linearly to 1 over the next
``overlap/2`` (a partition of unity across each overlap band). Because no output pixel takes a
non-zero weight from a tile whose edge is closer than ``overlap/4`` (input pixels), the result
equals whole-image inference exactly whenever the network's receptive-field radius is at most
``overlap/4`` (e.g. 4 px for the default 16), and hides seams smoothly for wider networks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from acla_nas.core.errors import UserError


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``[0, length)``; the last tile is aligned to the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return sorted(set(starts + [length - tile]))


def _axis_weights(n: int, ramp_start: bool, ramp_end: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """Blending weights along one tile axis (output pixels); ramps only on inner edges."""
    d = torch.arange(n, device=device, dtype=torch.float32)
    w = torch.ones(n, device=device)
    half = overlap / 2.0
    if ramp_start:
        w = torch.minimum(w, ((d + 0.5 - overlap / 4.0) / half).clamp(0.0, 1.0))
    if ramp_end:
        w = torch.minimum(w, ((n - 1 - d + 0.5 - overlap / 4.0) / half).clamp(0.0, 1.0))
    return w


@torch.no_grad()
def restore_rows(
    model: nn.Module, lq: torch.Tensor, scale: int, tile: int | None = 256, overlap: int = 16
) -> Iterator[tuple[int, torch.Tensor]]:
    """Run ``model`` on a (1,3,h,w) image tile by tile, row of tiles after row of tiles, and yield
    ``(first_row, rows)`` blocks of the finished output (1,C,r,w*scale) top to bottom as soon as no
    later tile overlaps them: the float accumulators span one row of tiles, not the whole output,
    so a caller that writes each block into an 8-bit image needs memory bounded by the tile.

    ``tile=None`` (or an image that fits in one tile) runs the whole image at once."""
    if lq.ndim != 4:
        raise ValueError(f"expected a (B,C,H,W) tensor, got shape {tuple(lq.shape)}")
    _, _, h, w = lq.shape
    if tile is None or (h <= tile and w <= tile):
        yield 0, model(lq)
        return
    if tile < 8 or not 0 <= overlap < tile:
        raise UserError(
            f"tile {tile} with overlap {overlap}: expected tile >= 8 and 0 <= overlap < tile", field="--tile"
        )
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    acc: torch.Tensor | None = None  # output rows [top, top + acc rows) not yet finished
    weight = torch.zeros(1, 1, 0, w * scale, device=lq.device)
    top = 0
    for i, y in enumerate(ys):
        bottom = (y + th) * scale
        for x in xs:
            piece = model(lq[..., y : y + th, x : x + tw])
            if acc is None:
                acc = torch.zeros(lq.shape[0], piece.shape[1], 0, w * scale, device=lq.device, dtype=piece.dtype)
            grow = bottom - top - acc.shape[2]
            if grow > 0:  # extend the accumulators down to this row of tiles' last output row
                acc = torch.cat([acc, acc.new_zeros(*acc.shape[:2], grow, acc.shape[3])], 2)
                weight = torch.cat([weight, weight.new_zeros(1, 1, grow, weight.shape[3])], 2)
            wy = _axis_weights(th * scale, y > 0, y + th < h, overlap * scale, lq.device)
            wx = _axis_weights(tw * scale, x > 0, x + tw < w, overlap * scale, lq.device)
            m = (wy[:, None] * wx[None, :])[None, None]
            ys_, xs_ = slice(y * scale - top, bottom - top), slice(x * scale, (x + tw) * scale)
            acc[..., ys_, xs_] += piece * m
            weight[..., ys_, xs_] += m
        assert acc is not None
        done = (ys[i + 1] * scale if i + 1 < len(ys) else bottom) - top  # rows no later tile touches
        yield top, acc[..., :done, :] / weight[..., :done, :]
        acc, weight, top = acc[..., done:, :], weight[..., done:, :], top + done


@torch.no_grad()
def restore_image(
    model: nn.Module, lq: torch.Tensor, scale: int, tile: int | None = 256, overlap: int = 16
) -> torch.Tensor:
    """Run ``model`` on a (1,3,h,w) image tile by tile; returns (1,3,h*scale,w*scale) (the blocks
    of :func:`restore_rows` joined; use that to write a large output as it is made)."""
    return torch.cat([rows for _, rows in restore_rows(model, lq, scale, tile, overlap)], 2)


__all__ = ["restore_image", "restore_rows"]
