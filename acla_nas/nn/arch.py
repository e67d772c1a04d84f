"""``Arch``: one point of a search space, i.e. the spec of a child network.

Strategies propose it, evaluators score it, ``export`` writes it and ``train`` reads it. It is a
small dataclass with a YAML/JSON round trip; structural checks happen here, checks against the
backbone's sites happen in :func:`resolve_modules` (called by the network builder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acla_nas.core.errors import UserError
from acla_nas.core.yaml_io import read_yaml
from acla_nas.nn.acla import check_acla_options
from acla_nas.nn.scope import Scope, parse_scope, resolve_refs  # re-exported: their old home

MAX_KEYS = 256  # a sanity bound; search spaces set their own K_max
ARCH_KEYS = ("backbone", "task", "modules", "acla")
EXTRA_SECTIONS = ("data", "train", "provenance")


@dataclass(frozen=True)
class ModuleChoice:
    """Key budget (0 = no module) and reference scope of one site."""

    keys: int
    scope: Scope = "all"

    def to_dict(self) -> dict:
        scope = list(self.scope) if isinstance(self.scope, tuple) else self.scope
        return {"keys": self.keys, "scope": scope}


def parse_keys(value: Any, field_name: str, file: str | None = None, k_max: int = MAX_KEYS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"expected a non-negative integer key budget, got {value!r}", file=file, field=field_name)
    if value < 0 or value > k_max:
        raise UserError(f"key budget {value} outside 0..{k_max}", file=file, field=field_name)
    return value


def task_scale(task: dict, file: str | None = None) -> int:
    """The upscaling factor a task needs from the network (1 for same-size tasks)."""
    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise UserError("expected a mapping with a name (sr, denoise, demosaic, jpeg)", file=file, field="task")
    if task["name"] != "sr":
        return 1
    scale = task.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in (2, 3, 4):
        raise UserError(f"expected one of 2, 3, 4, got {scale!r}", file=file, field="task.scale")
    return scale


@dataclass
class Arch:
    """Backbone (+ kwargs, + site pattern for user backbones), task, ACLA modules per site."""

    backbone: str
    task: dict
    modules: dict[str, ModuleChoice] = field(default_factory=dict)
    backbone_kwargs: dict = field(default_factory=dict)
    sites: str | list[str] | None = None
    acla: dict = field(default_factory=dict)
    weights: str | None = None  # pretrained backbone (absolute path), see nn/backbones/weights.py
    weights_sha256: str | None = None

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        bb: dict[str, Any] = {"name": self.backbone}
        if self.backbone_kwargs:
            bb["kwargs"] = dict(self.backbone_kwargs)
        if self.sites is not None:
            bb["sites"] = self.sites
        if self.weights is not None:
            bb["weights"] = self.weights
            bb["weights_sha256"] = self.weights_sha256
        out: dict[str, Any] = {"backbone": bb, "task": dict(self.task)}
        out["modules"] = {s: c.to_dict() for s, c in self.modules.items() if c.keys > 0}
        if self.acla:
            out["acla"] = dict(self.acla)
        return out

    @classmethod
    def from_dict(cls, data: Any, file: str | None = None) -> Arch:
        if not isinstance(data, dict):
            raise UserError(f"expected a mapping at the top level, got {type(data).__name__}", file=file, field="arch")
        unknown = [k for k in data if k not in ARCH_KEYS]
        if unknown:
            raise UserError(f"unknown key (expected {', '.join(ARCH_KEYS)})", file=file, field=str(unknown[0]))
        bb = data.get("backbone")
        if isinstance(bb, str):
            bb = {"name": bb}
        if not isinstance(bb, dict) or not isinstance(bb.get("name"), str):
            raise UserError("expected a mapping with a name", file=file, field="backbone")
        for key in bb:
            if key not in ("name", "kwargs", "sites", "weights", "weights_sha256"):
                raise UserError(
                    "unknown key (expected name, kwargs, sites, weights)", file=file, field=f"backbone.{key}"
                )
        weights = digest = None
        if bb.get("weights") is not None:
            from acla_nas.nn.backbones.weights import resolve

            weights, digest = resolve(bb["weights"], file, bb.get("weights_sha256"))
        kwargs = bb.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise UserError("expected a mapping", file=file, field="backbone.kwargs")
        if "task" not in data:
            raise UserError("missing (expected e.g. {name: sr, scale: 2})", file=file, field="task")
        task = data["task"]
        task_scale(task, file)
        mods_raw = data.get("modules") or {}
        if not isinstance(mods_raw, dict):
            raise UserError("expected a mapping of site name to {keys, scope}", file=file, field="modules")
        modules: dict[str, ModuleChoice] = {}
        for site, spec in mods_raw.items():
            f = f"modules.{site}"
            if isinstance(spec, int) and not isinstance(spec, bool):
                spec = {"keys": spec}
            if not isinstance(spec, dict):
                raise UserError("expected {keys: K, scope: S}", file=file, field=f)
            for key in spec:
                if key not in ("keys", "scope"):
                    raise UserError("unknown key (expected keys, scope)", file=file, field=f"{f}.{key}")
            if "keys" not in spec:
                raise UserError("missing key budget", file=file, field=f"{f}.keys")
            keys = parse_keys(spec["keys"], f"{f}.keys", file)
            scope = parse_scope(spec.get("scope", "all"), f"{f}.scope", file)
            if keys > 0:
                modules[str(site)] = ModuleChoice(keys, scope)
        acla = data.get("acla") or {}
        if not isinstance(acla, dict):
            raise UserError("expected a mapping", file=file, field="acla")
        check_acla_options(acla, file=file)
        return cls(bb["name"], dict(task), modules, dict(kwargs), bb.get("sites"), dict(acla), weights, digest)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            write_text_atomic(Path(path), text)
        return text

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Arch:
        return load_arch_file(path)[0]

    def key(self) -> str:
        """A canonical string for caching results by architecture."""
        return self.to_json()

    def n_modules(self) -> int:
        return sum(1 for c in self.modules.values() if c.keys > 0)

    def with_modules(self, modules: dict[str, ModuleChoice]) -> Arch:
        return Arch(
            self.backbone,
            dict(self.task),
            {s: c for s, c in modules.items() if c.keys > 0},
            dict(self.backbone_kwargs),
            self.sites,
            dict(self.acla),
            self.weights,
            self.weights_sha256,
        )


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename (:mod:`acla_nas.core.atomic`), so a crash never leaves half a file."""
    from acla_nas.core.atomic import write_text_atomic as write

    write(path, text)


