"""Resolving a space's file against its backbone: which sites are candidates, and the budgets
and scopes each one offers.

A scope is kept at a site only where it fits there (an int scope larger than the number of
earlier sites, or a list naming a later site, is dropped at that site, and must fit at one or
more of the sites it applies to), and scopes reaching the same reference sites are merged (the
first one written is kept), so every child network has exactly one encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acla_nas.core.errors import UserError
from acla_nas.core.trust import ImportRefused
from acla_nas.nn.arch import task_scale
from acla_nas.nn.backbones import Site, create_backbone
from acla_nas.nn.backbones.user import site_pattern_regex
from acla_nas.nn.scope import Scope, scope_refs
from acla_nas.runs.trajectory import scope_text
from acla_nas.space.schema import SpaceSpec


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


class SiteResolution:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: builds ``sites`` from ``spec``."""

    spec: SpaceSpec
    file: str | None
    order: list[str]
    backbone_sites: list[Site]

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
        """Reference sites of ``scope`` at ``site``; None where it does not fit there."""
        res = scope_refs(self.order, site, scope)
        if res.unknown:
            raise self._err(
                f"unknown site {res.unknown[0]!r} in a scope (the backbone's sites: {', '.join(self.order)})", fld
            )
        return res.refs if res.fits else None

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
            kept, refs = ["all"], [scope_refs(self.order, site.name, "all").refs]
        return SiteSpace(site, budgets, tuple(kept), tuple(refs))
