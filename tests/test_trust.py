"""The trust model: files are data. Code named in a space, an arch, a strategy or a model file
runs only when it is registered or the user allowed its module (--allow-import /
ACLA_NAS_ALLOW_IMPORT); the standard library never. Every verb that opens a file is attacked
with the issue's ``os:system`` payload and must leave the marker file uncreated."""

from __future__ import annotations

import shutil
import sys
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import yaml

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.core.trust import ENV_VAR, ImportRefused, allow_imports, import_object
from acla_nas.nn.backbones import create_backbone, registry
from acla_nas.search.strategies.base import strategy_class
from acla_nas.search.strategies.random_search import RandomStrategy
from acla_nas.space import SearchSpace
from acla_nas.train.model_file import MODEL_FORMAT

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_RUN = ROOT / "results" / "edsr_x2_demo_evolution"
TINY = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 2}},
    "task": {"name": "sr", "scale": 2},
    "eval": {"input_size": [16, 16]},
    "keys": [0, 2],
    "scopes": ["all"],
}


def evil_backbone(marker: Path, name: str = "os:system") -> dict:
    return {"name": name, "kwargs": {"command": f"touch {marker}"}, "sites": "x"}


def evil_space(marker: Path) -> dict:
    return {**TINY, "backbone": evil_backbone(marker)}


def evil_arch(marker: Path) -> dict:
    return {"backbone": evil_backbone(marker), "task": {"name": "denoise", "sigma": 25}, "modules": {}}


