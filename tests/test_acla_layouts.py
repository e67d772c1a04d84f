"""Initial key layouts, frozen-offset controls, predictor learning rates and key distances."""

from __future__ import annotations

import pytest
import torch
from test_acla import make_inputs, randomize, reference

from acla_nas.core.errors import UserError
from acla_nas.nn.acla import ACLA, check_acla_options, initial_offsets
from acla_nas.train.trainer import model_param_groups


def test_spiral_spans_one_to_radius_and_every_prefix_reaches_far() -> None:
    off = initial_offsets(8, 24.0, "spiral")
    r = off.norm(dim=1)
    assert r[0] == 0
    assert r[1:].max().item() == pytest.approx(24.0, rel=1e-5)
    assert r[1:].min().item() == pytest.approx(1.0, rel=1e-5)
    assert len(set(r[1:].round(decimals=3).tolist())) == 7  # log-spaced, all distinct
    for k in (2, 4):  # a smaller budget keeps the farthest key and spreads the rest
        assert r[1:k].max().item() == pytest.approx(24.0, rel=1e-5)
    angles = torch.atan2(off[1:, 1], off[1:, 0])
    assert len(set(angles.round(decimals=3).tolist())) == 7


def test_random_layout_is_inside_the_disc_and_seeded() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = initial_offsets(16, 10.0, "random", g1), initial_offsets(16, 10.0, "random", g2)
    assert torch.equal(a, b) and torch.equal(a[0], torch.zeros(2))
    assert a[1:].norm(dim=1).max().item() <= 10.0
    assert a[1:].norm(dim=1).std().item() > 1.0  # not a ring


@pytest.mark.parametrize("mode", ["fixed", "random"])
def test_frozen_offsets_do_not_train_but_the_rest_does(mode: str) -> None:
    torch.manual_seed(0)
    m = ACLA(6, [6, 3], 4, offsets=mode, init_radius=3.0, key_layout="spiral")
    assert not any(p.requires_grad for p in m.offset.parameters())
    start = m.offset.bias.detach().clone()
    x, refs = make_inputs()
    m(x, refs).square().sum().backward()
    assert m.offset.weight.grad is None and m.query.weight.grad is not None
    assert m.gate.weight.grad is not None  # the gate still learns which keys to keep
    assert torch.equal(m.offset.bias, start)
    if mode == "random":  # each reference layer has its own random pattern
        per_layer = start.view(2, 4, 2)
        assert not torch.equal(per_layer[0], per_layer[1])


@pytest.mark.parametrize(
    "opts",
    [
        {"key_layout": "spiral", "init_radius": 5.0},
        {"offsets": "random", "init_radius": 4.0},
        {"offsets": "fixed", "key_layout": "spiral", "init_radius": 2.5},
        {"key_layout": "lattice", "init_radius": 3.0},
        {"key_layout": "lattice", "init_radius": 2.0, "offset_context": "dilated"},
        {"offsets": "fixed", "offset_context": "dilated"},
    ],
)
def test_every_layout_still_equals_the_per_key_loop(opts: dict) -> None:
    torch.manual_seed(1)
    m = randomize(ACLA(6, [6, 3], 5, **opts)).eval()
    x, refs = make_inputs()
    assert (m(x, refs) - reference(m, x, refs, 5)).abs().max().item() < 1e-5


def test_gradcheck_with_a_far_spiral_layout() -> None:
    m = ACLA(3, [3, 2], 3, offset_kernel=1, key_layout="spiral", init_radius=2.0).double()
    randomize(m, seed=4)
    with torch.no_grad():  # randomize overwrote the layout: put the spiral back on the biases
        m.offset.bias.copy_(initial_offsets(3, 2.0, "spiral").double().repeat(2, 1).reshape(-1) + 0.13)
    m.eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    r1 = torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    r2 = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: m(a, [b, c]), (x, r1, r2), eps=1e-6, atol=1e-5)


