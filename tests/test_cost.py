"""Cost model against hand-counted cases."""

from __future__ import annotations

import torch
from torch import nn

from acla_nas.nn.acla import ACLA
from acla_nas.nn.arch import Arch
from acla_nas.nn.cost import count_macs, count_params
from acla_nas.nn.network import build


class OneModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.m = ACLA(4, [4, 2], 3, offset_kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x[:, :1].expand(-1, 4, -1, -1)
        return self.m(q, [q, x[:, 1:3]])


def test_acla_macs_hand_counted() -> None:
    # 5x5 query, C=4, layers of 4 and 2 channels, K=3, 1x1 predictors.
    hw = 25
    query = 4 * 6 * hw  # 1x1 conv 4 -> 4+2
    offsets = 4 * (2 * 3 * 2) * hw  # 1x1 conv 4 -> L*K*2
    gate = 4 * 3 * hw  # 1x1 conv 4 -> K
    out = 6 * 4 * hw  # 1x1 conv 6 -> 4
    sampling = 4 * (4 + 2) * 3 * hw  # bilinear: 4 taps x channels x K points per query
    attention = 2 * (4 + 2) * 3 * hw  # logit + weighted sum per key and channel
    assert count_macs(OneModule(), (5, 5)) == query + offsets + gate + out + sampling + attention == 5400


def test_conv_macs_and_params_of_a_plain_net() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    assert count_macs(net, (10, 10)) == (3 * 8 * 9 + 8 * 3) * 100
    assert count_params(net) == 3 * 8 * 9 + 8 + 8 * 3 + 3


def test_child_cost_grows_with_keys_and_is_plain_plus_modules() -> None:
    base = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 3}},
        "task": {"name": "sr", "scale": 2},
    }
    plain = count_macs(build(Arch.from_dict(base)), (12, 12))
    small = count_macs(build(Arch.from_dict({**base, "modules": {"body.2": {"keys": 2}}})), (12, 12))
    big = count_macs(build(Arch.from_dict({**base, "modules": {"body.2": {"keys": 8}}})), (12, 12))
    assert plain < small < big
    m = ACLA(8, [8, 8, 8], 8)
    sampling_and_attention = 12 * 12 * (4 * 24 * 8 + 2 * 24 * 8)
    convs = 12 * 12 * (8 * 24 + 8 * 9 * 48 + 8 * 9 * 8 + 24 * 8)
    assert big - plain == sampling_and_attention + convs
    assert count_params(m) == 8 * 24 + (8 * 9 * 48 + 48) + (8 * 9 * 8 + 8) + (24 * 8 + 8)
