"""The memory a child network needs, checked against the device before anything trains or runs.

The measurement itself (:mod:`acla_nas.runtime.memory`) knows nothing of networks; this module
builds the child of an :class:`~acla_nas.nn.arch.Arch` on the meta device and asks it.
"""

from __future__ import annotations

from typing import Any

import torch

from acla_nas.nn.arch import task_scale
from acla_nas.nn.network import build
from acla_nas.runtime.memory import BYTES, Footprint, measure, require


def network_footprint(
    arch: Any, lr_size: tuple[int, int], file: str | None = None, train: bool = True
) -> Footprint | None:
    """Footprint of the child network of an :class:`~acla_nas.nn.arch.Arch`, built on meta."""
    try:
        with torch.device("meta"):
            net = build(arch, file=file)
    except Exception:  # noqa: BLE001 - no estimate (e.g. code that needs real tensors); the real build decides
        return None
    return measure(net, lr_size, train)


def check_training(
    arch: Any,
    batch: int,
    patch: int,
    device: torch.device | str,
    batch_field: str,
    batch_file: str | None = None,
    arch_file: str | None = None,
) -> None:
    """Refuse a training run (batches of HR ``patch`` patches) that cannot fit on ``device``; the
    error names the batch (``batch_field`` of ``batch_file``) or, when the parameters dominate,
    ``backbone.kwargs`` of ``arch_file``."""
    lr = max(1, patch // task_scale(arch.task, arch_file))
    fp = network_footprint(arch, (lr, lr), arch_file)
    if fp is None:
        return
    needed = fp.training_bytes(batch)
    by_params = 2 * BYTES * 4 * fp.params > needed
    field, file = ("backbone.kwargs", arch_file) if by_params else (batch_field, batch_file)
    require(
        needed,
        device,
        f"training {arch.backbone} ({fp.params:,} parameters) on batches of {batch} x {patch}x{patch} patches",
        f"lower {field}" + ("" if by_params else " or the patch size"),
        file,
        field,
    )


def check_inference(
    arch: Any, lr_size: tuple[int, int], device: torch.device | str, field: str, hint: str, file: str | None = None
) -> None:
    """Refuse running the model of ``arch`` on one (h, w) input that cannot fit on ``device``."""
    fp = network_footprint(arch, lr_size, file, train=False)
    if fp is not None:
        require(
            fp.inference_bytes(),
            device,
            f"running {arch.backbone} on a {lr_size[1]}x{lr_size[0]} input",
            hint,
            file,
            field,
        )


__all__ = ["check_inference", "check_training", "network_footprint"]
