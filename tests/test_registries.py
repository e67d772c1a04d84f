"""Conformance tests parametrized over every registry: backbones, tasks, data sources, strategies,
evaluators and figures. A plug-in registered here (or anywhere before collection) is held to the
same contract as the built-ins, because the parameters are the registries' names."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.data.sources import DATA_SOURCES, DataSource, data_kind, make_source, register_source, synthetic_source
from acla_nas.nn.backbones import BACKBONES, Site, create_backbone, register_backbone
from acla_nas.plots.figures import FIGURES, FigureSpec, render
from acla_nas.search.config import parse_strategy, preset_keys
from acla_nas.search.evaluators import EVALUATORS, Evaluator
from acla_nas.search.strategies import STRATEGIES, Strategy, Training, register_strategy
from acla_nas.search.strategies.random_search import RandomStrategy
from acla_nas.tasks import TASKS, Task, make_task


# ------------------------------------------------------------------------- plug-ins of this test
class _TinyNet(nn.Module):
    def __init__(self, scale: int = 1, n_feats: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.stem = nn.Conv2d(3, n_feats, 3, padding=1)
        self.down = nn.Conv2d(n_feats, 2 * n_feats, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2 * n_feats, 3, 2 * scale, stride=2 * scale)
        self.sites = [Site("stem", n_feats, 1), Site("down", 2 * n_feats, 2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(self.stem(x)))


register_backbone("conformance_tiny")(_TinyNet)


@register_source("conformance_one_each", ("seed",))
def _one_each(spec: dict, scale: int) -> DataSource:
    """A plug-in data source: one generated image per split."""
    return synthetic_source({"kind": "synthetic", "seed": spec.get("seed", 0), "n_train": 1, "n_val": 1, "n_test": 1})


@register_strategy
class _EveryOther(RandomStrategy):
    """A plug-in strategy: random search under another name (the contract, not the method, is tested)."""

    name = "conformance_random"


# ------------------------------------------------------------------------- the registry type
def test_registry_order_and_trust() -> None:
    reg: Registry[int] = Registry("thing", "acla_nas.no_such_group", "thing")
    reg.add("one", 1)
    assert reg.names() == ["one"] and reg.get("one") == 1
    with pytest.raises(UserError, match="unknown thing 'two' .expected one of one, or package.module:name"):
        reg.get("two")
    with pytest.raises(UserError, match="not a registered thing"):  # the trust gate, as for backbones
        reg.get("my_project.things:two", file="f.yaml")


# ------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name: str) -> None:
    """Built on the meta device with its defaults: declared sites are modules whose outputs have
    the declared channels and strides, and the output is the input upscaled by ``scale``."""
    with torch.device("meta"):
        model = create_backbone(name, 1)
        named = dict(model.named_modules())
        sites = model.acla_sites
        assert sites and all(isinstance(s, Site) and s.name in named for s in sites)
        feats: dict[str, torch.Tensor] = {}
        hooks = [
            named[s.name].register_forward_hook(lambda _m, _i, o, n=s.name: feats.__setitem__(n, o)) for s in sites
        ]
        y = model(torch.empty(1, 3, 24, 24))
    for h in hooks:
        h.remove()
    assert y.shape == (1, 3, 24, 24)
    for s in sites:
        assert feats[s.name].shape[1] == s.channels and feats[s.name].shape[-1] == 24 // s.stride


# ------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name: str) -> None:
    """Spec round trip, shapes, 3 channels in [0, 1]-ish, seeded degradation, a floor at HR size."""
    cls = TASKS.get(name)
    assert issubclass(cls, Task)
    task = make_task({"name": name, **cls.EXAMPLE})
    assert make_task(task.spec) == task and task.spec["name"] == name and task.describe()
    assert task.min_side >= 1 and task.scale >= 1
    with pytest.raises(UserError) as info:
        make_task({"name": name, **cls.EXAMPLE, "no_such_key": 1})
    assert info.value.field == "task.no_such_key"
    hr = task.crop_hr(torch.rand(2, 3, 24, 28, generator=torch.Generator().manual_seed(0)))
    lq = task.degrade(hr, torch.Generator().manual_seed(5))
    assert lq.shape == (2, 3, hr.shape[-2] // task.scale, hr.shape[-1] // task.scale) and torch.isfinite(lq).all()
    assert torch.equal(lq, task.degrade(hr, torch.Generator().manual_seed(5)))
    assert task.input_floor(lq, hr).shape == hr.shape


# ------------------------------------------------------------------------- data sources
@pytest.mark.parametrize("kind", DATA_SOURCES.names())
def test_data_source_contract(kind: str) -> None:
    """Each kind declares its keys (``kind`` and its required paths among them) and refuses others."""
    source = DATA_SOURCES.get(kind)
    assert "kind" in source.keys and set(source.required) <= source.keys and callable(source.build)
    assert len(inspect.signature(source.build).parameters) == 2  # (spec, scale)
    with pytest.raises(UserError) as info:
        data_kind({"kind": kind, "no_such_key": 1})
    assert info.value.field == "data.no_such_key"
    if source.required:  # folder paths: a spec without them names the first one
        with pytest.raises(UserError) as info:
            make_source({"kind": kind})
        assert info.value.field == f"data.{source.required[0]}"
    else:  # builds from its defaults, with images in every split
        built = make_source({"kind": kind})
        assert isinstance(built, DataSource) and all(len(built.split(s)) > 0 for s in ("train", "val", "test"))


def test_each_builtin_data_source_is_its_own_module() -> None:
    """A new built-in kind is one module of ``acla_nas.data.sources``, found without being listed."""
    for kind in ("embedded", "folder", "paired", "synthetic"):
        assert DATA_SOURCES.get(kind).build.__module__ == f"acla_nas.data.sources.{kind}"
    assert DATA_SOURCES.package == "acla_nas.data.sources" and DATA_SOURCES.group == "acla_nas.data_sources"


# ------------------------------------------------------------------------- strategies
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_contract(name: str) -> None:
    """A concrete Strategy whose defaults are valid, whose unknown options are refused, and that
    applies --steps and describes its own training the same way for built-ins and plug-ins."""
    cls = STRATEGIES.get(name)
    assert issubclass(cls, Strategy) and not inspect.isabstract(cls) and cls.name == name
    assert cls.check_options({}) == {}
    with pytest.raises(UserError) as info:
        cls.check_options({"no_such_option": 1})
    assert info.value.field == "options.no_such_option"
    assert parse_strategy({"strategy": name})["strategy"] == name
    with_steps = cls.with_steps({}, 7)
    assert with_steps == ({cls.STEPS_OPTION: 7} if cls.STEPS_OPTION else {})
    training = cls.training({})
    assert training is None or (isinstance(training, Training) and training.batch >= 1 and training.patch >= 1)
    assert cls.multi_trial or training is not None  # a strategy without an evaluator trains by itself


def _imports(module: str) -> set[str]:
    """Modules a source file imports (relative imports resolved), at any depth of the file."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_no_import_cycles_between_bases_and_their_implementations() -> None:
    """strategies/base.py finds the built-ins through the registry; backbones/user.py gets its
    factory from the registry instead of importing it."""
    assert not {
        m
        for m in _imports("acla_nas.search.strategies.base")
        if m.startswith("acla_nas.search.strategies.") and not m.startswith("acla_nas.search.strategies.options")
    }
    assert not {m for m in _imports("acla_nas.nn.backbones.user") if "registry" in m}
    assert {"random", "tpe", "evolution", "darts", "conformance_random"} <= set(STRATEGIES.names())


