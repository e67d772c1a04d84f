"""Deblurring: each image is blurred by its own kernel drawn from the caller's generator (seeded),
then rounded to 8 bits, as a saved blurry photograph would be.

``{name: deblur, kernel: gaussian, sigma: 2.0, size: 15}``: an anisotropic Gaussian whose two
standard deviations are drawn uniformly in [sigma/2, sigma] px and whose axes are rotated by a
uniform angle. ``{name: deblur, kernel: motion, length: 9, size: 15}``: a straight motion blur of
``length`` px at a uniform angle (a line rasterised by supersampling). Kernels are normalised to
sum 1 and applied with reflect padding, so the image keeps its size. Metrics: RGB, no crop.
Floor: the blurry input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from acla_nas.core.errors import UserError
from acla_nas.tasks.base import Task, _number, register_task

KERNELS = ("gaussian", "motion")
LINE_SAMPLES = 64  # points along a motion line (rasterised into the kernel grid)


def _uniform(generator: torch.Generator | None, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> torch.Tensor:
    """(size, size) anisotropic Gaussian rotated by ``angle`` radians, summing to 1."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    k = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).float()


def motion_kernel(size: int, length: float, angle: float) -> torch.Tensor:
    """(size, size) straight motion blur of ``length`` px at ``angle`` radians, summing to 1."""
    k = torch.zeros(size, size, dtype=torch.float64)
    centre = (size - 1) / 2
    for t in torch.linspace(-length / 2, length / 2, LINE_SAMPLES).tolist():
        x, y = centre + t * math.cos(angle), centre + t * math.sin(angle)
        x0, y0 = math.floor(x), math.floor(y)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # bilinear splat of each sample
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < size and 0 <= yi < size:
                k[yi, xi] += (1 - abs(x - xi)) * (1 - abs(y - yi))
    return (k / k.sum()).float()


@register_task("deblur")
@dataclass(frozen=True)
class DeblurTask(Task):
    kernel: str = "gaussian"
    sigma: float = 2.0  # gaussian: the largest standard deviation (px)
    length: float = 9.0  # motion: the line's length (px)
    size: int = 15  # kernel side (odd)
    KEYS = frozenset({"kernel", "sigma", "length", "size"})

    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        kernel = spec.get("kernel", "gaussian")
        if kernel not in KERNELS:
            raise UserError(f"got {kernel!r}, expected one of {', '.join(KERNELS)}", field="task.kernel")
        size = int(_number(spec, "size", 15, 3, 63, integer=True))
        if size % 2 == 0:
            raise UserError(f"got {size}, expected an odd kernel size", field="task.size")
        sigma = float(_number(spec, "sigma", 2.0, 0.1, size / 2))
        length = float(_number(spec, "length", 9.0, 1.0, size))
        return cls(name="deblur", kernel=kernel, sigma=sigma, length=length, size=size)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": "deblur", "kernel": self.kernel, "size": self.size}
        spec["sigma" if self.kernel == "gaussian" else "length"] = (
            self.sigma if self.kernel == "gaussian" else self.length
        )
        return spec

    def describe(self) -> str:
        how = (
            f"anisotropic Gaussian, std up to {self.sigma:g} px"
            if self.kernel == "gaussian"
            else f"motion, {self.length:g} px at a random angle"
        )
        return f"deblurring ({how}, {self.size}x{self.size} kernels drawn per image; RGB PSNR/SSIM)"

    def draw_kernel(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One (size, size) kernel drawn from ``generator``."""
        angle = _uniform(generator, 0.0, math.pi)
        if self.kernel == "motion":
            return motion_kernel(self.size, self.length, angle)
        sx, sy = _uniform(generator, self.sigma / 2, self.sigma), _uniform(generator, self.sigma / 2, self.sigma)
        return gaussian_kernel(self.size, sx, sy, angle)

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        pad = self.size // 2
        out = []
        for img in hr:
            k = self.draw_kernel(generator).to(img.device, img.dtype)
            x = F.pad(img[None], (pad, pad, pad, pad), mode="reflect" if min(img.shape[-2:]) > pad else "replicate")
            out.append(F.conv2d(x, k.expand(3, 1, -1, -1), groups=3)[0])
        return torch.stack(out).clamp(0.0, 1.0).mul(255.0).round().div(255.0)
