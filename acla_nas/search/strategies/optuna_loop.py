"""Multi-trial search on an Optuna study: storage gives resume and many workers for free.

Each trial asks the sampler for an architecture, define-by-run: ``<site>.keys`` for every site
and ``<site>.scope`` only where a module exists (a conditional parameter, so a site left empty
does not record a scope that then tops the parameter importances). The space's constraints are
checked (an infeasible proposal is recorded as PRUNED and does not use up the trial budget), the
evaluator scores it and the study is told: values ``psnr`` (and ``macs`` for two objectives),
user attributes ``ssim``, ``macs``, ``params``, ``seconds``. The study is the source of truth;
the trajectory table is regenerated from it.

Many workers (threads of ``--workers``, processes on other machines) share the study safely:

* every worker sweeps trials whose worker is gone before it asks (:class:`acla_nas.search.storage.store.TrialStore`): they
  are failed and queued again with their parameters, so no completed trial is lost or repeated;
* the trial budget is exact: after ``ask`` a trial is *admitted* only while fewer trials than
  the budget hold a slot below its number (completed or failed by evaluation, running, queued);
  otherwise it is closed as FAIL with ``acla_nas:surplus`` and left out of every count and table;
* a trial that was taken over while its worker was paused is never told: the late result is
  dropped (it is being run again elsewhere).
"""

from __future__ import annotations

import datetime
import json
import math
import random
import sys
from abc import abstractmethod
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from acla_nas.core.atomic import atomic_path
from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import make_row, outputs_lock, write_trajectory
from acla_nas.search.storage.store import TrialStore
from acla_nas.search.strategies.base import Strategy

INFEASIBLE_FACTOR = 50  # give up after this many infeasible proposals per trial of budget
SURPLUS = "acla_nas:surplus"

# Optuna's INFO line per trial is quieted while a search runs (acla_nas.core.quiet.quiet_logger
# in acla_nas.search.run), never at import: importing acla-nas leaves the caller's logging alone.


def _report_trial(number: int, arch: Arch, result: Any) -> None:
    """One line in the run log and the scores in TensorBoard (when open) per evaluated trial."""
    from acla_nas.runtime.run_log import log_line, scalar

    mods = ", ".join(f"{site}:K{m.keys}" for site, m in arch.modules.items()) or "none"
    if result.state != "COMPLETE":
        log_line(f"acla-nas: trial {number} failed: {(result.error or '')[:200]}")
        return
    log_line(
        f"acla-nas: trial {number}: val PSNR {result.psnr:.3f} dB, {result.macs / 1e6:.1f} M MACs, "
        f"{result.params:,} params; modules: {mods}"
    )
    scalar("search/psnr", result.psnr, number)
    scalar("search/ssim", result.ssim, number)
    scalar("search/mmacs", result.macs / 1e6, number)
    scalar("search/modules", len(arch.modules), number)


def distributions(space: Any) -> dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution(list(values)) for name, values in space.choices().items()}


def counted(t: FrozenTrial) -> bool:
    """A finished trial that used up budget: completed, or failed by its own evaluation (a trial
    failed because its worker died, or closed as surplus, has no ``error`` and is not counted)."""
    return t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs)


def holds_slot(t: FrozenTrial) -> bool:
    """Counted, or still able to become counted (running, not surplus; queued)."""
    if t.state == TrialState.RUNNING:
        return not t.system_attrs.get(SURPLUS)
    return t.state == TrialState.WAITING or counted(t)


def session_offset(study: optuna.Study, started: float) -> float:
    """Search seconds recorded by earlier sessions (trials finished before ``started``): this
    session's clock starts there. Sessions running at the same time (other machines on the same
    study) are not added: their trials finish after this session began."""
    cutoff = datetime.datetime.fromtimestamp(started)
    return max(
        [0.0]
        + [
            float(t.user_attrs["seconds"])
            for t in study.get_trials(deepcopy=False)
            if "seconds" in t.user_attrs and t.datetime_complete is not None and t.datetime_complete < cutoff
        ]
    )


