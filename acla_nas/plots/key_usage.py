"""Key-usage data of a trained child: which image, one recorded run of the model, and the
numbers the ``key_usage`` figure shows, in image pixels (drawing: :mod:`.figures.key_usage`).

The checkpoint is the run's trained child (:meth:`acla_nas.runs.run_dir.RunDir.trained_child`)
unless the user names one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acla_nas.core.errors import UserError


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def image_hwc(image: Any) -> np.ndarray:
    """(H,W,3) float image in [0,1] from a tensor (B,3,H,W)/(3,H,W) or an array (H,W[,C])."""
    a = _np(image)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.max(initial=0.0) > 1.5:  # 8-bit
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def norm_to_pixel(coords: Any, width: int, height: int) -> np.ndarray:
    """Normalized grid_sample (x, y) in [-1, 1] (align_corners=False) -> pixel (x, y) of an
    image ``width`` x ``height``, pixel centres at integers: -1 is the left edge of pixel 0."""
    c = _np(coords)
    out = np.empty_like(c)
    out[..., 0] = ((c[..., 0] + 1.0) * width - 1.0) / 2.0
    out[..., 1] = ((c[..., 1] + 1.0) * height - 1.0) / 2.0
    return out


def upsample_nearest(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize that keeps integer key counts integers (pixel-centre aligned)."""
    h, w = a.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return a[rows][:, cols]


@dataclass
class KeyUsageInfo:
    """Key usage of one ACLA module on one image, in image pixel coordinates.

    ``key_map``: (H,W) keys kept per query, upsampled to the image; ``queries``: (N,2) pixel
    (x,y) of the chosen query pixels (feature-pixel centres); ``locations``: one (N,K,2) array of
    pixel (x,y) per reference layer.
    """

    name: str
    image: np.ndarray
    key_map: np.ndarray
    queries: np.ndarray
    locations: list[np.ndarray]
    ref_names: list[str] = field(default_factory=list)
    median_distance: float | None = None  # over every query's kept keys but key 0, image px
    note: str = ""  # what the image is (e.g. its lattice periods), for the caption


