"""``{kind: embedded}`` (the default): real photographs shipped inside scikit-image, read
directly from its package folder with Pillow (never through ``skimage.data`` fetchers, which may
download).

The split is fixed (:data:`EMBEDDED_SPLIT`): *test* = astronaut, coffee, chelsea; *val* =
rocket, coins; *train* = hubble_deep_field, ihc, motorcycle_left, motorcycle_right (a stereo
pair, kept together in one split), retina, camera, moon, clock_motion. Greyscale photographs are
replicated to 3 channels. Images whose long side exceeds 512 px (retina, hubble, motorcycles,
rocket, coffee) are downscaled once, with Pillow's antialiased bicubic, to 512 px on the long
side, which keeps CPU work bounded and is deterministic. A missing file is skipped with a
warning. ``set: textures`` gives scikit-image's texture photographs instead (see
:data:`TEXTURE_QUADRANTS`).
"""

from __future__ import annotations

import warnings

from acla_nas.core.errors import UserError
from acla_nas.data.images import EMBEDDED_MAX_SIDE, embedded_dir
from acla_nas.data.sources.base import DataSource, ImageRef, SyntheticRef, spec_max_side
from acla_nas.data.sources.registry import register_source

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


@register_source("embedded", ("max_side", "set"))
def _embedded(spec: dict, scale: int) -> DataSource:
    set_name = spec.get("set", "photos")
    if set_name not in EMBEDDED_SETS:
        raise UserError(f"got {set_name!r}, expected one of {', '.join(EMBEDDED_SETS)}", field="data.set")
    return embedded_source(spec_max_side(spec, EMBEDDED_MAX_SIDE), set_name)


__all__ = ["EMBEDDED_SETS", "EMBEDDED_SPLIT", "TEXTURE_FILES", "TEXTURE_QUADRANTS", "embedded_source"]