def test_offset_lr_mult_gives_the_predictors_their_own_group() -> None:
    from acla_nas.nn.arch import Arch, ModuleChoice
    from acla_nas.nn.network import build

    arch = Arch(
        backbone="edsr",
        backbone_kwargs={"n_feats": 8, "n_resblocks": 2},
        task={"name": "denoise", "sigma": 25},
        modules={"body.1": ModuleChoice(4, ("head", "body.0"))},
        acla={"offset_lr_mult": 10.0},
    )
    net = build(arch)
    groups = model_param_groups(net, 1e-3)
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-2)
    mod = net.acla_modules()["body.1"]
    fast = {id(p) for p in groups[1]["params"]}
    assert fast == {id(p) for p in (*mod.offset.parameters(), *mod.gate.parameters())}
    n_all = sum(1 for p in net.parameters() if p.requires_grad)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n_all
    plain = build(Arch(**{**arch.__dict__, "acla": {}}))
    assert len(model_param_groups(plain, 1e-3)) == 1


def test_key_distances_measure_the_layout_at_zero_weights() -> None:
    m = ACLA(4, [4], 8, key_layout="spiral", init_radius=6.0, adaptive=False).eval()
    m.record = True
    x = torch.randn(1, 4, 32, 32)
    m(x, [torch.randn(1, 4, 32, 32)])
    d = m.key_distances().view(8, 32, 32)
    expected = initial_offsets(8, 6.0, "spiral").norm(dim=1)
    assert torch.allclose(d[:, 10, 20], expected, atol=1e-4)
    assert m.key_distances().numel() == 8 * 32 * 32


def test_key_distances_leave_out_dropped_keys() -> None:
    m = ACLA(4, [4], 4, init_radius=5.0, gate_init=2.0).eval()
    with torch.no_grad():
        m.gate.weight.zero_()
        m.gate.bias.copy_(torch.tensor([5.0, -5.0, -5.0, -5.0]))  # only key 0 (at the query) kept
    m.record = True
    m(torch.randn(1, 4, 8, 8), [torch.randn(1, 4, 8, 8)])
    assert m.key_distances().abs().max().item() < 1e-5
    assert m.key_distances(kept_only=False).max().item() == pytest.approx(5.0, rel=1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        {"key_layout": "hexagon"},
        {"offsets": "frozen"},
        {"offset_lr_mult": 0},
        {"offset_lr_mult": float("inf")},
        {"init_radius": -1.0},
        {"key_layout": 3},
        {"offset_context": "global"},
    ],
)
def test_new_options_are_validated(bad: dict) -> None:
    with pytest.raises(UserError, match=f"acla.{next(iter(bad))}"):
        check_acla_options(bad, file="space.yaml")


def test_lattice_layout_puts_keys_on_the_neighbours_of_a_square_lattice() -> None:
    off = initial_offsets(10, 24.0, "lattice")
    assert off[0].tolist() == [0.0, 0.0]
    assert [tuple(v) for v in off[1:5].tolist()] == [(24.0, 0.0), (-24.0, 0.0), (0.0, 24.0), (0.0, -24.0)]
    assert [tuple(v) for v in off[5:9].tolist()] == [(24.0, 24.0), (-24.0, -24.0), (24.0, -24.0), (-24.0, 24.0)]
    assert tuple(off[9].tolist()) == (48.0, 0.0)  # the next ring: twice the period
    m = ACLA(4, [4], 5, key_layout="lattice", init_radius=24.0)
    assert torch.equal(m.offset.bias.view(5, 2), off[:5])  # the start layout is the predictor's bias


def test_dilated_context_trains_with_the_predictors_and_starts_at_the_layout() -> None:
    torch.manual_seed(0)
    m = ACLA(6, [6, 3], 4, key_layout="lattice", init_radius=2.0, offset_context="dilated")
    ids = {id(p) for p in m.predictor_parameters()}
    assert all(id(p) in ids for p in m.context.parameters())  # offset_lr_mult applies to it too
    x, refs = make_inputs()
    assert torch.equal(m(x, refs), x)  # a new module is the identity, context or not
    randomize(m)
    m(x, refs).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.context.parameters())
    frozen = ACLA(6, [6, 3], 4, offset_context="dilated", offsets="fixed")
    assert not any(p.requires_grad for p in frozen.context.parameters())
