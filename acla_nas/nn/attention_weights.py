"""The attention weights inside a core's autograd node, with a graph for its backward pass.

Every core (``attention_native``, ``attention_node``, ``acla_triton``) computes the logits itself
and hands them to the module's weights function (masked softmax, gate, DARTS budget mix), whose
own gradient is left to autograd: in training the logits and the extra tensors that need a
gradient (the gate's straight-through mask, the mix weights) become leaves of a small graph that
the core's backward differentiates with ``torch.autograd.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def weights_with_graph(
    train: bool, weights_fn: Callable[..., torch.Tensor], logit: torch.Tensor, extra: Sequence[torch.Tensor | None]
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """``weights_fn(logit, *extra)``, and the leaves it was computed from (a graph only when
    ``train``, i.e. when any input of the core needs a gradient)."""
    if not train:
        return weights_fn(logit, *extra), list(extra)
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() if t is not None and t.requires_grad else t for t in extra]
        logit.requires_grad_()
        return weights_fn(logit, *leaves), leaves


def weights_backward(
    attn: torch.Tensor, logit: torch.Tensor, leaves: Sequence[torch.Tensor | None], grad_attn: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The gradients of the logits and of the extra tensors (None where none is needed) from that
    of the attention weights; the graph is kept for a second backward pass."""
    wrt = [logit] + [t for t in leaves if t is not None and t.requires_grad]
    grads = torch.autograd.grad(attn, wrt, grad_attn.to(attn.dtype), retain_graph=True, allow_unused=True)
    it = iter(grads[1:])
    return grads[0], [next(it) if t is not None and t.requires_grad else None for t in leaves]
