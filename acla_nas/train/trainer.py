"""One training loop for retraining a child, proxy training in the search and supernet training.

L1 loss, Adam, cosine/step/constant learning-rate schedule, optional gradient clipping, seeded.
With an ``out_dir`` the run is durable:

* ``out_dir/checkpoints/last.pt`` is written atomically (temporary file + ``os.replace``) every
  ``ckpt_every`` steps, on Ctrl-C (when the interrupt does not hit a parameter update), and at
  the end. It holds the model, optimizer, scheduler and sampler states, the step, the RNG states
  (as tensors/lists: it loads with ``weights_only=True``) and the config;
* ``fit()`` on a directory with a checkpoint resumes from it -- the result is bit-identical to an
  uninterrupted run because batches are a pure function of (seed, step) and RNG states are
  restored -- and refuses a checkpoint written with another config;
* ``out_dir/metrics.json`` marks a completed run: ``fit()`` then only returns the stored result;
* a non-finite loss raises :class:`NonFiniteLossError` before anything is written, so the
  previous checkpoint stays intact.

Callers customise a step with ``before_step(step)`` (e.g. sample a supernet path: derive its
randomness from ``step`` or the global torch RNG, which is checkpointed) and
``after_step(step, loss)``; ``param_groups`` adds optimizer groups (e.g. architecture weights);
``step_loss(forward_loss, step)`` replaces the step's loss by a combination of several calls of
``forward_loss()`` (e.g. the sandwich rule: one forward pass per supernet path);
``extra_state`` (``state_dict()`` / ``load_state_dict(state, file)``) adds the caller's own state
to every checkpoint (e.g. DARTS's architecture parameters, their optimiser and its trajectory).

Inside a process group (torchrun, or ``--nproc``; see :mod:`acla_nas.runtime.distributed`) the model is
wrapped in DistributedDataParallel and each rank trains on its slice of the same global batch,
so the weights follow the single-process run; rank 0 alone validates and writes files, the
checkpoint keeps every rank's RNG state, and a resume reads it on rank 0 and broadcasts it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from acla_nas.core.atomic import torch_save_atomic, write_text_atomic
from acla_nas.core.checks import MAX_SEED, real_number, shown
from acla_nas.core.errors import UserError
from acla_nas.data.images import Item, to_float
from acla_nas.data.patches import PatchSampler, _mix_seed
from acla_nas.runtime import distributed
from acla_nas.runtime.device import resolve_device
from acla_nas.runtime.progress import progress_bar
from acla_nas.tasks import Task
from acla_nas.tasks.metrics import psnr, quantize, ssim
from acla_nas.train.inference import restore_image

CHECKPOINT_FORMAT = "acla-nas-checkpoint"
SCHEDULES = ("cosine", "step", "constant")
MAX_LR = 10.0  # far above any useful Adam rate; bounds what reaches the optimiser
# fields that change the trained weights; the others (device, progress, ...) may differ on resume
OPTIONAL_RESULT_FIELDS = {"freeze_backbone": False, "backbone_lr_mult": 1.0, "clip_groups": False}
RESULT_FIELDS = ("steps", "patch", "batch", "lr", "schedule", "milestones", "gamma", "min_lr", "grad_clip", "seed")


class NonFiniteLossError(UserError):
    """The loss (or gradient norm) became NaN/inf; the previous checkpoint is kept."""


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
    def from_dict(cls, data: dict | None, file: str | None = None) -> TrainConfig:
        """Validate a ``train:`` mapping; errors name ``train.<field>``."""
        data = dict(data or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise UserError(f"unknown key (expected one of {', '.join(names)})", file=file, field=f"train.{key}")
            kwargs[key] = _check_field(key, value, file)
        return cls(**kwargs)


#: steps, patch sizes, batches, intervals: a billion of any is beyond any run (and beyond a float's exact ints)
MAX_COUNT = 10**9


def _check_field(key: str, value: Any, file: str | None) -> Any:
    def bad(expected: str) -> UserError:
        return UserError(f"got {shown(value)}, expected {expected}", file=file, field=f"train.{key}")

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
    if key in ("freeze_backbone", "clip_groups"):
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
            raise UserError(exc.message, file=file, field=f"train.{key}") from None
        return value
    if key == "progress":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    return value


def _lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The multiplier of the base learning rate after ``step`` scheduler steps."""
    steps, floor = config.steps, config.min_lr / config.lr

    def factor(step: int) -> float:
        if config.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        if config.schedule == "step":
            return config.gamma ** sum(step >= round(m * steps) for m in config.milestones)
        return 1.0

    return factor


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------- RNG states


