"""Pretrained backbone weights named in a space or arch file (``backbone.weights: PATH``).

Practitioners insert attention into a network they have already trained, and architecture
comparisons are far less noisy when every child starts from the same trained backbone: the ACLA
modules start at identity (their output projection is zero), so a child at step 0 computes
exactly what the plain backbone does. PATH is either a ``model.pt`` of a *plain* child written by
``acla-nas train`` (its ``backbone.*`` weights are used) or a bare ``state_dict`` of the backbone
(a user backbone trained elsewhere). The file is data: loaded with ``weights_only=True``, every
tensor checked before use (:mod:`acla_nas.core.payload`), keys and shapes matched strictly; its
sha256 travels with the architecture, so a run resumed with other weights is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.core.payload import check_weights
from acla_nas.core.quiet import captured_warnings

FIELD = "backbone.weights"
MODEL_FORMAT = "acla-nas-model"  # the format tag of acla-nas model files (train/inference.py)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(value: Any, file: str | None, digest: Any = None) -> tuple[str, str]:
    """(absolute path, sha256) of the weights named at ``backbone.weights`` of ``file`` (a path
    relative to the file's folder, or absolute). ``digest``: the sha256 a file recorded: the
    weights must still be those."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(
            f"expected the path of a weights file (model.pt or a state_dict), got {value!r}", file=file, field=FIELD
        )
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (Path(file).resolve().parent if file else Path.cwd()) / p
    p = p.resolve()
    if not p.is_file():
        raise UserError(f"no such weights file: {p}", file=file, field=FIELD)
    found = sha256(p)
    if digest is not None and digest != found:
        raise UserError(
            f"{p} is not the file this architecture was made with (sha256 {found[:12]}..., recorded {str(digest)[:12]}...)",
            file=file,
            field="backbone.weights_sha256",
        )
    return str(p), found


def read_state_dict(path: str, file: str | None = None) -> Mapping[str, torch.Tensor]:
    """The backbone's state dict from ``path``: a plain child's model.pt or a bare state_dict."""
    try:
        with captured_warnings(path):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad user file
        raise UserError(
            f"cannot load {path} ({type(exc).__name__}); expected model.pt or a state_dict", file=file, field=FIELD
        ) from None
    if isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT:
        modules = (payload.get("arch") or {}).get("modules") if isinstance(payload.get("arch"), dict) else None
        if modules:
            raise UserError(
                f"{path} holds a child with ACLA modules ({', '.join(map(str, modules))}); name a plain backbone's model.pt",
                file=file,
                field=FIELD,
            )
        sd = check_weights(payload.get("state_dict"), path)
        return {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict) and "format" not in payload:
        payload = payload["state_dict"]  # a common checkpoint layout: {"state_dict": ...}
    return check_weights(payload, path)


def load_into(backbone: nn.Module, path: str, file: str | None = None) -> None:
    """Load ``path`` into ``backbone``: every key present, every shape equal (one line otherwise)."""
    sd = read_state_dict(path, file)
    own = backbone.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            )
        if unexpected:
            parts.append(
                f"unexpected {', '.join(unexpected[:3])}"
                + (f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else "")
            )
        raise UserError(f"{path} does not fit this backbone ({'; '.join(parts)})", file=file, field=FIELD)
    for k, t in own.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise UserError(
                f"{path} does not fit this backbone ({k}: {tuple(sd[k].shape)} in the file, {tuple(t.shape)} here)",
                file=file,
                field=FIELD,
            )
    backbone.load_state_dict(
        {k: v.to(t.dtype) for (k, v), t in zip(((k, sd[k]) for k in own), own.values())}, strict=True
    )


__all__ = ["FIELD", "load_into", "read_state_dict", "resolve", "sha256"]
