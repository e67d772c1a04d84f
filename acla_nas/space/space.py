"""``SearchSpace``: candidate sites x key budgets x reference scopes, plus constraints.

What is counted and sampled are *distinct child networks*: a site either carries no module
(budget 0, one way, whatever its scope) or a module with a non-zero budget and one of its scopes.
So a site offers ``[0 allowed] + (#non-zero budgets) x (#scopes)`` choices and the space's size is
the product over sites. Scopes are resolved per site: an int scope larger than the number of
earlier sites is dropped there, and scopes that resolve to the same reference layers are merged
(the first one written is kept), so every child has exactly one encoding.

Exactness: ``size()`` is exact (Python int) for any space; ``size(constrained=True)`` is exact
for any space when only ``max_modules`` applies (DP over sites); with FLOPs/params bounds it is
exact too, by a DP over (modules, MACs, params) states, unless the states exceed a cap (then a
UserError says so). ``sample`` is uniform over the space under ``max_modules`` (exact DP draw)
and then under the cost bounds by rejection.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from acla_nas.core.errors import UserError
from acla_nas.core.trust import ImportRefused
from acla_nas.nn.acla import check_acla_options
from acla_nas.nn.arch import Arch, ModuleChoice, Scope, read_yaml, resolve_refs, task_scale
from acla_nas.nn.backbones import Site, create_backbone
from acla_nas.nn.backbones.user import site_pattern_regex
from acla_nas.runs.trajectory import scope_text
from acla_nas.space.costs import CostTable
from acla_nas.space.counting import ModuleCountSampler, count_at_most, count_with_costs
from acla_nas.space.schema import SpaceSpec, parse_spec, scope_to_yaml, spec_to_dict

SAMPLE_TRIES = 10_000
ENUMERATE_LIMIT = 100_000
Rng = random.Random | int | None


@dataclass(frozen=True)
class SiteSpace:
    """The choices of one candidate site (scopes canonical: valid here, distinct references)."""

    site: Site
    budgets: tuple[int, ...]
    scopes: tuple[Scope, ...]
    refs: tuple[tuple[str, ...], ...]  # resolved reference sites of each scope

    @property
    def name(self) -> str:
        return self.site.name

    @property
    def nonzero(self) -> tuple[int, ...]:
        return tuple(k for k in self.budgets if k > 0)

    @property
    def on_choices(self) -> list[tuple[int, int]]:
        """(budget, scope index) of every way to carry a module here."""
        return [(k, j) for k in self.nonzero for j in range(len(self.scopes))]

    @property
    def off_ways(self) -> int:
        return 1 if 0 in self.budgets else 0

    def n_choices(self) -> int:
        return self.off_ways + len(self.nonzero) * len(self.scopes)

    def labels(self) -> list[str]:
        return [scope_label(s) for s in self.scopes]


def scope_label(scope: Scope) -> str:
    """The categorical value of a scope: the one file spelling (:func:`acla_nas.runs.trajectory.scope_text`)."""
    return scope_text(scope)


def _make_rng(rng: Any) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if rng is None or isinstance(rng, int):
        return random.Random(rng)
    if hasattr(rng, "integers"):  # numpy Generator
        return random.Random(int(rng.integers(2**63)))
    raise TypeError(f"expected random.Random, an int seed or a numpy Generator, got {type(rng).__name__}")


def approx(n: int) -> str:
    """'~1.2e+18' for a (possibly astronomically large) count."""
    if n == 0:
        return "0"
    exp = len(str(n)) - 1
    mant = n / 10**exp if exp < 300 else int(str(n)[:3]) / 100
    return f"~{mant:.1f}e+{exp:02d}"


class SearchSpace:
    """A validated search space over one backbone (see the module docstring for the semantics)."""

    def __init__(self, spec: SpaceSpec) -> None:
        self.spec = spec
        self.file = spec.file
        self.acla_options = check_acla_options(spec.acla, file=spec.file)
        self._backbone = self._create_backbone()
        self.backbone_sites: list[Site] = list(self._backbone.acla_sites)
        self.order = [s.name for s in self.backbone_sites]
        self.sites: dict[str, SiteSpace] = self._resolve_sites()
        if not any(s.nonzero for s in self.sites.values()):
            raise self._err("no candidate site has a non-zero key budget; the space has nothing to search", "keys")
        self._costs: CostTable | None = None
        self._count_sampler: ModuleCountSampler | None = None
        self._check_satisfiable()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(read_yaml(path), file=str(path))

    @classmethod
    def from_dict(cls, data: Any, file: str | None = None) -> SearchSpace:
        return cls(parse_spec(data, file))

    def _err(self, message: str, fld: str) -> UserError:
        return UserError(message, file=self.file, field=fld)

    def _create_backbone(self) -> torch.nn.Module:
        """The plain backbone on the meta device (shapes only, instant even at paper size). A user
        backbone that fails there is built on CPU, whose outcome (or error) is authoritative."""
        spec = self.spec
        scale = task_scale(spec.task, spec.file)
        user = ":" in spec.backbone
        try:
            with torch.device("meta"):
                return create_backbone(spec.backbone, scale, spec.kwargs, spec.backbone_sites, file=spec.file)
        except ImportRefused:
            raise
        except UserError as exc:
            if not user:
                raise exc.at(file=spec.file) from None
        except Exception:
            if not user:
                raise
        try:
            return create_backbone(spec.backbone, scale, spec.kwargs, spec.backbone_sites, file=spec.file)
        except UserError as exc:
            raise exc.at(file=spec.file) from None
        except Exception as exc:  # a user factory that raises something else
            raise UserError(
                f"factory {spec.backbone!r} raised {type(exc).__name__}: {exc}", file=spec.file, field="backbone.name"
            ) from exc

    def _match(self, pattern: str | list[str], fld: str, allow_head: bool) -> list[str]:
        """Backbone sites named by a name, a glob pattern or a list of them (execution order)."""
        items = [pattern] if isinstance(pattern, str) else list(pattern)
        chosen: set[str] = set()
        for i, item in enumerate(items):
            f = fld if isinstance(pattern, str) else f"{fld}[{i}]"
            hits = [n for n in self.order if site_pattern_regex([p.strip() for p in item.split(",")]).match(n)]
            if not allow_head:
                if hits == [self.order[0]] and item == self.order[0]:
                    raise self._err(f"{item!r} is the earliest site and has no earlier layer to attend to", f)
                hits = [h for h in hits if h != self.order[0]]
            if not hits:
                raise self._err(
                    f"{item!r} matches no candidate site (the backbone's sites: {', '.join(self.order)})", f
                )
            chosen.update(hits)
        return [n for n in self.order if n in chosen]

    def _resolve_sites(self) -> dict[str, SiteSpace]:
        spec = self.spec
        names = self.order[1:] if spec.sites == "all" else self._match(spec.sites, "sites", allow_head=False)
        if not names:
            raise self._err(
                f"the backbone declares only one site ({self.order[0]!r}), which has no earlier layer to attend to",
                "sites",
            )
        budgets = {n: spec.keys for n in names}
        scopes: dict[str, tuple[Scope, ...]] = {n: spec.scopes for n in names}
        scope_field = {n: "scopes" for n in names}
        for pattern, entry in spec.overrides.items():
            hits = [h for h in self._match(pattern, f"overrides.{pattern}", allow_head=True) if h in budgets]
            if not hits:
                raise self._err(
                    f"{pattern!r} matches no candidate site of this space (candidates: {', '.join(names)})",
                    f"overrides.{pattern}",
                )
            for h in hits:
                budgets[h] = entry.get("keys", budgets[h])
                if "scopes" in entry:
                    scopes[h] = entry["scopes"]
                    scope_field[h] = f"overrides.{pattern}.scopes"
        self._check_scopes_somewhere(names, scopes, scope_field)
        by_site = {s.name: s for s in self.backbone_sites}
        return {n: self._site_space(by_site[n], budgets[n], scopes[n], scope_field[n]) for n in names}

    def _resolve(self, site: str, scope: Scope, fld: str) -> tuple[str, ...] | None:
        """Reference sites of ``scope`` at ``site``; None where it is not valid there."""
        if isinstance(scope, int) and scope > self.order.index(site):
            return None
        if isinstance(scope, tuple):
            for r in scope:
                if r not in self.order:
                    raise self._err(
                        f"unknown site {r!r} in a scope (the backbone's sites: {', '.join(self.order)})", fld
                    )
            if any(self.order.index(r) >= self.order.index(site) for r in scope):
                return None
        return tuple(resolve_refs(self.order, site, scope, self.file, fld))

    def _check_scopes_somewhere(self, names: list[str], scopes: dict[str, tuple], scope_field: dict[str, str]) -> None:
        """Every scope written must be valid at one or more of the sites it applies to."""
        for fld in dict.fromkeys(scope_field.values()):
            applies = [n for n in names if scope_field[n] == fld]
            for i, scope in enumerate(scopes[applies[0]]):
                if all(self._resolve(n, scope, f"{fld}[{i}]") is None for n in applies):
                    most = max(self.order.index(n) for n in applies)
                    if isinstance(scope, int):
                        msg = f"scope {scope} is larger than the available earlier sites (at most {most} before any candidate site)"
                    else:
                        msg = f"scope {list(scope)} names a site that is not earlier than any candidate site; ACLA attends to earlier layers only"
                    raise self._err(msg, f"{fld}[{i}]")

    def _site_space(self, site: Site, budgets: tuple[int, ...], scopes: tuple[Scope, ...], fld: str) -> SiteSpace:
        kept: list[Scope] = []
        refs: list[tuple[str, ...]] = []
        for i, scope in enumerate(scopes):
            r = self._resolve(site.name, scope, f"{fld}[{i}]")
            if r is not None and r not in refs:
                kept.append(scope)
                refs.append(r)
        if not kept and any(k > 0 for k in budgets):
            raise self._err(
                f"no scope choice is valid at {site.name} ({self.order.index(site.name)} earlier site(s)); add 'all'",
                fld,
            )
        if not kept:  # budget 0 only: the scope is never used, keep one placeholder choice
            kept, refs = ["all"], [tuple(resolve_refs(self.order, site.name, "all"))]
        return SiteSpace(site, budgets, tuple(kept), tuple(refs))

    # -- constraints ----------------------------------------------------------------------------
    @property
    def max_modules(self) -> int | None:
        return self.spec.max_modules

    def costs(self) -> CostTable:
        """The cost table (plain cost + per-option module costs), built on first use."""
        if self._costs is None:
            self._costs = CostTable(self._backbone, self.order, self.spec.input_size, self.acla_options)
        return self._costs

    def limits(self) -> dict[str, Fraction]:
        """Absolute bounds on MACs / params (only those the space sets)."""
        out: dict[str, Fraction] = {}
        if self.spec.max_flops is not None:
            out["macs"] = self.spec.max_flops.bound(self.costs().plain_macs)
        if self.spec.max_params is not None:
            out["params"] = self.spec.max_params.bound(self.costs().plain_params)
        return out

    def _check_satisfiable(self) -> None:
        forced = [s for s in self.sites.values() if s.off_ways == 0]
        mm = self.spec.max_modules
        if mm is not None and len(forced) > mm:
            raise self._err(
                f"constraint max_modules {mm} cannot be satisfied: {len(forced)} candidate site(s) have no 0 budget, so carry a module",
                "constraints.max_modules",
            )
        limits = self.limits()
        for kind, fld in (("macs", "max_flops"), ("params", "max_params")):
            if kind not in limits:
                continue
            idx = 0 if kind == "macs" else 1
            plain = self.costs().plain_macs if kind == "macs" else self.costs().plain_params
            cheapest = plain + sum(min(self._option_cost(s, k, j)[idx] for k, j in s.on_choices) for s in forced)
            if cheapest > limits[kind]:
                limit = getattr(self.spec, fld)
                raise self._err(
                    f"constraint {fld} {limit.text!r} cannot be satisfied: the cheapest architecture of the space has {cheapest:,} "
                    f"{'MACs' if kind == 'macs' else 'parameters'} > limit {int(limits[kind]):,} (plain backbone: {plain:,})",
                    f"constraints.{fld}",
                )

    def _option_cost(self, s: SiteSpace, keys: int, scope_idx: int) -> tuple[int, int]:
        return self.costs().module(s.name, keys, s.refs[scope_idx])

    def cost(self, arch: Arch) -> dict[str, int]:
        """MACs (multiply-adds at ``eval.input_size``) and params of the child ``arch``."""
        t = self.costs()
        macs, params = t.plain_macs, t.plain_params
        for site, choice in arch.modules.items():
            if choice.keys == 0:
                continue
            if site not in self.order or site == self.order[0]:
                raise UserError(
                    f"not a site that can carry a module (the backbone's sites: {', '.join(self.order)})",
                    field=f"modules.{site}",
                )
            refs = tuple(resolve_refs(self.order, site, choice.scope))
            m, p = t.module(site, choice.keys, refs)
            macs, params = macs + m, params + p
        return {"macs": macs, "params": params}

    def satisfies(self, arch: Arch) -> tuple[bool, str]:
        """Whether ``arch`` meets the constraints (max_modules, max_flops, max_params), and why not."""
        mm = self.spec.max_modules
        if mm is not None and arch.n_modules() > mm:
            return False, f"max_modules: {arch.n_modules()} modules > {mm}"
        limits = self.limits()
        if not limits:
            return True, ""
        cost = self.cost(arch)
        for kind, fld, unit in (("macs", "max_flops", "MACs"), ("params", "max_params", "parameters")):
            if kind in limits and cost[kind] > limits[kind]:
                return (
                    False,
                    f"{fld}: {cost[kind]:,} {unit} > limit {int(limits[kind]):,} ({getattr(self.spec, fld).text})",
                )
        return True, ""

    # -- membership, encoding -------------------------------------------------------------------
    def template(self) -> Arch:
        """The plain backbone as an Arch (no modules): the space's backbone, task and options."""
        s = self.spec
        return Arch(
            s.backbone, dict(s.task), {}, dict(s.kwargs), s.backbone_sites, dict(s.acla), s.weights, s.weights_sha256
        )

    def _same_network(self, arch: Arch) -> str:
        t = self.template()
        for what, mine, theirs in (
            ("backbone", t.backbone, arch.backbone),
            ("backbone kwargs", t.backbone_kwargs, arch.backbone_kwargs),
            ("backbone site pattern", t.sites, arch.sites),
            ("backbone weights", t.weights_sha256, arch.weights_sha256),
            ("task", t.task, arch.task),
        ):
            if mine != theirs:
                return f"{what} {theirs!r} differs from the space's {mine!r}"
        try:
            opts = check_acla_options(arch.acla)
        except UserError as exc:
            return str(exc)
        if opts != self.acla_options:
            return f"acla options {arch.acla!r} differ from the space's {self.spec.acla!r}"
        return ""

    def _scope_index(self, s: SiteSpace, scope: Scope) -> int | None:
        try:
            refs = tuple(resolve_refs(self.order, s.name, scope))
        except UserError:
            return None
        return s.refs.index(refs) if refs in s.refs else None

    def contains(self, arch: Arch) -> tuple[bool, str]:
        """Whether ``arch`` is a point of the (unconstrained) space, and why not; see ``satisfies``."""
        reason = self._same_network(arch)
        if reason:
            return False, reason
        for site, choice in arch.modules.items():
            if choice.keys == 0:
                continue
            if site not in self.sites:
                return False, f"{site}: not a candidate site of the space ({', '.join(self.sites)})"
            s = self.sites[site]
            if choice.keys not in s.budgets:
                return False, f"{site}: key budget {choice.keys} is not among {list(s.budgets)}"
            if self._scope_index(s, choice.scope) is None:
                return (
                    False,
                    f"{site}: scope {scope_to_yaml(choice.scope)!r} is not among {[scope_to_yaml(x) for x in s.scopes]}",
                )
        for name, s in self.sites.items():
            if s.off_ways == 0 and arch.modules.get(name, ModuleChoice(0)).keys == 0:
                return False, f"{name}: budget 0 is not allowed here ({list(s.budgets)})"
        return True, ""

    def choices(self) -> dict[str, list]:
        """The flat categorical distributions (what Optuna/NNI consume): ``<site>.keys`` (ints) and
        ``<site>.scope`` (labels; ignored when the site's keys are 0)."""
        out: dict[str, list] = {}
        for name, s in self.sites.items():
            out[f"{name}.keys"] = list(s.budgets)
            out[f"{name}.scope"] = s.labels()
        return out

    def encode(self, arch: Arch) -> dict[str, int | str]:
        """Flat categorical choices of ``arch`` (every candidate site; scope = first label when off)."""
        ok, reason = self.contains(arch)
        if not ok:
            raise UserError(f"the architecture is not in the space: {reason}", file=self.file, field="modules")
        out: dict[str, int | str] = {}
        for name, s in self.sites.items():
            choice = arch.modules.get(name, ModuleChoice(0))
            j = self._scope_index(s, choice.scope) if choice.keys > 0 else 0
            out[f"{name}.keys"] = choice.keys
            out[f"{name}.scope"] = s.labels()[j or 0] if s.labels() else ""
        return out

    def decode(self, flat: dict[str, Any]) -> Arch:
        """The Arch of a flat choice dict (``<site>.scope`` may be left out where keys are 0)."""
        known = set(self.choices())
        for key in flat:
            if key not in known:
                raise UserError(
                    f"unknown choice (expected <site>.keys / <site>.scope of {', '.join(self.sites)})", field=str(key)
                )
        modules: dict[str, ModuleChoice] = {}
        for name, s in self.sites.items():
            kf, sf = f"{name}.keys", f"{name}.scope"
            if kf not in flat:
                raise UserError("missing key budget", field=kf)
            keys = flat[kf]
            if isinstance(keys, bool) or keys not in s.budgets:
                raise UserError(f"expected one of {list(s.budgets)}, got {keys!r}", field=kf)
            if keys == 0:
                continue
            labels = s.labels()
            label = flat.get(sf, labels[0] if len(labels) == 1 else None)
            if str(label) not in labels:
                raise UserError(f"expected one of {labels}, got {label!r}", field=sf)
            modules[name] = ModuleChoice(int(keys), s.scopes[labels.index(str(label))])
        return self.template().with_modules(modules)

    # -- size, sampling, enumeration ------------------------------------------------------------
    def _counts(self) -> list[tuple[int, int]]:
        return [(s.off_ways, len(s.on_choices)) for s in self.sites.values()]

    def size(self, constrained: bool = False) -> int:
        """Number of distinct children; ``constrained=True`` counts those meeting the constraints."""
        if not constrained:
            return count_at_most(self._counts(), None)
        if not self.limits():
            return count_at_most(self._counts(), self.spec.max_modules)
        limits = self.limits()
        t = self.costs()
        room_m = limits.get("macs", math.inf) - t.plain_macs
        room_p = limits.get("params", math.inf) - t.plain_params
        options = [
            [None] * s.off_ways + [self._option_cost(s, k, j) for k, j in s.on_choices] for s in self.sites.values()
        ]
        n = count_with_costs(options, self.spec.max_modules, lambda m, p: m <= room_m and p <= room_p)
        if n is None:
            raise self._err(
                "too large to count exactly under the cost bounds; use size() or size_at_most_modules()", "constraints"
            )
        return n

    def size_at_most_modules(self) -> int:
        """Children with at most ``max_modules`` modules (exact for any space, cost bounds ignored)."""
        return count_at_most(self._counts(), self.spec.max_modules)

    def _arch_of(self, picks: list[tuple[int, int] | None]) -> Arch:
        modules = {}
        for s, pick in zip(self.sites.values(), picks):
            if pick is not None:
                modules[s.name] = ModuleChoice(pick[0], s.scopes[pick[1]])
        return self.template().with_modules(modules)

    def sample(self, rng: Rng = None, tries: int = SAMPLE_TRIES) -> Arch:
        """A uniform draw among the children that meet the constraints (DP draw + rejection)."""
        r = _make_rng(rng)
        if self._count_sampler is None:
            self._count_sampler = ModuleCountSampler(self._counts(), self.spec.max_modules)
        sampler = self._count_sampler
        sites = list(self.sites.values())
        rejected: dict[str, int] = {}
        for _ in range(tries):
            draw = sampler.draw(r)
            arch = self._arch_of([None if d is None else sites[i].on_choices[d] for i, d in enumerate(draw)])
            ok, reason = self.satisfies(arch)
            if ok:
                return arch
            fld = reason.split(":")[0]
            rejected[fld] = rejected.get(fld, 0) + 1
        fld = max(rejected, key=rejected.get)
        raise self._err(
            f"constraint {fld} ({getattr(self.spec, fld).text}) cannot be satisfied: none of {tries} uniform samples met it; relax it or allow budget 0 / smaller budgets",
            f"constraints.{fld}",
        )

    def enumerate(self, constrained: bool = True, limit: int = ENUMERATE_LIMIT) -> list[Arch]:
        """Every child (meeting the constraints by default); a UserError if there are more than ``limit``."""
        n = self.size_at_most_modules() if constrained else self.size()
        if n > limit:
            raise UserError(
                f"the space has {n:,} architectures, more than the enumeration limit {limit:,}; sample it instead",
                file=self.file,
            )
        mm = self.spec.max_modules if constrained else None
        per_site = [[None] * s.off_ways + list(s.on_choices) for s in self.sites.values()]
        out = []
        for picks in itertools.product(*per_site):
            if mm is not None and sum(p is not None for p in picks) > mm:
                continue
            arch = self._arch_of(list(picks))
            if not constrained or self.satisfies(arch)[0]:
                out.append(arch)
        return out

    # -- reference architectures, networks ------------------------------------------------------
    @property
    def k_max(self) -> int:
        """The largest key budget of the space."""
        return max(max(s.budgets) for s in self.sites.values())

    def reference_archs(self) -> dict[str, Arch]:
        """``plain`` (no module) and ``paper``: a module of the largest budget after each quarter of
        the candidate sites, attending to the head and all earlier quarter outputs (the authors'
        EDSR placement)."""
        names = list(self.sites)
        n = len(names)
        idx = sorted({max(0, math.ceil(n * q / 4) - 1) for q in (1, 2, 3, 4)})
        chosen = [names[i] for i in idx]
        head = self.order[0]
        modules = {}
        for i, site in enumerate(chosen):
            refs = tuple(dict.fromkeys([head, *chosen[:i]]))
            modules[site] = ModuleChoice(self.k_max, refs)
        return {"plain": self.template(), "paper": self.template().with_modules(modules)}

    def supernet(self):
        """The weight-sharing supernet over every site's budgets and scopes."""
        from acla_nas.nn.network import SiteChoices, build_supernet

        return build_supernet(
            self.template(), {n: SiteChoices(s.budgets, s.scopes) for n, s in self.sites.items()}, file=self.file
        )

    def to_nni(self):
        """The space as an ``nni.mutable`` dict of categoricals (constraints: use ``satisfies``)."""
        try:
            from nni.mutable import Categorical, MutableDict
        except ImportError as exc:
            raise UserError("to_nni needs the nni extra: pip install 'acla-nas[nni]'") from exc
        return MutableDict({name: Categorical(values, label=name) for name, values in self.choices().items()})

    # -- reporting ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return spec_to_dict(self.spec)

    def site_table(self) -> list[tuple[str, int, int]]:
        """(name, channels, stride) of each candidate site."""
        return [(s.name, s.site.channels, s.site.stride) for s in self.sites.values()]

    def task_label(self) -> str:
        t = self.spec.task
        extra = ", ".join(f"{k} {v}" for k, v in t.items() if k != "name")
        return f"{t.get('name')}{' ' + extra if extra else ''}"

    def budgets_label(self) -> str:
        return str(sorted({k for s in self.sites.values() for k in s.budgets}))

    def scopes_label(self) -> str:
        return "[" + ", ".join(str(scope_to_yaml(s)) for s in self.spec.scopes) + "]"

    def describe(self) -> str:
        """A short text summary: backbone, task, sites and their choices, constraints, sizes."""
        s = self.spec
        lines = [
            f"search space{' ' + self.file if self.file else ''}",
            f"  backbone  {s.backbone} {s.kwargs or ''}".rstrip(),
            f"  task      {self.task_label()};  data {s.data.get('kind')};  eval input {s.input_size[0]}x{s.input_size[1]}",
            f"  sites     {len(self.sites)} candidates of {len(self.order)} (head {self.order[0]!r} has no earlier layer)",
        ]
        groups: dict[tuple, list[str]] = {}
        for name, ss in self.sites.items():
            groups.setdefault((ss.budgets, tuple(ss.labels())), []).append(name)
        for (budgets, labels), names in groups.items():
            where = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)})"
            lines.append(f"    {where}: keys {list(budgets)}, scopes {list(labels)}")
        cons = []
        if s.max_modules is not None:
            cons.append(f"max_modules {s.max_modules}")
        for fld in ("max_flops", "max_params"):
            if getattr(s, fld) is not None:
                plain = self.costs().plain_macs if fld == "max_flops" else self.costs().plain_params
                cons.append(f"{fld} {getattr(s, fld).describe(plain)}")
        lines.append(f"  constraints {'; '.join(cons) if cons else 'none'}")
        n = self.size()
        lines.append(f"  size      {n} ({approx(n)}) architectures")
        if s.max_modules is not None:
            m = self.size_at_most_modules()
            lines.append(f"            {m} ({approx(m)}) with at most {s.max_modules} modules")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SearchSpace({self.file or self.spec.backbone!r}, sites={len(self.sites)}, size={approx(self.size())})"
