"""Malformed search spaces: each one is rejected through the CLI with exit 2 and ONE stderr line
naming the file and the field (table-driven; the YAML is written to a temporary file)."""

from __future__ import annotations

import copy

import pytest
import yaml

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.space import SearchSpace, parse_spec

VALID = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 4}},
    "task": {"name": "sr", "scale": 2},
    "data": {"kind": "embedded"},
    "eval": {"input_size": [16, 16]},
    "sites": "all",
    "keys": [0, 2, 4],
    "scopes": [1, 2, "all"],
    "constraints": {"max_modules": 2},
}
USER_BB = {"name": "user_backbones:tiny_net", "kwargs": {"channels": 4}, "sites": "stem, layers.*"}
DENOISE = {"name": "denoise", "sigma": 25}
DROP = object()
pytestmark = pytest.mark.usefixtures("allow_test_modules")  # user_backbones:* cases need the opt-in


def variant(**changes) -> str:
    """VALID with top-level keys replaced (DROP removes one), as YAML text."""
    d = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is DROP:
            d.pop(key, None)
        else:
            d[key] = value
    return yaml.safe_dump(d, sort_keys=False)


def with_constraints(**c) -> str:
    return variant(constraints={**VALID["constraints"], **c})


# (id, YAML text, substring of the field named in the error)
CASES = [
    ("yaml-syntax", "backbone: {name: edsr\ntask: [sr\n", "invalid YAML"),
    ("empty-file", "", "empty"),
    ("comment-only", "# nothing here\n", "empty"),
    ("list-at-top", "- backbone\n- task\n", "space"),
    ("unknown-top-key", variant(searchspace=1), "searchspace"),
    ("missing-keys", variant(keys=DROP), "keys"),
    ("missing-task", variant(task=DROP), "task"),
    ("backbone-is-list", variant(backbone=["edsr"]), "backbone"),
    ("unknown-backbone-key", variant(backbone={"name": "edsr", "depth": 3}), "backbone.depth"),
    ("backbone-kwargs-not-mapping", variant(backbone={"name": "edsr", "kwargs": [4]}), "backbone.kwargs"),
    (
        "unknown-backbone-kwarg",
        variant(backbone={"name": "edsr", "kwargs": {"n_layers": 3}}),
        "backbone.kwargs.n_layers",
    ),
    ("unknown-backbone", variant(backbone={"name": "edsrr"}), "backbone.name"),
    (
        "factory-not-importable",
        variant(backbone={**USER_BB, "name": "no_such_pkg_xyz.models:net"}, task=DENOISE),
        "backbone.name",
    ),
    (
        "factory-attr-missing",
        variant(backbone={**USER_BB, "name": "user_backbones:missing_net"}, task=DENOISE),
        "backbone.name",
    ),
    (
        "factory-not-callable",
        variant(backbone={**USER_BB, "name": "user_backbones:NOT_CALLABLE"}, task=DENOISE),
        "backbone.name",
    ),
    (
        "backbone-site-pattern-matches-nothing",
        variant(backbone={**USER_BB, "sites": "blocks.*"}, task=DENOISE),
        "backbone.sites",
    ),
    ("user-backbone-with-one-site", variant(backbone={**USER_BB, "sites": "stem"}, task=DENOISE), "sites"),
    ("site-pattern-on-registered-backbone", variant(backbone={"name": "edsr", "sites": "body.*"}), "backbone.sites"),
    ("unknown-task", variant(task={"name": "inpaint"}), "task.name"),
    ("task-not-mapping", variant(task="sr"), "task"),
    ("unknown-task-key", variant(task={"name": "sr", "scale": 2, "noise": 1}), "task.noise"),
    ("bad-scale", variant(task={"name": "sr", "scale": 5}), "task.scale"),
    ("bad-sigma", variant(task={"name": "denoise", "sigma": -5}), "task.sigma"),
    ("bad-jpeg-quality", variant(task={"name": "jpeg", "quality": 0}), "task.quality"),
    ("jpeg-quality-not-int", variant(task={"name": "jpeg", "quality": 10.5}), "task.quality"),
    ("scale-for-same-size-backbone", variant(backbone={"name": "unet", "kwargs": {"n_feats": 4}}), "task.scale"),
    ("data-not-mapping", variant(data=["embedded"]), "data"),
    ("unknown-data-kind", variant(data={"kind": "lmdb"}), "data.kind"),
    ("unknown-data-key", variant(data={"kind": "folder", "path": "x", "recursive": True}), "data.recursive"),
    ("data-folder-without-path", variant(data={"kind": "folder"}), "data.path"),
    ("data-paired-lr-not-string", variant(data={"kind": "paired", "hr": "hr", "lr": 3}), "data.lr"),
    ("unknown-acla-option", variant(acla={"heads": 4}), "acla.heads"),
    ("bad-acla-type", variant(acla={"adaptive": "maybe"}), "acla.adaptive"),
    ("acla-not-mapping", variant(acla=[1]), "acla"),
    ("unknown-eval-key", variant(eval={"size": [8, 8]}), "eval.size"),
    ("bad-input-size", variant(eval={"input_size": [64]}), "eval.input_size"),
    ("sites-wrong-type", variant(sites=3), "sites"),
    ("sites-pattern-matches-nothing", variant(sites="groups.*"), "sites"),
    ("sites-unknown-name", variant(sites=["body.1", "body.9"]), "sites[1]"),
    ("duplicate-site", variant(sites=["body.1", "body.1"]), "sites[1]"),
    ("head-as-site", variant(sites=["head", "body.1"]), "sites[0]"),
    ("keys-not-list", variant(keys=4), "keys"),
    ("keys-empty", variant(keys=[]), "keys"),
    ("negative-budget", variant(keys=[0, -4]), "keys[1]"),
    ("budget-not-int", variant(keys=[0, "four"]), "keys[1]"),
    ("duplicate-budget", variant(keys=[0, 2, 2]), "keys[2]"),
    ("budget-above-k-max", variant(k_max=8, keys=[0, 4, 16]), "keys[2]"),
    ("bad-k-max", variant(k_max=0), "k_max"),
    ("only-zero-budget", variant(keys=[0]), "keys"),
    ("scopes-empty", variant(scopes=[]), "scopes"),
    ("scope-zero", variant(scopes=[0, "all"]), "scopes[0]"),
    ("scope-bad-string", variant(scopes=["everything"]), "scopes[0]"),
    ("duplicate-scope", variant(scopes=[1, "previous1"]), "scopes[1]"),
    ("scope-larger-than-earlier-sites", variant(scopes=[1, 9]), "scopes[1]"),
    ("scope-names-later-site", variant(scopes=[["body.3"]]), "scopes[0]"),
    ("scope-names-unknown-site", variant(scopes=[["body.42"]]), "scopes[0]"),
    ("no-valid-scope-at-a-site", variant(scopes=[3]), "scopes"),
    ("overrides-not-mapping", variant(overrides=["body.1"]), "overrides"),
    ("overrides-unknown-key", variant(overrides={"body.1": {"budgets": [0, 2]}}), "overrides.body.1.budgets"),
    ("overrides-matches-nothing", variant(overrides={"body.9": {"keys": [0, 2]}}), "overrides.body.9"),
    ("overrides-negative-budget", variant(overrides={"body.1": {"keys": [-1]}}), "overrides.body.1.keys[0]"),
    ("overrides-scope-too-large", variant(overrides={"body.1": {"scopes": [5]}}), "overrides.body.1.scopes[0]"),
    ("constraints-not-mapping", variant(constraints=[2]), "constraints"),
    ("unknown-constraint", with_constraints(max_latency=3), "constraints.max_latency"),
    ("max-modules-negative", with_constraints(max_modules=-1), "constraints.max_modules"),
    ("max-modules-unsatisfiable", variant(keys=[2, 4], constraints={"max_modules": 0}), "constraints.max_modules"),
    ("max-flops-unsatisfiable", variant(keys=[2, 4], constraints={"max_flops": "+0%"}), "constraints.max_flops"),
    ("max-params-absolute-unsatisfiable", with_constraints(max_params=1000), "constraints.max_params"),
    ("bad-flops-string", with_constraints(max_flops="+ten%"), "constraints.max_flops"),
    ("bad-flops-negative", with_constraints(max_flops=-1.5), "constraints.max_flops"),
    ("bad-params-type", with_constraints(max_params=[1.1]), "constraints.max_params"),
]


