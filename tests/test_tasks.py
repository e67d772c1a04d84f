"""Degradations: sizes, statistics, seeding, and spec validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acla_nas.core.errors import UserError
from acla_nas.data.images import embedded_dir, load_image
from acla_nas.tasks import bayer_masks, make_task, matlab_imresize
from acla_nas.tasks.metrics import psnr

SPECS = [
    {"name": "sr", "scale": 2},
    {"name": "sr", "scale": 3, "kernel": "matlab"},
    {"name": "denoise", "sigma": 25},
    {"name": "demosaic"},
    {"name": "jpeg", "quality": 10},
]


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return load_image(embedded_dir() / "astronaut.png")[None]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip(spec):
    task = make_task(spec)
    assert task.spec == spec
    assert make_task(task.spec) == task
    assert task.describe()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_sizes_protocol_and_floor(scale):
    task = make_task({"name": "sr", "scale": scale})
    assert (task.scale, task.crop_border, task.test_y_channel) == (scale, scale, True)
    hr = torch.rand(2, 3, 50, 47, generator=torch.Generator().manual_seed(0))
    lq = task.degrade(hr)
    assert lq.shape == (2, 3, 50 // scale, 47 // scale)
    assert torch.equal(lq, (lq * 255).round() / 255)  # 8-bit, like LR PNGs
    floor = task.input_floor(lq, hr)
    assert floor.shape == task.crop_hr(hr).shape == (2, 3, 50 // scale * scale, 47 // scale * scale)


def test_torch_bicubic_vs_matlab_imresize(astronaut):
    """The figure quoted in acla_nas.tasks: the kernels agree except at the outermost pixels."""
    measured = {}
    for scale in (2, 3, 4):
        a = make_task({"name": "sr", "scale": scale}).degrade(astronaut)
        b = make_task({"name": "sr", "scale": scale, "kernel": "matlab"}).degrade(astronaut)
        measured[scale] = psnr(a, b)
        assert psnr(a, b, crop_border=2) > 90
    assert measured[2] == pytest.approx(65.8, abs=0.1)
    assert measured[3] == pytest.approx(60.2, abs=0.1)
    assert measured[4] == pytest.approx(58.2, abs=0.1)


def test_matlab_imresize_kernel_properties():
    ramp = np.tile(np.arange(32.0), (6, 1))
    down = matlab_imresize(ramp, 0.5)
    assert down.shape == (3, 16)
    # output pixel j sits at input position 2j + 0.5; the cubic reproduces ramps away from borders
    np.testing.assert_allclose(down[1, 3:-3], 2 * np.arange(3, 13) + 0.5, atol=1e-12)
    assert matlab_imresize(np.full((7, 9, 3), 0.3), 3).shape == (21, 27, 3)
    np.testing.assert_allclose(matlab_imresize(np.full((7, 9, 3), 0.3), 1 / 3), 0.3, atol=1e-12)
    # symmetric padding: a mirrored ramp is not reproduced at the border
    assert abs(down[1, 0] - 0.5) > 0.01


def test_denoise_statistics_and_seeding():
    task = make_task({"name": "denoise", "sigma": 25})
    hr = torch.full((2, 3, 96, 96), 0.02)
    lq = task.degrade(hr, torch.Generator().manual_seed(1))
    noise = lq - hr
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.03)
    assert abs(noise.mean().item()) < 0.003
    assert lq.min() < 0  # not clipped, as in the literature
    again = task.degrade(hr, torch.Generator().manual_seed(1))
    other = task.degrade(hr, torch.Generator().manual_seed(2))
    assert torch.equal(lq, again) and not torch.equal(lq, other)
    assert torch.equal(task.input_floor(lq, hr), lq.clamp(0, 1))


def test_bayer_mask_positions():
    m = bayer_masks(4, 6)
    assert torch.equal(m.sum(0), torch.ones(4, 6))
    assert m[0, 0, 0] == 1 and m[0, 2, 4] == 1 and m[0, 0, 1] == 0  # R at even/even
    assert m[2, 1, 1] == 1 and m[2, 3, 5] == 1 and m[2, 0, 0] == 0  # B at odd/odd
    assert m[1, 0, 1] == 1 and m[1, 1, 0] == 1 and m[1, 1, 1] == 0  # G elsewhere


def test_demosaic_keeps_samples_and_interpolates(astronaut):
    task = make_task({"name": "demosaic"})
    hr = astronaut[..., :64, :64]
    lq = task.degrade(hr)
    m = bayer_masks(64, 64).bool()
    for c in range(3):
        assert torch.allclose(lq[0, c][m[c]], hr[0, c][m[c]], atol=1e-6)  # measured samples kept
    x = torch.linspace(0, 1, 16)
    ramp = (x[None, :] * 0.6 + x[:, None] * 0.3).expand(1, 3, 16, 16)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert torch.allclose(task.degrade(ramp)[inner], ramp[inner], atol=1e-6)  # bilinear is exact on ramps
    assert 20 < psnr(lq, hr) < 45


def test_jpeg_changes_image_and_quality_matters(astronaut):
    hr = astronaut[..., :128, :128]
    low = make_task({"name": "jpeg", "quality": 10}).degrade(hr)
    high = make_task({"name": "jpeg", "quality": 90}).degrade(hr)
    assert low.shape == hr.shape
    assert psnr(low, hr) + 5 < psnr(high, hr) < 60
    assert torch.equal(low, make_task({"name": "jpeg", "quality": 10}).degrade(hr))


@pytest.mark.parametrize(
    "spec, field, text",
    [
        ({"name": "sr", "scale": 5}, "task.scale", "2, 3, 4"),
        ({"name": "sr"}, "task.scale", "2, 3, 4"),
        ({"name": "sr", "scale": 2, "kernel": "lanczos"}, "task.kernel", "matlab"),
        ({"name": "denoise", "sigma": -1}, "task.sigma", "number"),
        ({"name": "jpeg", "quality": 0}, "task.quality", "integer"),
        ({"name": "jpeg", "quality": 10, "q": 3}, "task.q", "unknown key"),
        ({"name": "inpaint"}, "task.name", "demosaic, denoise, jpeg"),
        ("sr", "task", "mapping"),
    ],
)
def test_bad_specs_name_the_field(spec, field, text):
    with pytest.raises(UserError, match=text) as info:
        make_task(spec)
    assert info.value.field == field
