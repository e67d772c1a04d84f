"""Exact counting and uniform sampling over sites with a bound on the number of modules.

Each site offers ``off`` ways to carry no module (1 if budget 0 is allowed, else 0) and ``on``
ways to carry one (non-zero budgets x scopes). The number of architectures with exactly m
modules is the coefficient of x^m in prod_i (off_i + on_i x): a DP over sites in Python ints,
exact for any number of sites. Sampling walks the sites with suffix products, which draws
uniformly among the architectures with at most ``max_modules`` modules.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence


def _times(poly: list[int], off: int, on: int) -> list[int]:
    out = [0] * (len(poly) + 1)
    for m, c in enumerate(poly):
        out[m] += c * off
        out[m + 1] += c * on
    return out


def module_count_poly(sites: Sequence[tuple[int, int]]) -> list[int]:
    """Coefficients: entry m = number of architectures with exactly m modules."""
    poly = [1]
    for off, on in sites:
        poly = _times(poly, off, on)
    return poly


def count_at_most(sites: Sequence[tuple[int, int]], max_modules: int | None) -> int:
    poly = module_count_poly(sites)
    return sum(poly if max_modules is None else poly[: max_modules + 1])


class ModuleCountSampler:
    """Uniform draws of per-site (on/off) decisions among architectures with <= M modules."""

    def __init__(self, sites: Sequence[tuple[int, int]], max_modules: int | None) -> None:
        self.sites = list(sites)
        self.max_modules = len(self.sites) if max_modules is None else min(max_modules, len(self.sites))
        # suffix[i][m]: ways for sites i.. to carry exactly m modules
        self.suffix: list[list[int]] = [[1]]
        for off, on in reversed(self.sites):
            self.suffix.insert(0, _times(self.suffix[0], off, on))
        self.total = self._at_most(0, self.max_modules)

    def _at_most(self, i: int, r: int) -> int:
        return sum(self.suffix[i][: r + 1]) if r >= 0 else 0

    def draw(self, rng: random.Random) -> list[int | None]:
        """Per site: None (no module) or the index of one of its ``on`` choices."""
        if self.total == 0:
            raise ValueError("no architecture satisfies the module bound")
        out: list[int | None] = []
        left = self.max_modules
        for i, (off, on) in enumerate(self.sites):
            w_off = off * self._at_most(i + 1, left)
            w_on = on * self._at_most(i + 1, left - 1)
            if rng.randrange(w_off + w_on) < w_off:
                out.append(None)
            else:
                out.append(rng.randrange(on))
                left -= 1
        return out


def count_with_costs(
    options: Sequence[Sequence[tuple[int, int] | None]],
    max_modules: int | None,
    budget: Callable[[int, int], bool],
    max_states: int = 200_000,
) -> int | None:
    """Exact count of choices whose summed (macs, params) pass ``budget`` (None: too many states).

    ``options[i]`` lists site i's choices as added (macs, params), None meaning no module. Costs
    are non-negative, so a partial sum that already fails the budget is dropped (pruning).
    """
    states: dict[tuple[int, int, int], int] = {(0, 0, 0): 1}
    limit = len(options) if max_modules is None else max_modules
    for opts in options:
        new: dict[tuple[int, int, int], int] = {}
        for (m, macs, params), count in states.items():
            for opt in opts:
                if opt is None:
                    key = (m, macs, params)
                else:
                    key = (m + 1, macs + opt[0], params + opt[1])
                    if key[0] > limit or not budget(key[1], key[2]):
                        continue
                new[key] = new.get(key, 0) + count
        if len(new) > max_states:
            return None
        states = new
    return sum(states.values())
