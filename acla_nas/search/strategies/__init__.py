"""Search strategies behind one small protocol (:class:`~acla_nas.search.strategies.base.Strategy`).

Built in: ``random`` (baseline), ``tpe`` (Optuna's TPE), ``evolution`` (regularized/aging
evolution written as an Optuna sampler) and ``darts`` (differentiable relaxation). A strategy
YAML may instead name ``package.module:Class`` (a :class:`Strategy` subclass).
"""

from __future__ import annotations

from acla_nas.search.strategies.base import (
    STRATEGIES,
    SearchContext,
    Strategy,
    Training,
    make_strategy,
    register_strategy,
    strategy_class,
    strategy_names,
)

__all__ = [
    "STRATEGIES",
    "SearchContext",
    "Strategy",
    "Training",
    "make_strategy",
    "register_strategy",
    "strategy_class",
    "strategy_names",
]
