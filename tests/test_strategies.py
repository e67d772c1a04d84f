"""Conformance of every strategy on a tiny space, plus resume, plug-ins, failures, workers."""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.nn.arch import load_arch_file
from acla_nas.nn.network import build
from acla_nas.runs.trajectory import CORE_COLUMNS
from acla_nas.search.evaluators import OneShotEvaluator
from acla_nas.search.run import run_search
from acla_nas.search.storage.study import load_run_study
from acla_nas.search.strategies.base import Strategy
from acla_nas.search.strategies.evolution import AgingEvolutionSampler
from acla_nas.search.strategies.optuna_loop import OptunaStrategy, SpaceRandomSampler
from acla_nas.space import SearchSpace
from acla_nas.train.trainer import NonFiniteLossError

FAST = {
    "supernet": {"steps": 3, "batch": 2, "patch": 24},
    "proxy": {"steps": 2, "batch": 2, "patch": 24},
    "val": {"patches": 3, "patch": 24},
}
PRESETS = {
    "random": {"strategy": "random", "trials": 3, **FAST},
    "tpe": {"strategy": "tpe", "trials": 3, "options": {"n_startup_trials": 2}, **FAST},
    "evolution": {"strategy": "evolution", "trials": 4, "options": {"population": 2, "sample_size": 2}, **FAST},
    "darts": {
        "strategy": "darts",
        "options": {"steps": 6, "warmup": 1, "batch": 2, "patch": 24, "log_every": 2, "ckpt_every": 2},
        "val": FAST["val"],
    },
}


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture()
def space_file(tmp_path: Path) -> str:
    return write(tmp_path / "space.yaml", TINY_SPACE)


def strategy_file(tmp_path: Path, name: str, **changes) -> str:
    return write(tmp_path / f"{name}.yaml", {**PRESETS[name], **changes})


BACKBONE_SPACES = {
    "rcan": {
        **TINY_SPACE,
        "backbone": {"name": "rcan", "kwargs": {"n_feats": 8, "n_resgroups": 2, "n_resblocks": 1, "reduction": 4}},
    },
    "unet": {
        **TINY_SPACE,
        "backbone": {"name": "unet", "kwargs": {"n_feats": 8, "n_enc": 1, "n_mid": 1, "n_dec": 1}},
        "task": {"name": "denoise", "sigma": 25},
    },
    "user": {
        **TINY_SPACE,
        "backbone": {"name": "user_backbones:tiny_net", "kwargs": {"channels": 4}, "sites": "stem, layers.*, down, up"},
        "task": {"name": "jpeg", "quality": 20},
    },
}


