"""Tensors read from a user's file are checked for what they are before any value is touched.

``torch.load(weights_only=True)`` refuses code, but still hands over any tensor a pickle can
describe: meta tensors (no data: the finiteness check itself raises), sparse or other
non-strided layouts, complex values (silently cast to real when loaded into a real parameter),
quantized tensors (accepted by the loader, then a multi-line error deep in the network). Each is
one line here, naming the file, the field and the tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from acla_nas.core.errors import UserError

#: dtypes a weight file of acla-nas may hold (real floating point, and integer buffers)
REAL_DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
)


def tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why ``tensor`` cannot be a weight (None when it can)."""
    if tensor.is_quantized:
        return "a quantized tensor (acla-nas models are not quantized; dequantize it first)"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).replace('torch.', '')} tensor (expected a dense, strided tensor)"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type} device (a file's tensors load on the CPU; meta tensors hold no values)"
    if tensor.is_complex():
        return f"a complex tensor ({str(tensor.dtype).replace('torch.', '')}; expected real values)"
    if tensor.dtype not in REAL_DTYPES:
        return f"a tensor of dtype {str(tensor.dtype).replace('torch.', '')} (expected a real floating-point or integer type)"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        return "NaN or infinite values (the model would restore nothing but NaN; retrain it, e.g. with a lower lr)"
    return None


def check_weights(state_dict: Any, file: str, field: str = "state_dict") -> Mapping[str, torch.Tensor]:
    """A mapping of parameter names to usable tensors, or one UserError naming the first bad entry."""
    if not isinstance(state_dict, Mapping):
        raise UserError(
            f"expected a mapping of parameter names to tensors, got a {type(state_dict).__name__}",
            file=file,
            field=field,
        )
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            shown = repr(name)[:60]
            raise UserError(
                f"expected parameter names mapped to tensors, got {shown}: {type(tensor).__name__}",
                file=file,
                field=field,
            )
        problem = tensor_problem(tensor)
        if problem is not None:
            raise UserError(f"weight {name[:80]!r} is {problem}", file=file, field=field)
    return state_dict


__all__ = ["REAL_DTYPES", "check_weights", "tensor_problem"]
