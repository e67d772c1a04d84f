"""User modules next to the file that names them, or in the current directory, import once allowed:
a backbone factory, a backbone class and a strategy class (issue 17: no PYTHONPATH needed)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import yaml
from tiny_space import TINY_SPACE

from acla_nas.cli.main import main
from acla_nas.core.trust import ImportRefused, allow_imports
from acla_nas.search.strategies.base import Strategy, strategy_class

NET = (
    "from torch import nn\n\n"
    "class Net(nn.Module):\n"
    "    def __init__(self, channels=4):\n"
    "        super().__init__()\n"
    "        self.a = nn.Conv2d(3, channels, 3, padding=1)\n"
    "        self.b = nn.Conv2d(channels, channels, 3, padding=1)\n"
    "        self.c = nn.Conv2d(channels, 3, 3, padding=1)\n\n"
    "    def forward(self, x):\n"
    "        return self.c(self.b(self.a(x)))\n"
)


def test_backbone_class_in_the_current_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    pkg = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "nets.py").write_text(NET)
    elsewhere = tmp_path / "spaces"
    elsewhere.mkdir()
    space = elsewhere / "s.yaml"
    space.write_text(
        yaml.safe_dump(
            {**TINY_SPACE, "backbone": {"name": f"{pkg}.nets:Net", "sites": "a, b"}, "task": {"name": "denoise"}}
        )
    )
    monkeypatch.chdir(tmp_path)  # the package is in the current directory, the space elsewhere
    assert main(["spaces", str(space)]) == 2
    assert f"--allow-import {pkg}.nets" in capsys.readouterr().err
    assert main(["spaces", "--allow-import", pkg, str(space)]) == 0, capsys.readouterr().err
    assert pkg not in "".join(sys.path)


def test_strategy_class_next_to_its_preset(tmp_path: Path) -> None:
    mod = f"mystrat_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / f"{mod}.py").write_text(
        "from acla_nas.search.strategies.random_search import RandomStrategy\n\n"
        "class Mine(RandomStrategy):\n    name = 'mine'\n"
    )
    preset = str(folder / "s.yaml")
    with pytest.raises(ImportRefused, match=f"--allow-import {mod}"):
        strategy_class(f"{mod}:Mine", preset)
    with allow_imports([mod]):
        cls = strategy_class(f"{mod}:Mine", preset)
    assert issubclass(cls, Strategy) and cls.name == "mine"