@pytest.mark.parametrize("backbone", list(BACKBONE_SPACES))
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_strategy_searches_every_backbone(
    tmp_path: Path, name: str, backbone: str, allow_test_modules: None
) -> None:
    """Conformance over backbones (EDSR is the contract test above): sites of other channel
    counts and resolutions, same-size tails, a user backbone attached by hooks (allowed)."""
    space_file = write(tmp_path / "space.yaml", BACKBONE_SPACES[backbone])
    res = run_search(space_file, strategy_file(tmp_path, name), tmp_path / "run", progress=False)
    space = SearchSpace.from_yaml(space_file)
    df = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    done = df[df.state == "COMPLETE"]
    assert len(done) >= 2 and done.psnr.map(math.isfinite).all()
    assert all(f"k:{s}" in df.columns for s in space.sites)
    assert space.contains(res.best_arch)[0] and space.satisfies(res.best_arch)[0]
    side = 32 if backbone == "rcan" else 16  # RCAN: SR x2; the others: same-size tasks
    assert build(res.best_arch)(torch.rand(1, 3, 16, 16)).shape == (1, 3, side, side)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_strategy_runs_and_writes_the_same_contract(tmp_path: Path, space_file: str, name: str) -> None:
    out = tmp_path / "run"
    res = run_search(space_file, strategy_file(tmp_path, name), out, progress=False)
    space = SearchSpace.from_yaml(space_file)
    df = pd.read_csv(out / "trajectory.csv")
    sites = list(space.sites)
    assert list(df.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    assert all(f"k:{s}" in df.columns and f"scope:{s}" in df.columns for s in sites)
    assert (df["strategy"] == name).all() and len(df) >= 2
    done = df[df.state == "COMPLETE"]
    assert len(done) >= 2 and done.psnr.map(math.isfinite).all() and (done.psnr > 10).all()
    assert (done.flops >= space.cost(space.template())["macs"]).all()
    assert df.seconds.is_monotonic_increasing
    arch, extra = load_arch_file(out / "best_arch.yaml")
    assert space.contains(arch)[0] and space.satisfies(arch)[0]
    assert extra["provenance"]["strategy"] == name
    assert arch == res.best_arch
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["strategy"]["strategy"] == name and cfg["space"]["backbone"]["name"] == "edsr"
    assert (out / "sites.csv").read_text().startswith("name,channels,stride\nhead,8,1\n")
    if name == "darts":
        assert {"temperature", f"p:{sites[0]}:0", f"p:{sites[0]}:4"} <= set(df.columns)
        probs = df[[f"p:{sites[0]}:{k}" for k in (0, 2, 4)]].sum(axis=1)
        assert ((probs - 1).abs() < 1e-4).all()
    else:
        trials = PRESETS[name]["trials"]
        assert len(df[df.state.isin(["COMPLETE", "FAIL"])]) == trials
        best = done.psnr.max()
        assert res.best_scores["psnr"] == pytest.approx(best)


def test_multi_trial_resume_never_loses_or_repeats_trials(tmp_path: Path, space_file: str, monkeypatch) -> None:
    strat = strategy_file(tmp_path, "random", trials=4)
    out = tmp_path / "run"
    calls: list[str] = []
    original = OneShotEvaluator._score

    def flaky(self, arch):
        calls.append(arch.key())
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while scoring the third trial
        return original(self, arch)

    monkeypatch.setattr(OneShotEvaluator, "_score", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_search(space_file, strat, out, progress=False)
    before = pd.read_csv(out / "trajectory.csv")
    assert (before.state == "COMPLETE").sum() == 2
    monkeypatch.setattr(OneShotEvaluator, "_score", original)
    scored: list[str] = []
    monkeypatch.setattr(OneShotEvaluator, "_score", lambda self, a: scored.append(a.key()) or original(self, a))
    run_search(space_file, strat, out, progress=False)
    after = pd.read_csv(out / "trajectory.csv")
    complete = after[after.state == "COMPLETE"]
    assert len(complete) == 4
    assert len(scored) == 2  # the interrupted trial again, then the fourth; the first two are kept
    assert scored[0] == calls[2]
    kept = lambda df: df[df.state == "COMPLETE"].iloc[:2].reset_index(drop=True).astype(str)  # noqa: E731
    pd.testing.assert_frame_equal(kept(after), kept(before))
    assert len(after) == 4  # the interrupted attempt is not a row of its own
    # more trials extend the same run; another configuration is refused
    run_search(space_file, strat, out, trials=5, progress=False)
    assert (pd.read_csv(out / "trajectory.csv").state == "COMPLETE").sum() == 5
    with pytest.raises(UserError, match="another configuration"):
        run_search(space_file, strat, out, seed=9, progress=False)


def test_darts_resume_equals_uninterrupted_run(tmp_path: Path, space_file: str, monkeypatch) -> None:
    strat = strategy_file(tmp_path, "darts")
    run_search(space_file, strat, tmp_path / "straight", progress=False)
    from acla_nas.search.strategies.darts import DartsStrategy

    original = DartsStrategy.log

    def killed(self, step, *a, **k):
        original(self, step, *a, **k)
        if step == 4:  # after the checkpoint of step 2: the resumed run must continue from it
            raise KeyboardInterrupt

    monkeypatch.setattr(DartsStrategy, "log", killed)
    with pytest.raises(KeyboardInterrupt):
        run_search(space_file, strat, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(DartsStrategy, "log", original)
    from acla_nas.train.checkpoint import load_checkpoint

    # DARTS trains its supernet with the shared Trainer: one checkpoint format, in RUN_DIR/supernet
    assert load_checkpoint(tmp_path / "resumed" / "supernet" / "checkpoints" / "last.pt")["step"] == 2
    run_search(space_file, strat, tmp_path / "resumed", progress=False)
    cols = lambda df: df.drop(columns=["seconds", "run"])  # noqa: E731
    a = pd.read_csv(tmp_path / "straight" / "trajectory.csv")
    b = pd.read_csv(tmp_path / "resumed" / "trajectory.csv")
    pd.testing.assert_frame_equal(cols(a), cols(b), check_exact=False, rtol=1e-5)


def test_non_finite_loss_fails_one_trial_and_the_search_goes_on(tmp_path: Path, space_file: str, monkeypatch) -> None:
    original = OneShotEvaluator._score
    seen: list[int] = []

    def sometimes_nan(self, arch):
        seen.append(1)
        if len(seen) == 2:
            raise NonFiniteLossError("the loss became nan at step 1")
        return original(self, arch)

    monkeypatch.setattr(OneShotEvaluator, "_score", sometimes_nan)
    run_search(space_file, strategy_file(tmp_path, "random", trials=3), tmp_path / "run", progress=False)
    df = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    assert list(df.state) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert math.isnan(df.psnr[1])


def test_multi_objective_records_the_pareto_front(tmp_path: Path, space_file: str) -> None:
    out = tmp_path / "run"
    run_search(
        space_file, strategy_file(tmp_path, "random", trials=5, objectives=["psnr", "flops"]), out, progress=False
    )
    front = pd.read_csv(out / "pareto.csv")
    df = pd.read_csv(out / "trajectory.csv")
    done = df[df.state == "COMPLETE"]
    for _, r in front.iterrows():  # nothing in the trajectory dominates a front member
        dominated = (done.psnr >= r.psnr) & (done.flops <= r.flops) & ((done.psnr > r.psnr) | (done.flops < r.flops))
        assert not dominated.any()
    for _, r in done.iterrows():  # every trial off the front is dominated by a front member
        if r.step not in set(front.trial):
            assert ((front.psnr >= r.psnr) & (front.flops <= r.flops)).any()


class EnumerateStrategy(OptunaStrategy):
    """A plug-in defined only in this test file: enumerate the space in order."""

    name = "enumerate"

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        space = self.ctx.space

        class Enum(SpaceRandomSampler):
            def sample_relative(self, study, trial, search_space):
                return space.encode(space.enumerate()[trial.number])

        return Enum(space)


class NotAStrategy:
    pass


def test_plug_in_strategy_by_module_path(tmp_path: Path, space_file: str, allow_test_modules: None) -> None:
    strat = write(tmp_path / "plug.yaml", {"strategy": "test_strategies:EnumerateStrategy", "trials": 3, **FAST})
    run_search(space_file, strat, tmp_path / "run", progress=False)
    space = SearchSpace.from_yaml(space_file)
    df = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    assert list(df.arch) == [__import__("json").dumps(space.encode(a), sort_keys=True) for a in space.enumerate()[:3]]
    assert issubclass(EnumerateStrategy, Strategy)


def test_workers_share_one_storage(tmp_path: Path, space_file: str) -> None:
    out = tmp_path / "run"
    t0 = time.perf_counter()
    res = run_search(space_file, strategy_file(tmp_path, "random", trials=4), out, workers=2, progress=False)
    wall = time.perf_counter() - t0
    df = pd.read_csv(out / "trajectory.csv")
    assert (df.state == "COMPLETE").sum() == 4  # exact, whatever the number of workers
    assert df.step.is_unique
    assert res.seconds <= wall  # one clock for the session: the workers' times are not added up
    assert df.seconds.max() <= res.seconds


def test_trials_are_optuna_native(tmp_path: Path, space_file: str) -> None:
    """Metric names, SSIM, MACs by their name, a scope only where a site carries a module."""
    out = tmp_path / "run"
    run_search(
        space_file, strategy_file(tmp_path, "random", trials=4, objectives=["psnr", "flops"]), out, progress=False
    )
    study = load_run_study(out)
    assert study.study_name == "run" and study.metric_names == ["psnr", "macs"]
    assert study.user_attrs["strategy"] == "random" and study.user_attrs["seed"] == 0
    space = SearchSpace.from_yaml(space_file)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4
    for t in done:
        assert 0 < t.user_attrs["ssim"] <= 1 and t.user_attrs["macs"] == t.values[1] and "flops" not in t.user_attrs
        for site in space.sites:
            assert (f"{site}.scope" in t.params) == (t.params[f"{site}.keys"] != 0)
    best = yaml.safe_load((out / "best_arch.yaml").read_text())["provenance"]
    assert 0 < best["ssim"] <= 1


def test_evolution_mutates_one_site_within_constraints(space_file: str) -> None:
    import random

    space = SearchSpace.from_yaml(space_file)
    sampler = AgingEvolutionSampler(space, 0, population=2, sample_size=2)
    rng = random.Random(0)
    for _ in range(20):
        parent = space.sample(rng)
        child = space.decode(sampler.mutate(space.encode(parent), rng))
        assert child != parent and space.satisfies(child)[0]
        changed = [s for s in space.sites if parent.modules.get(s) != child.modules.get(s)]
        assert len(changed) == 1


def test_evolution_proposes_distinct_architectures_until_the_space_is_exhausted(space_file: str) -> None:
    """--trials counts distinct architectures: no repeat while unseen ones remain (issue 24)."""
    import optuna

    from acla_nas.search.strategies.optuna_loop import distributions

    space = SearchSpace.from_yaml(space_file)
    size = space.size(constrained=True)
    dists = distributions(space)
    sampler = AgingEvolutionSampler(space, 0, population=3, sample_size=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    keys: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, d.choices) for name, d in dists.items()}
        arch = space.decode(params)
        keys.append(arch.key())
        return float(sum(c.keys for c in arch.modules.values()))

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    n = min(size, 25)
    study.optimize(objective, n_trials=n)
    assert len(set(keys)) == n, f"{n - len(set(keys))} repeats in {n} trials of a space of {size}"
    if size <= 25:  # exhausted: the search goes on, now with repeats
        study.optimize(objective, n_trials=2)
        assert len(keys) == size + 2


@pytest.mark.parametrize(
    "content,field",
    [
        ({"strategy": "annealing"}, "strategy"),
        ({"strategy": "random", "trails": 3}, "trails"),
        ({"strategy": "random", "trials": 0}, "trials"),
        ({"strategy": "random", "evaluator": "zero-cost"}, "evaluator"),
        ({"strategy": "tpe", "options": {"startup": 3}}, "options.startup"),
        ({"strategy": "random", "objectives": ["ssim"]}, "objectives"),
        ({"strategy": "no_such_module:Thing"}, "strategy"),
        ({"strategy": "test_strategies:NotAStrategy"}, "strategy"),
        ({"strategy": "darts", "options": {"steps": "many"}}, "options.steps"),
    ],
)
def test_bad_strategy_files_exit_2_with_one_line(
    tmp_path: Path, space_file: str, capsys, content: dict, field: str
) -> None:
    strat = write(tmp_path / "bad.yaml", content)
    code = main(["search", space_file, "--strategy", strat, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "bad.yaml" in err and field in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_evaluators_cache_by_architecture_and_mark_repeats(space_file: str) -> None:
    from acla_nas.search.evaluators import ProxyEvaluator
    from acla_nas.search.run import search_data

    space = SearchSpace.from_yaml(space_file)
    data = search_data(space, {"seed": 0, "val": FAST["val"]}, "cpu", progress=False)
    ev = ProxyEvaluator(space, data, FAST["proxy"])
    calls = []
    original = ev._score
    ev._score = lambda arch: calls.append(arch.key()) or original(arch)
    a, b = space.sample(1), space.sample(2)
    first = ev.evaluate(a)
    again = ev.evaluate(a)
    assert len(calls) == 1 and not first.cached and first.seconds > 0
    assert again.cached and again.seconds == 0.0 and again.psnr == first.psnr and again.macs == first.macs
    ev.evaluate(b)
    assert len(calls) == (1 if a.key() == b.key() else 2)


def test_admission_keeps_the_trial_count_exact_when_workers_race() -> None:
    """Two workers both saw one slot left and both asked: only the lower trial number runs."""
    from types import SimpleNamespace

    from acla_nas.search.storage.store import TrialStore
    from acla_nas.search.strategies.optuna_loop import SURPLUS, counted, holds_slot

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 0})
    done = study.ask()
    study.tell(done, 1.0)
    me = SimpleNamespace(ctx=SimpleNamespace(trials=2))
    a, b = study.ask(), study.ask()  # the race: both passed the "one slot left" check
    assert OptunaStrategy._admitted(me, study, a.number) and not OptunaStrategy._admitted(me, study, b.number)
    TrialStore(study).set_system_attr(b, SURPLUS, True)
    study.tell(b, state=optuna.trial.TrialState.FAIL)
    states = {t.number: t for t in study.get_trials()}
    assert holds_slot(states[a.number]) and not holds_slot(states[b.number]) and not counted(states[b.number])
    study.tell(a, state=optuna.trial.TrialState.FAIL)  # a worker that died: no "error", not counted
    assert not counted(study.get_trials()[a.number]) and OptunaStrategy._admitted(me, study, 99)
    study.enqueue_trial({"x": 1})  # its re-run, queued: holds the slot again
    assert not OptunaStrategy._admitted(me, study, 99)