def load_arch_file(path: str | Path, overrides: Sequence[Any] = ()) -> tuple[Arch, dict]:
    """Read an arch YAML: the Arch plus its optional extra sections (data, train, provenance),
    with ``--set`` overrides (:mod:`acla_nas.core.overrides`) applied before it is checked."""
    from acla_nas.core.overrides import apply_overrides

    data = apply_overrides(read_yaml(path), overrides, str(path))
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping at the top level, got {type(data).__name__}", file=str(path))
    space_keys = [k for k in ("sites", "keys", "scopes", "constraints") if k in data]
    if space_keys and "modules" not in data:
        raise UserError(
            f"this is a search space (it has {', '.join(space_keys)}); expected an arch file with "
            "backbone, task and modules, such as RUN_DIR/best_arch.yaml or one written by `acla-nas export`",
            file=str(path),
        )
    extra = {k: data.pop(k) for k in EXTRA_SECTIONS if k in data}
    for key, value in extra.items():
        if not isinstance(value, dict):
            raise UserError("expected a mapping", file=str(path), field=key)
    try:
        return Arch.from_dict(data, file=str(path)), extra
    except UserError as exc:
        raise exc.at(file=str(path)) from None


def resolve_modules(arch: Arch, order: list[str], file: str | None = None) -> dict[str, list[str]]:
    """Check the arch's modules against a backbone's ordered sites; return site -> refs."""
    out: dict[str, list[str]] = {}
    for site, choice in arch.modules.items():
        if choice.keys == 0:
            continue
        if site not in order:
            raise UserError(
                f"unknown site (the backbone's sites: {', '.join(order)})", file=file, field=f"modules.{site}"
            )
        if order.index(site) == 0:
            raise UserError(
                f"{site} is the earliest site and has no earlier layer to attend to", file=file, field=f"modules.{site}"
            )
        out[site] = resolve_refs(order, site, choice.scope, file)
    return out
