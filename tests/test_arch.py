"""Arch: YAML/JSON round trip, validation errors, scope resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, ModuleChoice, load_arch_file, resolve_modules, resolve_refs
from acla_nas.nn.scope import ScopeRefs, scope_refs

BASE = {"backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 4}}, "task": {"name": "sr", "scale": 2}}
ORDER = ["head", "body.0", "body.1", "body.2", "body.3"]


def test_yaml_and_json_round_trip(tmp_path: Path) -> None:
    arch = Arch.from_dict(
        {
            **BASE,
            "modules": {
                "body.1": {"keys": 4, "scope": 2},
                "body.3": {"keys": 8, "scope": ["head", "body.1"]},
                "body.2": {"keys": 0},
            },
            "acla": {"adaptive": False},
        }
    )
    assert "body.2" not in arch.modules  # 0 = no module
    path = tmp_path / "a.yaml"
    arch.to_yaml(path)
    back, extra = load_arch_file(path)
    assert back == arch and extra == {}
    assert Arch.from_dict(__import__("json").loads(arch.to_json())) == arch
    assert back.modules["body.3"].scope == ("head", "body.1")


def test_extra_sections_are_returned(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("backbone: edsr\ntask: {name: denoise, sigma: 25}\ndata: {kind: embedded}\ntrain: {steps: 5}\n")
    arch, extra = load_arch_file(path)
    assert arch.backbone == "edsr" and extra == {"data": {"kind": "embedded"}, "train": {"steps": 5}}


@pytest.mark.parametrize(
    "text,field",
    [
        ("backbone: [edsr\n", "invalid YAML"),
        ("", "empty"),
        ("- edsr\n", "top level"),
        ("backbone: edsr\n", "task"),
        ("backbone: edsr\ntask: {name: sr, scale: 5}\n", "task.scale"),
        ("backbone: edsr\ntask: {name: sr, scale: 2}\nmodules: {body.1: {keys: -1}}\n", "modules.body.1.keys"),
        (
            "backbone: edsr\ntask: {name: sr, scale: 2}\nmodules: {body.1: {keys: 4, scope: 0}}\n",
            "modules.body.1.scope",
        ),
        ("backbone: edsr\ntask: {name: sr, scale: 2}\nmodules: {body.1: {keys: 4, cope: 1}}\n", "modules.body.1.cope"),
        ("backbone: edsr\ntask: {name: sr, scale: 2}\nmodule: {}\n", "module"),
        ("backbone: {name: edsr, kwarg: {}}\ntask: {name: sr, scale: 2}\n", "backbone.kwarg"),
        ("backbone: edsr\ntask: {name: sr, scale: 2}\nacla: {tau: -1}\n", "acla.tau"),
        ("backbone: edsr\ntask: {name: sr, scale: 2}\ndata: [1]\n", "data"),
    ],
)
def test_bad_arch_files_give_one_line_naming_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_arch_file(path)
    msg = str(info.value)
    assert str(path) in msg and field in msg and "\n" not in msg


def test_scope_resolution() -> None:
    assert resolve_refs(ORDER, "body.2", 1) == ["body.1"]
    assert resolve_refs(ORDER, "body.2", 2) == ["body.0", "body.1"]
    assert resolve_refs(ORDER, "body.2", "all") == ["head", "body.0", "body.1"]
    assert resolve_refs(ORDER, "body.3", ("body.1", "head")) == ["head", "body.1"]
    with pytest.raises(UserError, match="exceeds the 2 earlier"):
        resolve_refs(ORDER, "body.1", 3)
    with pytest.raises(UserError, match="not earlier"):
        resolve_refs(ORDER, "body.1", ("body.2",))
    with pytest.raises(UserError, match="unknown site"):
        resolve_refs(ORDER, "body.1", ("tail",))
    with pytest.raises(UserError, match="not earlier"):  # the first name that does not fit is named
        resolve_refs(ORDER, "body.1", ("body.2", "tail"))


def test_one_scope_resolver_reports_what_does_not_fit() -> None:
    """``scope_refs`` is what every caller reads: refs that fit, and what was left out and why."""
    assert scope_refs(ORDER, "body.2", 2) == ScopeRefs(("body.0", "body.1"))
    too_far = scope_refs(ORDER, "body.1", 5)
    assert too_far.refs == ("head", "body.0") and too_far.missing == 3 and not too_far.fits
    mixed = scope_refs(ORDER, "body.1", ("body.2", "tail", "head"))
    assert mixed == ScopeRefs(("head",), 0, ("tail",), ("body.2",)) and not mixed.fits
    assert scope_refs(ORDER, "head", "all") == ScopeRefs(())


def test_resolve_modules_checks_sites() -> None:
    arch = Arch.from_dict(BASE).with_modules({"body.9": ModuleChoice(4)})
    with pytest.raises(UserError, match="modules.body.9"):
        resolve_modules(arch, ORDER)
    with pytest.raises(UserError, match="earliest site"):
        resolve_modules(Arch.from_dict(BASE).with_modules({"head": ModuleChoice(4)}), ORDER)


def test_a_search_space_given_as_arch_is_named_as_such() -> None:
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "edsr_x2_demo.yaml"
    with pytest.raises(UserError, match="this is a search space") as info:
        load_arch_file(space)
    assert info.value.file == str(space)
