"""Scoring a network on full images with the task's protocol (PSNR/SSIM and the naive floor).

What ``acla-nas evaluate``, a retrained model's test metrics and a trainer's full-image
validation report; large images go through tiled inference (:mod:`acla_nas.train.inference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.data.images import Item, to_float
from acla_nas.data.patches import _mix_seed
from acla_nas.runtime.device import resolve_device
from acla_nas.runtime.progress import progress_bar
from acla_nas.tasks import Task
from acla_nas.tasks.metrics import psnr, quantize, ssim
from acla_nas.train.inference import restore_image


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows]
    return float(np.mean(vals)) if vals else float("nan")


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    images: Sequence[Item],
    task: Task,
    device: torch.device | str | None = None,
    tile: int | None = None,
    seed: int = 0,
    overlap: int = 16,
    require_finite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """PSNR/SSIM of the model and of the naive floor on full images, with the task's protocol.

    ``require_finite``: a NaN or infinite output raises a UserError naming the image instead of
    scoring NaN (what ``acla-nas evaluate`` wants; training keeps going and reports NaN).

    ``images`` are HR tensors (degraded here, seeded by ``(seed, index)``) or ``(lq, hr)`` pairs.
    Outputs are clamped and rounded to 8 bits before scoring, as BasicSR does. For a network
    with ACLA modules, ``keys_used`` gives each module's mean number of keys kept per query,
    averaged over the images (of the last tile of each image when tiled). ``progress``: a bar
    (or log lines where stderr is not a terminal) counting the images, for ``acla-nas evaluate``."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    was_training = model.training
    model.eval()
    names = list(getattr(images, "names", [])) or [f"#{i}" for i in range(len(images))]
    rows, keys = [], []
    key_report = getattr(model, "keys_used", None)
    bar = progress_bar(len(images), enabled=progress, label="evaluating") if progress else None
    try:
        for i in range(len(images)):
            item = images[i]
            if isinstance(item, tuple):
                lq, hr = to_float(item[0])[None], to_float(item[1])[None]
            else:
                hr = task.crop_hr(to_float(item)[None])
                lq = task.degrade(hr, torch.Generator().manual_seed(_mix_seed(seed, i)))
            raw = restore_image(model, lq.to(dev), task.scale, tile, overlap).float().cpu()
            if require_finite and not bool(torch.isfinite(raw).all()):
                raise UserError(f"the model produced NaN or infinite values on image {names[i]}")
            out = quantize(raw)
            if out.shape != hr.shape:
                raise ValueError(f"the model output {tuple(out.shape)} does not match the HR image {tuple(hr.shape)}")
            if callable(key_report):
                keys.append(key_report())
            floor = quantize(task.input_floor(lq, hr))
            cb, y = task.crop_border, task.test_y_channel
            rows.append(
                {
                    "image": names[i],
                    "psnr": psnr(out, hr, cb, y),
                    "ssim": ssim(out, hr, cb, y),
                    "floor_psnr": psnr(floor, hr, cb, y),
                    "floor_ssim": ssim(floor, hr, cb, y),
                }
            )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    result = {
        "psnr": _mean(rows, "psnr"),
        "ssim": _mean(rows, "ssim"),
        "floor_psnr": _mean(rows, "floor_psnr"),
        "floor_ssim": _mean(rows, "floor_ssim"),
        "n": len(rows),
        "per_image": rows,
    }
    if keys and keys[0]:
        result["keys_used"] = {site: sum(k[site] for k in keys) / len(keys) for site in keys[0]}
    return result


__all__ = ["evaluate_model"]
