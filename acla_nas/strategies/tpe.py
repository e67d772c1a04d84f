"""Optuna's Tree-structured Parzen Estimator over the flat categorical encoding.

Multivariate TPE runs with ``group=True``: a site's scope is a conditional parameter (suggested
only where the site carries a module), and grouping models each set of co-occurring parameters
jointly instead of dropping the conditional ones to independent sampling.
"""
from __future__ import annotations

import warnings

import optuna

from .optuna_loop import OptunaStrategy


class TPEStrategy(OptunaStrategy):
    name = "tpe"
    OPTIONS = {"n_startup_trials": int, "multivariate": bool, "n_ei_candidates": int}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        o = self.options
        multivariate = o.get("multivariate", True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=self.ctx.seed,
                n_startup_trials=o.get("n_startup_trials", 10),
                multivariate=multivariate,
                group=multivariate,
                n_ei_candidates=o.get("n_ei_candidates", 24),
            )
