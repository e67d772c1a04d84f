"""What defines a training run (:class:`TrainConfig`), checked, and the one place it is built.

Every caller that trains -- ``acla-nas train`` (an arch file's ``train:`` section and its flags),
the search's proxy and supernet training (a strategy preset's section), DARTS (its options), the
pipeline's and the table's retraining recipes -- goes through :meth:`TrainConfig.from_recipe`, so
a value is checked by one rule and an error names where the user wrote it (``<section>.<key>`` in
a file, or the flag).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from acla_nas.core.checks import MAX_SEED, real_number, shown
from acla_nas.core.errors import UserError
from acla_nas.runtime.device import resolve_device

SCHEDULES = ("cosine", "step", "constant")
MAX_LR = 10.0  # far above any useful Adam rate; bounds what reaches the optimiser
# fields that change the trained weights; the others (device, progress, ...) may differ on resume
OPTIONAL_RESULT_FIELDS = {"freeze_backbone": False, "backbone_lr_mult": 1.0, "clip_groups": False}
RESULT_FIELDS = ("steps", "patch", "batch", "lr", "schedule", "milestones", "gamma", "min_lr", "grad_clip", "seed")


def flag_name(key: str) -> str:
    """The command-line flag that overrides ``key`` (``val_every`` -> ``--val-every``)."""
    return f"--{key.replace('_', '-')}"


@dataclass
class TrainConfig:
    """Everything that defines a training run (YAML ``train:`` section)."""

    steps: int = 1000
    patch: int = 48  # HR patch size
    batch: int = 16
    lr: float = 2e-4
    schedule: str = "cosine"  # cosine | step | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of `steps` where lr *= gamma
    gamma: float = 0.5
    min_lr: float = 1e-7  # cosine floor
    grad_clip: float | None = 1.0  # max global gradient norm; null = off
    seed: int = 0
    val_every: int = 500  # 0 = validate only at the end
    val_patches: int = 16
    device: str = "auto"
    ckpt_every: int = 200
    progress: bool = True
    tensorboard: bool = False  # RUN_DIR/tensorboard: loss, lr, validation and test metrics (runtime, not the result)
    # On a pretrained backbone (``backbone.weights``): train the ACLA modules only, or give the
    # backbone its own learning rate; clip the gradient norms of backbone and modules apart, so a
    # module's large early gradients never rescale the backbone's update (the table recipe does).
    freeze_backbone: bool = False
    backbone_lr_mult: float = 1.0
    clip_groups: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def fingerprint(self) -> dict[str, Any]:
        d = self.to_dict()
        out = {k: d[k] for k in RESULT_FIELDS}
        # fields added later count only when set: checkpoints written before them still resume
        out.update({k: d[k] for k, default in OPTIONAL_RESULT_FIELDS.items() if d[k] != default})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, file: str | None = None, section: str = "train") -> TrainConfig:
        """Validate a ``train:`` mapping; errors name ``<section>.<field>``."""
        data = dict(data or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise UserError(
                    f"unknown key (expected one of {', '.join(names)})", file=file, field=f"{section}.{key}"
                )
            kwargs[key] = _check_field(key, value, file, f"{section}.{key}")
        return cls(**kwargs)

    @classmethod
    def from_recipe(
        cls,
        recipe: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        fixed: Mapping[str, Any] | None = None,
        section: str = "train",
        file: str | None = None,
        flag: Callable[[str], str] = flag_name,
    ) -> TrainConfig:
        """The one way a run's config is built, from layers where a later one wins.

        ``defaults`` (the caller's own recipe) < ``recipe`` (what the user wrote in a YAML
        section: errors name ``<section>.<key>`` in ``file``) < ``overrides`` (command-line
        values, ``None`` = not given: errors name ``flag(key)``) < ``fixed`` (what the caller
        decides itself, e.g. the search's seed and device)."""
        values = cls.from_dict({**(defaults or {}), **(recipe or {})}, file=file, section=section).to_dict()
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            try:
                cls.from_dict({key: value}, section=section)
            except UserError as exc:
                raise UserError(exc.message, field=flag(key)) from None
            values[key] = value
        values.update(fixed or {})
        return cls.from_dict(values, section=section)


#: steps, patch sizes, batches, intervals: a billion of any is beyond any run (and beyond a float's exact ints)
MAX_COUNT = 10**9


def _check_field(key: str, value: Any, file: str | None, field: str) -> Any:
    def bad(expected: str) -> UserError:
        return UserError(f"got {shown(value)}, expected {expected}", file=file, field=field)

    ints_pos = {"steps", "patch", "batch", "val_patches", "ckpt_every"}
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            raise bad(f"an integer in 0..{MAX_SEED}")
        return value
    if key in ints_pos | {"val_every"}:
        lo = 1 if key in ints_pos else 0
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_COUNT:
            raise bad(f"an integer in {lo}..{MAX_COUNT:,}")
        return value
    if key in ("freeze_backbone", "clip_groups", "tensorboard"):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "backbone_lr_mult":
        number = real_number(value)
        if number is None or not 0 < number <= 1000:
            raise bad("a positive multiplier of train.lr (at most 1000)")
        return float(number)
    if key in ("lr", "gamma", "min_lr") or (key == "grad_clip" and value is not None):
        value = real_number(value)  # also YAML 1.1's `2e-4` (no dot), read as a string
        if value is None or value < 0 or (key in ("lr", "grad_clip") and value == 0):
            raise bad("a positive number" + (" (or null)" if key == "grad_clip" else ""))
        if key in ("lr", "min_lr") and value > MAX_LR:
            raise bad(f"a learning rate <= {MAX_LR:g} (Adam's steps overflow float32 long before 1e38)")
        return float(value)
    if key == "schedule":
        if value not in SCHEDULES:
            raise bad(f"one of {', '.join(SCHEDULES)}")
        return value
    if key == "milestones":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and 0 < v < 1 for v in value):
            raise bad("a list of fractions in (0, 1)")
        return tuple(float(v) for v in value)
    if key == "device":
        if not isinstance(value, str):
            raise bad("auto, cpu, cuda or cuda:N")
        try:
            resolve_device(value)  # what this torch build and machine support, checked up front
        except UserError as exc:
            raise UserError(exc.message, file=file, field=field) from None
        return value
    if key == "progress":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    return value


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The multiplier of the base learning rate after ``step`` scheduler steps."""
    steps, floor = config.steps, config.min_lr / config.lr

    def factor(step: int) -> float:
        if config.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        if config.schedule == "step":
            return config.gamma ** sum(step >= round(m * steps) for m in config.milestones)
        return 1.0

    return factor


__all__ = ["MAX_LR", "RESULT_FIELDS", "SCHEDULES", "TrainConfig", "flag_name", "lr_factor"]
