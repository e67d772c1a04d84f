"""Parse and validate a search-space YAML mapping into a normalised :class:`SpaceSpec`.

Only the structure is checked here (keys, types, value ranges); checks that need the backbone's
sites (site names, scopes, constraint satisfiability) happen in :mod:`acla_nas.space.space`.
Every error is a one-line :class:`~acla_nas.core.errors.UserError` naming the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from acla_nas.core.checks import real_number, shown
from acla_nas.core.errors import UserError
from acla_nas.data.sources import DATA_SOURCES  # the keys each data kind accepts; paths are checked on use
from acla_nas.nn.acla import check_acla_options
from acla_nas.nn.arch import MAX_KEYS, parse_keys
from acla_nas.nn.scope import Scope, parse_scope
from acla_nas.tasks import make_task

TOP_KEYS = ("backbone", "task", "data", "acla", "eval", "sites", "keys", "scopes", "overrides", "constraints", "k_max")
BACKBONE_KEYS = ("name", "kwargs", "sites", "weights", "weights_sha256")
CONSTRAINT_KEYS = ("max_modules", "max_flops", "max_params")
OVERRIDE_KEYS = ("keys", "scopes")
DEFAULT_INPUT_SIZE = (64, 64)
MAX_INPUT_SIDE = 16384  # the costs are counted for this input; beyond it the counts mean nothing
ABSOLUTE_MIN = 1000  # a bare number below this is a factor of the plain cost, at or above it a count
SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
LIMIT_HELP = "expected '+10%', a factor like 1.1 (or '1.1x'), or an absolute count like 2.5G or 3000000"


@dataclass(frozen=True)
class Limit:
    """A cost bound: a factor of the plain backbone's cost, or an absolute count."""

    factor: Fraction | None
    absolute: int | None
    text: Any  # as written, for to_dict and messages

    def bound(self, plain: int) -> Fraction:
        """The largest allowed cost, exact (a Fraction), given the plain backbone's cost."""
        return Fraction(self.absolute) if self.factor is None else self.factor * plain

    def describe(self, plain: int | None = None) -> str:
        if self.factor is None:
            return f"{self.absolute:,}"
        rel = f"{float(self.factor - 1) * 100:+g}% of plain"
        return rel if plain is None else f"{rel} = {int(self.bound(plain)):,}"


@dataclass
class SpaceSpec:
    """The validated contents of a search-space file (before resolving against the backbone)."""

    file: str | None
    backbone: str
    kwargs: dict
    backbone_sites: str | list[str] | None
    task: dict
    data: dict
    acla: dict
    input_size: tuple[int, int]
    sites: str | list[str]
    keys: tuple[int, ...]
    scopes: tuple[Scope, ...]
    overrides: dict[str, dict[str, tuple]] = field(default_factory=dict)
    max_modules: int | None = None
    max_flops: Limit | None = None
    max_params: Limit | None = None
    k_max: int | None = None
    weights: str | None = None  # pretrained backbone (absolute path) and its sha256
    weights_sha256: str | None = None


def _err(msg: str, file: str | None, fld: str) -> UserError:
    return UserError(msg, file=file, field=fld)


def _mapping(value: Any, file: str | None, fld: str, allowed: tuple[str, ...]) -> dict:
    """A mapping whose keys are all in ``allowed`` (an unknown key names itself as the field)."""
    if not isinstance(value, dict):
        raise _err(f"expected a mapping, got {type(value).__name__}", file, fld)
    for key in value:
        if key not in allowed:
            raise _err(
                f"unknown key {key!r} (expected {', '.join(allowed)})", file, f"{fld}.{key}" if fld else str(key)
            )
    return value


def _nonempty_list(value: Any, file: str | None, fld: str, example: str) -> list:
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else type(value).__name__
        raise _err(f"expected a non-empty list like {example}, got {got}", file, fld)
    return value


