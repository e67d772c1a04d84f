"""The slot space the NNI strategies give NNI's tuners (pure functions: no NNI needed)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.search.strategies.base import strategy_class
from acla_nas.search.strategies.nni_tuner import NNI_STRATEGIES, NONE, legacy_space, to_flat, to_params, with_index
from acla_nas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def draw(spec: dict, rng: random.Random) -> dict:
    """A uniform proposal of a legacy space, as NNI's random tuner makes one."""
    out = {}
    for key, sub in spec.items():
        option = rng.choice(sub["_value"])
        out[key] = (
            {k: (v if k == "_name" else rng.choice(v["_value"])) for k, v in option.items()}
            if isinstance(option, dict)
            else option
        )
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"constraints": {}},
        {"constraints": {"max_modules": 1}},
        {"overrides": {"body.0": {"keys": [2]}}, "constraints": {"max_modules": 2}},
    ],
)
def test_every_proposal_decodes_and_respects_max_modules(overrides: dict) -> None:
    space = SearchSpace.from_dict({**TINY_SPACE, **overrides})
    spec, rng = legacy_space(space), random.Random(0)
    seen = set()
    for _ in range(3000):
        arch = space.decode(to_flat(space, draw(spec, rng)))
        assert space.contains(arch)[0]
        if space.spec.max_modules is not None:
            assert len(arch.modules) <= space.spec.max_modules
        seen.add(arch.key())
    # every feasible architecture is reachable, and the canonical proposal of each decodes back to it
    feasible = [a for a in space.enumerate() if space.satisfies(a)[0]]
    assert {a.key() for a in feasible} <= seen
    for arch in feasible:
        params = to_params(space, space.encode(arch))
        assert space.decode(to_flat(space, params)) == arch
        assert set(params) == set(spec)


def test_slots_name_each_site_with_its_own_choices() -> None:
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "edsr_x2_demo.yaml")
    spec = legacy_space(space)
    assert sorted(spec) == ["slot0", "slot1", "slot2"]  # max_modules 3
    options = {o["_name"]: o for o in spec["slot0"]["_value"]}
    assert options[NONE] == {"_name": NONE} and len(options) == 9
    assert options["body.0"] == {
        "_name": "body.0",
        "keys": {"_type": "choice", "_value": [2, 4, 8]},
    }  # one scope: no choice
    assert options["body.5"]["scope"]["_value"] == ["1", "2", "all"]
    # a site named by two slots is taken once (from the first)
    twice = {
        "slot0": {"_name": "body.3", "keys": 2, "scope": "1"},
        "slot1": {"_name": "body.3", "keys": 8, "scope": "all"},
        "slot2": {"_name": NONE},
    }
    assert to_flat(space, twice) == {**{f"body.{i}.keys": 0 for i in range(8)}, "body.3.keys": 2, "body.3.scope": "1"}


def test_with_index_matches_nni_internal_form() -> None:
    spec = {
        "a": {
            "_type": "choice",
            "_value": [{"_name": "none"}, {"_name": "x", "k": {"_type": "choice", "_value": [2, 4]}}],
        },
        "b": {"_type": "choice", "_value": [1, 2, 3]},
    }
    assert with_index(spec, {"a": {"_name": "x", "k": 4}, "b": 3}) == {
        "a": {"_index": 1, "_value": {"_name": "x", "k": {"_index": 1, "_value": 4}}},
        "b": {"_index": 2, "_value": 3},
    }


def test_nni_strategies_are_registered_by_name() -> None:
    assert set(NNI_STRATEGIES) == {"nni:TPE", "nni:Evolution", "nni:Anneal", "nni:Random"}
    for name, cls in NNI_STRATEGIES.items():
        assert strategy_class(name) is cls


def test_without_nni_the_search_stops_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    import yaml

    monkeypatch.setitem(sys.modules, "nni", None)  # as if not installed (import raises ImportError)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"strategy": "nni:TPE", "trials": 2}))
    assert (
        main(
            ["search", str(tmp_path / "s.yaml"), "--strategy", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "run")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "strategy nni:TPE: NNI is not installed; pip install 'acla-nas[nni]'" in err, err
    assert not (tmp_path / "run").exists()  # refused before the run directory is claimed


def test_slot_space_is_small_for_the_shipped_spaces() -> None:
    for path in sorted((ROOT / "search_spaces").glob("*.yaml")):
        space = SearchSpace.from_yaml(path)
        spec = legacy_space(space)
        n_options = sum(len(v["_value"]) for v in spec.values())
        assert n_options <= 4 * sum(s.n_choices() for s in space.sites.values()) + 8, path.name
        assert list(itertools.islice(spec, 1))  # not empty
