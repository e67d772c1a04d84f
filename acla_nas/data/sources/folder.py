"""``{kind: folder, path: DIR}``: HR images (png/jpg/bmp/tif), degraded on the fly by the task.

Split: explicit ``train/ val/ test/`` subfolders when ``train/`` exists (a missing ``val/`` or
``test/`` is carved from ``train/``), otherwise by sorted file name: the last ``test_fraction``
(default 0.1, at least one image) is *test*, the ``val_fraction`` before it *val*, the rest
*train*. ``test_fraction: 1`` puts every image in *test* (evaluation sets).
"""

from __future__ import annotations

from acla_nas.core.errors import UserError
from acla_nas.data.images import IMAGE_EXTENSIONS
from acla_nas.data.sources.base import (
    SPLITS,
    DataSource,
    ImageRef,
    list_images,
    spec_dir,
    spec_fraction,
    spec_max_side,
    split_by_fraction,
)
from acla_nas.data.sources.registry import register_source


def folder_source(spec: dict) -> DataSource:
    root = spec_dir(spec.get("path"), "data.path")
    vf, tf = spec_fraction(spec, "val_fraction"), spec_fraction(spec, "test_fraction")
    max_side = spec_max_side(spec, None)
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


register_source("folder", ("val_fraction", "test_fraction", "max_side"), required=("path",))(
    lambda spec, scale: folder_source(spec)
)

__all__ = ["folder_source"]
