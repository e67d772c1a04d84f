"""A U-Net-style denoiser with one downsampled stage (same-size tasks only).

Full resolution: ``head`` (C), ``enc.*`` (C); half resolution: ``mid.*`` (2C, stride 2); back at
full resolution after a sub-pixel up-projection fused with the encoder skip: ``dec.*`` (C).
Sites therefore differ in channels and resolution, which ACLA handles by 1x1 projections and
normalised sampling coordinates. Output = input + predicted residual.
"""

from __future__ import annotations

import torch
from torch import nn

from acla_nas.nn.backbones.base import (
    MAX_DEPTH,
    MAX_WIDTH,
    Backbone,
    ResBlock,
    Site,
    check_positive_int,
    check_scale,
    conv,
)
from acla_nas.nn.backbones.registry import register_backbone


class UNetDenoiser(Backbone):
    def __init__(self, n_feats: int = 32, n_enc: int = 2, n_mid: int = 2, n_dec: int = 2, scale: int = 1) -> None:
        super().__init__()
        self.scale = check_scale(scale, (1,), "unet (a same-size restoration network)")
        c = check_positive_int(n_feats, "backbone.kwargs.n_feats", maximum=MAX_WIDTH)
        n_enc = check_positive_int(n_enc, "backbone.kwargs.n_enc", maximum=MAX_DEPTH)
        n_mid = check_positive_int(n_mid, "backbone.kwargs.n_mid", maximum=MAX_DEPTH)
        n_dec = check_positive_int(n_dec, "backbone.kwargs.n_dec", maximum=MAX_DEPTH)
        self.head = conv(3, c)
        self.enc = nn.Sequential(*[ResBlock(c) for _ in range(n_enc)])
        self.down = nn.Sequential(conv(c, 2 * c, 3, stride=2), nn.ReLU(inplace=True))
        self.mid = nn.Sequential(*[ResBlock(2 * c) for _ in range(n_mid)])
        self.up = nn.Sequential(conv(2 * c, 4 * c), nn.PixelShuffle(2))
        self.fuse = conv(2 * c, c, 1)
        self.dec = nn.Sequential(*[ResBlock(c) for _ in range(n_dec)])
        self.tail = conv(c, 3)
        self.sites = (
            [Site("head", c)]
            + [Site(f"enc.{i}", c) for i in range(n_enc)]
            + [Site(f"mid.{i}", 2 * c, 2) for i in range(n_mid)]
            + [Site(f"dec.{i}", c) for i in range(n_dec)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = h % 2, w % 2  # odd sizes: pad for the stride-2 stage, crop after
        xp = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if (pad_h or pad_w) else x
        e = self.enc(self.head(xp))
        m = self.mid(self.down(e))
        d = self.dec(self.fuse(torch.cat([self.up(m), e], 1)))
        return (xp + self.tail(d))[..., :h, :w]


@register_backbone("unet")
def unet(scale: int = 1, n_feats: int = 32, n_enc: int = 2, n_mid: int = 2, n_dec: int = 2) -> UNetDenoiser:
    return UNetDenoiser(n_feats=n_feats, n_enc=n_enc, n_mid=n_mid, n_dec=n_dec, scale=scale)
