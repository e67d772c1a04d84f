"""Fuzz of the YAML schema with hypothesis: mutations of the shipped search spaces and strategy
presets (deleted keys, replaced values of every kind, added keys) give a valid space / preset or
a one-line UserError naming the file, never another exception. Bounded (a fixed number of
derandomized examples, no deadline) so it runs in seconds and the same way in CI."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acla_nas.core.errors import UserError
from acla_nas.search.run import parse_strategy
from acla_nas.space import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
SPACES = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "search_spaces").glob("*.yaml"))}
# the fuzz needs the spaces' schema, not their size: the paper-size EDSR is left out and RCAN
# shrunk (its cost table alone takes seconds at 10 groups x 20 blocks)
SPACES.pop("edsr_x4_paper.yaml")
SPACES["rcan_x2.yaml"]["backbone"]["kwargs"].update(n_resgroups=3, n_resblocks=1)
PRESETS = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "strategies").glob("*.yaml"))}
EXAMPLES = {"space": 80, "strategy": 200}
OUTCOMES: Counter = Counter()  # read by the closing note's measurement (pytest -s prints it)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "all",
            "edsr",
            "unet",
            "rcan",
            "os:system",
            "builtins:eval",
            "user_backbones:tiny_net",
            "body.*",
            "head, body.*",
            "+10%",
            "-100%",
            "1.1x",
            "2.5G",
            "previous2",
            "sr",
            "denoise",
            "jpeg",
            "demosaic",
            "embedded",
            "folder",
            "paired",
            ".nan",
            "5e-4",
            "darts",
            "evolution",
            "tpe",
            "random",
            "oneshot",
            "proxy",
            "psnr",
            "flops",
            "acla_nas.cli.main:main",
            "acla_nas.nn.backbones.edsr:edsr",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8) | SCALARS.filter(lambda v: isinstance(v, str)), inner, max_size=3),
    ),
    max_leaves=6,
)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (dict keys and list indices) inside a YAML document."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


def mutate(doc: Any, data: st.DataObject) -> Any:
    """One to three mutations at random paths: delete, replace, add a key, or wrap in a list."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        where = paths(doc)
        if not where:
            return data.draw(VALUES, label="whole document")
        path = data.draw(st.sampled_from(where), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = data.draw(st.sampled_from(["delete", "replace", "add", "wrap"]), label="op")
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = data.draw(VALUES, label="value")
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif isinstance(parent[key], dict):
            parent[key][data.draw(st.text(max_size=8), label="new key")] = data.draw(VALUES, label="value")
        else:
            parent[key] = {data.draw(st.text(max_size=8), label="new key"): parent[key]}
    return doc


def _outcome(kind: str, call: Any) -> None:
    try:
        call()
        OUTCOMES[f"{kind}: valid"] += 1
    except UserError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith("fuzz.yaml"), text
        OUTCOMES[f"{kind}: UserError"] += 1


FUZZ = settings(
    max_examples=EXAMPLES["space"],
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(name=st.sampled_from(sorted(SPACES)), data=st.data())
def test_mutated_spaces_are_valid_or_one_line_errors(name: str, data: st.DataObject) -> None:
    doc = mutate(SPACES[name], data)
    _outcome("space", lambda: SearchSpace.from_dict(doc, file="fuzz.yaml").size())


@settings(FUZZ, max_examples=EXAMPLES["strategy"])
@given(name=st.sampled_from(sorted(PRESETS)), data=st.data())
def test_mutated_strategy_presets_are_valid_or_one_line_errors(name: str, data: st.DataObject) -> None:
    doc = mutate(PRESETS[name], data)
    _outcome("strategy", lambda: parse_strategy(doc, "fuzz.yaml"))


@pytest.mark.parametrize("kind", ["space", "strategy"])
def test_the_fuzz_found_both_outcomes(kind: str) -> None:
    """Runs after the fuzz tests above (file order): the mutations exercise both branches."""
    if not OUTCOMES:
        pytest.skip("run with the fuzz tests above")
    print(f"fuzz outcomes: {dict(sorted(OUTCOMES.items()))}")  # shown with pytest -s
    assert OUTCOMES[f"{kind}: valid"] > 0 and OUTCOMES[f"{kind}: UserError"] > 0, OUTCOMES
