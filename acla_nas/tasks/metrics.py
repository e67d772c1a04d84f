"""PSNR and SSIM with the protocol image-restoration papers report (BasicSR's).

* inputs: torch tensors ``(B,3,H,W)`` / ``(3,H,W)`` or numpy ``HWC`` / ``HW`` arrays, values in
  ``[0, data_range]``; a batch gives the mean of the per-image values (as BasicSR averages images);
* ``crop_border`` pixels are removed from every side first (the scale factor for SR);
* ``test_y_channel`` compares only the BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
  (RGB in [0,1], Y on the [0,255] scale), the usual SR protocol;
* everything is computed in float64 on the [0,255] scale, so PSNR uses a peak of 255 and SSIM
  uses ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2`` with an 11x11 Gaussian window (sigma 1.5) and
  *valid* filtering (no padding); RGB SSIM is the mean over the three channels.

The metrics do not quantize: callers that want BasicSR's exact numbers round their outputs to
8 bits first (:func:`quantize`), as ``tensor2img`` does there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0,1] and round to the 8-bit grid: what saving a PNG would do."""
    return img.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def _as_batch(img: torch.Tensor | np.ndarray, data_range: float) -> torch.Tensor:
    """Any accepted layout -> float64 tensor (B,C,H,W) on the [0,255] scale."""
    if isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img)).to(torch.float64)
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:  # HWC
            t = t.permute(2, 0, 1)[None]
        else:
            raise ValueError(f"numpy images must be HW or HWC, got shape {tuple(img.shape)}")
    elif isinstance(img, torch.Tensor):
        t = img.detach().to("cpu", torch.float64)
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            t = t[None]
        elif t.ndim != 4:
            raise ValueError(f"tensors must be (B,C,H,W), (C,H,W) or (H,W), got {tuple(img.shape)}")
    else:
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(img).__name__}")
    return t * (255.0 / data_range)


def _prepare(img, ref, crop_border: int, test_y_channel: bool, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_batch(img, data_range), _as_batch(ref, data_range)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return a, b


def rgb_to_y(img255: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a (B,3,H,W) tensor on the [0,255] scale, returned on the same scale."""
    if img255.shape[1] != 3:
        raise ValueError(f"the Y channel needs 3 RGB channels, got {img255.shape[1]}")
    w = torch.tensor(_Y_WEIGHTS, dtype=img255.dtype).view(1, 3, 1, 1)
    return (img255 / 255.0 * w).sum(dim=1, keepdim=True) + 16.0


def psnr(img, ref, crop_border: int = 0, test_y_channel: bool = False, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (mean over a batch); ``inf`` for identical images."""
    a, b = _prepare(img, ref, crop_border, test_y_channel, data_range)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    values = [math.inf if m == 0 else 10.0 * math.log10(255.0**2 / float(m)) for m in mse]
    return float(np.mean(values))


SSIM_WINDOW = 11  # side of the Gaussian SSIM window: images must be at least this big after cropping


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> torch.Tensor:
    """The 1-D Gaussian (float64, sums to 1); the SSIM window is its outer product with itself."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (channels averaged) for (B,C,H,W) float64 tensors on [0,255].

    The 11x11 Gaussian window is separable, so each map is filtered along rows then columns
    (22 instead of 121 multiply-adds per pixel), and the five maps in one grouped convolution
    per axis: the same valid filtering as BasicSR's 2-D window, up to float64 rounding."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    channels = a.shape[1]
    g = _gaussian_window()
    maps = torch.cat([a, b, a * a, b * b, a * b], 1)
    n = maps.shape[1]
    f = F.conv2d(maps, g.view(1, 1, 1, -1).expand(n, 1, 1, SSIM_WINDOW), groups=n)
    f = F.conv2d(f, g.view(1, 1, -1, 1).expand(n, 1, SSIM_WINDOW, 1), groups=n)
    mu_a, mu_b, aa, bb, ab = f.split(channels, 1)
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(dim=1)


def ssim(img, ref, crop_border: int = 0, test_y_channel: bool = False, data_range: float = 1.0) -> float:
    """Structural similarity (mean over a batch; RGB averages the channels, like BasicSR)."""
    a, b = _prepare(img, ref, crop_border, test_y_channel, data_range)
    if a.shape[-1] < SSIM_WINDOW or a.shape[-2] < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping, got {tuple(a.shape[-2:])}"
        )
    return float(_ssim_per_image(a, b).mean())
