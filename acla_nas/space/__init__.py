"""Search spaces: YAML definitions of sites x key budgets x reference scopes, plus constraints.

``SearchSpace.from_yaml(path)`` is the front door; :mod:`.schema` validates the file's structure,
:mod:`.space` assembles ``SearchSpace`` from one part per concern: :mod:`.sites` resolves the
file against the backbone's sites, :mod:`.constraints` checks costs and limits, :mod:`.encoding`
maps archs to flat choices and back, :mod:`.sampling` sizes, samples and enumerates (exact
counting in :mod:`.counting`), :mod:`.exports` gives reference archs, the supernet and the NNI
form, :mod:`.describe` the text summary; :mod:`.costs` is the additive cost model.

May import: ``core`` ... ``train``.
"""

from __future__ import annotations

from acla_nas.space.schema import Limit, SpaceSpec, parse_spec
from acla_nas.space.space import SearchSpace, SiteSpace, approx, scope_label

__all__ = ["Limit", "SearchSpace", "SiteSpace", "SpaceSpec", "approx", "parse_spec", "scope_label"]
