"""A trained model's file, ``model.pt``: written once after training, read by ``evaluate``,
``restore``, the plots and the pipeline.

It holds the weights, the architecture and the task (everything needed to rebuild the network)
plus its metrics, loads with ``weights_only=True``, and every entry is checked on the way in, so a
crafted or truncated file is one UserError naming the file and the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.core.payload import check_weights
from acla_nas.core.quiet import captured_warnings

MODEL_FORMAT = "acla-nas-model"
SUPPORTED_VERSIONS = (1,)  # model-file layouts this code reads (``save_model_file`` writes the last)


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


__all__ = ["MODEL_FORMAT", "SUPPORTED_VERSIONS", "check_payload", "load_model", "load_model_file", "save_model_file"]
