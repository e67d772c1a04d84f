"""Key-usage figure of a trained child: which checkpoint, which image, then the drawing.

Shared by ``acla-nas plot``, the pipeline and the report, so all three pick the same
checkpoint (the retrained discovered child first: its gates are trained, unlike the
inherited supernet weights) and the same default image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError

#: where a run keeps trained children, best first
CHECKPOINT_CANDIDATES = ("model.pt", "retrain/discovered/model.pt")


def find_checkpoint(run_dir: Path) -> Path | None:
    """The trained child of a run for the key-usage figure, or None."""
    for rel in CHECKPOINT_CANDIDATES:
        if (run_dir / rel).is_file():
            return run_dir / rel
    found = sorted(run_dir.glob("export/*/model.pt"))
    return found[0] if found else None


def load_input_image(path: str | None) -> Any:
    """(3,H,W) float tensor in [0,1]: the file, else a 128 px crop of a bundled photograph."""
    import numpy as np
    import torch

    if path:
        from ..data import load_image  # one decoder for every image acla-nas reads (16-bit, float TIFF)

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

    from ..arch import read_yaml
    from ..data import _mix_seed, make_source, to_float
    from ..tasks import make_task

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
    note = f"{items.name(0)} ({' '.join(f'{k} {v}' for k, v in task.spec.items() if k != 'name')} {task.spec.get('name')})"
    note = " ".join(note.replace("( ", "(").split())
    if spec.get("kind") == "synthetic":
        from ..synthetic import parse_params, render

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
    from ..restore import load_model
    from .draw import key_usage_infos

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


def plot_key_usage(ckpt: Path, image: str | None, out: Path, formats: list[str]) -> tuple[list[Path], str | None]:
    """Draw ``key_usage.<fmt>`` for the child in ``ckpt``; returns (files, note why not)."""
    from .draw import draw_key_usage, save_figure

    infos, note = checkpoint_key_usage(ckpt, image)
    if not infos:
        return [], note or "key usage skipped: the model has no ACLA module"
    return save_figure(draw_key_usage(infos), out, "key_usage", formats), None