@pytest.mark.parametrize("text,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_space_is_one_line_error(tmp_path, capsys, text, field):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    assert main(["spaces", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert field in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_valid_base_is_valid():
    space = SearchSpace.from_dict(yaml.safe_load(variant()))
    assert space.size() > 0


def test_library_errors_carry_file_and_field():
    with pytest.raises(UserError) as info:
        SearchSpace.from_dict(yaml.safe_load(variant(keys=[0, -4])), file="x.yaml")
    assert info.value.file == "x.yaml" and info.value.field == "keys[1]"
    with pytest.raises(UserError) as info:
        parse_spec({**VALID, "constraints": {"max_flops": "+ten%"}})
    assert info.value.field == "constraints.max_flops"


@pytest.mark.parametrize(
    "text,factor,absolute",
    [
        ("+10%", 1.1, None),
        ("-5%", 0.95, None),
        ("1.25x", 1.25, None),
        (1.1, 1.1, None),
        ("2.5G", None, 2_500_000_000),
        (3_000_000, None, 3_000_000),
        ("300M", None, 300_000_000),
    ],
)
def test_limit_forms(text, factor, absolute):
    spec = parse_spec({**VALID, "constraints": {"max_flops": text}})
    lim = spec.max_flops
    assert (None if lim.factor is None else float(lim.factor)) == factor
    assert lim.absolute == absolute
