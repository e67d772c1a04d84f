"""The one-shot evaluator's path sampling: uniform, strict fairness, the sandwich rule."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.search.evaluators import OneShotEvaluator
from acla_nas.search.run import run_search, search_data
from acla_nas.space import SearchSpace

FREE = {**TINY_SPACE, "constraints": {}}  # no max_modules: every combination of choices is allowed
VAL = {"patches": 2, "patch": 24}


def evaluator(space_dict: dict, sampling: str, **train) -> OneShotEvaluator:
    space = SearchSpace.from_dict(space_dict)
    data = search_data(space, {"seed": 3, "val": VAL}, "cpu", progress=False)
    return OneShotEvaluator(space, data, {"sampling": sampling, "steps": 2, "batch": 2, "patch": 24, **train})


def site_choices(ev: OneShotEvaluator, arch) -> list:
    return [(arch.modules[n].keys, arch.modules[n].scope) if n in arch.modules else None for n in ev.space.sites]


def test_fair_sampling_trains_every_choice_of_every_site_equally_often() -> None:
    ev = evaluator(FREE, "fair")
    m = [len(c) for c in ev._choices]
    assert len(set(m)) > 1  # sites with one scope (3 choices) and with two (5): cycles of each length
    period = math.lcm(*m)
    counts = [Counter() for _ in m]
    for step in range(2 * period):
        for i, c in enumerate(site_choices(ev, ev.fair_path(step))):
            counts[i][c] += 1
    for i, cnt in enumerate(counts):
        assert len(cnt) == m[i] and set(cnt.values()) == {2 * period // m[i]}, cnt
    assert ev.fair_fallbacks == 0
    # uniform sampling, for contrast, is not balanced over the same number of steps
    uni = Counter(site_choices(ev, ev.uniform_path(s))[-1] for s in range(2 * period))
    assert set(uni.values()) != {2 * period // m[-1]}
    assert [ev.fair_path(s).key() for s in range(7)] == [ev.fair_path(s).key() for s in range(7)]  # pure in the step


def test_fair_sampling_keeps_the_constraints() -> None:
    ev = evaluator(TINY_SPACE, "fair")  # max_modules: 2 of 4 sites
    for step in range(40):
        assert ev.space.satisfies(ev.fair_path(step))[0]
    assert ev.fair_fallbacks > 0  # all-on cycles break the constraint and are redrawn


def test_extreme_paths_are_the_cheapest_and_dearest_feasible() -> None:
    ev = evaluator(TINY_SPACE, "sandwich")
    small, large = ev.extreme_paths()
    macs = [ev.space.cost(a)["macs"] for a in ev.space.enumerate()]
    assert ev.space.cost(small)["macs"] == min(macs)
    assert ev.space.satisfies(large)[0] and ev.space.cost(large)["macs"] >= sorted(macs)[-len(macs) // 10]
    free = evaluator(FREE, "sandwich")
    assert free.space.cost(free.extreme_paths()[1])["macs"] == max(
        free.space.cost(a)["macs"] for a in free.space.enumerate()
    )


def test_sandwich_runs_three_paths_per_step() -> None:
    ev = evaluator(FREE, "sandwich", steps=2)
    seen = []
    original = ev.supernet.use
    ev.supernet.use = lambda modules: seen.append(dict(modules)) or original(modules)
    ev.prepare()
    assert len(seen) == 2 * 3
    small, large = ev.extreme_paths()
    assert seen[0] == small.modules and seen[1] == large.modules


@pytest.mark.parametrize("sampling", ["uniform", "fair", "sandwich"])
def test_every_sampling_searches_and_resumes(tmp_path: Path, sampling: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    preset = tmp_path / "s.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "strategy": "random",
                "trials": 3,
                "val": VAL,
                "supernet": {"steps": 4, "batch": 2, "patch": 24, "ckpt_every": 2, "sampling": sampling},
            }
        )
    )
    run_search(str(space), str(preset), tmp_path / "a", progress=False)
    df = pd.read_csv(tmp_path / "a" / "trajectory.csv")
    assert (df.state == "COMPLETE").sum() == 3
    cfg = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert cfg["strategy"]["supernet"]["sampling"] == sampling


def test_unknown_sampling_is_one_line(tmp_path: Path, capsys) -> None:
    from acla_nas.cli.main import main

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    preset = tmp_path / "bad.yaml"
    preset.write_text(yaml.safe_dump({"strategy": "random", "supernet": {"sampling": "greedy"}}))
    assert main(["search", str(space), "--strategy", str(preset), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "supernet.sampling" in err and "bad.yaml" in err
