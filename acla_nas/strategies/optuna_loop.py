"""Multi-trial search on an Optuna study: storage gives resume and many workers for free.

Each trial asks the sampler for a flat categorical encoding of an architecture, checks the
space's constraints (an infeasible proposal is recorded as PRUNED and does not use up the trial
budget), scores it with the evaluator and tells the study. The study is the source of truth; the
trajectory table is regenerated from it after every trial. A trial left RUNNING by a killed
process is marked FAIL on restart and its parameters are queued again, so no completed trial is
lost or repeated.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from ..arch import Arch
from ..errors import UserError
from ..trajectory import make_row, write_trajectory
from .base import Strategy

STUDY_NAME = "acla-nas"
INFEASIBLE_FACTOR = 50  # give up after this many infeasible proposals per trial of budget

optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_storage(run_dir: Path) -> str:
    return f"journal:{run_dir / 'study.journal'}"


def open_storage(url: str) -> Any:
    """``journal:PATH`` (the default, a file in the run directory) or any Optuna storage URL."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    try:
        return optuna.storages.get_storage(url)
    except Exception as exc:  # bad URL, missing driver, unreachable database
        raise UserError(f"cannot open the Optuna storage {url!r}: {type(exc).__name__}: {exc}", field="--storage") from exc


def distributions(space: Any) -> dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution(list(values)) for name, values in space.choices().items()}


class OptunaStrategy(Strategy):
    """Base of random / TPE / evolution: subclasses provide :meth:`make_sampler`."""

    multi_trial = True

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    # -- study ---------------------------------------------------------------------------------
    def study(self) -> optuna.Study:
        ctx = self.ctx
        storage = open_storage(ctx.storage or default_storage(ctx.run_dir))
        directions = ["maximize"] + (["minimize"] if "flops" in ctx.objectives else [])
        try:
            study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=self.make_sampler(), directions=directions, load_if_exists=True)
        except ValueError as exc:  # e.g. stored directions differ
            raise UserError(f"the study in the storage does not match this search: {exc}", field="--storage") from exc
        return study

    def _requeue_stale(self, study: optuna.Study) -> None:
        """Trials left RUNNING by a killed process: mark FAIL and ask for their parameters again."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_system_attr(t._trial_id, "acla_nas:interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number}, skip_if_exists=False)

    @staticmethod
    def _counts(study: optuna.Study) -> tuple[int, int]:
        used = infeasible = 0
        for t in study.get_trials(deepcopy=False):
            if t.system_attrs.get("acla_nas:interrupted"):
                continue
            if t.state == TrialState.PRUNED:
                infeasible += 1
            elif t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING):
                used += 1
        return used, infeasible

    def run(self) -> None:
        ctx = self.ctx
        study = self.study()
        if not ctx.worker:
            self._requeue_stale(study)
        done = [t for t in study.get_trials(deepcopy=False) if "seconds" in t.user_attrs]
        ctx.elapsed_offset = max([ctx.elapsed_offset] + [float(t.user_attrs["seconds"]) for t in done])
        self._seed_cache(study)
        if ctx.evaluator is not None:
            ctx.evaluator.prepare()
        dists = distributions(ctx.space)
        while True:
            used, infeasible = self._counts(study)
            if used >= ctx.trials:
                break
            if infeasible > INFEASIBLE_FACTOR * max(1, ctx.trials):
                raise UserError(f"{infeasible} proposals violated the space's constraints; the strategy cannot find feasible architectures", field="constraints")
            self.run_trial(study, dists)
        self.write(study)

    def _seed_cache(self, study: optuna.Study) -> None:
        """Completed trials of an earlier session fill the evaluator's cache (never re-scored)."""
        ev = self.ctx.evaluator
        if ev is None:
            return
        from ..evaluators import EvalResult

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key = t.user_attrs.get("arch_key")
            if key:
                ev.cache[key] = EvalResult(t.values[0], int(t.user_attrs.get("flops", 0)), int(t.user_attrs.get("params", 0)), 0.0)

    def run_trial(self, study: optuna.Study, dists: dict[str, CategoricalDistribution]) -> None:
        ctx = self.ctx
        trial = study.ask(fixed_distributions=dists)
        arch = ctx.space.decode(trial.params)
        ok, why = ctx.space.satisfies(arch)
        trial.set_user_attr("arch_key", arch.key())
        if not ok:
            trial.set_user_attr("infeasible", why)
            trial.set_user_attr("seconds", ctx.elapsed())
            study.tell(trial, state=TrialState.PRUNED)
            return
        result = ctx.evaluator.evaluate(arch)
        trial.set_user_attr("flops", result.macs)
        trial.set_user_attr("params", result.params)
        trial.set_user_attr("eval_seconds", result.seconds)
        trial.set_user_attr("cached", result.cached)
        trial.set_user_attr("seconds", ctx.elapsed())
        if result.state != "COMPLETE":
            trial.set_user_attr("error", result.error[:500])
            study.tell(trial, state=TrialState.FAIL)
        else:
            values = [result.psnr] + ([float(result.macs)] if len(study.directions) > 1 else [])
            study.tell(trial, values)
        if not ctx.worker:
            self.write(study)

    # -- outputs -------------------------------------------------------------------------------
    def rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        ctx = self.ctx
        rows = []
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.state == TrialState.RUNNING or not t.params or t.system_attrs.get("acla_nas:interrupted"):
                continue  # interrupted trials were queued again and appear once, when re-run
            arch = ctx.space.decode(t.params)
            state = t.state.name
            rows.append(
                make_row(
                    run=ctx.run_name,
                    strategy=ctx.strategy_name,
                    evaluator=ctx.evaluator_name,
                    step=t.number,
                    state=state,
                    sites=ctx.sites,
                    arch=arch,
                    encoding=t.params,
                    psnr=t.values[0] if t.state == TrialState.COMPLETE else math.nan,
                    flops=t.user_attrs.get("flops", math.nan),
                    params=t.user_attrs.get("params", math.nan),
                    seconds=t.user_attrs.get("seconds", math.nan),
                )
            )
        return rows

    def write(self, study: optuna.Study) -> None:
        write_trajectory(self.rows(study), self.ctx.run_dir / "trajectory.csv", self.ctx.sites)
        if len(study.directions) > 1:
            front = [
                {"trial": t.number, "psnr": t.values[0], "flops": t.values[1], "params": t.user_attrs.get("params"), "arch": json.dumps(t.params, sort_keys=True)}
                for t in sorted(study.best_trials, key=lambda t: t.values[1])
            ]
            import pandas as pd

            pd.DataFrame(front).to_csv(self.ctx.run_dir / "pareto.csv", index=False)

    def best(self) -> tuple[Arch, dict] | None:
        study = self.study()
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not complete:
            return None
        top = max(complete, key=lambda t: (t.values[0], -t.number))
        arch = self.ctx.space.decode(top.params)
        return arch, {"psnr": top.values[0], "flops": top.user_attrs.get("flops"), "params": top.user_attrs.get("params"), "trial": top.number}


class SpaceRandomSampler(optuna.samplers.BaseSampler):
    """Uniform samples from the space (constraints respected), seeded by (seed, trial number)."""

    def __init__(self, space: Any, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)

    def rng(self, trial: FrozenTrial) -> random.Random:
        return random.Random(self.seed * 7919 + trial.number * 104729 + 17)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return distributions(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        flat = self.space.encode(self.space.sample(self.rng(trial)))
        return {k: v for k, v in flat.items() if k in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self.rng(trial).choice(list(param_distribution.choices))
