"""Restoration tasks: a degradation, the metric protocol and the naive baseline ("floor").

``make_task(spec)`` turns a YAML spec into a :class:`Task`:

* ``{name: sr, scale: 2|3|4}`` -- super-resolution. LR = antialiased bicubic downsampling of the
  HR image (cropped to a multiple of ``scale``), clipped and rounded to 8 bits, as benchmark LR
  PNGs are. The default kernel is torch's ``F.interpolate(mode="bicubic", antialias=True)``
  (Keys cubic with a=-0.5, kernel widened by the factor, i.e. PIL's resampling). The field's
  reference is MATLAB's ``imresize``; :func:`matlab_imresize` re-implements it in numpy and
  ``kernel: matlab`` selects it. The two differ only at the image border (torch renormalises the
  truncated kernel, MATLAB pads symmetrically): on the astronaut photograph (512x512) the 8-bit
  LR images agree to 65.8 dB (x2), 60.2 dB (x3), 58.2 dB (x4) RGB PSNR, and to > 94 dB once
  the outermost 2 LR pixels are excluded (a few 1-level rounding flips; ``tests/test_tasks.py``).
  Metrics: Y channel, ``crop_border = scale``. Floor: bicubic upsampling of the LR input.
* ``{name: denoise, sigma: 25}`` -- additive white Gaussian noise of std ``sigma`` on the
  [0,255] scale, *not* clipped nor quantized (as DnCNN and the literature do), seeded by the
  caller's generator. Metrics: RGB, no crop. Floor: the noisy input (clipped to [0,1]).
* ``{name: demosaic}`` -- RGGB Bayer mosaic (R at even row/even column, B at odd/odd, G
  elsewhere); the network input is the *bilinear demosaicked* image (normalised convolution of
  each sparse channel), so every task maps a 3-channel image to a 3-channel image and the
  network learns the residual over the classic baseline. Metrics: RGB, no crop. Floor: that
  bilinear image.
* ``{name: jpeg, quality: 10}`` -- JPEG compression of the RGB image with Pillow at the given
  quality and Pillow's default 4:2:0 chroma subsampling (many papers compress the Y channel
  only with MATLAB; this is the colour variant). Metrics: RGB, no crop. Floor: the JPEG image.

Each task is one module of this package, registered with :func:`register_task` (the registry
imports every module here); :func:`make_task` looks the name up.

Metrics (PSNR/SSIM, the BasicSR protocol) live here too. May import: ``core``, ``runtime``.
"""

from __future__ import annotations

from acla_nas.tasks.base import TASKS, Task, make_task, register_task
from acla_nas.tasks.demosaic import BAYER_PATTERN, DemosaicTask, bayer_masks, bilinear_demosaic, mosaic
from acla_nas.tasks.denoise import DenoiseTask
from acla_nas.tasks.jpeg import JpegTask, jpeg_compress
from acla_nas.tasks.sr import SRTask, matlab_imresize

__all__ = [
    "BAYER_PATTERN",
    "TASKS",
    "DemosaicTask",
    "DenoiseTask",
    "JpegTask",
    "SRTask",
    "Task",
    "bayer_masks",
    "bilinear_demosaic",
    "jpeg_compress",
    "make_task",
    "matlab_imresize",
    "mosaic",
    "register_task",
]