def macs_of(t: FrozenTrial) -> Any:
    return t.user_attrs.get("macs", t.user_attrs.get("flops", math.nan))  # "flops": before acla-nas named it


class OptunaStrategy(Strategy):
    """Base of random / TPE / evolution: subclasses provide :meth:`make_sampler`."""

    multi_trial = True

    @abstractmethod
    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """The Optuna sampler that proposes this strategy's candidates."""

    # -- study ---------------------------------------------------------------------------------
    def store(self) -> TrialStore:
        ctx = self.ctx
        if ctx.run_study is None:
            raise UserError("the search's study was not opened (run strategies through acla_nas.search.run.run_search)")
        return TrialStore.open(ctx.run_study, self.make_sampler())

    def session_offset(self, study: optuna.Study) -> float:
        return session_offset(study, self.ctx.started)

    def _counts(self, study: optuna.Study) -> tuple[int, int, int]:
        """(counted, running elsewhere, infeasible) trials."""
        done = running = infeasible = 0
        for t in study.get_trials(deepcopy=False):
            if counted(t):
                done += 1
            elif t.state == TrialState.RUNNING and holds_slot(t):
                running += 1
            elif t.state == TrialState.PRUNED:
                infeasible += 1
        return done, running, infeasible

    def run(self) -> None:
        ctx = self.ctx
        store = self.store()
        study = store.study
        if ctx.elapsed_offset is None:
            ctx.elapsed_offset = self.session_offset(study)
        self._seed_cache(study)
        if ctx.evaluator is not None:
            ctx.evaluator.prepare()
        if ctx.on_loop_start is not None:
            ctx.on_loop_start()
        while True:
            store.sweep()
            done, running, infeasible = self._counts(study)
            if done + running >= ctx.trials:
                break
            if infeasible > INFEASIBLE_FACTOR * max(1, ctx.trials):
                raise UserError(
                    f"{infeasible} proposals violated the space's constraints; the strategy cannot find feasible architectures",
                    field="constraints",
                )
            self.run_trial(store)
        if not ctx.worker:
            self.write(study)

    def _seed_cache(self, study: optuna.Study) -> None:
        """Completed trials of an earlier session fill the evaluator's cache (never re-scored)."""
        ev = self.ctx.evaluator
        if ev is None:
            return
        from acla_nas.search.evaluators import EvalResult

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key = t.user_attrs.get("arch_key")
            if key:
                ev.cache[key] = EvalResult(
                    t.values[0],
                    int(macs_of(t) or 0),
                    int(t.user_attrs.get("params", 0)),
                    0.0,
                    ssim=float(t.user_attrs.get("ssim", math.nan)),
                )

    def _admitted(self, study: optuna.Study, number: int) -> bool:
        below = sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and holds_slot(t))
        return below < self.ctx.trials

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """The flat encoding, define-by-run: a site's scope only where it carries a module."""
        flat: dict[str, Any] = {}
        choices = self.ctx.space.choices()
        for site in self.ctx.space.sites:
            keys = trial.suggest_categorical(f"{site}.keys", choices[f"{site}.keys"])
            flat[f"{site}.keys"] = keys
            if keys != 0 and choices[f"{site}.scope"]:
                flat[f"{site}.scope"] = trial.suggest_categorical(f"{site}.scope", choices[f"{site}.scope"])
        return flat

    def run_trial(self, store: TrialStore) -> None:
        ctx, study = self.ctx, store.study
        trial = store.claim()
        if not self._admitted(study, trial.number):  # other workers filled the budget meanwhile
            store.set_system_attr(trial, SURPLUS, True)
            self._tell(store, trial, {}, TrialState.FAIL)
            return
        try:
            with store.heartbeat(trial):
                arch = ctx.space.decode(self.suggest(trial))
                ok, why = ctx.space.satisfies(arch)
                attrs: dict[str, Any] = {"arch_key": arch.key()}
                if not ok:
                    self._tell(store, trial, {**attrs, "infeasible": why, "seconds": ctx.elapsed()}, TrialState.PRUNED)
                    return
                result = ctx.evaluator.evaluate(arch)
        except BaseException:  # Ctrl-C, a crash: give the trial back now rather than at the next sweep
            store.abandon(trial)
            raise
        attrs.update(
            macs=result.macs,
            params=result.params,
            eval_seconds=result.seconds,
            cached=result.cached,
            seconds=ctx.elapsed(),
        )
        if math.isfinite(result.ssim):
            attrs["ssim"] = result.ssim
        if result.state != "COMPLETE":
            attrs["error"] = result.error[:500]
            recorded = self._tell(store, trial, attrs, TrialState.FAIL)
        else:
            values = [result.psnr] + ([float(result.macs)] if len(study.directions) > 1 else [])
            recorded = self._tell(store, trial, attrs, TrialState.COMPLETE, values)
        if recorded:
            _report_trial(trial.number, arch, result)
        if recorded and not ctx.worker:
            self.write(study)

    @staticmethod
    def _tell(
        store: TrialStore, trial: Trial, attrs: dict[str, Any], state: TrialState, values: list[float] | None = None
    ) -> bool:
        """Record and finish the trial, unless another worker took it over (then drop, say so)."""
        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            store.study.tell(trial, values, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        frozen = store.frozen(trial)
        mine = frozen.state == state and all(frozen.user_attrs.get(k) == v for k, v in attrs.items())
        if not mine:
            print(
                f"acla-nas: trial {trial.number} was taken over while this worker was paused; its result is dropped "
                "(the trial is run again)",
                file=sys.stderr,
            )
        return mine

    # -- outputs -------------------------------------------------------------------------------
    def rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        """One row per finished trial that counts or was infeasible (not the re-run attempts)."""
        ctx = self.ctx
        rows = []
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if not t.params or not (counted(t) or t.state == TrialState.PRUNED):
                continue
            arch = ctx.space.decode(t.params)
            rows.append(
                make_row(
                    run=ctx.run_name,
                    strategy=ctx.strategy_name,
                    evaluator=ctx.evaluator_name,
                    step=t.number,
                    state=t.state.name,
                    sites=ctx.sites,
                    arch=arch,
                    encoding=ctx.space.encode(arch),
                    psnr=t.values[0] if t.state == TrialState.COMPLETE else math.nan,
                    flops=macs_of(t),
                    params=t.user_attrs.get("params", math.nan),
                    seconds=t.user_attrs.get("seconds", math.nan),
                )
            )
        return rows

    def write(self, study: optuna.Study) -> None:
        with outputs_lock(self.ctx.run_dir):  # read and write under one lock: never an older view last
            self._write(study)

    def _write(self, study: optuna.Study) -> None:
        write_trajectory(self.rows(study), RunDir(self.ctx.run_dir).trajectory, self.ctx.sites)
        if len(study.directions) > 1:
            space = self.ctx.space
            front = [
                {
                    "trial": t.number,
                    "psnr": t.values[0],
                    "flops": t.values[1],
                    "params": t.user_attrs.get("params"),
                    "arch": json.dumps(space.encode(space.decode(t.params)), sort_keys=True),
                }
                for t in sorted(study.best_trials, key=lambda t: t.values[1])
            ]
            import pandas as pd

            with atomic_path(RunDir(self.ctx.run_dir).pareto) as tmp:
                pd.DataFrame(front).to_csv(tmp, index=False)

    def best(self) -> tuple[Arch, dict] | None:
        study = self.store().study
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not complete:
            return None
        top = max(complete, key=lambda t: (t.values[0], -t.number))
        arch = self.ctx.space.decode(top.params)
        scores = {
            "psnr": top.values[0],
            "flops": macs_of(top),
            "params": top.user_attrs.get("params"),
            "trial": top.number,
        }
        if "ssim" in top.user_attrs:
            scores["ssim"] = top.user_attrs["ssim"]
        return arch, scores

    def pending(self, study: optuna.Study) -> list[FrozenTrial]:
        """Trials still running in other processes (their results arrive when they finish)."""
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if holds_slot(t)]


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

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self.rng(trial).choice(list(param_distribution.choices))
