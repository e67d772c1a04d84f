"""The package's floor plan: sub-packages form one order, and no module imports in a circle.

Every import of the package is read with ``ast`` -- function-level imports included, since an
import hidden in a function is still a dependency -- and checked against :data:`ORDER`: a module
may import from its own package or from the packages before it, never from one after it. A
cycle between modules is refused even inside one package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import acla_nas

PACKAGE = Path(acla_nas.__file__).resolve().parent

#: the packages from the bottom up: each may import only from itself and those before it.
#: ``pipeline`` chains the verbs; ``api`` is the Python API (re-exported by the root); ``cli`` and ``__main__`` are the command line; ``""`` is the
#: package root (``acla_nas/__init__.py``, the Python API's front door).
ORDER = (
    "core",
    "runtime",
    "tasks",
    "data",
    "nn",
    "runs",
    "train",
    "space",
    "search",
    "export",
    "plots",
    "pipeline",
    "api",
    "cli",
    "__main__",
    "",
)
MAX_ROOT_MODULES = 8  # plus pipeline


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # import a.b.c where only a.b is a module file
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    layer = _layer(module)
    assert layer in ORDER, f"{module}: the package {layer!r} is not in the floor plan (add it to ORDER)"
    return ORDER.index(layer)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_follow_the_package_order():
    against = [
        f"{src} imports {dst} ({_layer(dst) or 'the package root'} comes after {_layer(src) or 'the root'})"
        for src, dsts in sorted(_graph().items())
        for dst in sorted(dsts)
        if _rank(dst) > _rank(src)
    ]
    assert against == []


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{init.parent.name}/__init__.py: the docstring should say what it may import"


def test_few_modules_at_the_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("pipeline.py",))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_the_checker_sees_function_level_imports_and_cycles(tmp_path):
    """The scan itself: an import inside a function counts, and a two-module circle is found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from acla_nas.nn import network\n")
    assert "acla_nas.nn.network" in _imports("acla_nas.core.fake", a, _modules())
    assert _cycles({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y"]]


@pytest.mark.parametrize("layer", [x for x in ORDER if x and x != "__main__"])
def test_every_layer_exists(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").is_file(), layer


@pytest.mark.parametrize(
    "old",
    [
        "acla_nas.backbones.edsr:edsr",
        "acla_nas.backbones.unet:unet",
        "acla_nas.strategies.random_search:RandomStrategy",
        "acla_nas.strategies.tpe:TPEStrategy",
    ],
)
def test_import_paths_written_before_the_move_still_resolve(old):
    """Files name registered components by ``module:attr``; the paths from before the package
    was cut into sub-packages resolve to the same objects (core/aliases.py)."""
    from acla_nas.core.aliases import modern_path
    from acla_nas.core.trust import import_object
    from acla_nas.nn.backbones import BACKBONES
    from acla_nas.search.strategies.base import STRATEGIES

    new = modern_path(old)
    assert new != old and new.startswith("acla_nas.")
    registry = BACKBONES if ".backbones." in old else STRATEGIES
    obj = registry.get(old)
    assert obj is import_object(new, kind="x", field="f", trusted=registry.trusted())


def test_every_moved_module_exists():
    import importlib

    from acla_nas.core.aliases import MOVED

    for new in MOVED.values():
        importlib.import_module(new)
