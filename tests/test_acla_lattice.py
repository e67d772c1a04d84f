"""The lattice key layout and the wider-context offset predictors (issue 21)."""

from __future__ import annotations

import pytest
import torch
from test_acla import make_inputs, randomize, reference

from acla_nas.core.errors import UserError
from acla_nas.nn.acla import ACLA, check_acla_options, initial_offsets


def test_lattice_layout_puts_keys_on_the_square_lattice_neighbours() -> None:
    off = initial_offsets(17, 24.0, "lattice")
    assert off[0].tolist() == [0.0, 0.0]  # key 0 at the query
    first = {tuple(v) for v in off[1:9].tolist()}
    assert first == {(x, y) for x in (-24.0, 0.0, 24.0) for y in (-24.0, 0.0, 24.0)} - {(0.0, 0.0)}
    assert {tuple(v) for v in off[1:5].tolist()} == {(24.0, 0.0), (-24.0, 0.0), (0.0, 24.0), (0.0, -24.0)}
    assert off[9:17].abs().max().item() == 48.0  # the next ring: twice the period
    assert all(v % 24 == 0 for v in off.flatten().tolist())


@pytest.mark.parametrize(
    "opts",
    [
        {"key_layout": "lattice", "init_radius": 3.0},
        {"key_layout": "lattice", "init_radius": 2.0, "offset_context": "dilated"},
        {"key_layout": "lattice", "init_radius": 2.0, "offset_context": "pooled"},
        {"offsets": "random", "init_radius": 3.0, "offset_context": "pooled"},
    ],
)
def test_lattice_and_context_options_equal_the_per_key_loop(opts: dict) -> None:
    torch.manual_seed(2)
    m = randomize(ACLA(6, [6, 3], 5, **opts), seed=3, gate_std=0.3).eval()
    x, refs = make_inputs()
    assert (m(x, refs) - reference(m, x, refs, 5)).abs().max().item() < 1e-4


@pytest.mark.parametrize("context", ["dilated", "pooled"])
def test_context_predictors_get_gradients_and_gradcheck(context: str) -> None:
    m = ACLA(3, [3, 2], 3, offset_kernel=1, key_layout="lattice", init_radius=1.0, offset_context=context).double()
    randomize(m, seed=4, gate_std=0.3)
    m.eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    r1 = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    r2 = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: m(a, [b, c]), (x, r1, r2), eps=1e-6, atol=1e-5)
    m.zero_grad()
    m(x, [r1, r2]).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.context.parameters())
    ids = {id(p) for p in m.predictor_parameters()}  # offset_lr_mult reaches the context too
    assert {id(p) for p in m.context.parameters()} <= ids


@pytest.mark.parametrize("context", ["dilated", "pooled"])
def test_context_is_identity_at_init_and_frozen_with_frozen_offsets(context: str) -> None:
    m = ACLA(4, [4], 4, key_layout="lattice", init_radius=5.0, offset_context=context).eval()
    x = torch.randn(1, 4, 19, 21)  # sizes the pooling does not divide
    assert torch.equal(m(x, [torch.randn(1, 4, 19, 21)]), x)
    frozen = ACLA(4, [4], 4, offsets="fixed", offset_context=context)
    assert not any(p.requires_grad for p in frozen.context.parameters())


@pytest.mark.parametrize("bad", [{"offset_context": "global"}, {"key_layout": "square"}])
def test_lattice_options_are_validated(bad: dict) -> None:
    with pytest.raises(UserError, match=f"acla.{next(iter(bad))}"):
        check_acla_options(bad, file="space.yaml")
