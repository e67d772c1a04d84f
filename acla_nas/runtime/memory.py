"""The memory a configuration needs, against what is free: refused up front in one line.

Shapes come from one forward pass on the meta device (nothing is allocated): every operation's
output is counted, which is about what autograd keeps for the backward pass (measured on the
demo EDSR with an ACLA module: 1.7x the resident memory one image of a training step adds).
To stay on the safe side a configuration is refused only when half of that, times the batch,
plus float32 parameters (x4 when training: weights, gradients, Adam's two moments) exceeds the
free memory; so a refused configuration surely does not fit, while one that passes may still
run out (the command line then reports it in one line too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from acla_nas.core.errors import UserError

BYTES = 4  # float32
SAFETY = 0.5  # the share of the counted forward outputs assumed to be alive at the peak


@dataclass(frozen=True)
class Footprint:
    """Parameters and forward outputs (bytes) of one image through a network."""

    params: int
    act_sum: int  # bytes of every operation's output in one forward pass
    act_max: int  # bytes of the largest single output

    def training_bytes(self, batch: int) -> int:
        return int(BYTES * 4 * self.params + SAFETY * batch * self.act_sum)

    def inference_bytes(self) -> int:
        return BYTES * self.params + 2 * self.act_max  # the largest operation's input and output


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of every tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.total = self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                n = t.numel() * t.element_size()
                self.total += n
                self.largest = max(self.largest, n)
        return out


def free_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory of ``device`` (RAM plus free swap for the CPU), or None when unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except (RuntimeError, AssertionError):
            return None
    if dev.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:2]}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def on_meta() -> bool:
    """Whether tensors are being created on the meta device (shapes only) right now."""
    return torch.empty(0).device.type == "meta"


def measure(model: nn.Module, lr_size: tuple[int, int], train: bool = True) -> Footprint | None:
    """Footprint of a meta-device model on a (1,3,h,w) input; None if it cannot run on meta."""
    was = model.training
    model.train(train)
    try:
        with torch.set_grad_enabled(train), _OutputBytes() as counter:
            model(torch.empty(1, 3, *lr_size, device="meta"))
    except Exception:  # noqa: BLE001 - user code that needs real tensors: no estimate
        return None
    finally:
        model.train(was)
    return Footprint(sum(p.numel() for p in model.parameters()), counter.total, counter.largest)


def require(
    needed: int, device: torch.device | str, what: str, hint: str, file: str | None = None, field: str | None = None
) -> None:
    """Refuse when ``needed`` bytes exceed the free memory of ``device``."""
    free = free_bytes(device)
    if free is not None and needed > free:
        raise UserError(
            f"{what} needs at least {gib(needed)} of memory but {gib(free)} is free on {torch.device(device)}; {hint}",
            file=file,
            field=field,
        )


__all__ = ["BYTES", "Footprint", "free_bytes", "gib", "measure", "on_meta", "require"]