def parse_budgets(value: Any, file: str | None, fld: str, k_max: int) -> tuple[int, ...]:
    """Key budgets: distinct non-negative ints (0 = no module), returned ascending."""
    items = _nonempty_list(value, file, fld, "[0, 4, 8, 16]")
    out = [parse_keys(v, f"{fld}[{i}]", file, k_max) for i, v in enumerate(items)]
    for i, v in enumerate(out):
        if v in out[:i]:
            raise _err(f"duplicate key budget {v}", file, f"{fld}[{i}]")
    return tuple(sorted(out))


def parse_scopes(value: Any, file: str | None, fld: str) -> tuple[Scope, ...]:
    """Scope choices, as written (an int r, 'all', 'previousN', or a list of site names)."""
    items = _nonempty_list(value, file, fld, "[1, 2, all]")
    out = [parse_scope(v, f"{fld}[{i}]", file) for i, v in enumerate(items)]
    for i, v in enumerate(out):
        if v in out[:i]:
            raise _err(f"duplicate scope {items[i]!r}", file, f"{fld}[{i}]")
    return tuple(out)


def parse_limit(value: Any, file: str | None, fld: str) -> Limit:
    """'+10%' / '-5%' / '1.1x' / 1.1 (factors of the plain cost) or 2.5G / 3000000 (absolute)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _err(f"{LIMIT_HELP}, got {value!r}", file, fld)
    if isinstance(value, (int, float)):
        number = real_number(value)
        if number is None or not number > 0:
            raise _err(f"expected a positive finite limit, got {shown(value)}", file, fld)
        if value < ABSOLUTE_MIN:
            return Limit(Fraction(str(value)), None, value)
        return Limit(None, int(value), value)
    text = value.strip().replace("_", "")
    if len(text) > 40 or real_number(re.sub(r"\s*[%xXKMGT]$", "", text.lstrip("+-"))) is None:
        # bounded before any Fraction is built from it: "1e999999999" would build 10**999999999
        raise _err(f"{LIMIT_HELP}, got {shown(value)} (a number below 1e300)", file, fld)
    m = re.fullmatch(r"([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*%", text)
    if m:
        pct = Fraction(m.group(2)) * (-1 if m.group(1) == "-" else 1)
        factor = 1 + pct / 100
        if factor <= 0:
            raise _err(f"a limit of {text} leaves nothing; expected more than -100%", file, fld)
        return Limit(factor, None, value)
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*[xX]", text)
    if m and Fraction(m.group(1)) > 0:
        return Limit(Fraction(m.group(1)), None, value)
    m = re.fullmatch(r"(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*([KMGT]?)", text)
    if m and float(m.group(1)) > 0:
        count = Fraction(m.group(1)) * SUFFIXES[m.group(2)]
        if count < ABSOLUTE_MIN and not m.group(2):
            return Limit(count, None, value)
        return Limit(None, int(count), value)
    raise _err(f"{LIMIT_HELP}, got {value!r}", file, fld)


def _parse_weights(value: Any, file: str | None) -> tuple[str | None, str | None]:
    bb = value if isinstance(value, dict) else {}
    if bb.get("weights") is None:
        return None, None
    from acla_nas.nn.backbones.weights import resolve

    return resolve(bb["weights"], file, bb.get("weights_sha256"))


def _parse_backbone(value: Any, file: str | None) -> tuple[str, dict, Any]:
    if isinstance(value, str):
        value = {"name": value}
    bb = _mapping(value, file, "backbone", BACKBONE_KEYS)
    name = bb.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _err("expected a backbone name (edsr, rcan, unet) or package.module:factory", file, "backbone.name")
    kwargs = bb.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise _err(f"expected a mapping of factory arguments, got {type(kwargs).__name__}", file, "backbone.kwargs")
    sites = bb.get("sites")
    if sites is not None and not (
        isinstance(sites, str) or (isinstance(sites, list) and sites and all(isinstance(s, str) for s in sites))
    ):
        raise _err("expected a site pattern like 'body.*' or a list of patterns", file, "backbone.sites")
    return name.strip(), dict(kwargs), sites


def _parse_data(value: Any, file: str | None) -> dict:
    if value is None:
        return {"kind": "embedded"}
    if not isinstance(value, dict):
        raise _err(f"expected a mapping like {{kind: embedded}}, got {type(value).__name__}", file, "data")
    kind = value.get("kind", "embedded")
    if not isinstance(kind, str) or kind not in DATA_SOURCES.names():
        raise _err(f"unknown data kind {kind!r} (expected one of {', '.join(DATA_SOURCES.names())})", file, "data.kind")
    source = DATA_SOURCES.get(kind)
    allowed = ("kind", *source.required, *sorted(source.keys - {"kind", *source.required}))
    _mapping(value, file, "data", allowed)
    for key in source.required:
        if not isinstance(value.get(key), str) or not value[key].strip():
            raise _err(f"expected a directory path for data of kind {kind}", file, f"data.{key}")
    if source.check is not None:  # e.g. generator parameters are checkable now, unlike folder paths
        try:
            source.check(value)
        except UserError as exc:
            raise exc.at(file=file) from None
    return {"kind": kind, **{k: v for k, v in value.items() if k != "kind"}}


def _parse_input_size(value: Any, file: str | None) -> tuple[int, int]:
    if value is None:
        return DEFAULT_INPUT_SIZE
    ev = _mapping(value, file, "eval", ("input_size",))
    size = ev.get("input_size", list(DEFAULT_INPUT_SIZE))
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    ok = (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= MAX_INPUT_SIDE for v in size)
    )
    if not ok:
        raise _err(f"expected [H, W] with integers in 4..{MAX_INPUT_SIDE}, got {size!r}", file, "eval.input_size")
    return (size[0], size[1])


def _parse_sites(value: Any, file: str | None) -> str | list[str]:
    if value is None:
        return "all"
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list) and value:
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v.strip():
                raise _err(f"expected a site name or pattern, got {v!r}", file, f"sites[{i}]")
            if v in value[:i]:
                raise _err(f"duplicate site {v!r}", file, f"sites[{i}]")
        return [v.strip() for v in value]
    raise _err(
        f"expected 'all', a site pattern like 'body.*', or a non-empty list of site names, got {value!r}", file, "sites"
    )


def _parse_overrides(value: Any, file: str | None, k_max: int) -> dict[str, dict[str, tuple]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(
            f"expected a mapping of site (or pattern) to {{keys, scopes}}, got {type(value).__name__}",
            file,
            "overrides",
        )
    out: dict[str, dict[str, tuple]] = {}
    for site, spec in value.items():
        fld = f"overrides.{site}"
        spec = _mapping(spec, file, fld, OVERRIDE_KEYS)
        if not spec:
            raise _err("expected keys and/or scopes", file, fld)
        entry: dict[str, tuple] = {}
        if "keys" in spec:
            entry["keys"] = parse_budgets(spec["keys"], file, f"{fld}.keys", k_max)
        if "scopes" in spec:
            entry["scopes"] = parse_scopes(spec["scopes"], file, f"{fld}.scopes")
        out[str(site)] = entry
    return out


def _parse_constraints(value: Any, file: str | None) -> tuple[int | None, Limit | None, Limit | None]:
    if value is None:
        return None, None, None
    c = _mapping(value, file, "constraints", CONSTRAINT_KEYS)
    mm = c.get("max_modules")
    if mm is not None and (isinstance(mm, bool) or not isinstance(mm, int) or mm < 0):
        raise _err(f"expected an integer >= 0, got {mm!r}", file, "constraints.max_modules")
    flops = parse_limit(c["max_flops"], file, "constraints.max_flops") if c.get("max_flops") is not None else None
    params = parse_limit(c["max_params"], file, "constraints.max_params") if c.get("max_params") is not None else None
    return mm, flops, params


def _parse_k_max(value: Any, file: str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_KEYS:
        raise _err(f"expected an integer in 1..{MAX_KEYS}, got {value!r}", file, "k_max")
    return value


def parse_spec(data: Any, file: str | None = None) -> SpaceSpec:
    """Validate the structure of a search-space mapping (see ``search_spaces/*.yaml``)."""
    if not isinstance(data, dict):
        raise _err(f"expected a mapping at the top level, got {type(data).__name__}", file, "space")
    _mapping(data, file, "", TOP_KEYS)
    for required in ("backbone", "task", "keys"):
        if data.get(required) is None:
            raise _err("missing (required: backbone, task, keys)", file, required)
    backbone, kwargs, bb_sites = _parse_backbone(data["backbone"], file)
    weights, digest = _parse_weights(data["backbone"], file)
    try:
        make_task(data["task"])
    except UserError as exc:
        raise exc.at(file=file) from None
    acla = data.get("acla") or {}
    if not isinstance(acla, dict):
        raise _err(f"expected a mapping of ACLA options, got {type(acla).__name__}", file, "acla")
    check_acla_options(acla, file=file)
    k_max = _parse_k_max(data.get("k_max"), file)
    bound = k_max if k_max is not None else MAX_KEYS
    max_modules, max_flops, max_params = _parse_constraints(data.get("constraints"), file)
    return SpaceSpec(
        file=file,
        backbone=backbone,
        kwargs=kwargs,
        backbone_sites=bb_sites,
        task=dict(data["task"]),
        data=_parse_data(data.get("data"), file),
        acla=dict(acla),
        input_size=_parse_input_size(data.get("eval"), file),
        sites=_parse_sites(data.get("sites"), file),
        keys=parse_budgets(data["keys"], file, "keys", bound),
        scopes=parse_scopes(data.get("scopes", ["all"]), file, "scopes"),
        overrides=_parse_overrides(data.get("overrides"), file, bound),
        max_modules=max_modules,
        max_flops=max_flops,
        max_params=max_params,
        k_max=k_max,
        weights=weights,
        weights_sha256=digest,
    )


def scope_to_yaml(scope: Scope) -> Any:
    return list(scope) if isinstance(scope, tuple) else scope


def spec_to_dict(spec: SpaceSpec) -> dict:
    """The normalised mapping; ``parse_spec(spec_to_dict(s))`` gives an equal spec."""
    bb: dict[str, Any] = {"name": spec.backbone}
    if spec.kwargs:
        bb["kwargs"] = dict(spec.kwargs)
    if spec.backbone_sites is not None:
        bb["sites"] = spec.backbone_sites
    if spec.weights is not None:
        bb["weights"] = spec.weights
        bb["weights_sha256"] = spec.weights_sha256
    out: dict[str, Any] = {"backbone": bb, "task": dict(spec.task), "data": dict(spec.data)}
    if spec.acla:
        out["acla"] = dict(spec.acla)
    out["eval"] = {"input_size": list(spec.input_size)}
    out["sites"] = spec.sites if isinstance(spec.sites, str) else list(spec.sites)
    if spec.k_max is not None:
        out["k_max"] = spec.k_max
    out["keys"] = list(spec.keys)
    out["scopes"] = [scope_to_yaml(s) for s in spec.scopes]
    if spec.overrides:
        out["overrides"] = {
            site: {k: (list(v) if k == "keys" else [scope_to_yaml(s) for s in v]) for k, v in entry.items()}
            for site, entry in spec.overrides.items()
        }
    cons: dict[str, Any] = {}
    if spec.max_modules is not None:
        cons["max_modules"] = spec.max_modules
    for name in ("max_flops", "max_params"):
        limit = getattr(spec, name)
        if limit is not None:
            cons[name] = limit.text
    if cons:
        out["constraints"] = cons
    return out
