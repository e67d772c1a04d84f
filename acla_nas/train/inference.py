"""Tiled inference (large images in bounded memory) and loading a trained model file.

:func:`restore_image` cuts the input into ``tile`` x ``tile`` tiles that overlap their
neighbours by ``overlap`` pixels, runs the network on each and blends the outputs with weights
that are 0 within ``overlap/4`` of an inner tile edge and ramp linearly to 1 over the next
``overlap/2`` (a partition of unity across each overlap band). Because no output pixel takes a
non-zero weight from a tile whose edge is closer than ``overlap/4`` (input pixels), the result
equals whole-image inference exactly whenever the network's receptive-field radius is at most
``overlap/4`` (e.g. 4 px for the default 16), and hides seams smoothly for wider networks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.core.payload import check_weights
from acla_nas.core.quiet import captured_warnings

MODEL_FORMAT = "acla-nas-model"
SUPPORTED_VERSIONS = (1,)  # model-file layouts this code reads (``save_model_file`` writes the last)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``[0, length)``; the last tile is aligned to the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return sorted(set(starts + [length - tile]))


def _axis_weights(n: int, ramp_start: bool, ramp_end: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """Blending weights along one tile axis (output pixels); ramps only on inner edges."""
    d = torch.arange(n, device=device, dtype=torch.float32)
    w = torch.ones(n, device=device)
    half = overlap / 2.0
    if ramp_start:
        w = torch.minimum(w, ((d + 0.5 - overlap / 4.0) / half).clamp(0.0, 1.0))
    if ramp_end:
        w = torch.minimum(w, ((n - 1 - d + 0.5 - overlap / 4.0) / half).clamp(0.0, 1.0))
    return w


@torch.no_grad()
def restore_rows(
    model: nn.Module, lq: torch.Tensor, scale: int, tile: int | None = 256, overlap: int = 16
) -> Iterator[tuple[int, torch.Tensor]]:
    """Run ``model`` on a (1,3,h,w) image tile by tile, row of tiles after row of tiles, and yield
    ``(first_row, rows)`` blocks of the finished output (1,C,r,w*scale) top to bottom as soon as no
    later tile overlaps them: the float accumulators span one row of tiles, not the whole output,
    so a caller that writes each block into an 8-bit image needs memory bounded by the tile.

    ``tile=None`` (or an image that fits in one tile) runs the whole image at once."""
    if lq.ndim != 4:
        raise ValueError(f"expected a (B,C,H,W) tensor, got shape {tuple(lq.shape)}")
    _, _, h, w = lq.shape
    if tile is None or (h <= tile and w <= tile):
        yield 0, model(lq)
        return
    if tile < 8 or not 0 <= overlap < tile:
        raise UserError(
            f"tile {tile} with overlap {overlap}: expected tile >= 8 and 0 <= overlap < tile", field="--tile"
        )
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    acc: torch.Tensor | None = None  # output rows [top, top + acc rows) not yet finished
    weight = torch.zeros(1, 1, 0, w * scale, device=lq.device)
    top = 0
    for i, y in enumerate(ys):
        bottom = (y + th) * scale
        for x in xs:
            piece = model(lq[..., y : y + th, x : x + tw])
            if acc is None:
                acc = torch.zeros(lq.shape[0], piece.shape[1], 0, w * scale, device=lq.device, dtype=piece.dtype)
            grow = bottom - top - acc.shape[2]
            if grow > 0:  # extend the accumulators down to this row of tiles' last output row
                acc = torch.cat([acc, acc.new_zeros(*acc.shape[:2], grow, acc.shape[3])], 2)
                weight = torch.cat([weight, weight.new_zeros(1, 1, grow, weight.shape[3])], 2)
            wy = _axis_weights(th * scale, y > 0, y + th < h, overlap * scale, lq.device)
            wx = _axis_weights(tw * scale, x > 0, x + tw < w, overlap * scale, lq.device)
            m = (wy[:, None] * wx[None, :])[None, None]
            ys_, xs_ = slice(y * scale - top, bottom - top), slice(x * scale, (x + tw) * scale)
            acc[..., ys_, xs_] += piece * m
            weight[..., ys_, xs_] += m
        assert acc is not None
        done = (ys[i + 1] * scale if i + 1 < len(ys) else bottom) - top  # rows no later tile touches
        yield top, acc[..., :done, :] / weight[..., :done, :]
        acc, weight, top = acc[..., done:, :], weight[..., done:, :], top + done


@torch.no_grad()
def restore_image(
    model: nn.Module, lq: torch.Tensor, scale: int, tile: int | None = 256, overlap: int = 16
) -> torch.Tensor:
    """Run ``model`` on a (1,3,h,w) image tile by tile; returns (1,3,h*scale,w*scale) (the blocks
    of :func:`restore_rows` joined; use that to write a large output as it is made)."""
    return torch.cat([rows for _, rows in restore_rows(model, lq, scale, tile, overlap)], 2)


def _model_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise UserError("no such model file (expected DIR/model.pt written by `acla-nas train`)", file=str(p))
    return p


def load_model_file(path: str | Path) -> dict[str, Any]:
    """The payload of a ``model.pt`` (or a run directory holding one), loaded with
    ``weights_only=True`` and checked: format, a supported ``version``, ``arch`` and ``task``
    mappings, a ``state_dict`` of finite tensors. Any other content is one UserError naming the
    file and the entry."""
    p = _model_file(path)
    try:
        with captured_warnings(str(p)):  # e.g. torch's legacy-pickle warning: --verbose shows it
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad user file
        raise UserError(
            f"cannot load the model file ({type(exc).__name__}); expected model.pt written by `acla-nas train`",
            file=str(p),
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(
            f"not an acla-nas model file (expected format {MODEL_FORMAT!r}, as written by "
            "`acla-nas train` in DIR/model.pt)",
            file=str(p),
        )
    check_payload(payload, str(p))
    return payload


def check_payload(payload: dict[str, Any], file: str) -> None:
    """The entries of a model file, each checked (why: a crafted or truncated file must not
    reach the network builder or produce NaN images with exit code 0)."""
    version = payload.get("version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise UserError(
            f"unsupported model file version {version!r} (this acla-nas reads version "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); re-export or retrain it with this version",
            file=file,
            field="version",
        )
    for key in ("arch", "task", "state_dict"):
        if not isinstance(payload.get(key), dict):
            got = "missing" if key not in payload else f"a {type(payload[key]).__name__}"
            raise UserError(
                f"expected a mapping, got {got}; the file is incomplete or not written by `acla-nas train`",
                file=file,
                field=key,
            )
    if not isinstance(payload.get("metrics", {}), dict):
        raise UserError(f"expected a mapping, got a {type(payload['metrics']).__name__}", file=file, field="metrics")
    check_weights(payload["state_dict"], file)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild the trained network from ``model.pt``: returns (model in eval mode, Arch, payload)."""
    from acla_nas.nn.arch import Arch, task_scale  # local: keeps this module importable without the network stack
    from acla_nas.nn.network import build
    from acla_nas.tasks import make_task

    payload = load_model_file(path)
    file = str(_model_file(path))
    arch = Arch.from_dict(payload["arch"], file=file)
    try:
        task = make_task(payload["task"])
    except UserError as exc:
        raise exc.at(file=file) from None
    if task.scale != task_scale(arch.task, file):
        raise UserError(
            f"the task {payload['task']} does not match the architecture's task {arch.task}", file=file, field="task"
        )
    model = build(arch, file=file)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise UserError(
            f"weights do not match the stored architecture ({str(exc).splitlines()[0]})", file=file
        ) from None
    return model.to(device).eval(), arch, payload


def save_model_file(
    path: Path, model: nn.Module, arch_dict: dict, task_spec: dict, metrics: dict | None = None
) -> None:
    """Write ``model.pt`` atomically: everything ``evaluate`` and ``restore`` need."""
    from acla_nas.core.atomic import atomic_path

    payload = {
        "format": MODEL_FORMAT,
        "version": SUPPORTED_VERSIONS[-1],
        "arch": arch_dict,
        "task": dict(task_spec),
        "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "metrics": metrics or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