# ------------------------------------------------------------------------- evaluators
@pytest.mark.parametrize("name", EVALUATORS.names())
def test_evaluator_contract(name: str) -> None:
    cls = EVALUATORS.get(name)
    assert issubclass(cls, Evaluator) and cls.name == name
    example = dict(cls.EXAMPLE or {})  # the least a preset must say (nothing for a training recipe)
    if cls.SECTION:
        assert cls.SECTION in preset_keys()
        cls.check_section(example)  # its defaults (plus the example) are valid
    preset = {"strategy": "random", "evaluator": name, **({cls.SECTION: example} if example else {})}
    assert parse_strategy(preset)["evaluator"] == name


# ------------------------------------------------------------------------- figures
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list:
    from test_plots import BEST, make_darts, make_trials, write_run

    root = tmp_path_factory.mktemp("runs")
    return [write_run(root / "trials", make_trials(n=24), best=BEST), write_run(root / "darts", make_darts(n_steps=12))]


@pytest.mark.parametrize("name", FIGURES.names())
def test_figure_contract(name: str, runs: list) -> None:
    """Data first (items and notes), then each item draws to a figure with axes; a figure that
    needs a model is simply absent without one."""
    spec = FIGURES.get(name)
    assert isinstance(spec, FigureSpec) and spec.caption and spec.name == name
    figs, notes = render(runs, top_k=5, names=[name], with_model=False)
    assert all(isinstance(n, str) for n in notes)
    if spec.needs_model:
        assert figs == []
        return
    assert figs or notes  # drawn, or a note says why not
    for r in figs:
        assert r.spec is spec and r.stem and r.figure.axes
        assert all(math.isfinite(v) for ax in r.figure.axes for v in ax.get_xlim())
