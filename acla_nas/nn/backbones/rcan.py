"""RCAN (Zhang et al. 2018): residual groups of channel-attention blocks (RCAB).

Sites: ``head`` and ``groups.0`` ... ``groups.{G-1}`` (each residual group's output).
Paper size: 10 groups x 20 blocks, 64 features, reduction 16.
"""

from __future__ import annotations

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.nn.backbones.base import (
    MAX_DEPTH,
    MAX_WIDTH,
    Backbone,
    MeanShift,
    Site,
    Tail,
    check_positive_int,
    check_scale,
    conv,
)
from acla_nas.nn.backbones.registry import register_backbone


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class RCAB(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels),
            nn.ReLU(inplace=True),
            conv(channels, channels),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, n_blocks: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(channels, reduction) for _ in range(n_blocks)], conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(Backbone):
    def __init__(
        self,
        n_feats: int = 64,
        n_resgroups: int = 10,
        n_resblocks: int = 20,
        reduction: int = 16,
        scale: int = 2,
        image_skip: bool = False,
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale, (1, 2, 3, 4), "rcan")
        n_feats = check_positive_int(n_feats, "backbone.kwargs.n_feats", maximum=MAX_WIDTH)
        n_resgroups = check_positive_int(n_resgroups, "backbone.kwargs.n_resgroups", maximum=MAX_DEPTH)
        n_resblocks = check_positive_int(n_resblocks, "backbone.kwargs.n_resblocks", maximum=MAX_DEPTH)
        reduction = check_positive_int(reduction, "backbone.kwargs.reduction", maximum=MAX_WIDTH)
        if n_resgroups * n_resblocks > MAX_DEPTH:
            raise UserError(
                f"{n_resgroups} groups x {n_resblocks} blocks = {n_resgroups * n_resblocks} blocks; expected at most {MAX_DEPTH}",
                field="backbone.kwargs.n_resblocks",
            )
        self.sub_mean, self.add_mean = MeanShift(-1), MeanShift(+1)
        self.head = conv(3, n_feats)
        self.groups = nn.Sequential(*[ResidualGroup(n_feats, n_resblocks, reduction) for _ in range(n_resgroups)])
        self.body_conv = conv(n_feats, n_feats)
        self.tail = Tail(self.scale, n_feats, image_skip=image_skip)
        self.sites = [Site("head", n_feats)] + [Site(f"groups.{i}", n_feats) for i in range(n_resgroups)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.sub_mean(x)
        h = self.head(image)
        f = self.body_conv(self.groups(h)) + h
        return self.add_mean(self.tail(f, image))


@register_backbone("rcan")
def rcan(
    scale: int = 2,
    n_feats: int = 64,
    n_resgroups: int = 10,
    n_resblocks: int = 20,
    reduction: int = 16,
    image_skip: bool = False,
) -> RCAN:
    return RCAN(
        n_feats=n_feats,
        n_resgroups=n_resgroups,
        n_resblocks=n_resblocks,
        reduction=reduction,
        scale=scale,
        image_skip=image_skip,
    )
