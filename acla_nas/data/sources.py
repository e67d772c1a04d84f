"""Image sources, deterministic splits, patch sampling and a decoded-image cache.

Sources (``data:`` section of a YAML file, or :func:`make_source`):

* ``{kind: embedded}`` (the default) -- real photographs shipped inside scikit-image, read
  directly from its package folder with Pillow (never through ``skimage.data`` fetchers, which
  may download). The split is fixed (:data:`EMBEDDED_SPLIT`): *test* = astronaut, coffee,
  chelsea; *val* = rocket, coins; *train* = hubble_deep_field, ihc, motorcycle_left,
  motorcycle_right (a stereo pair, kept together in one split), retina, camera, moon,
  clock_motion. Greyscale photographs are replicated to 3 channels. Images whose long side
  exceeds 512 px (retina, hubble, motorcycles, rocket, coffee) are downscaled once, with
  Pillow's antialiased bicubic, to 512 px on the long side, which keeps CPU work bounded and
  is deterministic. A missing file is skipped with a warning.
* ``{kind: folder, path: DIR}`` -- HR images (png/jpg/bmp/tif), degraded on the fly by the
  task. Split: explicit ``train/ val/ test/`` subfolders when ``train/`` exists (a missing
  ``val/`` or ``test/`` is carved from ``train/``), otherwise by sorted file name: the last
  ``test_fraction`` (default 0.1, at least one image) is *test*, the ``val_fraction`` before it
  *val*, the rest *train*. ``test_fraction: 1`` puts every image in *test* (evaluation sets).
* ``{kind: paired, hr: DIR, lr: DIR}`` -- HR/LR pairs (see :func:`find_pairs` for the naming
  rules: DIV2K, Set5/Set14/B100/Urban100), split by sorted HR name with the same fractions.

Decoded images are kept as uint8 tensors in one process-wide LRU cache (bounded in bytes);
unreadable files raise :class:`UserError` naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.data.images import (
    EMBEDDED_MAX_SIDE,
    IMAGE_CACHE,
    IMAGE_EXTENSIONS,
    Item,
    embedded_dir,
    image_size,
    load_image_u8,
)

EMBEDDED_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "hubble_deep_field.jpg",
        "ihc.png",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "retina.jpg",
        "camera.png",
        "moon.png",
        "clock_motion.png",
    ),
    "val": ("rocket.jpg", "coins.png"),
    "test": ("astronaut.png", "coffee.png", "chelsea.png"),
}
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- sources


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


EMBEDDED_SETS = ("photos", "textures")
#: scikit-image's texture photographs (512x512, greyscale), each cut into 256x256 quadrants:
#: the top two train, bottom-left validates, bottom-right tests (no pixel in two splits)
TEXTURE_FILES = ("brick.png", "grass.png", "gravel.png")
TEXTURE_QUADRANTS = {"train": ((0, 0), (1, 0)), "val": ((0, 1),), "test": ((1, 1),)}


def embedded_source(max_side: int | None = EMBEDDED_MAX_SIDE, set_name: str = "photos") -> DataSource:
    root = embedded_dir()
    splits: dict[str, list[ImageRef | SyntheticRef]] = {}
    if set_name == "textures":
        for split, quads in TEXTURE_QUADRANTS.items():
            refs: list[ImageRef | SyntheticRef] = []
            for fname in TEXTURE_FILES:
                p = root / fname
                if not p.is_file():
                    warnings.warn(f"embedded texture {p} is missing; skipped", stacklevel=2)
                    continue
                for qx, qy in quads:
                    refs.append(
                        ImageRef(
                            p,
                            None,
                            None,
                            (256 * qx, 256 * qy, 256 * qx + 256, 256 * qy + 256),
                            f"{p.stem}_{'tb'[qy]}{'lr'[qx]}",
                        )
                    )
            splits[split] = refs
        return DataSource("textures", {"kind": "embedded", "set": "textures"}, splits)
    for split, names in EMBEDDED_SPLIT.items():
        refs = []
        for fname in names:
            p = root / fname
            if p.is_file():
                refs.append(ImageRef(p, None, max_side))
            else:
                warnings.warn(f"embedded photograph {p} is missing; skipped", stacklevel=2)
        splits[split] = refs
    spec = {"kind": "embedded"} if max_side == EMBEDDED_MAX_SIDE else {"kind": "embedded", "max_side": max_side}
    return DataSource("embedded", spec, splits)


def synthetic_source(spec: dict) -> DataSource:
    """Generated self-similar images (:mod:`acla_nas.data.synthetic`); splits by seed."""
    from acla_nas.data.synthetic import parse_params

    params = parse_params(spec)
    splits: dict[str, list[ImageRef | SyntheticRef]] = {
        s: [SyntheticRef(params, s, i) for i in range(params.count(s))] for s in SPLITS
    }
    return DataSource(f"synthetic(seed {params.seed})", dict(spec), splits)


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


def _dir(value: Any, fld: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise UserError(f"expected a folder path, got {value!r}", field=fld)
    p = Path(value).expanduser()
    if not p.is_dir():
        raise UserError(f"folder {p} does not exist", field=fld)
    return p


def _fraction(spec: dict, key: str) -> float:
    value = spec.get(key, 0.1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"got {value!r}, expected a number in [0, 1]", field=f"data.{key}")
    return float(value)


def _max_side(spec: dict, default: int | None) -> int | None:
    value = spec.get("max_side", default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 16):
        raise UserError(f"got {value!r}, expected an integer >= 16 or null", field="data.max_side")
    return value


def folder_source(spec: dict) -> DataSource:
    root = _dir(spec.get("path"), "data.path")
    vf, tf = _fraction(spec, "val_fraction"), _fraction(spec, "test_fraction")
    max_side = _max_side(spec, None)
    if (root / "train").is_dir():
        train = list_images(root / "train")
        carved = split_by_fraction(train, 0 if (root / "val").is_dir() else vf, 0 if (root / "test").is_dir() else tf)
        files = {s: (list_images(root / s) if (root / s).is_dir() and s != "train" else carved[s]) for s in SPLITS}
    else:
        files = split_by_fraction(list_images(root), vf, tf)
    if not any(files.values()):
        raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}", field="data.path")
    splits = {s: [ImageRef(p, None, max_side) for p in files[s]] for s in SPLITS}
    return DataSource(root.name or str(root), dict(spec), splits)


def _lr_dir(lr_root: Path, scale: int) -> Path:
    for sub in (f"X{scale}", f"x{scale}"):
        if (lr_root / sub).is_dir():
            return lr_root / sub
    return lr_root


def _lr_candidates(stem: str, scale: int) -> list[str]:
    names = [stem, f"{stem}x{scale}", f"{stem}_x{scale}", f"{stem}_X{scale}"]
    for hr_tag, lr_tag in (("_HR", "_LR"), ("HR", "LR")):
        i = stem.rfind(hr_tag)
        if i >= 0:
            names.append(stem[:i] + lr_tag + stem[i + len(hr_tag) :])
    return names


def find_pairs(hr_dir: Path, lr_dir: Path, scale: int = 1) -> list[tuple[Path, Path]]:
    """Match every HR image to its LR partner by file name (any image extension).

    * the LR folder may hold an ``X{scale}/`` subfolder (DIV2K ``DIV2K_train_LR_bicubic/X2``),
      used when present;
    * LR names tried, in order, for HR ``NAME.*``: ``NAME`` (Set5/Set14/B100/Urban100 as most
      distributions ship them), ``NAMEx{scale}`` (DIV2K ``0001x2.png``, BasicSR's
      ``LRbicx2``), ``NAME_x{scale}``, and ``NAME`` with its last ``_HR`` replaced by ``_LR``
      (``img_001_SRF_2_HR.png`` <-> ``img_001_SRF_2_LR.png``);
    * when HR and LR are the same folder, only names containing ``HR`` count as HR images.

    An HR image without a partner raises :class:`UserError` naming that file.
    """
    lr_dir = _lr_dir(lr_dir, scale)
    same = hr_dir.resolve() == lr_dir.resolve()
    hr_files = [p for p in list_images(hr_dir) if not same or "HR" in p.stem]
    if not hr_files:
        raise UserError(f"no HR images in {hr_dir}", field="data.hr")
    lr_by_stem = {p.stem: p for p in list_images(lr_dir)}
    pairs = []
    for hr in hr_files:
        tried = [n for n in _lr_candidates(hr.stem, scale) if not (same and n == hr.stem)]
        match = next((lr_by_stem[n] for n in tried if n in lr_by_stem), None)
        if match is None:
            raise UserError(f"no LR partner in {lr_dir} (looked for {', '.join(dict.fromkeys(tried))})", file=str(hr))
        pairs.append((hr, match))
    return pairs


def paired_source(spec: dict, scale: int = 1) -> DataSource:
    hr_dir, lr_dir = _dir(spec.get("hr"), "data.hr"), _dir(spec.get("lr"), "data.lr")
    pairs = find_pairs(hr_dir, lr_dir, scale)
    parts = split_by_fraction(pairs, _fraction(spec, "val_fraction"), _fraction(spec, "test_fraction"))
    splits = {s: [ImageRef(hr, lr) for hr, lr in parts[s]] for s in SPLITS}
    name = hr_dir.parent.name if hr_dir.name.upper() in ("HR", "GT") else hr_dir.name
    return DataSource(name or str(hr_dir), dict(spec), splits, scale=scale)


@dataclass(frozen=True)
class SourceKind:
    """One ``data: {kind: ...}`` of a space: its keys (``required`` ones are directory paths),
    a check of the spec that can run before any file is read, and the builder."""

    keys: frozenset[str]
    build: Callable[[dict, int], DataSource]  # (spec, task scale) -> source
    required: tuple[str, ...] = ()
    check: Callable[[dict], Any] | None = None


DATA_SOURCES: Registry[SourceKind] = Registry(
    "data kind",
    "acla_nas.data_sources",
    "data.kind",
    check=lambda o: isinstance(o, SourceKind),
    expected="acla_nas.data.sources.SourceKind",
)


def register_source(
    kind: str, keys: Sequence[str], required: Sequence[str] = (), check: Callable[[dict], Any] | None = None
) -> Callable[[Callable[[dict, int], DataSource]], Callable[[dict, int], DataSource]]:
    """Decorator: make ``build(spec, scale) -> DataSource`` the data source of ``kind``."""

    def deco(build: Callable[[dict, int], DataSource]) -> Callable[[dict, int], DataSource]:
        DATA_SOURCES.add(kind, SourceKind(frozenset({"kind", *keys, *required}), build, tuple(required), check))
        return build

    return deco


def _check_synthetic(spec: dict) -> None:
    from acla_nas.data.synthetic import parse_params

    parse_params(spec)


@register_source("embedded", ("max_side", "set"))
def _embedded(spec: dict, scale: int) -> DataSource:
    set_name = spec.get("set", "photos")
    if set_name not in EMBEDDED_SETS:
        raise UserError(f"got {set_name!r}, expected one of {', '.join(EMBEDDED_SETS)}", field="data.set")
    return embedded_source(_max_side(spec, EMBEDDED_MAX_SIDE), set_name)


register_source(
    "synthetic",
    (
        "seed",
        "size",
        "n_train",
        "n_val",
        "n_test",
        "periods",
        "lattices",
        "motifs",
        "jitter",
        "brightness",
        "supersample",
        "geometry",
    ),
    check=_check_synthetic,
)(lambda spec, scale: synthetic_source(spec))
register_source("folder", ("val_fraction", "test_fraction", "max_side"), required=("path",))(
    lambda spec, scale: folder_source(spec)
)
register_source("paired", ("val_fraction", "test_fraction"), required=("hr", "lr"))(paired_source)


def data_kind(spec: dict) -> SourceKind:
    """The registered kind of a ``data:`` spec, with its keys checked."""
    kind = spec.get("kind", "embedded")
    if not isinstance(kind, str) or kind not in DATA_SOURCES.names():
        raise UserError(
            f"unknown data kind {kind!r} (expected one of {', '.join(DATA_SOURCES.names())})", field="data.kind"
        )
    source = DATA_SOURCES.get(kind)
    extra = sorted(set(spec) - source.keys)
    if extra:
        raise UserError(
            f"unknown key {extra[0]!r} for kind {kind} (expected {', '.join(sorted(source.keys))})",
            field=f"data.{extra[0]}",
        )
    return source


def make_source(spec: dict | None = None, scale: int = 1) -> DataSource:
    """A :class:`DataSource` from a ``data:`` spec (None = the embedded photographs).

    ``scale`` is the task's scale, used to find paired LR files and to mod-crop HR images."""
    if spec is None:
        return embedded_source()
    if not isinstance(spec, dict):
        raise UserError(f"expected a mapping like {{kind: folder, path: DIR}}, got {spec!r}", field="data")
    return data_kind(spec).build(spec, scale)


