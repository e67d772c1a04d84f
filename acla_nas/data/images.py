"""Images in: decoding (8- and 16-bit, float TIFF, palette, EXIF orientation), a byte-bounded
cache of decoded images, saving, and where the embedded photographs live.

Every image acla-nas reads goes through :func:`load_image_u8` / :func:`load_image`, so a corrupt
or odd file gives the same one-line error everywhere.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from acla_nas.core.errors import UserError
from acla_nas.core.outputs import writing
from acla_nas.core.quiet import captured_warnings

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EMBEDDED_MAX_SIDE = 512
#: one image, or an (HR, LQ) pair from paired folders
Item = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


class _ByteLRU:
    """A least-recently-used cache of tensors bounded by their total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


IMAGE_CACHE = _ByteLRU(max_bytes=int(os.environ.get("ACLA_NAS_IMAGE_CACHE_MB", "2048")) * 2**20)


def _to_8bit(im: Image.Image, path: Path) -> Image.Image:
    """High-bit-depth greyscale as 8 bit: 16-bit integers scaled by 1/257, 32-bit floats read as
    [0, 1]. Anything else is refused rather than silently clipped (Pillow would turn a float image
    into near-black: every value below 1 becomes 0)."""
    arr = np.asarray(im, dtype=np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode == "F":
        if not np.isfinite(arr).all():
            raise UserError("a 32-bit float image with NaN or infinite pixels", file=str(path))
        if lo < 0 or hi > 1:
            raise UserError(
                f"a 32-bit float image with values in [{lo:g}, {hi:g}]; expected [0, 1] "
                "(or save it as an 8- or 16-bit image)",
                file=str(path),
            )
        arr = arr * 255.0
    else:
        if lo < 0 or hi > 65535:
            raise UserError(
                f"a 32-bit integer image with values in [{lo:g}, {hi:g}]; expected 16-bit values "
                "0..65535 (or save it as an 8- or 16-bit image)",
                file=str(path),
            )
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")


def _decode(path: Path, max_side: int | None) -> torch.Tensor:
    try:
        with captured_warnings(str(path)), Image.open(path) as im:  # e.g. a corrupt EXIF block
            im.load()
            if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16/32-bit PNG/TIFF -> 8 bit
                im = _to_8bit(im, path)
            im = im.convert("RGB")
            if max_side and max(im.size) > max_side:
                im = im.resize(_scaled(im.size, max_side), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise UserError("image file not found", file=str(path)) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _unreadable(path: Path, exc: Exception) -> UserError:
    hint = (
        "; multi-channel float TIFFs are not supported, save 8- or 16-bit"
        if path.suffix.lower() in (".tif", ".tiff")
        else ""
    )
    return UserError(f"cannot read image ({type(exc).__name__}: {exc}){hint}", file=str(path))


def _scaled(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(w, h) after the ``max_side`` downscale of :func:`_decode` (same rounding)."""
    if max_side and max(size) > max_side:
        ratio = max_side / max(size)
        return max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio))
    return size


def image_size(path: str | Path, max_side: int | None = None) -> tuple[int, int]:
    """(height, width) of an image file from its header (nothing decoded), after ``max_side``."""
    p = Path(path)
    try:
        with captured_warnings(str(p)), Image.open(p) as im:
            w, h = _scaled(im.size, max_side)
    except FileNotFoundError:
        raise UserError("image file not found", file=str(p)) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(p, exc) from None
    return h, w


def load_image_u8(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """(3,H,W) uint8 RGB tensor, decoded once and cached (greyscale replicated, alpha dropped)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise UserError("image file not found", file=str(p)) from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size, max_side)
    cached = IMAGE_CACHE.get(key)
    if cached is None:
        cached = _decode(p, max_side)
        IMAGE_CACHE.put(key, cached)
    return cached


def load_image(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """(3,H,W) float32 RGB tensor in [0,1]."""
    return to_float(load_image_u8(path, max_side))


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0,1]; float tensors pass through as float32."""
    return img.float().div(255.0) if img.dtype == torch.uint8 else img.float()


def save_image(img: torch.Tensor, path: str | Path, format: str | None = None) -> None:
    """Write a (3,H,W) or (1,3,H,W) [0,1] tensor as an 8-bit image (format from the suffix by default)."""
    t = img.detach().to("cpu")
    if t.ndim == 4:
        t = t[0]
    arr = t.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    with writing(path):  # a full disk or read-only folder: PATH: cannot write (reason)
        Image.fromarray(arr, "RGB").save(path, format=format)


def embedded_dir() -> Path:
    """scikit-image's data folder (the photographs ship with the wheel)."""
    import skimage.data  # local: only this source needs scikit-image

    return Path(os.path.dirname(skimage.data.__file__))


__all__ = [
    "EMBEDDED_MAX_SIDE",
    "IMAGE_CACHE",
    "IMAGE_EXTENSIONS",
    "Item",
    "embedded_dir",
    "image_size",
    "load_image",
    "load_image_u8",
    "save_image",
    "to_float",
]
