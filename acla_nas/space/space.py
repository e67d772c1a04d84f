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

``SearchSpace`` is assembled from one part per concern: :mod:`.sites` (file -> candidate sites),
:mod:`.constraints`, :mod:`.encoding`, :mod:`.sampling`, :mod:`.exports` (reference archs,
supernet, NNI) and :mod:`.describe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acla_nas.core.yaml_io import read_yaml
from acla_nas.nn.acla import check_acla_options
from acla_nas.nn.backbones import Site
from acla_nas.space.constraints import Constraints
from acla_nas.space.costs import CostTable
from acla_nas.space.counting import ModuleCountSampler
from acla_nas.space.describe import Reporting, approx
from acla_nas.space.encoding import Encoding
from acla_nas.space.exports import Exports
from acla_nas.space.sampling import ENUMERATE_LIMIT, SAMPLE_TRIES, Rng, Sampling
from acla_nas.space.schema import SpaceSpec, parse_spec
from acla_nas.space.sites import SiteResolution, SiteSpace, scope_label


class SearchSpace(SiteResolution, Constraints, Encoding, Sampling, Exports, Reporting):
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

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(read_yaml(path), file=str(path))

    @classmethod
    def from_dict(cls, data: Any, file: str | None = None) -> SearchSpace:
        return cls(parse_spec(data, file))


__all__ = ["ENUMERATE_LIMIT", "SAMPLE_TRIES", "Rng", "SearchSpace", "SiteSpace", "approx", "scope_label"]
