"""One training loop for retraining a child, proxy training in the search and supernet training.

L1 loss, Adam, cosine/step/constant learning-rate schedule (:mod:`acla_nas.train.config`),
optional gradient clipping, seeded. With an ``out_dir`` the run is durable
(:mod:`acla_nas.train.checkpoint`):

* ``out_dir/checkpoints/last.pt`` is written every ``ckpt_every`` steps, on Ctrl-C (when the
  interrupt does not hit a parameter update), and at the end;
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

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from acla_nas.core.atomic import write_text_atomic
from acla_nas.core.errors import UserError
from acla_nas.data.images import Item
from acla_nas.data.patches import PatchSampler
from acla_nas.runtime import distributed
from acla_nas.runtime.device import resolve_device
from acla_nas.runtime.progress import progress_bar
from acla_nas.runtime.run_log import LOSS_EVERY, log_line, scalar, tensorboard_on
from acla_nas.tasks import Task
from acla_nas.tasks.metrics import psnr, quantize, ssim
from acla_nas.train.checkpoint import Checkpointed, capture_rng, seed_everything
from acla_nas.train.config import TrainConfig, lr_factor
from acla_nas.train.evaluate import evaluate_model


class NonFiniteLossError(UserError):
    """The loss (or gradient norm) became NaN/inf; the previous checkpoint is kept."""


def model_param_groups(model: nn.Module, lr: float, exclude: set[int] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Optimizer groups of a model's trainable parameters: the base group first, then one group
    per learning-rate multiplier the model asks for (``param_lr_multipliers()``, e.g. the ACLA
    offset predictors). Parameters whose ids are in ``exclude`` are left to the caller."""
    special = getattr(model, "param_lr_multipliers", None)
    mult_groups = [(m, [p for p in ps if id(p) not in exclude]) for m, ps in (special() if callable(special) else [])]
    taken = set(exclude) | {id(p) for _, ps in mult_groups for p in ps}
    own = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return [{"params": own}] + [{"params": ps, "lr": lr * m} for m, ps in mult_groups if ps]


class Trainer(Checkpointed):
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
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config))
        self.history: list[dict[str, Any]] = []
        self.val_ssim: float | None = None  # of the last validation, when TensorBoard asks for it
        self._updating = False
        self._completed = 0  # parameter updates applied so far
        self._elapsed = 0.0
        self._last_saved: int | None = None

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
                if tensorboard_on():  # SSIM costs more than PSNR: only when someone plots it
                    self.val_ssim = ssim(out, hr_all, self.task.crop_border, self.task.test_y_channel)
                return psnr(out, hr_all, self.task.crop_border, self.task.test_y_channel)
            res = evaluate_model(self.model, self.val_data, self.task, self.device)
            self.val_ssim = res["ssim"]
            return res["psnr"]
        finally:
            self.model.train(was_training)

    # -- the loop --------------------------------------------------------------------------------
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
            cfg.steps,
            start,
            cfg.progress and self.rank.main,
            self.out_dir.name if self.out_dir else "training",
            log=self.rank.main,
        )
        t0, losses, loss = time.perf_counter(), [], float("nan")
        rng = capture_rng(self.device)
        step = self._completed = start
        try:
            for step in range(start, cfg.steps):
                rng = capture_rng(self.device)
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
                if (step + 1) % LOSS_EVERY == 0 and self.rank.main:
                    scalar(f"{self.section}/loss", loss, step + 1)
                    scalar(f"{self.section}/lr", self.optimizer.param_groups[0]["lr"], step + 1)
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
        point = {
            "step": step,
            "loss": float(np.mean(losses)) if losses else None,
            "val_psnr": val,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(self._elapsed + time.perf_counter() - t0, 3),
        }
        self.history.append(point)
        if not self.rank.main:
            return
        name = self.out_dir.name if self.out_dir else self.section
        val_text = "n/a" if val is None else f"{val:.3f} dB"
        loss_text = "n/a" if point["loss"] is None else f"{point['loss']:.4f}"
        log_line(f"acla-nas: {name} step {step}/{self.config.steps}: loss {loss_text}, validation PSNR {val_text}")
        scalar(f"{self.section}/val_psnr", val, step)
        scalar(f"{self.section}/val_ssim", self.val_ssim, step)
        self.val_ssim = None

    def _finish(self, final_val: float | None) -> dict[str, Any]:
        test = self.final_eval(self.model) if self.final_eval is not None and self.rank.main else None
        if test and self.rank.main:
            steps = self.config.steps
            for key in ("psnr", "ssim", "floor_psnr", "floor_ssim"):
                scalar(f"test/{key}", test.get(key), steps)
            for site, kept in (test.get("keys_used") or {}).items():
                scalar(f"keys_kept/{site}", kept, steps)
            if test.get("n"):
                log_line(f"acla-nas: test ({test['n']} images) PSNR {test['psnr']:.3f} dB, SSIM {test['ssim']:.4f}")
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
            self._save(self.config.steps, capture_rng(self.device))
            if self.rank.main:
                write_text_atomic(
                    self.out_dir / "metrics.json", json.dumps(result, indent=2, sort_keys=True, allow_nan=True) + "\n"
                )
        return distributed.broadcast(result)  # every rank returns rank 0's result


__all__ = ["NonFiniteLossError", "Trainer", "model_param_groups"]
