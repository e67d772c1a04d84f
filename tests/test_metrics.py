"""PSNR/SSIM follow BasicSR's protocol; checked against scikit-image on a real photograph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from acla_nas.data.images import embedded_dir, load_image
from acla_nas.tasks import make_task
from acla_nas.tasks.metrics import psnr, quantize, ssim


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real restoration pair: astronaut (256x256 crop) and its x2 bicubic round trip."""
    hr = load_image(embedded_dir() / "astronaut.png")[None, :, 64:320, 128:384]
    task = make_task({"name": "sr", "scale": 2})
    out = quantize(task.input_floor(task.degrade(hr), hr))
    return out, hr


def _hwc255(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).double().numpy() * 255.0


def _y255(t: torch.Tensor) -> np.ndarray:
    return rgb2ycbcr(t[0].permute(1, 2, 0).double().numpy())[..., 0]


@pytest.mark.parametrize("crop", [0, 2])
def test_psnr_matches_skimage_rgb_and_y(pair, crop):
    out, hr = pair
    c = slice(crop, -crop) if crop else slice(None)
    ref_rgb = peak_signal_noise_ratio(_hwc255(hr)[c, c], _hwc255(out)[c, c], data_range=255)
    ref_y = peak_signal_noise_ratio(_y255(hr)[c, c], _y255(out)[c, c], data_range=255)
    assert 25 < ref_rgb < 40  # a real, non-trivial degradation
    assert psnr(out, hr, crop_border=crop) == pytest.approx(ref_rgb, abs=1e-3)
    assert psnr(out, hr, crop_border=crop, test_y_channel=True) == pytest.approx(ref_y, abs=1e-3)
    assert ref_y != pytest.approx(ref_rgb, abs=0.05)  # Y and RGB really differ here


@pytest.mark.parametrize("crop", [0, 2])
def test_ssim_matches_skimage_rgb_and_y(pair, crop):
    out, hr = pair
    c = slice(crop, -crop) if crop else slice(None)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ref_rgb = structural_similarity(_hwc255(hr)[c, c], _hwc255(out)[c, c], channel_axis=2, **kw)
    ref_y = structural_similarity(_y255(hr)[c, c], _y255(out)[c, c], **kw)
    assert 0.5 < ref_rgb < 0.99
    assert ssim(out, hr, crop_border=crop) == pytest.approx(ref_rgb, abs=1e-4)
    assert ssim(out, hr, crop_border=crop, test_y_channel=True) == pytest.approx(ref_y, abs=1e-4)


def test_numpy_hwc_input_and_data_range(pair):
    out, hr = pair
    a, b = out[0].permute(1, 2, 0).numpy(), hr[0].permute(1, 2, 0).numpy()
    assert psnr(a, b, crop_border=2, test_y_channel=True) == pytest.approx(psnr(out, hr, 2, True), abs=1e-9)
    assert ssim(a * 255, b * 255, data_range=255) == pytest.approx(ssim(out, hr), abs=1e-7)


def test_batch_is_mean_of_images_and_identical_is_inf(pair):
    out, hr = pair
    noisy = (hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    batch = psnr(torch.cat([out, noisy]), torch.cat([hr, hr]))
    assert batch == pytest.approx((psnr(out, hr) + psnr(noisy, hr)) / 2, abs=1e-9)
    assert math.isinf(psnr(hr, hr))
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_raises(pair):
    out, hr = pair
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(out[..., :-1], hr)
