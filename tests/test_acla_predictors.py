"""The offset and gate predictors run as one convolution: the same outputs, gradients and
state dict as two (``acla.FUSE_PREDICTORS``)."""

from __future__ import annotations

import pytest
import torch

from acla_nas.nn import acla


def _run(fuse: bool, m: acla.ACLA, x: torch.Tensor, refs: list[torch.Tensor]) -> list[torch.Tensor]:
    old = acla.FUSE_PREDICTORS
    acla.FUSE_PREDICTORS = fuse
    try:
        m.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the gate's Gumbel noise
        y = m(x, refs, k=3)
        y.square().sum().backward()
        return [y.detach()] + [p.grad.clone() for p in m.parameters() if p.grad is not None]
    finally:
        acla.FUSE_PREDICTORS = old


@pytest.mark.parametrize(
    ("offsets", "context"), [("learned", "local"), ("fixed", "local"), ("learned", "dilated"), ("learned", "pooled")]
)
def test_fused_predictors_match_separate_ones(offsets: str, context: str) -> None:
    torch.manual_seed(0)
    m = acla.ACLA(6, [6, 4], 4, offsets=offsets, offset_context=context).double().train()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64)
    refs = [torch.randn(2, 6, 7, 9, dtype=torch.float64), torch.randn(2, 4, 5, 6, dtype=torch.float64)]
    fused, separate = _run(True, m, x, refs), _run(False, m, x, refs)
    assert len(fused) == len(separate) == 1 + sum(p.requires_grad for p in m.parameters())
    for a, b in zip(fused, separate):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert {"offset.weight", "offset.bias", "gate.weight", "gate.bias"} <= set(m.state_dict())
