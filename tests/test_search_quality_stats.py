"""The statistics of benchmarks/search_quality.py: Kendall tau-b (against scipy), sparse ties,
and the additive site effects that say what a ranking rewards."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
search_quality = pytest.importorskip("search_quality")
stats = pytest.importorskip("scipy.stats")


def test_kendall_is_tau_b_and_sparse_ties_drop_close_pairs() -> None:
    rng = random.Random(0)
    x = [rng.gauss(0, 1) for _ in range(30)]
    y = [v + rng.gauss(0, 1) for v in x]
    y[3] = y[4]  # a tie in y
    assert search_quality.kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    # pairs closer than the tie width in y are not ranked: with a huge width nothing is
    assert search_quality.kendall(x, y, tie=1e9) != search_quality.kendall(x, y)
    assert search_quality.kendall([1, 2, 3], [1, 2, 3]) == 1.0 and search_quality.kendall([1, 2, 3], [3, 2, 1]) == -1.0


def test_site_effects_recover_planted_effects() -> None:
    effects = {(0, "2"): 0.01, (0, "8"): 0.05, (1, "2"): -0.02, (1, "8"): 0.08, (2, "2"): 0.0, (2, "8"): 0.03}
    values = {}
    for combo in itertools.product(["0", "2", "8"], repeat=3):
        values["-".join(combo)] = 24.6 + sum(effects.get((i, c), 0.0) for i, c in enumerate(combo))
    values["_seconds"] = 12.0  # bookkeeping keys are ignored
    got, r2 = search_quality.site_effects(values)
    assert got.keys() == effects.keys() and r2 == pytest.approx(1.0)
    for k, v in effects.items():
        assert got[k] == pytest.approx(v, abs=1e-9)
    noisy = {k: v + random.Random(k).gauss(0, 0.05) for k, v in values.items() if k != "_seconds"}
    assert search_quality.site_effects(noisy)[1] < 0.9  # noise lowers R^2
