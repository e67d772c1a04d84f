"""Optuna's Tree-structured Parzen Estimator over the flat categorical encoding."""
from __future__ import annotations

import optuna

from .optuna_loop import OptunaStrategy
from .options import FLAG, integer


class TPEStrategy(OptunaStrategy):
    name = "tpe"
    OPTIONS = {"n_startup_trials": integer(0), "multivariate": FLAG, "n_ei_candidates": integer(1)}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        o = self.options
        return optuna.samplers.TPESampler(
            seed=self.ctx.seed,
            n_startup_trials=o.get("n_startup_trials", 10),
            multivariate=o.get("multivariate", True),
            n_ei_candidates=o.get("n_ei_candidates", 24),
        )
