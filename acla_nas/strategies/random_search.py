"""Random search: the baseline every other strategy must beat at an equal evaluation budget."""
from __future__ import annotations

import optuna

from .optuna_loop import OptunaStrategy, SpaceRandomSampler


class RandomStrategy(OptunaStrategy):
    name = "random"

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return SpaceRandomSampler(self.ctx.space, self.ctx.seed)
