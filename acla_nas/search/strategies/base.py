"""The strategy protocol, the per-search context, and the registry with plug-ins."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.nn.arch import Arch
from acla_nas.search.evaluators import Evaluator, SearchData


@dataclass
class SearchContext:
    """Everything a strategy needs; no argparse namespaces travel past the command line."""

    space: Any  # acla_nas.space.SearchSpace
    data: SearchData
    run_dir: Path
    run_name: str
    strategy_name: str
    evaluator_name: str
    evaluator: Evaluator | None
    trials: int
    seed: int = 0
    storage: str | None = None
    workers: int = 1
    objectives: tuple[str, ...] = ("psnr",)
    options: dict = field(default_factory=dict)
    worker: bool = False  # True in the extra processes of --workers N
    run_study: Any = None  # acla_nas.search.storage.study.RunStudy: the opened and checked study (multi-trial)
    on_loop_start: Any = None  # called when the trial loop is about to start (--workers: "ready")
    started: float = field(default_factory=time.time)  # wall clock, shared with --workers processes
    elapsed_offset: float | None = None  # seconds of earlier sessions; None until known

    def elapsed(self) -> float:
        """Wall seconds of search work so far, across resumed sessions (one clock for all the
        processes of a session: worker times are not added up)."""
        return (self.elapsed_offset or 0.0) + time.time() - self.started

    @property
    def sites(self) -> list[str]:
        return list(self.space.sites)


@dataclass(frozen=True)
class Training:
    """The training a strategy runs by itself (not through an evaluator), from its options:
    what the checks made before anything trains need (patch against images, memory)."""

    batch: int
    patch: int
    batch_field: str = "options.batch"
    patch_field: str = "options.patch"
    val_patches: bool = True  # validation patches of the same size are sampled too


class Strategy(ABC):
    """Explores a space. ``run()`` starts or resumes from ``ctx.run_dir`` and records every step
    in ``trajectory.csv``; ``best()`` returns the architecture to export.

    Subclasses set ``name``, ``multi_trial`` (whether an evaluator scores proposed candidates)
    and implement :meth:`run` and :meth:`best`; ``@register_strategy`` makes them known by name.
    Multi-trial strategies usually derive from
    :class:`acla_nas.search.strategies.optuna_loop.OptunaStrategy` and only provide a sampler. A strategy
    that trains by itself names the option ``--steps`` sets (``STEPS_OPTION``), describes its
    training (:meth:`training`) and hands its trained weights to export (:meth:`saved_weights`).
    """

    name: ClassVar[str] = "base"
    multi_trial: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, Any]] = {}  # name -> options.Option (or a bare type)
    STEPS_OPTION: ClassVar[str | None] = None  # the option that --steps sets, for a strategy that trains

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.options = self.check_options(ctx.options)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """Each option's type and range (``OPTIONS``), then :meth:`check_combination`; returns
        the normalised options. Errors name ``options.<key>``."""
        from acla_nas.search.strategies.options import check_option

        out = {}
        for key, value in options.items():
            if key not in cls.OPTIONS:
                allowed = ", ".join(cls.OPTIONS) or "none"
                raise UserError(f"unknown option for {cls.name} (expected {allowed})", field=f"options.{key}")
            out[key] = check_option(cls.OPTIONS[key], value, f"options.{key}")
        cls.check_combination(out)
        return out

    @classmethod
    def check_combination(cls, options: dict) -> None:
        """Constraints between options (e.g. a tournament no larger than the population)."""
        return None

    @classmethod
    def with_steps(cls, options: dict, steps: int) -> dict:
        """The options with ``--steps`` applied (checked again: e.g. a warm-up must stay shorter)."""
        if cls.STEPS_OPTION is None:
            return options
        out = {**options, cls.STEPS_OPTION: steps}
        cls.check_options(out)
        return out

    @classmethod
    def training(cls, options: dict) -> Training | None:
        """The training this strategy runs itself (None: it trains nothing, or its evaluator does)."""
        return None

    @classmethod
    def saved_weights(cls, run: Any) -> dict[str, Any] | None:
        """The trained supernet's state dict in run directory ``run`` (an
        :class:`acla_nas.run.RunDir`), for export; the default is the one-shot evaluator's."""
        from acla_nas.train.checkpoint import load_checkpoint

        path = run.supernet_checkpoint
        return load_checkpoint(path)["model"] if path.is_file() else None

    @abstractmethod
    def run(self) -> None:
        """Start or resume the search in ``ctx.run_dir``."""

    @abstractmethod
    def best(self) -> tuple[Arch, dict] | None:
        """The best architecture found and its scores (psnr, flops, params, step)."""


ENTRY_POINT_GROUP = "acla_nas.strategies"
STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy",
    ENTRY_POINT_GROUP,
    "strategy",
    package="acla_nas.search.strategies",
    check=lambda c: isinstance(c, type) and issubclass(c, Strategy),
    expected="subclass of acla_nas.search.strategies.Strategy",
    import_form="package.module:Class",
)
register_strategy = STRATEGIES.register


def strategy_names() -> list[str]:
    """Built-in names and installed plug-ins (entry-point group ``acla_nas.strategies``)."""
    return STRATEGIES.names()


def strategy_class(name: str, file: str | None = None) -> type[Strategy]:
    """A built-in strategy by name, an installed plug-in, or ``package.module:Class`` from a
    module the user allows (see :mod:`acla_nas.core.trust`)."""
    return STRATEGIES.get(name, file)


def make_strategy(ctx: SearchContext, file: str | None = None) -> Strategy:
    cls = strategy_class(ctx.strategy_name, file)
    try:
        return cls(ctx)
    except UserError as exc:
        raise exc.at(file=file) from None