def _capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rng_to_storable(state: dict[str, Any]) -> dict[str, Any]:
    """Tensors, numbers and lists only, so the checkpoint loads with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached = state["numpy"]
    version, internal, gauss = state["python"]
    out = {
        "torch": state["torch"].clone(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if "cuda" in state:
        out["cuda"] = [s.clone() for s in state["cuda"]]
    return out


def _restore_rng(stored: dict[str, Any]) -> None:
    torch.set_rng_state(stored["torch"].to(torch.uint8))
    n = stored["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = stored["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in stored and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in stored["cuda"]])


# --------------------------------------------------------------------------- files


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a trainer checkpoint (``weights_only=True``); unreadable files raise UserError."""
    p = Path(path)
    try:
        ckpt = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated/corrupt file is a user-facing problem
        raise UserError(
            f"cannot read the checkpoint ({type(exc).__name__}); delete it to restart the run", file=str(p)
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError("not an acla-nas trainer checkpoint", file=str(p))
    return ckpt


# --------------------------------------------------------------------------- trainer


def model_param_groups(model: nn.Module, lr: float, exclude: set[int] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Optimizer groups of a model's trainable parameters: the base group first, then one group
    per learning-rate multiplier the model asks for (``param_lr_multipliers()``, e.g. the ACLA
    offset predictors). Parameters whose ids are in ``exclude`` are left to the caller."""
    special = getattr(model, "param_lr_multipliers", None)
    mult_groups = [(m, [p for p in ps if id(p) not in exclude]) for m, ps in (special() if callable(special) else [])]
    taken = set(exclude) | {id(p) for _, ps in mult_groups for p in ps}
    own = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return [{"params": own}] + [{"params": ps, "lr": lr * m} for m, ps in mult_groups if ps]


def _describe_mismatch(stored: dict, current: dict) -> str:
    diffs = [
        f"{k}: {stored.get(k)!r} there vs {current.get(k)!r} now" for k in current if stored.get(k) != current.get(k)
    ]
    return "; ".join(diffs[:3])


class Trainer:
    """Fit ``model`` on batches from ``sampler`` with the task's metric protocol for validation.

    ``val_data`` is either a fixed ``(lq, hr)`` patch pair (fast; see
    :func:`acla_nas.data.patches.fixed_patches`) or a sequence of full images/pairs (see
    :func:`evaluate_model`). ``final_eval(model) -> dict`` (e.g. test-set metrics) is stored in
    ``metrics.json`` under ``test``; ``meta`` (plain data) is stored in every checkpoint."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        sampler: PatchSampler,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        val_data: tuple[torch.Tensor, torch.Tensor] | Sequence[Item] | None = None,
        before_step: Callable[[int], None] | None = None,
        after_step: Callable[[int, float], None] | None = None,
        param_groups: Sequence[dict[str, Any]] | None = None,
        final_eval: Callable[[nn.Module], dict] | None = None,
        meta: dict[str, Any] | None = None,
        section: str = "train",
        ddp_find_unused: bool = False,
        step_loss: Callable[[Callable[[], torch.Tensor], int], torch.Tensor] | None = None,
        extra_state: Any = None,
    ) -> None:
        self.config, self.task, self.sampler = config, task, sampler
        self.section = section  # where the user sets this run's lr (train, supernet, proxy): named in errors
        self.rank = distributed.current()
        distributed.check_batch(config.batch, f"{section}.batch")
        self.device = distributed.device_for(resolve_device(config.device))
        self.model = model.to(self.device)
        backbone = getattr(model, "backbone", None)
        self.backbone_ids = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
        if config.freeze_backbone:
            if not self.backbone_ids:
                raise UserError("this network has no separate backbone to freeze", field=f"{section}.freeze_backbone")
            backbone.requires_grad_(False)  # before DDP wraps it: only the modules' gradients are reduced
        # under DDP the step runs through the wrapper; ``model`` stays the plain module
        self.net = distributed.wrap(self.model, self.device, find_unused=ddp_find_unused)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.val_data, self.before_step, self.after_step = val_data, before_step, after_step
        self.final_eval, self.meta = final_eval, dict(meta or {})
        self.step_loss = step_loss
        self.extra_state = extra_state  # state_dict() / load_state_dict(): checkpointed with the model
        if step_loss is not None and self.rank.enabled:
            raise UserError(
                "several forward passes per step (e.g. supernet.sampling: sandwich) do not run data-parallel; "
                "use one process",
                field=f"{section}.sampling",
            )
        extra = [dict(g) for g in (param_groups or [])]
        groups = model_param_groups(model, config.lr, exclude={id(p) for g in extra for p in g["params"]}) + extra
        if config.backbone_lr_mult != 1.0 and self.backbone_ids:  # the backbone's own learning rate
            base = groups[0]["params"]
            groups[0]["params"] = [p for p in base if id(p) not in self.backbone_ids]
            groups.append(
                {"params": [p for p in base if id(p) in self.backbone_ids], "lr": config.lr * config.backbone_lr_mult}
            )
            groups = [g for g in groups if g["params"]]
        groups = [g for g in groups if g["params"]]
        self.params = [p for g in groups for p in g["params"]]
        if not self.params:
            raise UserError(
                "nothing to train: the backbone is frozen and the network has no ACLA module",
                field=f"{section}.freeze_backbone",
            )
        # gradient clipping: one global norm, or backbone and modules apart (``clip_groups``)
        if config.clip_groups and self.backbone_ids:
            self.clip_sets = [
                ps
                for ps in (
                    [p for p in self.params if id(p) in self.backbone_ids],
                    [p for p in self.params if id(p) not in self.backbone_ids],
                )
                if ps
            ]
        else:
            self.clip_sets = [self.params]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_factor(config))
        self.history: list[dict[str, Any]] = []
        self._updating = False
        self._completed = 0  # parameter updates applied so far
        self._elapsed = 0.0
        self._last_saved: int | None = None

    # -- paths -----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "metrics.json"

    # -- checkpoints -----------------------------------------------------------------------------
    def _check_same_run(self, stored_config: dict, stored_task: dict, file: Path) -> None:
        current = self.config.fingerprint()
        stored = {k: stored_config.get(k) for k in current}
        if stored != current or stored_task != self.task.spec:
            why = _describe_mismatch(stored, current) or f"task {stored_task} vs {self.task.spec}"
            raise UserError(
                f"the run directory {self.out_dir} belongs to another config ({why}); "
                "use another --out directory or the same settings",
                file=str(file),
            )

    def _save(self, step: int, rng: dict[str, Any]) -> None:
        """Write the checkpoint (rank 0; every rank must call it: RNG states are gathered)."""
        assert self.checkpoint_path is not None
        ranks = distributed.gather(_rng_to_storable(rng))
        if not self.rank.main:
            self._last_saved = step
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": {"seed": self.sampler.seed, "step": step},
            "rng": ranks[0],
            "config": self.config.to_dict(),
            "task": self.task.spec,
            "history": self.history,
            "seconds": self._elapsed,
            "meta": self.meta,
        }
        if self.extra_state is not None:
            state["extra"] = self.extra_state.state_dict()
        if len(ranks) > 1:
            state["rng_ranks"] = ranks
        torch_save_atomic(state, self.checkpoint_path)
        self._last_saved = step

    def _resume(self, ckpt: dict[str, Any]) -> int:
        if self.extra_state is not None:  # first: it may refuse a checkpoint made with other options
            self.extra_state.load_state_dict(ckpt.get("extra") or {}, self.checkpoint_path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) == self.rank.world:
            _restore_rng(ranks[self.rank.rank])
        else:  # resumed on another number of processes: same weights, fresh noise per rank
            _restore_rng(ckpt["rng"])
            self._seed_rank(int(ckpt["step"]))
        self.history = list(ckpt.get("history", []))
        self._elapsed = float(ckpt.get("seconds", 0.0))
        self._last_saved = int(ckpt["step"])
        return int(ckpt["step"])

    def _seed_rank(self, step: int = 0) -> None:
        """Ranks after 0 draw their own noise (e.g. ACLA's gate), still a function of the seed."""
        if self.rank.rank > 0:
            torch.manual_seed(_mix_seed(self.config.seed * 7919 + self.rank.rank, step))

    def _stored_result(self) -> dict[str, Any] | None:
        """The result of a completed run in ``out_dir`` (weights loaded into the model), if any."""
        if self.metrics_path is None or not self.metrics_path.is_file():
            return None
        try:
            result = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the stored result ({exc})", file=str(self.metrics_path)) from None
        self._check_same_run(result.get("config", {}), result.get("task", {}), self.metrics_path)
        if self.checkpoint_path is not None and self.checkpoint_path.is_file():
            ckpt = load_checkpoint(self.checkpoint_path, self.device)
            self.model.load_state_dict(ckpt["model"])
            if self.extra_state is not None and "extra" in ckpt:
                self.extra_state.load_state_dict(ckpt["extra"], self.checkpoint_path)
        return result

    # -- one step --------------------------------------------------------------------------------
    def _non_finite(self, what: str, value: float, step: int) -> NonFiniteLossError:
        kept = (
            f"the last checkpoint (step {self._last_saved}) is kept"
            if self._last_saved is not None
            else "no checkpoint was written"
        )
        sec = self.section
        return NonFiniteLossError(
            f"the {what} became {value} at step {step}; training stopped and {kept}. "
            f"Lower {sec}.lr or set {sec}.grad_clip (in a new --out directory)",
            field=sec,
        )

    def _train_step(self, lq: torch.Tensor, hr: torch.Tensor, step: int) -> float:
        self.model.train()
        lq, hr = distributed.shard((lq, hr))  # this rank's slice of the global batch
        lq, hr = lq.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)

        def forward_loss() -> torch.Tensor:
            out = self.net(lq)
            if out.shape != hr.shape:
                raise ValueError(
                    f"the model maps {tuple(lq.shape)} to {tuple(out.shape)}, but the task "
                    f"({self.task.describe()}) needs {tuple(hr.shape)}"
                )
            loss = F.l1_loss(out, hr)
            aux = getattr(self.model, "auxiliary_loss", None)
            extra = aux() if callable(aux) else None
            return loss if extra is None else loss + extra  # e.g. the ACLA key-usage penalty

        # ``step_loss`` may combine several forward passes (e.g. one per supernet path)
        loss = forward_loss() if self.step_loss is None else self.step_loss(forward_loss, step)
        value = distributed.mean(loss.detach())  # the global-batch loss, the same on every rank
        if not math.isfinite(value):
            raise self._non_finite("loss", value, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            for params in self.clip_sets:
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))
                if not math.isfinite(norm):
                    raise self._non_finite("gradient norm", norm, step)
        self._updating = True
        self.optimizer.step()
        self.scheduler.step()
        self._updating = False
        self._completed = step + 1
        return value

    @torch.no_grad()
    def validate(self) -> float | None:
        """Validation PSNR (dB) with the task's protocol, or None without validation data."""
        if self.val_data is None:
            return None
        was_training = self.model.training
        self.model.eval()
        try:
            if (
                isinstance(self.val_data, tuple)
                and len(self.val_data) == 2
                and isinstance(self.val_data[0], torch.Tensor)
                and self.val_data[0].ndim == 4
            ):
                lq_all, hr_all = self.val_data
                outs = [
                    self.model(lq_all[i : i + self.config.batch].to(self.device)).float().cpu()
                    for i in range(0, len(lq_all), self.config.batch)
                ]
                out = quantize(torch.cat(outs))
                return psnr(out, hr_all, self.task.crop_border, self.task.test_y_channel)
            return evaluate_model(self.model, self.val_data, self.task, self.device)["psnr"]
        finally:
            self.model.train(was_training)

    # -- the loop --------------------------------------------------------------------------------
    def _read_state(self) -> tuple[str, Any]:
        """What ``out_dir`` holds: ("done", (result, weights)), ("resume", checkpoint) or ("fresh", None)."""
        stored = self._stored_result()
        if stored is not None:
            return "done", (stored, self.model.state_dict() if self.rank.enabled else None)
        ckpt_path = self.checkpoint_path
        if ckpt_path is not None and ckpt_path.is_file():
            ckpt = load_checkpoint(ckpt_path, "cpu" if self.rank.enabled else self.device)
            self._check_same_run(ckpt.get("config", {}), ckpt.get("task", {}), ckpt_path)
            return "resume", ckpt
        return "fresh", None

    def fit(self) -> dict[str, Any]:
        """Train to ``config.steps`` (resuming when ``out_dir`` holds a checkpoint); returns the result."""
        kind, payload = distributed.on_main(self._read_state)  # files are read on rank 0 only
        if kind == "done":
            stored, weights = payload
            if weights is not None and not self.rank.main:
                self.model.load_state_dict(weights)
            return stored
        cfg, start = self.config, 0
        if kind == "resume":
            start = self._resume(payload)
            if cfg.progress and self.rank.main:
                print(f"{self.out_dir}: resuming at step {start} ({self.checkpoint_path.name})", file=sys.stderr)
        else:
            seed_everything(cfg.seed)
            self._seed_rank()
            self.sampler.load_state_dict({"seed": self.sampler.seed, "step": 0})
        if self.out_dir is not None and self.rank.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        return self._loop(start)

    def _loop(self, start: int) -> dict[str, Any]:
        cfg = self.config
        # a bar on a terminal, a line every N seconds in logs (acla_nas.runtime.progress), nothing with --quiet
        bar = progress_bar(
            cfg.steps, start, cfg.progress and self.rank.main, self.out_dir.name if self.out_dir else "training"
        )
        t0, losses, loss = time.perf_counter(), [], float("nan")
        rng = _capture_rng(self.device)
        step = self._completed = start
        try:
            for step in range(start, cfg.steps):
                rng = _capture_rng(self.device)
                if self.out_dir is not None and step > start and step % cfg.ckpt_every == 0:
                    self._elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._save(step, rng)
                if self.before_step is not None:
                    self.before_step(step)
                loss = self._train_step(*next(self.sampler), step)
                losses.append(loss)
                if self.after_step is not None:
                    self.after_step(step, loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if cfg.val_every and (step + 1) % cfg.val_every == 0 and step + 1 < cfg.steps:
                    self._log(step + 1, losses, self.validate() if self.rank.main else None, t0)
                    losses = []
        except KeyboardInterrupt:
            # save only an exact step boundary: interrupted before this step's update began
            # (not under DDP: the other ranks may not stop at the same step to gather with us)
            if (
                self.out_dir is not None
                and not self._updating
                and self._completed == step
                and step != self._last_saved
                and step > 0
                and not self.rank.enabled
            ):
                self._elapsed += time.perf_counter() - t0
                self._save(step, rng)
            raise
        finally:
            bar.close()
        self._elapsed += time.perf_counter() - t0
        t0 = time.perf_counter()
        final_val = self.validate() if self.rank.main else None
        self._log(cfg.steps, losses, final_val, t0)
        return self._finish(final_val)

    def _log(self, step: int, losses: list[float], val: float | None, t0: float) -> None:
        self.history.append(
            {
                "step": step,
                "loss": float(np.mean(losses)) if losses else None,
                "val_psnr": val,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self._elapsed + time.perf_counter() - t0, 3),
            }
        )

    def _finish(self, final_val: float | None) -> dict[str, Any]:
        test = self.final_eval(self.model) if self.final_eval is not None and self.rank.main else None
        last_loss = next((h["loss"] for h in reversed(self.history) if h["loss"] is not None), None)
        result = {
            "completed": True,
            "steps": self.config.steps,
            "final_loss": last_loss,
            "val_psnr": final_val,
            "test": test,
            "seconds": round(self._elapsed, 3),
            "history": self.history,
            "config": self.config.to_dict(),
            "task": self.task.spec,
        }
        if self.out_dir is not None:
            self._save(self.config.steps, _capture_rng(self.device))
            if self.rank.main:
                write_text_atomic(
                    self.out_dir / "metrics.json", json.dumps(result, indent=2, sort_keys=True, allow_nan=True) + "\n"
                )
        return distributed.broadcast(result)  # every rank returns rank 0's result