def source_for_dir(path: str | Path, scale: int = 1) -> DataSource:
    """A whole folder as one test set: ``HR/`` + ``LR/`` (or ``LR_bicubic/``) subfolders make
    it paired, otherwise its images are HR images degraded by the task."""
    root = _dir(path, "--data")
    if (root / "HR").is_dir():
        for lr in ("LR", "LR_bicubic", "LQ"):
            if (root / lr).is_dir():
                src = make_source(
                    {
                        "kind": "paired",
                        "hr": str(root / "HR"),
                        "lr": str(root / lr),
                        "val_fraction": 0,
                        "test_fraction": 1.0,
                    },
                    scale,
                )
                src.name = root.name
                return src
    try:
        return make_source({"kind": "folder", "path": str(root), "val_fraction": 0, "test_fraction": 1.0}, scale)
    except UserError as exc:
        fld = "--data" if exc.field in ("data.path", "data") else exc.field
        raise UserError(exc.message, file=exc.file, field=fld) from None


__all__ = [
    "DATA_SOURCES",
    "DataSource",
    "EMBEDDED_SETS",
    "EMBEDDED_SPLIT",
    "ImageList",
    "ImageRef",
    "SPLITS",
    "SourceKind",
    "SyntheticRef",
    "TEXTURE_FILES",
    "TEXTURE_QUADRANTS",
    "check_min_side",
    "data_kind",
    "embedded_source",
    "find_pairs",
    "folder_source",
    "list_images",
    "make_source",
    "paired_source",
    "register_source",
    "source_for_dir",
    "split_by_fraction",
    "synthetic_source",
]
