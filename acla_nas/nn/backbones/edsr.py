"""EDSR (Lim et al. 2017): head conv, residual blocks, body conv + global skip, tail.

Sites: ``head`` and ``body.0`` ... ``body.{n-1}`` (each residual block's output).
Baseline: 64 features, 16 blocks, res_scale 1; paper size: 256 features, 32 blocks, res_scale 0.1.
"""

from __future__ import annotations

import torch
from torch import nn

from acla_nas.core.checks import check_number
from acla_nas.nn.backbones.base import (
    MAX_DEPTH,
    MAX_WIDTH,
    Backbone,
    MeanShift,
    ResBlock,
    Site,
    Tail,
    check_positive_int,
    check_scale,
    conv,
)
from acla_nas.nn.backbones.registry import register_backbone


class EDSR(Backbone):
    def __init__(
        self, n_feats: int = 64, n_resblocks: int = 16, res_scale: float = 1.0, scale: int = 2, image_skip: bool = False
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale, (1, 2, 3, 4), "edsr")
        n_feats = check_positive_int(n_feats, "backbone.kwargs.n_feats", maximum=MAX_WIDTH)
        n_resblocks = check_positive_int(n_resblocks, "backbone.kwargs.n_resblocks", maximum=MAX_DEPTH)
        res_scale = check_number(res_scale, "backbone.kwargs.res_scale")
        self.sub_mean, self.add_mean = MeanShift(-1), MeanShift(+1)
        self.head = conv(3, n_feats)
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)])
        self.body_conv = conv(n_feats, n_feats)
        self.tail = Tail(self.scale, n_feats, image_skip=image_skip)
        self.sites = [Site("head", n_feats)] + [Site(f"body.{i}", n_feats) for i in range(n_resblocks)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.sub_mean(x)
        h = self.head(image)
        f = self.body_conv(self.body(h)) + h
        return self.add_mean(self.tail(f, image))


@register_backbone("edsr")
def edsr(
    scale: int = 2, n_feats: int = 64, n_resblocks: int = 16, res_scale: float = 1.0, image_skip: bool = False
) -> EDSR:
    """EDSR; ``edsr(n_feats=256, n_resblocks=32, res_scale=0.1)`` is the paper's large model."""
    return EDSR(n_feats=n_feats, n_resblocks=n_resblocks, res_scale=res_scale, scale=scale, image_skip=image_skip)
