"""Built-in backbones, their declared sites, tails, and user backbones given as module:factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch
from acla_nas.nn.backbones import create_backbone, list_backbones
from acla_nas.nn.network import build


class TinyUserNet(nn.Module):
    """A backbone defined only in this test file; its code is never edited by acla-nas."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.layers = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(3)])
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.up = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.PixelShuffle(2))
        self.out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for layer in self.layers:
            h = h + torch.relu(layer(h))
        return x + self.out(self.up(self.down(h)) + h)


def tiny_user_net(width: int = 8) -> TinyUserNet:
    return TinyUserNet(width)


pytestmark = pytest.mark.usefixtures("allow_test_modules")  # test_backbones:* are user code: opted in
SMALL = {
    "edsr": {"n_feats": 8, "n_resblocks": 3},
    "rcan": {"n_feats": 8, "n_resgroups": 2, "n_resblocks": 1, "reduction": 4},
    "unet": {"n_feats": 8, "n_enc": 1, "n_mid": 1, "n_dec": 1},
}


def test_registry_lists_builtins() -> None:
    assert {"edsr", "rcan", "unet"} <= set(list_backbones())


@pytest.mark.parametrize(
    "name,scale",
    [("edsr", 1), ("edsr", 2), ("edsr", 3), ("edsr", 4), ("rcan", 2), ("rcan", 4), ("rcan", 1), ("unet", 1)],
)
def test_output_size_and_sites(name: str, scale: int) -> None:
    m = create_backbone(name, scale, SMALL[name])
    y = m(torch.rand(1, 3, 11, 13))
    assert y.shape == (1, 3, 11 * scale, 13 * scale)
    sites = m.acla_sites
    assert sites[0].name == "head"
    named = dict(m.named_modules())
    feats = {}
    hooks = [named[s.name].register_forward_hook(lambda _m, _i, o, n=s.name: feats.__setitem__(n, o)) for s in sites]
    m(torch.rand(1, 3, 12, 12))
    for h in hooks:
        h.remove()
    for s in sites:  # the declared channels and strides are the real ones
        assert feats[s.name].shape[1] == s.channels
        assert feats[s.name].shape[-1] == 12 // s.stride


def test_unet_sites_differ_in_channels_and_resolution() -> None:
    m = create_backbone("unet", 1, {"n_feats": 8})
    assert {(s.channels, s.stride) for s in m.acla_sites} == {(8, 1), (16, 2)}


def test_paper_size_edsr_is_configurable() -> None:
    m = create_backbone("edsr", 4, {"n_feats": 256, "n_resblocks": 32, "res_scale": 0.1})
    assert len(m.acla_sites) == 33 and m.acla_sites[1].channels == 256
    assert sum(p.numel() for p in m.parameters()) > 40_000_000


@pytest.mark.parametrize(
    "name,scale,kwargs,sites,field",
    [
        ("vdsr", 2, {}, None, "backbone.name"),
        ("edsr", 5, {}, None, "task.scale"),
        ("unet", 2, {}, None, "task.scale"),
        ("edsr", 2, {"n_feat": 8}, None, "backbone.kwargs.n_feat"),
        ("edsr", 2, {"n_resblocks": 0}, None, "backbone.kwargs.n_resblocks"),
        ("edsr", 2, {}, "body.*", "backbone.sites"),
        ("no_such_pkg.mod:f", 1, {}, "x.*", "backbone.name"),
        ("test_backbones:missing_factory", 1, {}, "layers.*", "backbone.name"),
        ("test_backbones:tiny_user_net", 1, {}, "nothing.*", "backbone.sites"),
        ("test_backbones:tiny_user_net", 1, {}, None, "backbone.sites"),
        ("test_backbones:tiny_user_net", 2, {}, "layers.*", "task.scale"),
    ],
)
def test_bad_backbone_input_names_the_field(name, scale, kwargs, sites, field) -> None:
    with pytest.raises(UserError) as info:
        create_backbone(name, scale, kwargs, sites)
    assert field in str(info.value)
    assert "\n" not in str(info.value)


def test_user_backbone_sites_probed_and_acla_attached() -> None:
    m = create_backbone("test_backbones:tiny_user_net", 1, {"width": 6}, "layers.*,down")
    assert [(s.name, s.channels, s.stride) for s in m.acla_sites] == [
        ("layers.0", 6, 1),
        ("layers.1", 6, 1),
        ("layers.2", 6, 1),
        ("down", 12, 2),
    ]
    arch = Arch.from_dict(
        {
            "backbone": {"name": "test_backbones:tiny_user_net", "kwargs": {"width": 6}, "sites": ["layers.*", "down"]},
            "task": {"name": "denoise", "sigma": 25},
            "modules": {"layers.2": {"keys": 4, "scope": "all"}, "down": {"keys": 2, "scope": 1}},
        }
    )
    net = build(arch)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        plain = net.backbone(x)  # hooks active but ACLA is the identity at init
        assert torch.allclose(net(x), plain)
        for mod in net.acla_modules().values():
            torch.nn.init.normal_(mod.out.weight, std=0.1)
        assert not torch.allclose(net(x), plain)
    assert set(net.keys_used()) == {"layers.2", "down"}
