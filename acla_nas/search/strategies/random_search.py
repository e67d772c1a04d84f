"""Random search: the baseline every other strategy must beat at an equal evaluation budget."""

from __future__ import annotations

import optuna

from acla_nas.search.strategies.base import register_strategy
from acla_nas.search.strategies.optuna_loop import OptunaStrategy, SpaceRandomSampler


@register_strategy
class RandomStrategy(OptunaStrategy):
    name = "random"

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return SpaceRandomSampler(self.ctx.space, self.ctx.seed)
