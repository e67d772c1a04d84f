"""Pareto dominance with the score maximised and the cost minimised: the one definition that
evolution's tournament, ``export --pareto`` and the Pareto figure share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(score, cost) ``a`` is at least as good as ``b`` in both and strictly better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def dominated_count(point: tuple[float, float], others: Iterable[tuple[float, float]]) -> int:
    """How many of ``others`` dominate ``point``."""
    return sum(1 for o in others if dominates(o, point))


def pareto_mask(score: Sequence[float], cost: Sequence[float]) -> np.ndarray:
    """Non-dominated points. Exact duplicates both stay on the front; non-finite points never are."""
    s = np.asarray(score, dtype=float)
    c = np.asarray(cost, dtype=float)
    finite = np.isfinite(s) & np.isfinite(c)
    on = np.zeros(len(s), dtype=bool)
    idx = np.flatnonzero(finite)
    for i in idx:
        ge = (s[idx] >= s[i]) & (c[idx] <= c[i])
        strict = (s[idx] > s[i]) | (c[idx] < c[i])
        on[i] = not np.any(ge & strict)
    return on


__all__ = ["dominated_count", "dominates", "pareto_mask"]
