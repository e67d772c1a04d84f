"""The task contract: a degradation plus the metric protocol used to score its restoration,
the task registry, and the helpers that check a task's YAML spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.tasks.metrics import SSIM_WINDOW

# --------------------------------------------------------------------------- spec checking


def _check_keys(spec: dict, allowed: set[str]) -> None:
    extra = sorted(set(spec) - allowed - {"name"})
    if extra:
        raise UserError(
            f"unknown key {extra[0]!r} (expected one of {', '.join(sorted(allowed)) or 'none'})",
            field=f"task.{extra[0]}",
        )


def _int_choice(spec: dict, key: str, choices: tuple[int, ...], default: int | None = None) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise UserError(f"got {value!r}, expected one of {', '.join(map(str, choices))}", field=f"task.{key}")
    return value


def _number(spec: dict, key: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    value = spec.get(key, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (lo <= value <= hi):
        what = "an integer" if integer else "a number"
        raise UserError(f"got {value!r}, expected {what} in [{lo:g}, {hi:g}]", field=f"task.{key}")
    return value


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """Base class: a degradation plus the metric protocol used to score its restoration."""

    name: str = ""
    scale: int = 1
    crop_border: int = 0
    test_y_channel: bool = False
    KEYS: ClassVar[frozenset[str]] = frozenset()  # the spec's keys besides ``name``
    EXAMPLE: ClassVar[dict[str, Any]] = {}  # a valid spec (without ``name``): what conformance tests build

    @classmethod
    def from_spec(cls, spec: dict) -> Task:
        """The task of a checked YAML spec (its keys are in ``KEYS``); errors name ``task.<key>``."""
        raise NotImplementedError

    @property
    def spec(self) -> dict[str, Any]:
        """The YAML spec that :func:`make_task` turns back into this task."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def min_side(self) -> int:
        """The smallest HR side the metric protocol can score: the SSIM window after the mod-crop
        to the scale and the border crop on both sides."""
        need = SSIM_WINDOW + 2 * self.crop_border
        return -(-need // self.scale) * self.scale

    def crop_hr(self, hr: torch.Tensor) -> torch.Tensor:
        """Crop the bottom/right so the HR size is a multiple of ``scale`` (BasicSR's mod-crop)."""
        h, w = hr.shape[-2:]
        return hr[..., : h - h % self.scale, : w - w % self.scale]

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,3,H,W) HR in [0,1] -> the network input (B,3,H/scale,W/scale)."""
        raise NotImplementedError

    def input_floor(self, lq: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """The naive baseline at HR size (floor PSNR): what you get with no network at all."""
        return lq.clamp(0.0, 1.0)


TASKS: Registry[type[Task]] = Registry(
    "task",
    "acla_nas.tasks",
    "task.name",
    package="acla_nas.tasks",
    check=lambda c: isinstance(c, type) and issubclass(c, Task),
    expected="subclass of acla_nas.tasks.Task",
)


def register_task(name: str) -> Any:
    """Class decorator: make a :class:`Task` subclass known to :func:`make_task` as ``name``."""
    return TASKS.register(name)


def make_task(spec: dict | Task | None) -> Task:
    """Build a :class:`Task` from its YAML spec; bad specs raise :class:`UserError` naming the field."""
    if isinstance(spec, Task):
        return spec
    if not isinstance(spec, dict):
        raise UserError(f"expected a mapping like {{name: sr, scale: 2}}, got {spec!r}", field="task")
    name = spec.get("name")
    if not isinstance(name, str) or name not in TASKS.names():  # registered or installed; never imported from a file
        raise UserError(f"unknown task {name!r} (expected one of {', '.join(TASKS.names())})", field="task.name")
    cls = TASKS.get(name)
    _check_keys(spec, set(cls.KEYS))
    return cls.from_spec(spec)
