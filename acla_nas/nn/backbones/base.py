"""What every backbone declares: its candidate sites, like timm's ``feature_info``.

A site is a module (by dotted name) whose output is a feature map that an ACLA module may refine
and that later modules may attend to. Sites are ordered by execution; the head comes first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from acla_nas.core.errors import UserError


@dataclass(frozen=True)
class Site:
    """A candidate insertion site: module name, output channels, stride w.r.t. the network input
    (a row of ``sites.csv``; channels and stride are None where a file does not say)."""

    name: str
    channels: int | None = None
    stride: int | None = 1


class Backbone(nn.Module):
    """A restoration network mapping a [0,1] image (B,3,h,w) to (B,3,h*scale,w*scale)."""

    scale: int = 1
    sites: list[Site]

    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]


def check_scale(scale: int, allowed: tuple[int, ...], backbone: str) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in allowed:
        raise UserError(f"{backbone} supports scale {', '.join(map(str, allowed))}; got {scale!r}", field="task.scale")
    return scale


MAX_WIDTH = 2**16  # channels: far beyond any restoration network, small enough for shape arithmetic
MAX_DEPTH = 1000  # blocks or groups: each is a Python object, so a typo like 1e9 must not hang the build


def check_positive_int(value: object, field: str, minimum: int = 1, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        want = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        raise UserError(f"expected {want}, got {value!r}", field=field)
    return value


class MeanShift(nn.Module):
    """Subtract (sign=-1) or add back (sign=+1) the DIV2K RGB mean, as EDSR/RCAN do."""

    def __init__(self, sign: int, mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)) -> None:
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class ResBlock(nn.Module):
    """EDSR residual block: conv-ReLU-conv, scaled residual, no batch norm."""

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), nn.ReLU(inplace=True), conv(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling for scale 2, 3 or 4 (4 = two x2 stages)."""

    def __init__(self, scale: int, channels: int) -> None:
        layers: list[nn.Module] = []
        if scale in (2, 4):
            for _ in range({2: 1, 4: 2}[scale]):
                layers += [conv(channels, 4 * channels), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv(channels, 9 * channels), nn.PixelShuffle(3)]
        elif scale != 1:
            raise UserError(f"unsupported scale {scale} (expected 2, 3 or 4)", field="task.scale")
        super().__init__(*layers)


class Tail(nn.Module):
    """Image reconstruction: upsampler + conv for SR, conv + global input residual for scale 1.

    ``image_skip`` (SR only) adds the bicubic upsampling of the input, so the network learns a
    residual over bicubic: not in the original EDSR/RCAN, but it makes short CPU trainings (proxy
    evaluation, demos) start at the bicubic baseline instead of far below it.
    """

    def __init__(self, scale: int, channels: int, out_channels: int = 3, image_skip: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.image_skip = bool(image_skip)
        self.up = Upsampler(scale, channels)
        self.conv = conv(channels, out_channels)

    def forward(self, feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.up(feats))
        if self.scale == 1:
            return y + image
        if self.image_skip:
            y = y + nn.functional.interpolate(image, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y


def call_factory(factory: Callable[..., nn.Module], kwargs: dict, what: str, any_error: bool = False) -> nn.Module:
    """Call a factory with kwargs, turning unknown or ill-typed kwargs into a UserError.

    ``any_error``: user code (``module:factory``) may fail in any way; report it in one line too."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        accepted = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in accepted:
                raise UserError(
                    f"{what} takes no argument {key!r} (accepted: {', '.join(accepted)})",
                    field=f"backbone.kwargs.{key}",
                )
    try:
        return factory(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what} rejected its arguments: {exc}", field="backbone.kwargs") from exc
    except Exception as exc:
        if not any_error:
            raise
        raise UserError(f"{what} failed: {type(exc).__name__}: {exc}", field="backbone.name") from exc
