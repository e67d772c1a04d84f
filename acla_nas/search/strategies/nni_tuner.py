"""NNI's HPO tuners (TPE, Evolution, Anneal, Random) as multi-trial strategies: ``strategy: nni:TPE``.

The tuner runs in-process through NNI's tuner API (``update_search_space``,
``generate_parameters``, ``receive_trial_result``, ``trial_end``, ``import_data``) on NNI's legacy
search-space format, wrapped as an Optuna sampler, so the trial loop, the study (resume,
``--workers``, shared storages), the constraint check (an infeasible proposal is recorded PRUNED)
and the trajectory are those of every other multi-trial strategy (:mod:`.optuna_loop`).

Why a space of its own: NNI's tuners draw every ``<site>.keys`` independently, so under
``max_modules`` almost every proposal is infeasible (edsr_x2_demo: 8 sites, at most 3 modules:
about 3% of independent draws; issue 17 saw 0 of 6), and NNI's TPE learns nothing from failed
trials. :func:`legacy_space` therefore gives a space with ``max_modules`` *slots*, each a nested
choice of ``none`` or one optional site with that site's own budgets and scopes; sites without a
0 budget are plain choices. Every proposal then respects ``max_modules`` (a site named by two
slots is taken from the first); the cost limits are still checked per proposal, and what
violates them is reported to the tuner as a failed trial and recorded PRUNED.

Resume and other workers: each finished trial of the study that this tuner did not propose (an
earlier session, another worker) is imported before the next proposal (``import_data``; NNI's
Evolution tuner ignores it, so its population is filled here), and each tuner is seeded with
(seed, number of its first trial), so a resumed Random tuner does not repeat itself and workers
that start together do not propose the same architectures. Only
``nni.algorithms.hpo`` and ``nni.mutable`` are imported, never ``nni.nas``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from acla_nas.core.errors import UserError
from acla_nas.search.storage.store import TrialStore
from acla_nas.search.strategies.base import register_strategy
from acla_nas.search.strategies.options import integer
from acla_nas.search.strategies.optuna_loop import OptunaStrategy, distributions

NNI_ATTR = "acla_nas:nni_params"  # a trial's proposal in NNI's format (system attribute)
NONE = "none"
INSTALL_HINT = (
    "NNI is not installed; pip install 'acla-nas[nni]' (NNI 3.0 pins filelock<3.12 and typeguard<4.1.3: "
    "install it in a virtual environment of its own, see README 'Optional extras')"
)


def _choice(values: list[Any]) -> dict[str, Any]:
    return {"_type": "choice", "_value": list(values)}


def _layout(space: Any) -> tuple[list[Any], list[Any], int]:
    """(sites that must carry a module, optional sites, number of slots; 0 = flat encoding)."""
    forced = [s for s in space.sites.values() if s.off_ways == 0]
    optional = [s for s in space.sites.values() if s.off_ways == 1 and s.nonzero]
    mm = space.spec.max_modules
    return forced, optional, (0 if mm is None else min(mm - len(forced), len(optional)))


def _site_params(s: Any, with_zero: bool) -> dict[str, Any]:
    out = {"keys": _choice(([0] if with_zero else []) + list(s.nonzero))}
    if len(s.labels()) > 1:
        out["scope"] = _choice(s.labels())
    return out


def legacy_space(space: Any) -> dict[str, Any]:
    """The space in NNI's legacy search-space format (see the module docstring)."""
    forced, optional, slots = _layout(space)
    out: dict[str, Any] = {}
    for s in forced:
        out.update({f"{s.name}.{k}": v for k, v in _site_params(s, False).items()})
    if not slots and space.spec.max_modules is None:
        for s in optional:
            out.update({f"{s.name}.{k}": v for k, v in _site_params(s, True).items()})
        return out
    options = [{"_name": NONE}] + [{"_name": s.name, **_site_params(s, False)} for s in optional]
    for j in range(slots):
        out[f"slot{j}"] = _choice(options)
    return out