def default_queries(height: int, width: int, n: int) -> list[tuple[int, int]]:
    """``n`` feature-map pixels (row, col) spread over the map: a centred grid, row-major."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    out = []
    for r in range(rows):
        for c in range(cols):
            if len(out) < n:
                out.append(
                    (min(height - 1, int((r + 0.5) * height / rows)), min(width - 1, int((c + 0.5) * width / cols)))
                )
    return out


def key_usage_info(
    key_map: Any,
    locations: Sequence[Any],
    image: Any,
    *,
    queries: Sequence[tuple[int, int]] | None = None,
    n_queries: int = 4,
    batch: int = 0,
    name: str = "",
    ref_names: Sequence[str] = (),
    median_distance: float | None = None,
    note: str = "",
) -> KeyUsageInfo:
    """Numpy key-usage data from an ACLA module's recorded tensors.

    ``key_map`` (B,h,w) and ``locations`` [(B,K,h,w,2) per layer] are at the module's feature
    resolution; ``queries`` are feature pixels (row, col) (default: ``n_queries`` spread evenly).
    Normalized coordinates are resolution-free, so they map straight onto the image.
    """
    img = image_hwc(image)
    H, W = img.shape[:2]
    km = _np(key_map)
    if km.ndim == 3:
        km = km[batch]
    if km.ndim != 2:
        raise ValueError(f"key_map must be (B,H,W) or (H,W), got shape {km.shape}")
    h, w = km.shape
    q = list(queries) if queries is not None else default_queries(h, w, n_queries)
    qpix = np.array([[(c + 0.5) * W / w - 0.5, (r + 0.5) * H / h - 0.5] for r, c in q], dtype=float).reshape(-1, 2)
    locs: list[np.ndarray] = []
    for loc in locations:
        a = _np(loc)
        if a.ndim == 5:
            a = a[batch]
        if a.ndim != 4 or a.shape[-1] != 2:
            raise ValueError(f"locations must be (B,K,H,W,2), got shape {a.shape}")
        picked = np.stack([a[:, r, c, :] for r, c in q]) if q else np.zeros((0, a.shape[0], 2))
        locs.append(norm_to_pixel(picked, W, H))
    return KeyUsageInfo(name, img, upsample_nearest(km, H, W), qpix, locs, list(ref_names), median_distance, note)


def reach_distances(locations: Sequence[Any], key_mask: Any = None) -> np.ndarray:
    """Distances, in feature pixels, from each query to the keys it kept, key 0 left out.

    Key 0 of every reference layer starts at the query's own position (see
    :func:`acla_nas.nn.acla.initial_offsets`) and mostly stays there, so counting it would pull
    the median towards 0 px and read as "no attention" when the other keys reach far. Keys the
    query dropped (``key_mask`` 0, shape (B,K,h,w)) are left out too. Flat over layers, keys and
    queries; empty when only key 0 exists."""
    mask = None if key_mask is None else _np(key_mask)
    out = []
    for loc in locations:
        a = _np(loc)  # (B,K,h,w,2) normalised (x, y)
        _, _, h, w, _ = a.shape
        dx = ((a[..., 0] + 1) * w - 1) / 2 - np.arange(w).reshape(1, 1, 1, w)
        dy = ((a[..., 1] + 1) * h - 1) / 2 - np.arange(h).reshape(1, 1, h, 1)
        d = np.sqrt(dx * dx + dy * dy)[:, 1:]
        if mask is not None and mask.shape == (d.shape[0], d.shape[1] + 1, *d.shape[2:]):
            d = d[mask[:, 1:] > 0]
        out.append(d.ravel())
    return np.concatenate(out) if out else np.zeros(0)


def load_input_image(path: str | None) -> Any:
    """(3,H,W) float tensor in [0,1]: the file, else a 128 px crop of a bundled photograph."""
    import torch

    if path:
        from acla_nas.data.images import load_image  # one decoder for every image acla-nas reads (16-bit, float TIFF)

        try:
            return load_image(path)
        except UserError as exc:
            raise exc.at(field="--image") from None
    else:
        try:
            from skimage import data as skdata

            arr = skdata.astronaut()[20:276, 120:376].astype(np.float32) / 255.0
            arr = arr[::2, ::2]
        except Exception:  # noqa: BLE001 - any failure: fall back to a synthetic pattern
            yy, xx = np.mgrid[0:128, 0:128] / 128.0
            arr = np.stack([xx, yy, 0.5 + 0.5 * np.sin(12 * xx * yy)], -1).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def run_test_input(ckpt: Path, task_spec: dict) -> tuple[Any, str] | None:
    """The first test image of the data the child was trained on (``config.yaml`` beside the
    model file), degraded by its task exactly as evaluation degrades it, and a caption note
    (for generated self-similar data: the image's lattice periods in input pixels). None when
    the run's data cannot be found or read."""
    import torch

    from acla_nas.data.images import to_float
    from acla_nas.data.patches import _mix_seed
    from acla_nas.data.sources import make_source
    from acla_nas.nn.arch import read_yaml
    from acla_nas.tasks import make_task

    cfg = ckpt.parent / "config.yaml"
    try:
        doc = read_yaml(cfg) if cfg.is_file() else None
        spec = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(spec, dict):
            return None
        task = make_task(task_spec)
        src = make_source(spec, task.scale)
        items = src.split("test")
        item = items[0]
    except (UserError, OSError):
        return None
    if isinstance(item, tuple):
        lq = to_float(item[0])
    else:
        hr = task.crop_hr(to_float(item)[None])
        lq = task.degrade(hr, torch.Generator().manual_seed(_mix_seed(0, 0)))[0]
    note = (
        f"{items.name(0)} ({' '.join(f'{k} {v}' for k, v in task.spec.items() if k != 'name')} {task.spec.get('name')})"
    )
    note = " ".join(note.replace("( ", "(").split())
    if spec.get("kind") == "synthetic":
        from acla_nas.data.synthetic import parse_params, render

        _, lattices = render(parse_params(spec), "test", 0)
        periods = [q / task.scale for lat in lattices for q in lat["periods"]]
        note += f"; lattice periods {min(periods):.1f}-{max(periods):.1f} px"
    return lq.clamp(0, 1), note


def checkpoint_key_usage(ckpt: Path, image: str | None = None, strict: bool = False) -> tuple[list[Any], str | None]:
    """Key-usage data of the child in ``ckpt`` on ``image`` (one model run): ``([], note)`` when
    the file cannot be loaded (``strict``: the error is raised instead, for a checkpoint the user
    named), ``([], None)`` when the child has no ACLA module.

    Without ``image`` the input is the first test image of the child's own data, degraded by
    its task (see :func:`run_test_input`), else a crop of a bundled photograph."""
    from acla_nas.train.model_file import load_model

    try:
        model, _arch, payload = load_model(ckpt, "cpu")
    except UserError as exc:
        if strict:
            raise (exc if exc.field else exc.at(field="--checkpoint")) from None
        return [], f"key usage skipped: {exc}"
    found = None if image else run_test_input(ckpt, payload.get("task") or {})
    if found is not None:
        return key_usage_infos(model, found[0], note=found[1]), None
    return key_usage_infos(model, load_input_image(image)), None


def key_usage_infos(model: Any, image: Any, n_queries: int = 4, note: str = "") -> list[KeyUsageInfo]:
    """Run ``model`` once on ``image`` with recording on; one info per ACLA module (with the
    median distance, in image px, from every query to the keys it kept but key 0 (see
    :func:`reach_distances`), and ``note``).

    Raises ImportError when :mod:`acla_nas.nn.acla` is not available.
    """
    import torch

    from acla_nas.nn.acla import ACLA  # lazy: the plots must work without torch models

    x = (
        image
        if isinstance(image, torch.Tensor)
        else torch.as_tensor(np.moveaxis(image_hwc(image), -1, 0), dtype=torch.float32)
    )
    if x.ndim == 3:
        x = x.unsqueeze(0)
    mods = [(name, m) for name, m in model.named_modules() if isinstance(m, ACLA)]
    if not mods:
        return []
    old = [m.record for _, m in mods]
    was_training = model.training
    try:
        for _, m in mods:
            m.record = True
        model.eval()
        param = next(iter(model.parameters()), None)
        if param is not None:
            x = x.to(param.device, param.dtype)
        with torch.no_grad():
            model(x)
    finally:
        for (_, m), o in zip(mods, old):
            m.record = o
        model.train(was_training)
    out = []
    refs = getattr(model, "refs", None) or {}
    for name, m in mods:
        if m.last_key_map is None or not m.last_locations:
            continue
        site = name.removeprefix("acla.").replace("__", ".")  # ModuleDict keys cannot hold dots
        ref_names = refs.get(site, []) if len(refs.get(site, [])) == len(m.last_locations) else []
        dist = reach_distances(m.last_locations, m.last_key_mask)
        med = None
        if dist.size:
            med = float(np.median(dist)) * x.shape[-1] / m.last_key_map.shape[-1]  # feature px -> image px
        out.append(
            key_usage_info(
                m.last_key_map,
                m.last_locations,
                x[0],
                n_queries=n_queries,
                name=site or "ACLA",
                ref_names=ref_names,
                median_distance=med,
                note=note,
            )
        )
    return out
