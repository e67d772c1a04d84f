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
    OPTIONS: ClassVar[dict[str, Any]] = {}  # name -> options.Option (or a bare type)

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.options = self.check_options(ctx.options)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """Each option's type and range (``OPTIONS``), then :meth:`check_combination`; returns
        the normalised options. Errors name ``options.<key>``."""
        from .options import check_option

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

    def run(self) -> None:
        raise NotImplementedError

    def best(self) -> tuple[Arch, dict] | None:
        """The best architecture found and its scores (psnr, flops, params, step)."""
        raise NotImplementedError


ENTRY_POINT_GROUP = "acla_nas.strategies"


def strategy_names() -> list[str]:
    """Built-in names and installed plug-ins (entry-point group ``acla_nas.strategies``)."""
    from ..trust import entry_points

    return sorted(set(_builtin()) | set(entry_points(ENTRY_POINT_GROUP)))


def _builtin() -> dict[str, type[Strategy]]:
    from .darts import DartsStrategy
    from .evolution import EvolutionStrategy
    from .random_search import RandomStrategy
    from .tpe import TPEStrategy
    from .nni_tuner import NNI_STRATEGIES  # nni:TPE, nni:Evolution, ...: NNI itself is imported only when one runs

    return {**{c.name: c for c in (RandomStrategy, TPEStrategy, EvolutionStrategy, DartsStrategy)}, **NNI_STRATEGIES}


def _plugin(name: str, file: str | None) -> Any:
    """An installed plug-in by entry-point name or by its import path, loaded; else None."""
    from ..trust import entry_points

    for ep_name, ep in entry_points(ENTRY_POINT_GROUP).items():
        if name in (ep_name, ep.value.replace(" ", "")):
            try:
                return ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken installed plug-in: one line
                raise UserError(f"the installed strategy plug-in {ep_name!r} ({ep.value}) failed to load: "
                                f"{type(exc).__name__}: {exc}", file=file, field="strategy") from None
    return None


def strategy_class(name: str, file: str | None = None) -> type[Strategy]:
    """A built-in strategy by name, an installed plug-in, or ``package.module:Class`` from a
    module the user allows (see :mod:`acla_nas.trust`)."""
    from ..trust import import_object, qualified_name

    builtin = _builtin()
    if name in builtin:
        return builtin[name]
    cls = _plugin(name, file)
    if cls is None:
        if ":" not in name:
            raise UserError(f"unknown strategy {name!r} (expected one of {', '.join(strategy_names())}, or package.module:Class)",
                            file=file, field="strategy")
        trusted = {qualified_name(c): c for c in builtin.values()}
        cls = import_object(name, kind="strategy class", field="strategy", file=file, trusted=trusted)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UserError(f"{name!r} is not a subclass of acla_nas.strategies.Strategy", file=file, field="strategy")
    return cls


def make_strategy(ctx: SearchContext, file: str | None = None) -> Strategy:
    cls = strategy_class(ctx.strategy_name, file)
    try:
        return cls(ctx)
    except UserError as exc:
        raise exc.at(file=file) from None