def to_flat(space: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The flat ``<site>.keys`` / ``<site>.scope`` encoding of an NNI proposal."""
    flat: dict[str, Any] = {f"{name}.keys": 0 for name in space.sites}
    for key, value in params.items():
        if isinstance(value, dict):  # a slot: {"_name": site, "keys": k, "scope": label}
            name = value.get("_name")
            if name != NONE and flat.get(f"{name}.keys") == 0:  # a site named twice: the first slot
                flat[f"{name}.keys"] = value["keys"]
                if "scope" in value:
                    flat[f"{name}.scope"] = value["scope"]
        else:
            flat[key] = value
    return {k: v for k, v in flat.items() if not (k.endswith(".scope") and flat[k[: -len(".scope")] + ".keys"] == 0)}


def to_params(space: Any, flat: dict[str, Any]) -> dict[str, Any]:
    """An NNI proposal of the architecture of ``flat`` (modules fill the slots in site order)."""
    forced, optional, slots = _layout(space)
    params: dict[str, Any] = {}
    flat_sites = forced + (optional if not slots and space.spec.max_modules is None else [])
    for s in flat_sites:
        params[f"{s.name}.keys"] = flat[f"{s.name}.keys"]
        if len(s.labels()) > 1:
            params[f"{s.name}.scope"] = flat.get(f"{s.name}.scope", s.labels()[0])
    if len(flat_sites) > len(forced):
        return params
    used = [s for s in optional if flat.get(f"{s.name}.keys", 0) != 0]
    for j in range(slots):
        if j < len(used):
            s = used[j]
            params[f"slot{j}"] = {
                "_name": s.name,
                "keys": flat[f"{s.name}.keys"],
                **({"scope": flat[f"{s.name}.scope"]} if len(s.labels()) > 1 else {}),
            }
        else:
            params[f"slot{j}"] = {"_name": NONE}
    return params


def with_index(spec: Any, value: Any) -> Any:
    """A proposal in the ``{"_index", "_value"}`` form NNI's Evolution tuner keeps internally."""
    if isinstance(spec, dict) and spec.get("_type") == "choice":
        options = spec["_value"]
        if isinstance(value, dict):
            i = next(i for i, o in enumerate(options) if o.get("_name") == value.get("_name"))
            inner = {k: (with_index(options[i][k], value[k]) if k != "_name" else value[k]) for k in options[i]}
            return {"_index": i, "_value": inner}
        return {"_index": options.index(value), "_value": value}
    return {k: with_index(spec[k], value[k]) for k in spec}


@contextlib.contextmanager
def _private_random(state: list[Any]) -> Iterator[None]:
    """Run with ``random``'s global generator at our own state (NNI's Evolution tuner draws from
    it), restoring the caller's state afterwards."""
    outer = random.getstate()
    random.setstate(state[0])
    try:
        yield
    finally:
        state[0] = random.getstate()
        random.setstate(outer)


def make_tuner(kind: str, seed: int, options: dict[str, Any]) -> Any:
    """A fresh NNI tuner maximising PSNR, seeded (NNI's Evolution and hyperopt tuners seed
    themselves from the OS; their generators are replaced after the space is set)."""
    try:
        import logging

        import nni  # noqa: F401 - sets up NNI's loggers, which print every proposal's seed to stdout

        logging.getLogger("nni").setLevel(logging.WARNING)
        if kind == "TPE":
            from nni.algorithms.hpo.tpe_tuner import TpeTuner

            return TpeTuner(optimize_mode="maximize", seed=seed)
        if kind == "Random":
            from nni.algorithms.hpo.random_tuner import RandomTuner

            return RandomTuner(seed=seed)
        if kind == "Evolution":
            from nni.algorithms.hpo.evolution_tuner import EvolutionTuner

            return EvolutionTuner(optimize_mode="maximize", population_size=options.get("population_size", 32))
        if kind == "Anneal":
            from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner

            return HyperoptTuner("anneal", optimize_mode="maximize")
    except ImportError as exc:
        missing = getattr(exc, "name", "") or ""
        hint = "; nni:Anneal also needs hyperopt (pip install hyperopt)" if missing.startswith("hyperopt") else ""
        raise UserError(f"strategy nni:{kind}: {INSTALL_HINT}{hint}", field="strategy") from None
    raise UserError(f"unknown NNI tuner {kind!r}", field="strategy")


class NNISampler(optuna.samplers.BaseSampler):
    """An Optuna sampler that asks an NNI tuner (see the module docstring)."""

    def __init__(self, space: Any, kind: str, seed: int, options: dict[str, Any]) -> None:
        self.space, self.kind, self.seed, self.options = space, kind, int(seed), options
        self.nni_space = legacy_space(space)
        self.tuner: Any = None
        self.known: set[int] = set()  # trial numbers the tuner proposed or imported
        self.proposed: dict[int, dict[str, Any]] = {}  # running proposals of this tuner
        self._random = [random.Random(seed).getstate()]

    # -- the tuner -----------------------------------------------------------------------------
    def _start(self, first: int) -> None:
        """A fresh tuner whose first proposal is for trial number ``first``: seeded by it, so a
        resumed tuner draws anew and concurrent workers (each asking another trial) differ."""
        session_seed = (self.seed * 1_000_003 + first) % 2**31
        self._random = [random.Random(session_seed).getstate()]
        tuner = make_tuner(self.kind, session_seed, self.options)
        with _private_random(self._random):
            tuner.update_search_space(self.nni_space)
            if self.kind == "Evolution":  # its population was drawn from an unseeded generator
                tuner.random_state = np.random.RandomState(session_seed)
                tuner.population = []
                for _ in range(tuner.population_size):
                    tuner._random_generate_individual()
            elif self.kind == "Anneal":
                tuner.rval.rstate = np.random.RandomState(session_seed)
        self.tuner = tuner

    def _params_of(self, t: FrozenTrial) -> dict[str, Any]:
        stored = t.system_attrs.get(NNI_ATTR)
        return (
            stored
            if isinstance(stored, dict)
            else to_params(self.space, self.space.encode(self.space.decode(t.params)))
        )

    def _import(self, trials: list[FrozenTrial], values: list[float] | None = None) -> None:
        """Completed trials this tuner did not propose (earlier sessions, other workers, its own
        fallback proposals); ``values``: their PSNRs where ``trials`` are not finished yet."""
        scores = values if values is not None else [float(t.values[0]) for t in trials]
        data = [{"parameter": self._params_of(t), "value": float(v)} for t, v in zip(trials, scores)]
        if not data:
            return
        with _private_random(self._random):
            if self.kind == "Evolution":  # NNI's EvolutionTuner.import_data does nothing
                from nni.algorithms.hpo.evolution_tuner import Individual

                pop = self.tuner.population
                for d in data:
                    fresh = next((i for i, ind in enumerate(pop) if ind.result is None), None)
                    if fresh is not None:  # an evaluated individual takes an unevaluated one's place
                        pop.pop(fresh)
                    pop.append(Individual(config=with_index(self.nni_space, d["parameter"]), result=d["value"]))
            elif self.kind != "Random":
                self.tuner.import_data(data)

    def _sync(self, study: optuna.Study, number: int) -> None:
        if self.tuner is None:
            self._start(number)
        new = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number not in self.known]
        self.known.update(t.number for t in new)
        self._import(sorted(new, key=lambda t: t.number))

    # -- Optuna's sampler interface ---------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return distributions(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        self._sync(study, trial.number)
        try:
            with _private_random(self._random):
                params = self.tuner.generate_parameters(trial.number)
        except Exception as exc:  # noqa: BLE001 - only NNI's NoMoreTrialError is expected
            if type(exc).__name__ != "NoMoreTrialError":
                raise
            # NNI's de-duplication falls back to a grid search that, on nested choices, reports the
            # space explored long before it is: propose a uniform sample of the constrained space
            # instead; the tuner learns its result by import once it completes (after_trial)
            rng = random.Random(self.seed * 7919 + trial.number * 104729 + 17)
            params = to_params(self.space, self.space.encode(self.space.sample(rng)))
            TrialStore(study).set_system_attr(trial, NNI_ATTR, params)
            return {k: v for k, v in to_flat(self.space, params).items() if k in search_space}
        self.known.add(trial.number)
        self.proposed[trial.number] = params
        TrialStore(study).set_system_attr(trial, NNI_ATTR, params)
        return {k: v for k, v in to_flat(self.space, params).items() if k in search_space}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return random.Random(self.seed * 7919 + trial.number).choice(list(param_distribution.choices))

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        """Tell the tuner: a completed trial's PSNR, or failure (infeasible, failed evaluation)."""
        params = self.proposed.pop(trial.number, None)
        if params is None:
            if state == TrialState.COMPLETE and values and self.tuner is not None and trial.number not in self.known:
                self.known.add(trial.number)  # a fallback proposal, or a queued trial run with fixed parameters
                self._import([trial], [float(values[0])])
            return
        with _private_random(self._random):
            if state == TrialState.COMPLETE and values:
                self.tuner.receive_trial_result(trial.number, params, float(values[0]))
                self.tuner.trial_end(trial.number, True)
            else:
                self.tuner.trial_end(trial.number, False)


