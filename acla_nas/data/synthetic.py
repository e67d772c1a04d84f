"""Self-similar images, generated deterministically: where cross-layer attention can pay.

Published non-local and cross-scale attention gains concentrate on self-similar images under
heavy degradation (Urban100 rather than B100). The embedded photographs have little repetition,
so this module renders images that do, from a seed and nothing else (no files are written):

* a background: a smooth colour gradient, a blurred crop of an embedded photograph, or a crop of
  one of scikit-image's texture photographs (brick, grass, gravel);
* ``lattices`` (a range) 2-D lattices per image, each owning one Voronoi cell of the canvas;
  a lattice has two periods drawn from ``periods`` (final-image pixels), a random orientation and
  an angle of 60-120 degrees between its basis vectors;
* one motif per lattice, cut from an embedded photograph or drawn procedurally (disc, ring,
  square, triangle, cross, stripes), under a soft alpha mask, 45-85% of the shorter period wide;
* per repeat: a brightness gain ``1 + N(0, brightness)`` and a position jitter ``N(0, jitter)``
  (final-image pixels);
* everything is rendered at ``supersample`` times the final size and box-filtered down, so a
  period is a non-integer number of pixels and each repeat lands at another sub-pixel phase;
* ``geometry: square`` instead draws square, axis-aligned lattices whose period is a whole number
  of final pixels (``periods`` rounded) with their origin on the final pixel grid: with
  ``jitter: 0`` and ``brightness: 0`` every repeat of a motif is then exactly the same pixels
  (the lattice benchmark family: attention to a repeat one period away is exact copying).

An image is a pure function of (``seed``, split, index, parameters): the same spec gives the
same pixels in any process, which is what makes train/val/test splits "by seed".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from acla_nas.core.checks import real_number, shown
from acla_nas.core.errors import UserError

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MOTIF_KINDS = ("photo", "procedural", "mixed")
GEOMETRIES = ("oblique", "square")
#: photographs motifs and backgrounds are cut from (every embedded photograph, test ones too: the
#: motifs are a distribution of content, not the benchmark's test images)
MOTIF_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "coins.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "camera.png",
    "moon.png",
    "clock_motion.png",
)
TEXTURE_PHOTOS = ("brick.png", "grass.png", "gravel.png")

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "size": 160,  # final image side (px)
    "n_train": 24,
    "n_val": 4,
    "n_test": 6,
    "periods": [12, 40],  # lattice period range (final px)
    "lattices": [1, 3],  # lattices per image (range)
    "motifs": "mixed",  # photo | procedural | mixed
    "jitter": 0.3,  # std of the per-repeat position jitter (final px)
    "brightness": 0.05,  # std of the per-repeat brightness gain
    "supersample": 4,
    "geometry": "oblique",  # oblique (random angles, real periods) | square (axis-aligned, whole-pixel periods)
}
SYNTHETIC_KEYS = {"kind", *SYNTHETIC_DEFAULTS}


@dataclass(frozen=True)
class SyntheticParams:
    """Validated generator parameters (hashable: they key the image cache)."""

    seed: int
    size: int
    n_train: int
    n_val: int
    n_test: int
    periods: tuple[float, float]
    lattices: tuple[int, int]
    motifs: str
    jitter: float
    brightness: float
    supersample: int
    geometry: str = "oblique"

    def count(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]


def _int(spec: dict, key: str, lo: int, hi: int) -> int:
    value = spec.get(key, SYNTHETIC_DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(f"got {shown(value)}, expected an integer in [{lo}, {hi}]", field=f"data.{key}")
    return value


def _number(spec: dict, key: str, lo: float, hi: float) -> float:
    value = spec.get(key, SYNTHETIC_DEFAULTS[key])
    number = real_number(value) if isinstance(value, (int, float)) else None
    if number is None or not lo <= number <= hi:
        raise UserError(f"got {shown(value)}, expected a number in [{lo}, {hi}]", field=f"data.{key}")
    return float(value)


def _range(spec: dict, key: str, lo: float, hi: float, integer: bool) -> tuple:
    value = spec.get(key, SYNTHETIC_DEFAULTS[key])
    kind = "integers" if integer else "numbers"
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(
            not isinstance(v, bool) and isinstance(v, int if integer else (int, float)) and lo <= v <= hi for v in value
        )
    )
    if not ok or value[0] > value[1]:
        raise UserError(
            f"got {value!r}, expected [low, high], {kind} in [{lo}, {hi}], low <= high", field=f"data.{key}"
        )
    return (int(value[0]), int(value[1])) if integer else (float(value[0]), float(value[1]))


def parse_params(spec: dict) -> SyntheticParams:
    """Check a ``{kind: synthetic, ...}`` data spec; errors name ``data.<key>``."""
    extra = sorted(set(spec) - SYNTHETIC_KEYS)
    if extra:
        raise UserError(
            f"unknown key {extra[0]!r} for kind synthetic (expected {', '.join(sorted(SYNTHETIC_KEYS))})",
            field=f"data.{extra[0]}",
        )
    motifs = spec.get("motifs", SYNTHETIC_DEFAULTS["motifs"])
    if motifs not in MOTIF_KINDS:
        raise UserError(f"got {motifs!r}, expected one of {', '.join(MOTIF_KINDS)}", field="data.motifs")
    geometry = spec.get("geometry", SYNTHETIC_DEFAULTS["geometry"])
    if geometry not in GEOMETRIES:
        raise UserError(f"got {geometry!r}, expected one of {', '.join(GEOMETRIES)}", field="data.geometry")
    size = _int(spec, "size", 32, 4096)
    periods = _range(spec, "periods", 2.0, size / 2, integer=False)
    return SyntheticParams(
        seed=_int(spec, "seed", 0, 2**31 - 1),
        size=size,
        n_train=_int(spec, "n_train", 1, 100000),
        n_val=_int(spec, "n_val", 1, 100000),
        n_test=_int(spec, "n_test", 1, 100000),
        periods=periods,
        lattices=_range(spec, "lattices", 1, 16, integer=True),
        motifs=motifs,
        jitter=_number(spec, "jitter", 0.0, 10.0),
        brightness=_number(spec, "brightness", 0.0, 1.0),
        supersample=_int(spec, "supersample", 1, 8),
        geometry=geometry,
    )


# --------------------------------------------------------------------------- ingredients


@cache
def _photo(name: str) -> np.ndarray:
    """An embedded photograph as float32 (H,W,3) in [0,1], long side at most 512 px."""
    from acla_nas.data.images import EMBEDDED_MAX_SIDE, embedded_dir, load_image_u8

    t = load_image_u8(embedded_dir() / name, EMBEDDED_MAX_SIDE)
    return t.permute(1, 2, 0).numpy().astype(np.float32) / 255.0


def _available(names: Sequence[str]) -> list[str]:
    from acla_nas.data.images import embedded_dir

    root = embedded_dir()
    found = [n for n in names if (root / n).is_file()]
    if not found:
        raise UserError(
            f"none of the embedded photographs {', '.join(names)} is installed (scikit-image's data)", field="data.kind"
        )
    return found


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    im = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def _crop(rng: np.random.Generator, arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    side = min(side, h, w)
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return arr[y : y + side, x : x + side]


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    if kind == 0:  # smooth colour gradient
        c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        t = np.clip(0.5 + (xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang), 0, 1)[..., None]
        return (c0 * (1 - t) + c1 * t).astype(np.float32)
    if kind == 1:  # blurred photograph
        src = _photo(str(rng.choice(_available(MOTIF_PHOTOS))))
        crop = _crop(rng, src, int(rng.integers(96, 256)))
        im = Image.fromarray(np.clip(crop * 255 + 0.5, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
        return _resize(np.asarray(im, dtype=np.float32) / 255.0, n, n)
    src = _photo(str(rng.choice(_available(TEXTURE_PHOTOS))))  # texture photograph
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    return _resize(_crop(rng, src, int(rng.integers(128, 384))), n, n) * tint


def _shape_mask(rng: np.random.Generator, m: int) -> np.ndarray:
    """A soft-edged (m,m) alpha mask of a random shape."""
    yy, xx = (np.mgrid[0:m, 0:m].astype(np.float32) + 0.5) / m * 2 - 1  # [-1, 1]
    kind = int(rng.integers(0, 6))
    edge = 4.0 / m  # about one pixel at the final resolution (m is supersampled)
    if kind == 0:  # disc / ellipse
        ax = rng.uniform(0.6, 1.0)
        d = np.sqrt((xx / ax) ** 2 + yy**2) - 0.95
    elif kind == 1:  # ring
        r = np.sqrt(xx**2 + yy**2)
        d = np.abs(r - 0.65) - 0.3
    elif kind == 2:  # (rounded) square
        d = np.maximum(np.abs(xx), np.abs(yy)) - 0.85
    elif kind == 3:  # triangle
        d = np.maximum(yy - 0.8, np.maximum(-yy * 0.5 + xx * 0.87 - 0.45, -yy * 0.5 - xx * 0.87 - 0.45))
    elif kind == 4:  # cross
        d = np.minimum(np.maximum(np.abs(xx) - 0.3, np.abs(yy) - 0.9), np.maximum(np.abs(xx) - 0.9, np.abs(yy) - 0.3))
    else:  # diamond
        d = np.abs(xx) + np.abs(yy) - 0.95
    return np.clip(0.5 - d / edge, 0, 1).astype(np.float32)


def _motif(rng: np.random.Generator, m: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (m,m,3), alpha (m,m)) of one motif, m supersampled pixels wide."""
    if kind == "mixed":
        kind = "photo" if rng.random() < 0.5 else "procedural"
    if kind == "photo":
        src = _photo(str(rng.choice(_available(MOTIF_PHOTOS))))
        rgb = _resize(_crop(rng, src, int(rng.integers(24, 96))), m, m)
        yy, xx = (np.mgrid[0:m, 0:m].astype(np.float32) + 0.5) / m * 2 - 1
        d = np.maximum(np.abs(xx), np.abs(yy)) if rng.random() < 0.5 else np.sqrt(xx**2 + yy**2)
        alpha = np.clip((0.98 - d) / 0.12, 0, 1).astype(np.float32)
        return rgb, alpha
    c0, c1 = rng.uniform(0, 1, 3).astype(np.float32), rng.uniform(0, 1, 3).astype(np.float32)
    yy, xx = (np.mgrid[0:m, 0:m].astype(np.float32) + 0.5) / m
    if rng.random() < 0.5:  # stripes inside the shape
        freq, ang = rng.uniform(1.5, 4), rng.uniform(0, math.pi)
        t = (0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(ang) + yy * math.sin(ang))))[..., None]
    else:  # radial two-colour blend
        t = np.clip(np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2, 0, 1)[..., None]
    return (c0 * (1 - t) + c1 * t).astype(np.float32), _shape_mask(rng, m)


