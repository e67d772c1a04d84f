"""Membership and encoding: whether an Arch is a point of the space, and the flat categorical
choices (``<site>.keys``, ``<site>.scope``) that strategies, Optuna and NNI work with.
"""

from __future__ import annotations

from typing import Any

from acla_nas.core.errors import UserError
from acla_nas.nn.acla import check_acla_options
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.nn.scope import Scope, scope_refs
from acla_nas.space.schema import SpaceSpec, scope_to_yaml
from acla_nas.space.sites import SiteSpace


class Encoding:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: template, contains, encode, decode."""

    spec: SpaceSpec
    file: str | None
    order: list[str]
    sites: dict[str, SiteSpace]
    acla_options: dict

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
        res = scope_refs(self.order, s.name, scope)
        return s.refs.index(res.refs) if res.fits and res.refs in s.refs else None

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
