"""Device selection: CUDA when present, else CPU; never hard-coded."""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str | None = None) -> torch.device:
    """'auto' or None picks CUDA when available; otherwise the named device, checked."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r} (expected auto, cpu, cuda or cuda:N)", field="--device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but is not available on this machine", field="--device")
    return dev
