"""Reference scopes: which earlier sites a module at a site attends to.

A scope is written as an int ``r`` (the r nearest earlier sites; ``previousN`` spells the same),
``all`` (every earlier site) or a list of earlier site names. :func:`scope_refs` is the one place
that turns a scope into reference sites; its callers differ only in what they do with a scope
that does not fit (an arch file refuses it, a search space drops it at that site, a diagram draws
what it can and notes the rest), so they all read the same :class:`ScopeRefs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from acla_nas.core.checks import ascii_digits
from acla_nas.core.errors import UserError

Scope = Union[int, str, tuple[str, ...]]


def parse_scope(value: Any, field_name: str, file: str | None = None) -> Scope:
    """An int r >= 1 (the r nearest earlier sites), 'all', or a list of earlier site names."""
    if isinstance(value, bool):
        raise UserError(
            f"expected an integer >= 1, 'all' or a list of site names, got {value!r}", file=file, field=field_name
        )
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"expected a scope >= 1, got {value}", file=file, field=field_name)
        return value
    if value == "all":
        return "all"
    if isinstance(value, str) and value.startswith("previous"):
        rest = value[len("previous") :].strip(" _-")
        if ascii_digits(rest) and len(rest) < 10 and int(rest) >= 1:
            return int(rest)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        if len(set(value)) != len(value):
            raise UserError("duplicate site names in the scope list", file=file, field=field_name)
        return tuple(value)
    raise UserError(
        f"expected an integer >= 1, 'all' or a list of site names, got {value!r}", file=file, field=field_name
    )


@dataclass(frozen=True)
class ScopeRefs:
    """A scope resolved at one site: the reference sites it reaches, and what did not fit.

    ``refs`` are earlier sites, earliest first, without repeats. ``missing`` > 0 when an int scope
    asks for more earlier sites than exist (``refs`` then holds all of them); ``unknown`` and
    ``later`` are names of a list scope that are not sites, or not earlier ones (left out of
    ``refs``)."""

    refs: tuple[str, ...]
    missing: int = 0
    unknown: tuple[str, ...] = ()
    later: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unknown or self.later)


def scope_refs(order: Sequence[str], site: str, scope: Scope) -> ScopeRefs:
    """Resolve ``scope`` at ``site`` against the ordered sites ``order`` (``site`` among them)."""
    idx = list(order).index(site)
    earlier = tuple(order[:idx])
    if isinstance(scope, int):
        return ScopeRefs(earlier[max(0, len(earlier) - scope) :], max(0, scope - len(earlier)))
    if scope == "all":
        return ScopeRefs(earlier)
    names = tuple(scope)
    unknown = tuple(r for r in names if r not in order)
    later = tuple(r for r in names if r in order and r not in earlier)
    refs = tuple(sorted(dict.fromkeys(r for r in names if r in earlier), key=earlier.index))
    return ScopeRefs(refs, 0, unknown, later)


def resolve_refs(
    order: Sequence[str], site: str, scope: Scope, file: str | None = None, field_name: str | None = None
) -> list[str]:
    """The earlier sites a module at ``site`` attends to, earliest first; a scope that does not
    fit is a :class:`UserError` naming ``field_name`` (default ``modules.<site>.scope``)."""
    f = field_name or f"modules.{site}.scope"
    res = scope_refs(order, site, scope)
    if res.missing:
        n = len(res.refs)
        raise UserError(f"scope {scope} at {site} exceeds the {n} earlier site(s)", file=file, field=f)
    for r in () if res.fits else tuple(scope):
        if r in res.unknown:
            raise UserError(f"unknown site {r!r} (known: {', '.join(order)})", file=file, field=f)
        if r in res.later:
            raise UserError(
                f"site {r!r} is not earlier than {site!r}; ACLA attends to earlier layers only", file=file, field=f
            )
    return list(res.refs)


__all__ = ["Scope", "ScopeRefs", "parse_scope", "resolve_refs", "scope_refs"]
