"""Regularized (aging) evolution (Real et al. 2019) written as an Optuna sampler.

The population is the ``population`` most recently completed trials (the oldest die first).
A child is the best of a random tournament of ``sample_size`` members, mutated at one site:
its key budget or its reference scope changes to another choice. Proposals are re-drawn until
they satisfy the space's constraints and differ from every architecture the study already holds
(any state), so ``--trials N`` evaluates N distinct architectures while the space has that many;
once every architecture of the space has been proposed, repeats are allowed (the evaluators answer
them from their cache). Before the population is full, candidates are uniform samples of the
space, also distinct. In multi-objective mode the tournament winner is
the member dominated by the fewest others (PSNR up, FLOPs down), ties broken by PSNR.
"""

from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from acla_nas.core.errors import UserError
from acla_nas.runs import pareto
from acla_nas.search.strategies.base import register_strategy
from acla_nas.search.strategies.options import integer
from acla_nas.search.strategies.optuna_loop import OptunaStrategy, SpaceRandomSampler

MAX_TRIES = 200


def dominated_count(t: FrozenTrial, others: list[FrozenTrial]) -> int:
    """How many others are at least as good in both objectives and better in one."""
    if len(t.values) < 2:
        return 0
    return pareto.dominated_count((t.values[0], t.values[1]), ((o.values[0], o.values[1]) for o in others))


class AgingEvolutionSampler(SpaceRandomSampler):
    def __init__(self, space: Any, seed: int = 0, population: int = 20, sample_size: int = 5) -> None:
        super().__init__(space, seed)
        self.population = population
        self.sample_size = sample_size
        self._size: int | None = None  # feasible architectures of the space (counted once)

    def parent(self, members: list[FrozenTrial], rng: random.Random) -> FrozenTrial:
        contestants = rng.sample(members, min(self.sample_size, len(members)))
        return min(contestants, key=lambda t: (dominated_count(t, members), -t.values[0], t.number))

    def mutate(
        self, params: dict[str, Any], rng: random.Random, seen: frozenset[str] = frozenset()
    ) -> dict[str, Any] | None:
        """A one-site mutation that meets the constraints and is neither the parent nor in ``seen``."""
        choices = {k: list(v) for k, v in self.space.choices().items() if len(v) > 1}
        params = self.space.encode(
            self.space.decode(params)
        )  # a scope for every site (trials record it only where a module is)
        parent_key = self.space.decode(params).key()
        for _ in range(MAX_TRIES):
            name = rng.choice(sorted(choices))
            child = dict(params)
            child[name] = rng.choice([c for c in choices[name] if c != params.get(name)])
            arch = self.space.decode(child)
            key = arch.key()
            if key != parent_key and key not in seen and self.space.satisfies(arch)[0]:
                return self.space.encode(arch)
        return None

    def _seen(self, study: optuna.Study, trial: FrozenTrial) -> frozenset[str]:
        """Architectures the study already holds, in any state (another worker's running trial too)."""
        out = set()
        for t in study.get_trials(deepcopy=False):
            if t.number != trial.number and t.params:
                try:
                    out.add(self.space.decode(t.params).key())
                except Exception:  # noqa: BLE001 - a trial of another layout: not a repeat of ours
                    continue
        return frozenset(out)

    def _fresh_uniform(self, rng: random.Random, seen: frozenset[str]) -> dict[str, Any] | None:
        for _ in range(MAX_TRIES):
            arch = self.space.sample(rng)
            if arch.key() not in seen:
                return self.space.encode(arch)
        return None

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        seen = self._seen(study, trial)
        if self._size is None:
            self._size = self.space.size(constrained=True)
        if len(seen) >= self._size:  # every architecture proposed: repeats allowed
            seen = frozenset()
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        rng = self.rng(trial)
        child = None
        if len(done) >= self.population:
            members = sorted(done, key=lambda t: t.number)[-self.population :]
            child = self.mutate(dict(self.parent(members, rng).params), rng, seen)
        if child is None:  # population not full, or a parent with no fresh feasible neighbour
            child = self._fresh_uniform(rng, seen)
        if child is None:  # only repeats left within the tries: a uniform sample as before
            return super().sample_relative(study, trial, search_space)
        return {k: v for k, v in child.items() if k in search_space}


@register_strategy
class EvolutionStrategy(OptunaStrategy):
    name = "evolution"
    OPTIONS = {"population": integer(1), "sample_size": integer(1)}
    DEFAULTS = {"population": 20, "sample_size": 5}

    @classmethod
    def check_combination(cls, options: dict) -> None:
        o = {**cls.DEFAULTS, **options}
        if o["sample_size"] > o["population"]:
            raise UserError(
                f"a tournament of {o['sample_size']} cannot be drawn from a population of {o['population']} "
                "(expected sample_size <= population)",
                field="options.sample_size",
            )

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return AgingEvolutionSampler(
            self.ctx.space,
            self.ctx.seed,
            self.options.get("population", self.DEFAULTS["population"]),
            self.options.get("sample_size", self.DEFAULTS["sample_size"]),
        )