class NNIStrategy(OptunaStrategy):
    """Base of the ``nni:<Tuner>`` strategies; subclasses set ``name`` and ``tuner``."""

    tuner: ClassVar[str] = ""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        if len(ctx.objectives) > 1:
            raise UserError(f"{self.name} optimises one objective; use objectives: [psnr]", field="objectives")
        make_tuner(self.tuner, 0, self.options)  # NNI importable? (one line, before anything trains)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return NNISampler(self.ctx.space, self.tuner, self.ctx.seed, self.options)


class NNITPEStrategy(NNIStrategy):
    """NNI's own TPE (``nni.algorithms.hpo.tpe_tuner``)."""

    name, tuner = "nni:TPE", "TPE"


class NNIEvolutionStrategy(NNIStrategy):
    """NNI's evolution tuner (tournament of two, one mutated choice; ``population_size``, NNI's default 32)."""

    name, tuner = "nni:Evolution", "Evolution"
    OPTIONS = {"population_size": integer(2)}


class NNIAnnealStrategy(NNIStrategy):
    """hyperopt's annealing through NNI (needs ``hyperopt`` besides NNI)."""

    name, tuner = "nni:Anneal", "Anneal"


class NNIRandomStrategy(NNIStrategy):
    """NNI's random tuner (uniform over the slot space)."""

    name, tuner = "nni:Random", "Random"


NNI_STRATEGIES: dict[str, type[NNIStrategy]] = {
    c.name: c for c in (NNITPEStrategy, NNIEvolutionStrategy, NNIAnnealStrategy, NNIRandomStrategy)
}
for _cls in NNI_STRATEGIES.values():  # NNI itself is imported only when one of them runs
    register_strategy(_cls)

__all__ = [
    "NNIAnnealStrategy",
    "NNIEvolutionStrategy",
    "NNIRandomStrategy",
    "NNISampler",
    "NNIStrategy",
    "NNITPEStrategy",
    "NNI_STRATEGIES",
    "legacy_space",
    "make_tuner",
    "to_flat",
    "to_params",
    "with_index",
]
