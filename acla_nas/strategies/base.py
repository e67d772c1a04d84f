"""The strategy protocol, the per-search context, and the registry with plug-ins."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..arch import Arch
from ..errors import UserError
from ..evaluators import Evaluator, SearchData


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
    steps: int | None = None  # --steps override for strategies that train (DARTS)
    worker: bool = False  # True in the extra processes of --workers N
    run_study: Any = None  # acla_nas.study.RunStudy: the opened and checked study (multi-trial)
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


class Strategy:
    """Explores a space. ``run()`` starts or resumes from ``ctx.run_dir`` and records every step
    in ``trajectory.csv``; ``best()`` returns the architecture to export.

    Subclasses set ``name``, ``multi_trial`` (whether an evaluator scores proposed candidates)
    and implement :meth:`run` and :meth:`best`. Multi-trial strategies usually derive from
    :class:`acla_nas.strategies.optuna_loop.OptunaStrategy` and only provide a sampler.
    """

    name: ClassVar[str] = "base"
    multi_trial: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.options = self.check_options(ctx.options)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        for key, value in options.items():
            if key not in cls.OPTIONS:
                allowed = ", ".join(cls.OPTIONS) or "none"
                raise UserError(f"unknown option for {cls.name} (expected {allowed})", field=f"options.{key}")
            typ = cls.OPTIONS[key]
            if isinstance(value, bool) and typ is not bool and bool not in (typ if isinstance(typ, tuple) else (typ,)):
                raise UserError(f"expected {getattr(typ, '__name__', typ)}, got {value!r}", field=f"options.{key}")
            if not isinstance(value, typ):
                raise UserError(f"expected {getattr(typ, '__name__', typ)}, got {value!r}", field=f"options.{key}")
        return dict(options)

    def run(self) -> None:
        raise NotImplementedError

    def best(self) -> tuple[Arch, dict] | None:
        """The best architecture found and its scores (psnr, flops, params, step)."""
        raise NotImplementedError


def strategy_names() -> list[str]:
    return sorted(_builtin())


def _builtin() -> dict[str, type[Strategy]]:
    from .darts import DartsStrategy
    from .evolution import EvolutionStrategy
    from .random_search import RandomStrategy
    from .tpe import TPEStrategy

    return {c.name: c for c in (RandomStrategy, TPEStrategy, EvolutionStrategy, DartsStrategy)}


def strategy_class(name: str, file: str | None = None) -> type[Strategy]:
    """A built-in strategy by name, or a plug-in given as ``package.module:Class``."""
    builtin = _builtin()
    if name in builtin:
        return builtin[name]
    if ":" not in name:
        raise UserError(f"unknown strategy {name!r} (expected one of {', '.join(builtin)}, or package.module:Class)", file=file, field="strategy")
    from ..backbones.user import import_factory

    try:
        cls = import_factory(name, field="strategy")
    except UserError as exc:
        raise exc.at(file=file) from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UserError(f"{name!r} is not a subclass of acla_nas.strategies.Strategy", file=file, field="strategy")
    return cls


def make_strategy(ctx: SearchContext, file: str | None = None) -> Strategy:
    cls = strategy_class(ctx.strategy_name, file)
    try:
        return cls(ctx)
    except UserError as exc:
        raise exc.at(file=file) from None
