"""Patches out: seeded, resumable patch sampling for training and fixed patches for validation.

A batch depends only on (seed, step), so a resumed run draws the same batches as an unbroken
one and every architecture of a table sees the same data (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from acla_nas.core.errors import UserError
from acla_nas.data.images import Item, to_float
from acla_nas.tasks import Task


def _mix_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for (seed, step): batches are independent of how we got there."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _dihedral(t: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/90-degree rotations of a (C,H,W) tensor."""
    if k & 1:
        t = t.flip(-1)
    if k & 2:
        t = t.flip(-2)
    if k & 4:
        t = t.transpose(-1, -2)
    return t


def _item_name(items: Sequence, i: int) -> str:
    return items.name(i) if hasattr(items, "name") else f"#{i}"


def _crop(
    items: Sequence, i: int, patch: int, scale: int, g: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A random HR patch (and the aligned LR patch for pairs) from item ``i``."""
    item = items[i]
    lq, hr = item if isinstance(item, tuple) else (None, item)
    h, w = hr.shape[-2:]
    if h < patch or w < patch:
        raise UserError(f"patch {patch} is larger than image {_item_name(items, i)} ({w}x{h})", field="train.patch")
    lp = patch // scale
    y = int(torch.randint(0, h // scale - lp + 1, (1,), generator=g)) * scale
    x = int(torch.randint(0, w // scale - lp + 1, (1,), generator=g)) * scale
    hr_p = hr[..., y : y + patch, x : x + patch]
    lq_p = None if lq is None else lq[..., y // scale : y // scale + lp, x // scale : x // scale + lp]
    return lq_p, hr_p


class PatchSampler:
    """Infinite, seeded iterator of ``(lq, hr)`` float batches of random patches.

    ``patch`` is the HR patch size (a multiple of the task's scale). Each patch gets a random
    flip/rotation; degradations are applied on the fly to the augmented HR patch (so e.g. the
    Bayer phase and JPEG blocks stay aligned to the patch). Batch ``n`` depends only on
    ``(seed, n)``, so ``state_dict()`` is just ``{seed, step}`` and resuming is exact."""

    def __init__(
        self, items: Sequence[Item], task: Task, patch: int, batch: int, seed: int = 0, augment: bool = True
    ) -> None:
        if not len(items):
            raise UserError("no training images", field="data")
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or patch % task.scale:
            raise UserError(
                f"got {patch!r}, expected a positive multiple of the scale ({task.scale})", field="train.patch"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UserError(f"got {batch!r}, expected a positive integer", field="train.batch")
        self.items, self.task, self.patch, self.batch = items, task, patch, batch
        self.seed, self.augment, self.step = int(seed), augment, 0

    def __iter__(self) -> PatchSampler:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.batch_at(self.step)
        self.step += 1
        return out

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch number ``step`` (pure function of seed and step)."""
        g = torch.Generator().manual_seed(_mix_seed(self.seed, step))
        lqs, hrs = [], []
        for _ in range(self.batch):
            i = int(torch.randint(0, len(self.items), (1,), generator=g))
            lq, hr = _crop(self.items, i, self.patch, self.task.scale, g)
            k = int(torch.randint(0, 8, (1,), generator=g)) if self.augment else 0
            hrs.append(_dihedral(to_float(hr), k))
            if lq is not None:
                lqs.append(_dihedral(to_float(lq), k))
        hr_b = torch.stack(hrs)
        lq_b = torch.stack(lqs) if lqs else self.task.degrade(hr_b, g)
        return lq_b.float(), hr_b

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.step = int(state["seed"]), int(state["step"])


def fixed_patches(
    items: Sequence[Item], task: Task, n: int, patch: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic ``(lq, hr)`` pair of ``n`` patches for fast validation during search.

    Patches cycle over the images at seeded random positions, without augmentation; the patch
    is shrunk (to a multiple of the scale) when an image is smaller."""
    if not len(items) or n < 1:
        raise UserError("no validation images or patches", field="data")
    smallest = min(min((it[1] if isinstance(it, tuple) else it).shape[-2:]) for it in items)
    p = min(patch, smallest)
    p -= p % task.scale
    g = torch.Generator().manual_seed(_mix_seed(seed, 2**31 - 1))
    lqs, hrs = [], []
    for k in range(n):
        lq, hr = _crop(items, k % len(items), p, task.scale, g)
        hrs.append(to_float(hr))
        if lq is not None:
            lqs.append(to_float(lq))
    hr_b = torch.stack(hrs)
    lq_b = torch.stack(lqs) if lqs else task.degrade(hr_b, g)
    return lq_b.float(), hr_b


def full_images(items: Sequence[Item]) -> list[Item]:
    """All items decoded to float tensors (HR, or (lq, hr) pairs): what ``evaluate_model`` takes."""
    out: list[Item] = []
    for it in items:
        out.append((to_float(it[0]), to_float(it[1])) if isinstance(it, tuple) else to_float(it))
    return out


__all__ = ["PatchSampler", "fixed_patches", "full_images"]