# --------------------------------------------------------------------------- evaluation


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows]
    return float(np.mean(vals)) if vals else float("nan")


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    images: Sequence[Item],
    task: Task,
    device: torch.device | str | None = None,
    tile: int | None = None,
    seed: int = 0,
    overlap: int = 16,
    require_finite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """PSNR/SSIM of the model and of the naive floor on full images, with the task's protocol.

    ``require_finite``: a NaN or infinite output raises a UserError naming the image instead of
    scoring NaN (what ``acla-nas evaluate`` wants; training keeps going and reports NaN).

    ``images`` are HR tensors (degraded here, seeded by ``(seed, index)``) or ``(lq, hr)`` pairs.
    Outputs are clamped and rounded to 8 bits before scoring, as BasicSR does. For a network
    with ACLA modules, ``keys_used`` gives each module's mean number of keys kept per query,
    averaged over the images (of the last tile of each image when tiled). ``progress``: a bar
    (or log lines where stderr is not a terminal) counting the images, for ``acla-nas evaluate``."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    was_training = model.training
    model.eval()
    names = list(getattr(images, "names", [])) or [f"#{i}" for i in range(len(images))]
    rows, keys = [], []
    key_report = getattr(model, "keys_used", None)
    bar = progress_bar(len(images), enabled=progress, label="evaluating") if progress else None
    try:
        for i in range(len(images)):
            item = images[i]
            if isinstance(item, tuple):
                lq, hr = to_float(item[0])[None], to_float(item[1])[None]
            else:
                hr = task.crop_hr(to_float(item)[None])
                lq = task.degrade(hr, torch.Generator().manual_seed(_mix_seed(seed, i)))
            raw = restore_image(model, lq.to(dev), task.scale, tile, overlap).float().cpu()
            if require_finite and not bool(torch.isfinite(raw).all()):
                raise UserError(f"the model produced NaN or infinite values on image {names[i]}")
            out = quantize(raw)
            if out.shape != hr.shape:
                raise ValueError(f"the model output {tuple(out.shape)} does not match the HR image {tuple(hr.shape)}")
            if callable(key_report):
                keys.append(key_report())
            floor = quantize(task.input_floor(lq, hr))
            cb, y = task.crop_border, task.test_y_channel
            rows.append(
                {
                    "image": names[i],
                    "psnr": psnr(out, hr, cb, y),
                    "ssim": ssim(out, hr, cb, y),
                    "floor_psnr": psnr(floor, hr, cb, y),
                    "floor_ssim": ssim(floor, hr, cb, y),
                }
            )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    result = {
        "psnr": _mean(rows, "psnr"),
        "ssim": _mean(rows, "ssim"),
        "floor_psnr": _mean(rows, "floor_psnr"),
        "floor_ssim": _mean(rows, "floor_ssim"),
        "n": len(rows),
        "per_image": rows,
    }
    if keys and keys[0]:
        result["keys_used"] = {site: sum(k[site] for k in keys) / len(keys) for site in keys[0]}
    return result
