"""JPEG artefact removal: a round trip through Pillow's codec at a given quality, RGB metrics."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from acla_nas.tasks.base import Task, _number, register_task


def jpeg_compress(img: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip each (3,H,W) image of a batch through Pillow's JPEG codec (4:2:0)."""
    out = []
    for im in img.detach().clamp(0, 1).to("cpu"):
        arr = im.mul(255).round().byte().permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"))
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1))
    return torch.stack(out).to(img.device, img.dtype) / 255.0


@register_task("jpeg")
@dataclass(frozen=True)
class JpegTask(Task):
    quality: int = 10
    KEYS = frozenset({"quality"})

    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        return cls(name="jpeg", quality=int(_number(spec, "quality", 10, 1, 100, integer=True)))

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "jpeg", "quality": self.quality}

    def describe(self) -> str:
        return f"JPEG artefact removal, quality {self.quality} (Pillow, RGB 4:2:0; RGB PSNR/SSIM)"

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return jpeg_compress(hr, self.quality)