def _paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int, gain: float) -> None:
    n = canvas.shape[0]
    m = rgb.shape[0]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + m, n), min(y + m, n)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    region *= 1 - a
    region += a * np.clip(rgb[y0 - y : y1 - y, x0 - x : x1 - x] * gain, 0, 1)


def _lattice(rng: np.random.Generator, p: SyntheticParams, canvas: np.ndarray, owner: np.ndarray, cell: int) -> dict:
    u, n = p.supersample, canvas.shape[0]
    p1, p2 = rng.uniform(*p.periods, size=2)
    theta, phi = rng.uniform(0, math.pi), rng.uniform(math.pi / 3, 2 * math.pi / 3)
    if p.geometry == "square":  # axis-aligned, one whole-pixel period: exact repeats on the pixel grid
        p1 = p2 = float(max(1, round(p1)))
        theta, phi = 0.0, math.pi / 2
    a1 = u * p1 * np.array([math.cos(theta), math.sin(theta)])
    a2 = u * p2 * np.array([math.cos(theta + phi), math.sin(theta + phi)])
    m = max(4, int(round(u * rng.uniform(0.45, 0.85) * min(p1, p2))))
    rgb, alpha = _motif(rng, m, p.motifs)
    origin = np.round(rng.uniform(0, n, 2))  # a supersampled pixel: motif centres land on lattice points
    if p.geometry == "square":  # on the final pixel grid: every repeat at the same sub-pixel phase
        origin = np.floor(origin / u) * u
    # lattice coordinates of the canvas corners bound the indices that can land on it
    inv = np.linalg.inv(np.stack([a1, a2], 1))
    corners = np.array([[0, 0], [n, 0], [0, n], [n, n]], dtype=float) - origin
    ij = corners @ inv.T
    lo, hi = np.floor(ij.min(0)) - 1, np.ceil(ij.max(0)) + 1
    for i in range(int(lo[0]), int(hi[0]) + 1):
        for j in range(int(lo[1]), int(hi[1]) + 1):
            c = origin + i * a1 + j * a2
            cx, cy = int(round(c[0])), int(round(c[1]))
            if not (0 <= cx < n and 0 <= cy < n) or owner[cy, cx] != cell:
                continue
            jit = rng.normal(0, p.jitter * u, 2)
            gain = 1.0 + rng.normal(0, p.brightness)
            _paste(canvas, rgb, alpha, int(round(c[0] + jit[0])) - m // 2, int(round(c[1] + jit[1])) - m // 2, gain)
    to_px = lambda v: [float(t) / u for t in v]  # noqa: E731 - supersampled -> final px vectors
    return {
        "periods": (float(p1), float(p2)),
        "angle_deg": math.degrees(theta),
        "motif_px": m / u,
        "origin_px": [float(t + 0.5) / u - 0.5 for t in origin],
        "vectors_px": [to_px(a1), to_px(a2)],
    }


def render(p: SyntheticParams, split: str, index: int) -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of ``split``: (uint8 (size,size,3), one dict per lattice: its periods and
    angle, the motif width, the origin and the two basis vectors in final-image px)."""
    rng = np.random.default_rng([p.seed, SPLIT_IDS[split], index, 0x5E1F])
    u, s = p.supersample, p.size
    n = s * u
    canvas = _background(rng, n)
    k = int(rng.integers(p.lattices[0], p.lattices[1] + 1))
    centres = rng.uniform(0, n, (k, 2))
    yy, xx = np.mgrid[0:n, 0:n]
    owner = np.argmin((xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2, axis=-1)
    info = [_lattice(rng, p, canvas, owner, c) for c in range(k)]
    small = canvas.reshape(s, u, s, u, 3).mean(axis=(1, 3))
    return np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8), info


def mean_period(p: SyntheticParams, split: str = "test") -> float:
    """Mean lattice period (final px) over a split: what key distances are compared against."""
    periods = [q for i in range(p.count(split)) for lat in render(p, split, i)[1] for q in lat["periods"]]
    return float(np.mean(periods))
