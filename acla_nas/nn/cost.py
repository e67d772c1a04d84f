"""Cost model: parameters and multiply-adds (MACs) of any network at a given input size.

MACs = multiply-accumulate operations of one forward pass (1 MAC = 2 FLOPs), counting

* convolutions and matrix products (``torch.utils.flop_counter.FlopCounterMode``);
* ``grid_sample`` (bilinear: 4 taps per channel per sampled point), which FlopCounterMode misses;
* the attention's own arithmetic in ACLA modules (per query and key of a reference layer with
  C_l channels: C_l for the logit and C_l for the weighted sum), done with elementwise ops that
  FlopCounterMode does not see.

Activations, softmax, additions and normalisations are not counted (the usual convention).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from acla_nas.nn.acla import ACLA


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers excluded)."""
    return int(sum(p.numel() for p in model.parameters()))


def _grid_sample_flops(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs (2 per MAC) of bilinear grid_sample: 4 taps x channels per sampled point."""
    n, c = input_shape[0], input_shape[1]
    points = grid_shape[1] * grid_shape[2]
    return 2 * 4 * n * c * points


def count_macs(model: nn.Module, input_size: tuple[int, int] | tuple[int, int, int] = (64, 64), batch: int = 1) -> int:
    """MACs of one forward pass on a (batch, 3, H, W) input (see module docstring)."""
    if len(input_size) == 2:
        input_size = (3, *input_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(batch, *input_size, device=device)
    extra = [0]
    handles = []
    for m in model.modules():
        if isinstance(m, ACLA):

            def hook(mod: ACLA, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
                refs = args[1] if len(args) > 1 else kwargs["refs"]
                k = kwargs.get("k") if len(args) < 3 else args[2]
                active = kwargs.get("active") if len(args) < 4 else args[3]
                mix = kwargs.get("mix") if len(args) < 5 else args[4]
                if mix is not None:
                    k = max(int(b) for b in mix[0])
                    if k == 0:
                        return
                layers = list(range(len(refs))) if active is None else list(active)
                extra[0] += mod.uncounted_macs(tuple(out.shape[-2:]), out.shape[0], k, layers)

            handles.append(m.register_forward_hook(hook, with_kwargs=True))
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.grid_sampler_2d: _grid_sample_flops})
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(counter.get_total_flops() // 2 + extra[0])


def describe_cost(model: nn.Module, input_size: tuple[int, int] = (64, 64)) -> dict[str, float]:
    """Params and MACs at an input size, as a small dict for tables and model cards."""
    return {
        "params": count_params(model),
        "macs": count_macs(model, input_size),
        "input": f"3x{input_size[0]}x{input_size[1]}",
    }
