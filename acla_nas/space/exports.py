"""The space in other forms: its reference architectures (plain, paper), the weight-sharing
supernet over all its choices, and an NNI ``mutable`` dict.
"""

from __future__ import annotations

import math

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.space.sites import SiteSpace


class Exports:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: reference_archs, supernet, to_nni
    (uses ``template`` and ``choices`` of :class:`~acla_nas.space.encoding.Encoding`)."""

    file: str | None
    order: list[str]
    sites: dict[str, SiteSpace]

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
