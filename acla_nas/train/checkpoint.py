"""A training run's durable side: seeds, RNG states, and the checkpoint it resumes from.

``out_dir/checkpoints/last.pt`` is written atomically (temporary file + ``os.replace``). It holds
the model, optimizer, scheduler and sampler states, the step, the RNG states (as tensors and
lists, so it loads with ``weights_only=True``; under DDP every rank's) and the config. A resume
restores all of them, so the run continues bit-identically, and refuses a directory written with
another config or task. ``out_dir/metrics.json`` marks a completed run.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acla_nas.core.atomic import torch_save_atomic
from acla_nas.core.errors import UserError
from acla_nas.data.patches import PatchSampler, _mix_seed
from acla_nas.runtime import distributed
from acla_nas.tasks import Task
from acla_nas.train.config import TrainConfig

CHECKPOINT_FORMAT = "acla-nas-checkpoint"


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------- RNG states


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Every RNG state a training step draws from (the CUDA ones on a CUDA device)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_to_storable(state: dict[str, Any]) -> dict[str, Any]:
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


def restore_rng(stored: dict[str, Any]) -> None:
    """Put back what :func:`rng_to_storable` stored."""
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


def _describe_mismatch(stored: dict, current: dict) -> str:
    diffs = [
        f"{k}: {stored.get(k)!r} there vs {current.get(k)!r} now" for k in current if stored.get(k) != current.get(k)
    ]
    return "; ".join(diffs[:3])


class Checkpointed:
    """The checkpoint half of :class:`~acla_nas.train.trainer.Trainer`: where its files live,
    writing, reading and resuming its checkpoint. Kept apart so the loop reads as a loop; the
    attributes below are the trainer's, set in its ``__init__``."""

    config: TrainConfig
    task: Task
    sampler: PatchSampler
    rank: distributed.Rank
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    out_dir: Path | None
    history: list[dict[str, Any]]
    meta: dict[str, Any]
    extra_state: Any  # state_dict() / load_state_dict(state, file), or None
    _elapsed: float
    _last_saved: int | None

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "metrics.json"

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
        ranks = distributed.gather(rng_to_storable(rng))
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
            restore_rng(ranks[self.rank.rank])
        else:  # resumed on another number of processes: same weights, fresh noise per rank
            restore_rng(ckpt["rng"])
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


__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpointed",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "rng_to_storable",
    "seed_everything",
]
