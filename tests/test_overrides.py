"""``--set KEY=VALUE``: typed by the YAML reader, checked like the file, recorded in config.yaml."""

from __future__ import annotations

import pytest
import yaml

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.core.overrides import apply_overrides, parse_overrides, route_overrides
from tests.tiny_space import TINY_SPACE


def test_values_are_typed_by_yaml_and_keys_are_dotted():
    sets = parse_overrides(["train.lr=2e-4", "keys=[0, 4]", "data.path=photos", "train.steps=3", "x.y=null"])
    assert [(o.key, o.value) for o in sets] == [
        ("train.lr", 2e-4),
        ("keys", [0, 4]),
        ("data.path", "photos"),
        ("train.steps", 3),
        ("x.y", None),
    ]
    data = {"train": {"lr": 1e-3, "batch": 4}, "keys": [0, 2]}
    out = apply_overrides(data, sets[:4])
    assert out == {"train": {"lr": 2e-4, "batch": 4, "steps": 3}, "keys": [0, 4], "data": {"path": "photos"}}
    assert data == {"train": {"lr": 1e-3, "batch": 4}, "keys": [0, 2]}  # the file's data is not changed


@pytest.mark.parametrize(
    ("item", "expected"),
    [("train.lr", "expected KEY=VALUE"), ("=3", "expected KEY=VALUE"), ("a..b=1", "expected KEY=VALUE")],
)
def test_malformed_items_are_one_line_naming_the_flag(item, expected):
    with pytest.raises(UserError, match=expected) as info:
        parse_overrides([item])
    assert info.value.field == "--set"


def test_a_bad_yaml_value_names_the_key():
    with pytest.raises(UserError) as info:
        parse_overrides(["keys=[0, 4"])
    assert str(info.value).startswith("--set keys: invalid YAML")


def test_setting_inside_a_scalar_is_refused():
    with pytest.raises(UserError, match=r"cannot set train\.lr\.x: train\.lr is a float") as info:
        apply_overrides({"train": {"lr": 1e-3}}, parse_overrides(["train.lr.x=1"]), "a.yaml")
    assert info.value.file == "a.yaml" and info.value.field == "train.lr.x"


def test_routing_by_top_level_key():
    sets = parse_overrides(["keys=[0,2]", "supernet.steps=5"])
    routed = route_overrides(sets, {"space": ("keys",), "strategy preset": ("supernet",)})
    assert [o.key for o in routed["space"]] == ["keys"] and [o.key for o in routed["strategy preset"]] == [
        "supernet.steps"
    ]
    with pytest.raises(UserError, match="unknown top-level key 'bogus'"):
        route_overrides(parse_overrides(["bogus=1"]), {"space": ("keys",)})


@pytest.fixture()
def files(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    preset = tmp_path / "random.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "strategy": "random",
                "trials": 1,
                "supernet": {"steps": 2, "batch": 2, "patch": 16},
                "val": {"patches": 2, "patch": 16},
            }
        )
    )
    return space, preset


def test_spaces_checks_a_variant(files, capsys):
    space, _ = files
    assert main(["spaces", str(space), "--set", "keys=[0, 2]"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["spaces", str(space), "--set", "keys=banana"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "keys: expected a non-empty list" in err and "(set by --set keys=banana)" in err
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("bogus.x=1", "--set bogus.x: unknown top-level key 'bogus' (expected a key of the space:"),
        ("val.patches=-1", "val.patches: expected an integer in 1..10000, got -1 (set by --set val.patches=-1)"),
        ("constraints.max_modules=many", "constraints.max_modules:"),
    ],
)
def test_search_refuses_a_bad_override_in_one_line(files, tmp_path, capsys, item, expected):
    space, preset = files
    out = tmp_path / "run"
    assert main(["search", str(space), "--strategy", str(preset), "--out", str(out), "--set", item]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()  # nothing claimed


def test_search_records_the_overrides(files, tmp_path, capsys):
    space, preset = files
    out = tmp_path / "run"
    args = ["search", str(space), "--strategy", str(preset), "--out", str(out), "--device", "cpu", "--quiet"]
    sets = ["--set", "keys=[0, 2]", "--set", "val.patches=3"]
    assert main([*args, *sets]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["space"]["keys"] == [0, 2] and config["strategy"]["val"]["patches"] == 3
    assert config["overrides"] == ["keys=[0, 2]", "val.patches=3"]
    # resuming without the overrides is another configuration: refused rather than mixed in
    assert main(args) == 2
    assert "another configuration" in capsys.readouterr().err
