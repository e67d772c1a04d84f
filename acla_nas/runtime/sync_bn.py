"""BatchNorm statistics over the global batch under data parallelism, on CPU too.

With DDP each process normalises its own slice of the batch: a BatchNorm backbone then trains on
other statistics than one process on the whole batch (measured: 17.21 vs 17.09 dB, see
docs/distributed.md). :func:`sync_batchnorm` converts every BatchNorm layer of a model before it
is wrapped: to torch's ``SyncBatchNorm`` on CUDA (NCCL), and on other devices (gloo on CPU, where
``SyncBatchNorm`` refuses to run) to :class:`GroupBatchNorm`, which all-reduces the per-channel
sums and sums of squares with a differentiable all-reduce. Parameter and buffer names are
unchanged, so model files load into the plain network.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GroupBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the whole process group's batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grouped = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not grouped:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = x.new_full((1,), x.numel() / c)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # sums: differentiable
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _convert(module: nn.Module, cls: type[_BatchNorm]) -> tuple[nn.Module, int]:
    if isinstance(module, _BatchNorm) and not isinstance(module, cls):
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
            if module.track_running_stats:
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
                new.num_batches_tracked.copy_(module.num_batches_tracked)
        new.train(module.training)
        return new.to(next(iter(module.state_dict().values()), torch.empty(0)).device), 1
    count = 0
    for name, child in module.named_children():
        new, n = _convert(child, cls)
        count += n
        if new is not child:
            setattr(module, name, new)
    return module, count


def sync_batchnorm(model: nn.Module, device: torch.device) -> tuple[nn.Module, int]:
    """``model`` with every BatchNorm layer computing global-batch statistics, and how many were
    converted (0: the model has none and is returned as is)."""
    if device.type == "cuda":
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        n = sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
        return converted, n
    return _convert(model, GroupBatchNorm)


__all__ = ["GroupBatchNorm", "sync_batchnorm"]
