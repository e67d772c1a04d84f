"""Key-usage data of a trained child: which image, then one recorded run of the model.

The data side of the ``key_usage`` figure (the checkpoint is the run's trained child,
:meth:`acla_nas.runs.run_dir.RunDir.trained_child`, unless the user names one); drawing is in
:mod:`acla_nas.plots.draw`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acla_nas.core.errors import UserError
from acla_nas.plots.data import KeyUsageInfo, image_hwc, key_usage_info


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
    from acla_nas.train.inference import load_model

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
    median distance, in image px, from every query to the keys it kept, and ``note``).

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
        dist = m.key_distances() if hasattr(m, "key_distances") else None
        med = None
        if dist is not None and dist.numel():
            med = float(dist.median()) * x.shape[-1] / m.last_key_map.shape[-1]  # query px -> image px
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


def key_usage_figure(model: Any, image: Any, out: str | Path, n_queries: int = 4) -> tuple[list[Path], str | None]:
    """Draw the key usage of every ACLA module of ``model`` on ``image`` into ``out``.

    ``out`` is a file (format from its suffix, PNG when none). Returns (paths, note); the note
    says why nothing was drawn (no ACLA module, or :mod:`acla_nas.nn.acla` unavailable).
    """
    try:
        infos = key_usage_infos(model, image, n_queries)
    except ImportError as exc:
        return [], f"key usage skipped: acla_nas.nn.acla unavailable ({exc})"
    if not infos:
        return [], "key usage skipped: the model has no ACLA module"
    out = Path(out)
    fmt = out.suffix.lstrip(".") or "png"
    from acla_nas.plots.draw import draw_key_usage, save_figure

    fig = draw_key_usage(infos)
    return save_figure(fig, out.parent, out.stem if out.suffix else out.name, [fmt]), None
