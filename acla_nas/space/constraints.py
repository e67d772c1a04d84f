"""The constraints of a space (``max_modules``, ``max_flops``, ``max_params``): the cost of a
child, whether it meets them, and whether any child can (checked once, when the space is built).
"""

from __future__ import annotations

from fractions import Fraction

import torch

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch
from acla_nas.nn.scope import resolve_refs
from acla_nas.space.costs import CostTable
from acla_nas.space.schema import SpaceSpec
from acla_nas.space.sites import SiteSpace


class Constraints:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: costs and constraint checks
    (``_err`` from :class:`~acla_nas.space.sites.SiteResolution`)."""

    spec: SpaceSpec
    order: list[str]
    sites: dict[str, SiteSpace]
    acla_options: dict
    _backbone: torch.nn.Module
    _costs: CostTable | None

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
