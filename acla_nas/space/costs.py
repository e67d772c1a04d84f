"""Additive cost model of a space: plain backbone + one measured term per (site, keys, refs).

Inserting an ACLA module does not change what the backbone computes (the hooks replace a site's
output by one of the same shape), so a child's MACs and parameters are exactly the plain
backbone's plus each module's own. The plain backbone is measured once, with
:func:`acla_nas.nn.cost.count_macs` on the ``meta`` device (shapes only, no arithmetic). Each module
option is measured once, on its own, with the same function on CPU at a 1x1 query and scaled by
the site's H*W: every term of the module (1x1 and kxk convolutions per output pixel, bilinear
taps per sampled point, attention arithmetic per query) is proportional to the number of query
pixels. Parameters are allocated uninitialised (``to_empty``), so a paper-size option costs about
a millisecond. ``tests/test_space.py`` checks the sum against ``count_macs(build(arch))``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from acla_nas.nn.acla import ACLA
from acla_nas.nn.cost import count_macs, count_params

META = torch.device("meta")


@contextmanager
def _one_thread():
    """Tiny tensors: thread start-up costs more than the work (10x on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _Probe(nn.Module):
    """Runs one ACLA module on fixed (meta) inputs, whatever ``count_macs`` feeds it."""

    def __init__(self, module: ACLA, query: torch.Tensor, refs: list[torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.query = query
        self.refs = refs

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.module(self.query, self.refs)


def site_shapes(
    backbone: nn.Module, site_names: list[str], input_size: tuple[int, int]
) -> tuple[dict[str, tuple[int, ...]], int]:
    """(C,H,W) of each site's output at ``input_size`` and the plain MACs, from one forward pass."""
    named = dict(backbone.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str):
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            shapes[name] = tuple(out.shape[1:])

        return hook

    handles = [named[n].register_forward_hook(hook_for(n)) for n in site_names]
    try:
        macs = count_macs(backbone, input_size)
    finally:
        for h in handles:
            h.remove()
    return shapes, macs


class CostTable:
    """Plain cost and cached per-option module costs of one backbone at one input size."""

    def __init__(
        self, backbone: nn.Module, site_names: list[str], input_size: tuple[int, int], acla_options: dict
    ) -> None:
        self.shapes, self.plain_macs = site_shapes(backbone, site_names, input_size)
        self.plain_params = count_params(backbone)
        self.options = dict(acla_options)
        self._cache: dict[tuple[int, int, tuple[int, ...]], tuple[int, int]] = {}

    def module(self, site: str, keys: int, refs: tuple[str, ...]) -> tuple[int, int]:
        """(MACs, params) that a module of ``keys`` keys at ``site`` attending ``refs`` adds."""
        if keys == 0:
            return (0, 0)
        c, h, w = self.shapes[site]
        ref_channels = tuple(self.shapes[r][0] for r in refs)
        key = (c, keys, ref_channels)  # all that the measurement depends on (besides H*W)
        if key not in self._cache:
            self._cache[key] = self._measure(c, keys, ref_channels)
        macs, params = self._cache[key]
        return macs * h * w, params

    def _measure(self, c: int, keys: int, ref_channels: tuple[int, ...]) -> tuple[int, int]:
        """(MACs at a 1x1 query, params) of one module."""
        with META:
            mod = ACLA(c, list(ref_channels), keys, **self.options)
        with _one_thread():
            mod = mod.to_empty(device="cpu")
            with torch.no_grad():
                for p in mod.parameters():
                    p.zero_()
            probe = _Probe(mod, torch.zeros(1, c, 1, 1), [torch.zeros(1, rc, 1, 1) for rc in ref_channels])
            return count_macs(probe, (1, 1)), count_params(mod)
