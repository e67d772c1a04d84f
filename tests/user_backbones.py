"""A tiny user backbone for the tests, imported as ``user_backbones:tiny_net`` (tests/ is on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A same-size residual CNN: stem, ``layers.0..n-1`` (conv-ReLU), then a stride-2 stage."""

    def __init__(self, channels: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.layers = nn.Sequential(
            *[nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()) for _ in range(depth)]
        )
        self.down = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.up = nn.Sequential(nn.Conv2d(2 * channels, 4 * channels, 1), nn.PixelShuffle(2))
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.up(self.down(self.layers(self.stem(x)))))


def tiny_net(channels: int = 8, depth: int = 3) -> TinyNet:
    return TinyNet(channels, depth)


NOT_CALLABLE = 3


class NeedsRealTensors(TinyNet):
    """Reads a value in forward (``.item()``), which the meta device cannot do: built on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.mean().item()) > 2.0:
            raise ValueError("not an image in [0, 1]")
        return super().forward(x)


def real_only_net(channels: int = 4) -> NeedsRealTensors:
    return NeedsRealTensors(channels, 2)


def broken_net() -> nn.Module:
    raise RuntimeError("weights file missing")
