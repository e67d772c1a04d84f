"""Super-resolution: antialiased bicubic (or MATLAB imresize) downsampling, Y-channel metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from acla_nas.core.errors import UserError
from acla_nas.tasks.base import Task, _int_choice, register_task

# --------------------------------------------------------------------------- MATLAB imresize


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, P) and 0-based source indices, as MATLAB's ``contributions``."""
    width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric padding: MATLAB maps indices through [1..n, n..1] periodically
    aux = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx0 = aux[np.mod(idx.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx0[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    weights, idx = _contributions(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0)  # (L, ...)
    gathered = moved[idx]  # (out_len, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    return np.moveaxis((gathered * w).sum(axis=1), 0, axis)


def matlab_imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an ``HW`` or ``HWC`` float array exactly like MATLAB's ``imresize(img, scale)``.

    Bicubic (a=-0.5) kernel, widened by 1/scale when shrinking (antialiasing), symmetric
    padding, height first then width (the order MATLAB uses for equal factors). Works in
    float64 and returns float64 without rounding: round/clip yourself for uint8 semantics.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an HW or HWC array, got shape {a.shape}")
    h, w = a.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        output_shape = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        sh = sw = float(scale)
    else:
        sh, sw = output_shape[0] / h, output_shape[1] / w
        if scale is not None:
            sh = sw = float(scale)
    out = _resize_axis(a, 0, output_shape[0], sh, antialias)
    return _resize_axis(out, 1, output_shape[1], sw, antialias)


def _matlab_resize_batch(x: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """:func:`matlab_imresize` over a (B,3,H,W) tensor."""
    arr = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    out = np.stack([matlab_imresize(im, scale=scale, output_shape=size) for im in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.dtype).to(x.device)


@register_task("sr")
@dataclass(frozen=True)
class SRTask(Task):
    kernel: str = "torch"
    KEYS = frozenset({"scale", "kernel"})
    EXAMPLE = {"scale": 2}

    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        scale = _int_choice(spec, "scale", (2, 3, 4))
        kernel = spec.get("kernel", "torch")
        if kernel == "bicubic":
            kernel = "torch"
        if kernel not in ("torch", "matlab"):
            raise UserError(f"got {kernel!r}, expected torch (antialiased bicubic) or matlab", field="task.kernel")
        return cls(name="sr", scale=scale, crop_border=scale, test_y_channel=True, kernel=kernel)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": "sr", "scale": self.scale}
        if self.kernel != "torch":
            spec["kernel"] = self.kernel
        return spec

    def describe(self) -> str:
        how = "MATLAB imresize" if self.kernel == "matlab" else "antialiased torch bicubic"
        return f"super-resolution x{self.scale} ({how}; Y-channel PSNR/SSIM, border {self.crop_border})"

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        hr = self.crop_hr(hr)
        size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
        if self.kernel == "matlab":
            lq = _matlab_resize_batch(hr, size, 1.0 / self.scale)
        else:
            lq = F.interpolate(hr, size=size, mode="bicubic", antialias=True, align_corners=False)
        return lq.clamp(0.0, 1.0).mul(255.0).round().div(255.0)

    def input_floor(self, lq: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        size = tuple(self.crop_hr(hr).shape[-2:])
        if self.kernel == "matlab":
            up = _matlab_resize_batch(lq, size, float(self.scale))
        else:
            up = F.interpolate(lq, size=size, mode="bicubic", align_corners=False)
        return up.clamp(0.0, 1.0)
