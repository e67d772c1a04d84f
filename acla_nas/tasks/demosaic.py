"""Demosaicking of an RGGB Bayer mosaic; the network input is the bilinear demosaic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from acla_nas.tasks.base import Task, register_task

BAYER_PATTERN = "RGGB"


def bayer_masks(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(3,H,W) 0/1 masks of the RGGB mosaic: R at (even, even), G at (even, odd) and (odd, even),
    B at (odd, odd)."""
    yy = torch.arange(h, device=device)[:, None] % 2
    xx = torch.arange(w, device=device)[None, :] % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    g = ~(r | b)
    return torch.stack([r, g, b]).float()


def mosaic(img: torch.Tensor) -> torch.Tensor:
    """Keep, per pixel, only the colour the RGGB sensor records (zeros elsewhere)."""
    return img * bayer_masks(img.shape[-2], img.shape[-1], img.device).to(img.dtype)


def bilinear_demosaic(sparse: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking by normalised convolution: each channel's samples are averaged
    with the classic bilinear kernels and divided by the convolved mask, which keeps measured
    samples unchanged and handles image borders without padding artefacts."""
    h, w = sparse.shape[-2:]
    masks = bayer_masks(h, w, sparse.device).to(sparse.dtype)
    rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=sparse.dtype, device=sparse.device)
    g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]], dtype=sparse.dtype, device=sparse.device)
    kernels = torch.stack([rb, g, rb])[:, None]
    num = F.conv2d(sparse * masks, kernels, padding=1, groups=3)
    den = F.conv2d(masks.expand(1, 3, h, w), kernels, padding=1, groups=3)
    return num / den


@register_task("demosaic")
@dataclass(frozen=True)
class DemosaicTask(Task):
    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        return cls(name="demosaic")

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "demosaic"}

    def describe(self) -> str:
        return "demosaicking of an RGGB Bayer mosaic (input: bilinear demosaic; RGB PSNR/SSIM)"

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return bilinear_demosaic(mosaic(hr))
