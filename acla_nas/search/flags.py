"""The search flags (SPACE.yaml --strategy --out --trials --steps --seed --device --storage
--workers --nproc --tensorboard --set): declared, read and checked in this one module.

``acla-nas search`` and ``acla-nas pipeline`` declare them through :func:`add_search_flags`; each
override's argparse declaration is the metadata of its :class:`SearchFlags` field, so a new flag is
one field here. :meth:`SearchFlags.from_args` is the one place that reads them off a parsed command
line (library calls pass the same names as keywords), and the device is resolved once, here.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from acla_nas.core.checks import check_int, check_seed
from acla_nas.core.errors import UserError
from acla_nas.runtime.device import resolve_device


def _flag(help: str, *, default: Any = None, type: Any = int, metavar: str | None = None) -> Any:
    """A field whose metadata is its ``--name`` declaration."""
    spec = {"help": help, "type": type, "metavar": metavar}
    return field(default=default, metadata={k: v for k, v in spec.items() if v is not None})


def max_workers() -> int:
    """The most ``--workers`` one machine takes: its CPU count (at least 2)."""
    return max(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class SearchFlags:
    """The command-line overrides of a search, checked before any file is read."""

    trials: int | None = _flag("number of evaluated trials (multi-trial strategies)")
    steps: int | None = _flag("training steps of the supernet / DARTS / proxy training")
    seed: int | None = _flag("random seed (default: the preset's, else 0)")
    device: str | None = _flag("auto (default), cpu, cuda, cuda:N", type=None)
    storage: str | None = _flag(
        "Optuna storage: a journal file path (default RUN_DIR/study.journal), sqlite:///FILE or "
        "postgresql://USER@HOST/DB; the study is named after RUN_DIR, so machines sharing a database "
        "join one search by using the same RUN_DIR name and files",
        type=None,
        metavar="URL",
    )
    workers: int = _flag("trial loops (processes) on the storage (multi-trial)", default=1)
    nproc: int = _flag(
        "processes that train the supernet / run DARTS data-parallel (torch.distributed; "
        "or start the command under torchrun instead)",
        default=1,
    )
    tensorboard: bool = field(
        default=False,
        metadata={
            "action": "store_true",
            "help": "write TensorBoard events to RUN_DIR/tensorboard (trial scores, supernet loss and lr; "
            "needs the tensorboard extra)",
        },
    )
    overrides: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--set",
            "action": "append",
            "metavar": "KEY=VALUE",
            "help": "override one value of the space or the strategy preset, by its top-level key "
            "(repeatable; dotted key, YAML value: --set train.lr=2e-4)",
        },
    )  # applied by RunConfig (read YAML -> apply_overrides -> parse), recorded in config.yaml
    target: torch.device = field(init=False, repr=False, compare=False)  # --device, resolved (once, here)

    def __post_init__(self) -> None:
        if self.trials is not None:
            check_int(self.trials, "--trials", 1)
        if self.steps is not None:
            check_int(self.steps, "--steps", 1)
        if self.seed is not None:
            check_seed(self.seed)
        w = self.workers
        if isinstance(w, int) and not isinstance(w, bool) and w > max_workers():
            raise UserError(
                f"got {w}, expected at most {max_workers()} (the CPU count: each worker is a Python process "
                "with its own torch; to use more machines, start the same command on each with --storage)",
                field="--workers",
            )
        check_int(w, "--workers", 1)
        check_int(self.nproc, "--nproc", 1)
        object.__setattr__(self, "overrides", tuple(self.overrides or ()))  # argparse's append: a list or None
        if self.tensorboard:
            from acla_nas.runtime.run_log import tensorboard_available

            if (why := tensorboard_available()) is not None:
                raise UserError(why, field="--tensorboard")
        object.__setattr__(self, "target", resolve_device(self.device))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.init)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The command-line spelling of each field (``--trials``; ``overrides`` is ``--set``)."""
        return tuple(f.metadata.get("flag", f"--{f.name}") for f in fields(cls) if f.init)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SearchFlags:
        """The overrides of a command line declared by :func:`add_search_flags`."""
        return cls(**{name: getattr(args, name) for name in cls.names()})


def add_search_flags(p: argparse.ArgumentParser) -> None:
    """SPACE.yaml, --strategy, --out and every :class:`SearchFlags` field, in that order."""
    p.add_argument("space", metavar="SPACE.yaml", help="search-space file (see search_spaces/)")
    p.add_argument("--strategy", required=True, metavar="STRATEGY.yaml", help="strategy preset (see strategies/)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created, or resumed)")
    for f in fields(SearchFlags):
        if f.init:
            spec = {k: v for k, v in f.metadata.items() if k != "flag"}
            flag = f.metadata.get("flag", f"--{f.name}")
            default = None if spec.get("action") == "append" else f.default  # append extends its default
            p.add_argument(flag, dest=f.name, default=default, **spec)


__all__ = ["SearchFlags", "add_search_flags", "max_workers"]
