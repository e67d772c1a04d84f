"""Size, uniform sampling and enumeration of a space's children (the exact counting lives in
:mod:`acla_nas.space.counting`).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.space.counting import ModuleCountSampler, count_at_most, count_with_costs
from acla_nas.space.schema import SpaceSpec
from acla_nas.space.sites import SiteSpace

SAMPLE_TRIES = 10_000
ENUMERATE_LIMIT = 100_000
Rng = random.Random | int | None


def _make_rng(rng: Any) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if rng is None or isinstance(rng, int):
        return random.Random(rng)
    if hasattr(rng, "integers"):  # numpy Generator
        return random.Random(int(rng.integers(2**63)))
    raise TypeError(f"expected random.Random, an int seed or a numpy Generator, got {type(rng).__name__}")


class Sampling:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: size, sample, enumerate
    (uses ``costs``, ``limits``, ``satisfies`` of :class:`~acla_nas.space.constraints.Constraints` and
    ``template`` of :class:`~acla_nas.space.encoding.Encoding`)."""

    spec: SpaceSpec
    file: str | None
    sites: dict[str, SiteSpace]
    _count_sampler: ModuleCountSampler | None

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