def write_yaml(path: Path, data: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def evil_model(path: Path, marker: Path) -> str:
    """A model file that loads with weights_only=True and names os:system as its backbone."""
    payload = {
        "format": MODEL_FORMAT,
        "version": 1,
        "arch": evil_arch(marker),
        "task": {"name": "denoise", "sigma": 25},
        "state_dict": {},
        "metrics": {},
    }
    torch.save(payload, path)
    return str(path)


def evil_run(tmp: Path, marker: Path) -> Path:
    """A copy of the reference run whose config and best arch name os:system."""
    run = tmp / "run"
    run.mkdir()
    for name in ("trajectory.csv", "sites.csv"):
        shutil.copy(REFERENCE_RUN / name, run / name)
    config = yaml.safe_load((REFERENCE_RUN / "config.yaml").read_text())
    config["space"]["backbone"] = evil_backbone(marker)
    write_yaml(run / "config.yaml", config)
    best = yaml.safe_load((REFERENCE_RUN / "best_arch.yaml").read_text())
    best["backbone"] = evil_backbone(marker)
    write_yaml(run / "best_arch.yaml", best)
    evil_model(run / "model.pt", marker)
    return run


def _verb_cases() -> list[tuple[str, object]]:
    """(id, f(tmp, marker) -> argv): every verb that opens a file, fed the attack."""

    def space_file(t: Path, m: Path) -> str:
        return write_yaml(t / "space.yaml", evil_space(m))

    def good_space(t: Path) -> str:
        return write_yaml(t / "good.yaml", TINY)

    def strategy(t: Path, m: Path, name: str = "os:system") -> str:
        return write_yaml(t / "strategy.yaml", {"strategy": name, "trials": 2})

    return [
        ("spaces FILE", lambda t, m: ["spaces", space_file(t, m)]),
        (
            "search space",
            lambda t, m: [
                "search",
                space_file(t, m),
                "--strategy",
                str(ROOT / "strategies/random.yaml"),
                "--out",
                str(t / "out"),
            ],
        ),
        (
            "search strategy",
            lambda t, m: ["search", good_space(t), "--strategy", strategy(t, m), "--out", str(t / "out")],
        ),
        (
            "pipeline",
            lambda t, m: [
                "pipeline",
                space_file(t, m),
                "--strategy",
                str(ROOT / "strategies/random.yaml"),
                "--out",
                str(t / "out"),
            ],
        ),
        ("train", lambda t, m: ["train", write_yaml(t / "arch.yaml", evil_arch(m)), "--out", str(t / "out")]),
        ("evaluate", lambda t, m: ["evaluate", evil_model(t / "model.pt", m)]),
        (
            "restore",
            lambda t, m: [
                "restore",
                evil_model(t / "model.pt", m),
                str(REFERENCE_RUN / "plots" / "arch.png"),
                str(t / "o.png"),
            ],
        ),
        ("export", lambda t, m: ["export", str(evil_run(t, m)), "--out", str(t / "out")]),
        (
            "plot --checkpoint",
            lambda t, m: [
                "plot",
                str(evil_run(t, m)),
                "--out",
                str(t / "p"),
                "--checkpoint",
                str(t / "run" / "model.pt"),
            ],
        ),
    ]


@pytest.mark.parametrize("make_argv", [c[1] for c in _verb_cases()], ids=[c[0] for c in _verb_cases()])
def test_os_system_in_a_file_never_runs(tmp_path: Path, capsys, make_argv) -> None:
    marker = tmp_path / "PWNED"
    argv = make_argv(tmp_path, marker)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "'os:system'" in err[0] and ("standard library" in err[0])
    assert str(tmp_path) in err[0]  # the file that names it
    assert not (tmp_path / "out").exists()  # nothing claimed


def test_bare_spaces_in_a_folder_with_a_malicious_space(tmp_path: Path, monkeypatch, capsys) -> None:
    marker = tmp_path / "PWNED"
    write_yaml(tmp_path / "search_spaces" / "evil.yaml", evil_space(marker))
    monkeypatch.chdir(tmp_path)
    assert main(["spaces"]) == 2
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "search_spaces/evil.yaml: backbone.name" in err
    assert "edsr_x2_demo" in out  # the other spaces are still listed


def test_plot_and_report_of_a_malicious_run_stay_inert(tmp_path: Path, capsys) -> None:
    """Optional figures fall back (diagram from sites.csv) or are skipped with a note."""
    marker = tmp_path / "PWNED"
    run = evil_run(tmp_path, marker)
    assert main(["plot", str(run), "--out", str(tmp_path / "p")]) == 0
    assert "key usage skipped" in capsys.readouterr().out
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert not marker.exists()
    assert "standard library" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(
    "spec,why",
    [
        ("os:system", "standard library"),
        ("subprocess:run", "standard library"),
        ("builtins:exec", "standard library"),
        ("posix:system", "standard library"),
        ("importlib:import_module", "standard library"),
        ("user_backbones:tiny_net", "--allow-import user_backbones"),
        ("acla_nas.data.sources:save_image", "--allow-import acla_nas.data.sources"),
        ("user_backbones:torch.load", None),  # allowed module below, but no jumping into another module
        ("user_backbones:nn.Conv2d", None),
        ("user_backbones:TinyNet.__init__", "public names"),
        ("user_backbones:_private", "public names"),
        ("../user_backbones:tiny_net", "public names"),
        ("user_backbones", "public names"),
    ],
)
def test_refusals(spec: str, why: str | None) -> None:
    allowed = ["user_backbones"] if why is None or "public" in why else []
    with allow_imports(allowed), pytest.raises(UserError) as info:
        import_object(spec, kind="backbone factory", field="backbone.name", file="x.yaml")
    text = str(info.value)
    assert text.startswith("x.yaml: backbone.name: ") and "\n" not in text
    if why:
        assert why in text
    else:
        assert isinstance(info.value, ImportRefused) and ("names a module" in text or "not allowed" in text)


def test_reexport_from_the_standard_library_is_refused(tmp_path: Path, monkeypatch) -> None:
    mod = f"reexport_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text("from os import system\nfrom pathlib import Path\n")
    monkeypatch.chdir(tmp_path)
    for name in ("system", "Path"):
        with allow_imports([mod]), pytest.raises(ImportRefused, match="standard library"):
            import_object(f"{mod}:{name}", kind="backbone factory", field="backbone.name")


def test_stdlib_cannot_be_allowed(monkeypatch) -> None:
    monkeypatch.setenv(ENV_VAR, "os,subprocess")
    with pytest.raises(ImportRefused, match="not even with --allow-import"):
        import_object("os:system", kind="backbone factory", field="backbone.name")


def test_registered_factories_need_no_permission(capsys) -> None:
    """The shipped user-backbone example names a registered factory by import path: it loads as is."""
    assert main(["spaces", str(ROOT / "search_spaces" / "user_backbone_example.yaml")]) == 0
    assert import_object(
        "acla_nas.nn.backbones.edsr:edsr", kind="f", field="f", trusted=registry.trusted_factories()
    ) is registry.BACKBONES.get("edsr")


def test_allowed_user_backbone_works_with_the_flag_and_the_variable(tmp_path: Path, monkeypatch, capsys) -> None:
    space = write_yaml(
        tmp_path / "s.yaml",
        {
            **TINY,
            "backbone": {"name": "user_backbones:tiny_net", "kwargs": {"channels": 4}, "sites": "stem, layers.*"},
            "task": {"name": "denoise"},
        },
    )
    assert main(["spaces", space]) == 2
    assert "--allow-import user_backbones" in capsys.readouterr().err
    assert main(["spaces", "--allow-import", "user_backbones", space]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    monkeypatch.setenv(ENV_VAR, "numpy, user_backbones")
    assert main(["spaces", space]) == 0


def test_module_next_to_the_space_file_is_importable_once_allowed(tmp_path: Path, monkeypatch, capsys) -> None:
    mod = f"mynet_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{mod}.py").write_text(
        "from torch import nn\n\n"
        "def make(channels=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Conv2d(channels, channels, 3, padding=1),\n"
        "                         nn.Conv2d(channels, 3, 3, padding=1))\n"
    )
    space = write_yaml(
        folder / "space.yaml",
        {**TINY, "backbone": {"name": f"{mod}:make", "sites": "0, 1"}, "task": {"name": "denoise"}},
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path_before = list(sys.path)
    assert main(["spaces", "--allow-import", mod, space]) == 0, capsys.readouterr().err
    assert sys.path == path_before  # the folders were on the path for the import only
    typo = write_yaml(
        folder / "typo.yaml", {**TINY, "backbone": {"name": f"{mod}x:make", "sites": "0"}, "task": {"name": "denoise"}}
    )
    assert main(["spaces", "--allow-import", f"{mod}x", typo]) == 2
    err = capsys.readouterr().err
    assert f"cannot import module '{mod}x'" in err and str(elsewhere) in err and str(folder) in err and "install" in err


def test_bad_allow_list_is_one_line(monkeypatch, capsys) -> None:
    assert main(["spaces", "--allow-import", "a;b", str(ROOT / "search_spaces" / "edsr_x2_demo.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        "acla-nas spaces: error: --allow-import: expected comma-separated module "
        "names like mynet,my_project.models, got 'a;b'"
    )


def test_installed_plug_ins_load_by_name(monkeypatch) -> None:
    """Entry points (acla_nas.nn.backbones / acla_nas.search.strategies) are installed, hence trusted."""
    eps = [
        EntryPoint("plugnet", "acla_nas.nn.backbones.unet:unet", "acla_nas.backbones"),
        EntryPoint("plugrandom", "acla_nas.search.strategies.random_search:RandomStrategy", "acla_nas.strategies"),
    ]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [e for e in eps if e.group == group])
    monkeypatch.setattr(registry.BACKBONES, "_items", dict(registry.BACKBONES.items()))
    assert "plugnet" in registry.list_backbones()
    assert len(create_backbone("plugnet", 1, {"n_feats": 4}).acla_sites) == 7
    assert strategy_class("plugrandom") is RandomStrategy


def test_space_refusal_is_not_retried_on_cpu(monkeypatch) -> None:
    """A refused user backbone is not built a second time outside the meta device."""
    calls = []
    real = registry.resolve_factory
    monkeypatch.setattr(registry, "resolve_factory", lambda *a, **k: calls.append(a) or real(*a, **k))
    with pytest.raises(ImportRefused):
        SearchSpace.from_dict({**TINY, "backbone": {"name": "user_backbones:tiny_net", "sites": "stem"}}, file="s.yaml")
    assert len(calls) == 1
