"""What every data source is made of: item references (an image file, optionally its LR
partner, or a generated image), the lazily decoded list of one split, :class:`DataSource`, and
the helpers the built-in kinds share (listing images, splitting by fraction, reading a spec's
paths and fractions).

Decoded images are kept as uint8 tensors in one process-wide LRU cache (bounded in bytes,
:data:`acla_nas.data.images.IMAGE_CACHE`); unreadable files raise :class:`UserError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from acla_nas.core.errors import UserError
from acla_nas.data.images import IMAGE_CACHE, IMAGE_EXTENSIONS, Item, image_size, load_image_u8

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRef:
    """One data item: an HR file, optionally its LR partner, a downscaling bound and a crop box
    ``(left, top, right, bottom)`` in pixels of the (downscaled) image."""

    hr: Path
    lr: Path | None = None
    max_side: int | None = None
    crop: tuple[int, int, int, int] | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.hr.stem

    def load_hr(self) -> torch.Tensor:
        img = load_image_u8(self.hr, self.max_side)
        if self.crop is None:
            return img
        x0, y0, x1, y1 = self.crop
        return img[:, y0:y1, x0:x1]


@dataclass(frozen=True)
class SyntheticRef:
    """One generated self-similar image (see :mod:`acla_nas.data.synthetic`): no file behind it."""

    params: Any  # synthetic.SyntheticParams
    split: str
    index: int
    lr: None = None
    max_side: None = None

    @property
    def name(self) -> str:
        return f"synthetic_{self.split}_{self.index:03d}"

    def load_hr(self) -> torch.Tensor:
        from acla_nas.data.synthetic import render

        key = ("synthetic", self.params, self.split, self.index)
        img = IMAGE_CACHE.get(key)
        if img is None:
            arr, _ = render(self.params, self.split, self.index)
            img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            IMAGE_CACHE.put(key, img)
        return img


class ImageList(Sequence):
    """Lazily decoded items of one split: uint8 HR tensors, or (lq, hr) pairs for paired data
    (HR cropped to ``scale`` x LR size, as BasicSR's mod-crop)."""

    def __init__(self, refs: Sequence[ImageRef | SyntheticRef], scale: int = 1) -> None:
        self.refs = list(refs)
        self.scale = scale

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> Item:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("ImageList does not support slicing")
        ref = self.refs[i]
        hr = ref.load_hr()
        if ref.lr is None:
            return hr
        lq = load_image_u8(ref.lr, ref.max_side)
        h, w = lq.shape[1] * self.scale, lq.shape[2] * self.scale
        if hr.shape[1] < h or hr.shape[2] < w:
            raise UserError(
                f"HR image {hr.shape[2]}x{hr.shape[1]} is smaller than {self.scale} x its LR partner "
                f"{lq.shape[2]}x{lq.shape[1]} ({ref.lr})",
                file=str(ref.hr),
            )
        return lq, hr[:, :h, :w]

    def name(self, i: int) -> str:
        return self.refs[i].name

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.refs]

    @property
    def paired(self) -> bool:
        return any(r.lr is not None for r in self.refs)

    def hr_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of each item's HR image as used (pairs: ``scale`` x the LR size),
        read from the file headers, so sizes can be checked before anything is decoded."""
        out = []
        for ref in self.refs:
            if isinstance(ref, SyntheticRef):
                out.append((ref.params.size, ref.params.size))
            elif ref.lr is not None:
                h, w = image_size(ref.lr, ref.max_side)
                out.append((h * self.scale, w * self.scale))
            elif ref.crop is not None:
                h, w = image_size(ref.hr, ref.max_side)
                x0, y0, x1, y1 = ref.crop
                out.append((max(0, min(y1, h) - y0), max(0, min(x1, w) - x0)))
            else:
                out.append(image_size(ref.hr, ref.max_side))
        return out


def check_min_side(items: Sequence[Item], min_side: int, why: str, field: str) -> None:
    """Every item's HR image must be at least ``min_side`` pixels on each side (``why`` says
    what needs it); the error names the image file (or item) and the field that set the bound."""
    if isinstance(items, ImageList):
        sizes = items.hr_sizes()
        names = [str(r.hr) if isinstance(r, ImageRef) else r.name for r in items.refs]
    else:
        sizes = [tuple((it[1] if isinstance(it, tuple) else it).shape[-2:]) for it in items]
        names = [f"#{i}" for i in range(len(sizes))]
    for name, (h, w) in zip(names, sizes):
        if min(h, w) < min_side:
            raise UserError(
                f"the image is {w}x{h}, smaller than {min_side}x{min_side}, the least {why}", file=name, field=field
            )


@dataclass
class DataSource:
    """Named splits of image references; ``split(name)`` gives the lazily decoded items."""

    name: str
    spec: dict[str, Any]
    splits: dict[str, list[ImageRef | SyntheticRef]] = field(default_factory=dict)
    scale: int = 1

    def split(self, name: str) -> ImageList:
        refs = self.splits.get(name, [])
        if not refs:
            raise UserError(f"the {name} split of data source {self.name!r} has no images", field="data")
        return ImageList(refs, self.scale)

    def all(self) -> ImageList:
        """Every image of the source (train, val, test), e.g. to evaluate a whole folder."""
        refs = [r for s in SPLITS for r in self.splits.get(s, [])]
        if not refs:
            raise UserError(f"data source {self.name!r} has no images", field="data")
        return ImageList(refs, self.scale)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def split_by_fraction(items: list, val_fraction: float, test_fraction: float) -> dict[str, list]:
    """Deterministic split of a sorted list: test = the last part, val = the part before it.

    A non-zero fraction always gets at least one item (while any are left)."""
    n = len(items)

    def count(frac: float, avail: int) -> int:
        return min(avail, max(1 if frac > 0 else 0, round(n * frac)))

    n_test = count(test_fraction, n)
    n_val = count(val_fraction, n - n_test)
    n_train = n - n_test - n_val
    return {"train": items[:n_train], "val": items[n_train : n_train + n_val], "test": items[n_train + n_val :]}


def spec_dir(value: Any, fld: str) -> Path:
    """The existing folder a spec field names."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise UserError(f"expected a folder path, got {value!r}", field=fld)
    p = Path(value).expanduser()
    if not p.is_dir():
        raise UserError(f"folder {p} does not exist", field=fld)
    return p


def spec_fraction(spec: dict, key: str) -> float:
    """``val_fraction`` / ``test_fraction`` of a spec (default 0.1)."""
    value = spec.get(key, 0.1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"got {value!r}, expected a number in [0, 1]", field=f"data.{key}")
    return float(value)


def spec_max_side(spec: dict, default: int | None) -> int | None:
    """The downscaling bound of a spec (None = keep full size)."""
    value = spec.get("max_side", default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 16):
        raise UserError(f"got {value!r}, expected an integer >= 16 or null", field="data.max_side")
    return value


__all__ = [
    "SPLITS",
    "DataSource",
    "ImageList",
    "ImageRef",
    "SyntheticRef",
    "check_min_side",
    "list_images",
    "spec_dir",
    "spec_fraction",
    "spec_max_side",
    "split_by_fraction",
]
