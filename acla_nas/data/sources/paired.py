"""``{kind: paired, hr: DIR, lr: DIR}``: HR/LR pairs (see :func:`find_pairs` for the naming
rules: DIV2K, Set5/Set14/B100/Urban100), split by sorted HR name with the folder kind's fractions.
"""

from __future__ import annotations

from pathlib import Path

from acla_nas.core.errors import UserError
from acla_nas.data.sources.base import (
    SPLITS,
    DataSource,
    ImageRef,
    list_images,
    spec_dir,
    spec_fraction,
    split_by_fraction,
)
from acla_nas.data.sources.registry import register_source


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
    hr_dir, lr_dir = spec_dir(spec.get("hr"), "data.hr"), spec_dir(spec.get("lr"), "data.lr")
    pairs = find_pairs(hr_dir, lr_dir, scale)
    parts = split_by_fraction(pairs, spec_fraction(spec, "val_fraction"), spec_fraction(spec, "test_fraction"))
    splits = {s: [ImageRef(hr, lr) for hr, lr in parts[s]] for s in SPLITS}
    name = hr_dir.parent.name if hr_dir.name.upper() in ("HR", "GT") else hr_dir.name
    return DataSource(name or str(hr_dir), dict(spec), splits, scale=scale)


register_source("paired", ("val_fraction", "test_fraction"), required=("hr", "lr"))(paired_source)

__all__ = ["find_pairs", "paired_source"]
