"""Device selection: CUDA when present, else CPU; never hard-coded.

A named device is checked against what this torch build and machine support (CUDA, Apple MPS)
before any work starts, so ``--device mps`` on a CUDA-less Linux build is one line, not a
traceback after minutes of setup.
"""

from __future__ import annotations

import torch

from acla_nas.core.errors import UserError

EXPECTED = "auto, cpu, cuda, cuda:N or mps"


def _available_types() -> list[str]:
    types = ["cpu"]
    if torch.cuda.is_available():
        types.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        types.append("mps")
    return types


def resolve_device(name: str | None = None, field: str = "--device") -> torch.device:
    """'auto' or None picks CUDA when available; otherwise the named device, checked."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str):
        raise UserError(f"expected {EXPECTED}, got {name!r}", field=field)
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (expected {EXPECTED})", field=field) from None
    build = f"torch {torch.__version__}"
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"CUDA was requested but is not available here ({build}, no usable GPU); use --device cpu or auto",
                field=field,
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(
                f"{name!r} does not exist: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}",
                field=field,
            )
        return dev
    if dev.type == "mps":
        if "mps" not in _available_types():
            raise UserError(
                f"Apple MPS was requested but this torch build ({build}) or machine does not support it; "
                "use --device cpu or auto",
                field=field,
            )
        return dev
    raise UserError(
        f"device type {dev.type!r} is not supported by acla-nas on this machine (available: "
        f"{', '.join(_available_types())}; expected {EXPECTED})",
        field=field,
    )
