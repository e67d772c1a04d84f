"""Search spaces: YAML definitions of sites x key budgets x reference scopes, plus constraints.

``SearchSpace.from_yaml(path)`` is the front door; :mod:`.schema` validates the file's structure,
:mod:`.space` resolves it against the backbone's sites, :mod:`.counting` counts and samples
exactly, :mod:`.costs` is the additive cost model.

May import: ``core`` ... ``train``.
"""

from __future__ import annotations

from acla_nas.space.schema import Limit, SpaceSpec, parse_spec
from acla_nas.space.space import SearchSpace, SiteSpace, approx, scope_label

__all__ = ["Limit", "SearchSpace", "SiteSpace", "SpaceSpec", "approx", "parse_spec", "scope_label"]
