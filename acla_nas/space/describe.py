"""Reporting a space in words: the summary ``acla-nas space`` prints and the labels the run
files and figures use.
"""

from __future__ import annotations

from acla_nas.space.schema import SpaceSpec, scope_to_yaml, spec_to_dict
from acla_nas.space.sites import SiteSpace


def approx(n: int) -> str:
    """'~1.2e+18' for a (possibly astronomically large) count."""
    if n == 0:
        return "0"
    exp = len(str(n)) - 1
    mant = n / 10**exp if exp < 300 else int(str(n)[:3]) / 100
    return f"~{mant:.1f}e+{exp:02d}"


class Reporting:
    """Part of :class:`~acla_nas.space.space.SearchSpace`: describe and labels
    (uses ``costs`` of :class:`~acla_nas.space.constraints.Constraints` and the sizes of
    :class:`~acla_nas.space.sampling.Sampling`)."""

    spec: SpaceSpec
    file: str | None
    order: list[str]
    sites: dict[str, SiteSpace]

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
