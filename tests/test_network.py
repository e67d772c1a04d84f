"""Child networks and the weight-sharing supernet."""

from __future__ import annotations

import copy

import pytest
import torch

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.nn.network import SiteChoices, build, build_supernet, copy_child_weights

BASE = {"backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 4}}, "task": {"name": "sr", "scale": 2}}
CHOICES = {
    "body.0": SiteChoices((0, 2, 4), (1,)),
    "body.1": SiteChoices((0, 2, 4), (1, 2)),
    "body.2": SiteChoices((0, 2, 4), (1, "all")),
    "body.3": SiteChoices((0, 2, 4), (1, "all")),
}


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("acla."):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def test_child_is_identity_at_init_and_has_only_its_modules() -> None:
    arch = Arch.from_dict({**BASE, "modules": {"body.1": {"keys": 4, "scope": 2}, "body.3": {"keys": 2}}})
    net = build(arch).eval()
    assert set(net.acla_modules()) == {"body.1", "body.3"}
    assert net.acla_modules()["body.3"].ref_channels == [8, 8, 8, 8]
    plain = build(Arch.from_dict(BASE)).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("acla.")})
    x = torch.rand(1, 3, 9, 9)
    assert torch.allclose(net(x), plain(x))


@pytest.mark.parametrize(
    "modules",
    [
        {},
        {"body.1": ModuleChoice(2, 2)},
        {"body.0": ModuleChoice(4, 1), "body.2": ModuleChoice(2, "all"), "body.3": ModuleChoice(4, 1)},
    ],
)
def test_supernet_path_equals_child_with_inherited_weights(modules) -> None:
    template = Arch.from_dict(BASE)
    sn = build_supernet(template, CHOICES).eval()
    perturb(sn)
    child = build(template.with_modules(modules)).eval()
    copy_child_weights(sn, child)
    x = torch.rand(2, 3, 10, 10)
    assert (sn.use(modules)(x) - child(x)).abs().max().item() < 1e-5


def test_supernet_costs_one_module_per_site() -> None:
    sn = build_supernet(Arch.from_dict(BASE), CHOICES)
    assert len(sn.acla_modules()) == 4
    assert max(m.k_max for m in sn.acla_modules().values()) == 4


def test_supernet_rejects_choices_outside_it() -> None:
    sn = build_supernet(Arch.from_dict(BASE), CHOICES)
    with pytest.raises(UserError, match="K_max"):
        sn.use({"body.1": ModuleChoice(8, 1)})
    with pytest.raises(UserError, match="scope"):
        sn.use({"body.1": ModuleChoice(2, "all")})


def test_supernet_mix_with_one_hot_weights_equals_path() -> None:
    sn = build_supernet(Arch.from_dict(BASE), CHOICES).eval()
    perturb(sn, 1)
    x = torch.rand(1, 3, 8, 8)
    path = sn.use({"body.1": ModuleChoice(2, 2), "body.3": ModuleChoice(4, 1)})(x)
    w = {"body.1": ((0, 2, 4), torch.tensor([0.0, 1.0, 0.0])), "body.3": ((0, 2, 4), torch.tensor([0.0, 0.0, 1.0]))}
    mixed = sn.use_mix(w, {"body.1": 2, "body.3": 1})(x)
    assert (path - mixed).abs().max().item() < 1e-5


def test_deepcopy_and_trace_keep_behaviour() -> None:
    arch = Arch.from_dict({**BASE, "modules": {"body.2": {"keys": 4}}})
    net = build(arch).eval()
    perturb(net)
    x = torch.rand(1, 3, 8, 8)
    y = net(x)
    clone = copy.deepcopy(net)
    perturb(clone, 5)  # the clone's hooks drive the clone's modules, not the original's
    assert torch.equal(net(x), y) and not torch.allclose(clone(x), y)
    traced = torch.jit.trace(net, x, check_trace=False)
    assert torch.allclose(traced(x), y, atol=1e-6)


def test_auxiliary_loss_sums_the_key_penalties_of_this_pass_only() -> None:
    mods = {"body.1": {"keys": 4, "scope": 2}, "body.3": {"keys": 2}}
    net = build(Arch.from_dict({**BASE, "modules": mods, "acla": {"key_penalty": 0.5}})).train()
    x = torch.rand(2, 3, 9, 9)
    assert net.auxiliary_loss() is None  # nothing before a forward
    net(x)
    aux = net.auxiliary_loss()
    expected = sum(m.key_cost for m in net.acla_modules().values())
    assert aux is not None and torch.allclose(aux, expected) and aux.requires_grad
    assert 0 < aux.item() <= 2 * 0.5
    net.eval()
    net(x)
    assert net.auxiliary_loss() is None  # inference: no penalty, no stale value
    plain = build(Arch.from_dict({**BASE, "modules": mods})).train()
    plain(x)
    assert plain.auxiliary_loss() is None
