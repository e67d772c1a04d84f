"""Gaussian denoising: additive white noise of std sigma (on the 0..255 scale), RGB metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from acla_nas.tasks.base import Task, _number, register_task


@register_task("denoise")
@dataclass(frozen=True)
class DenoiseTask(Task):
    sigma: float = 25.0
    KEYS = frozenset({"sigma"})

    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        return cls(name="denoise", sigma=_number(spec, "sigma", 25, 0.1, 255))

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": "denoise", "sigma": self.sigma}

    def describe(self) -> str:
        return f"Gaussian denoising, sigma {self.sigma:g}/255 (unclipped noise; RGB PSNR/SSIM)"

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(hr.shape, generator=generator, dtype=torch.float32, device="cpu")
        return hr + noise.to(hr.device, hr.dtype) * (self.sigma / 255.0)
