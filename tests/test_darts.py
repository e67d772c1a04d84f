"""DARTS's relaxation: decoupled module/budget probabilities, two-sided resource term, derivation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_space import TINY_SPACE

from acla_nas.search.run import search_data
from acla_nas.search.strategies.base import SearchContext
from acla_nas.search.strategies.darts import ArchParameters, DartsStrategy, macs_target
from acla_nas.space import SearchSpace

FREE = {**TINY_SPACE, "constraints": {}, "keys": [0, 2, 4], "scopes": [1]}


def strategy(space_dict: dict, tmp_path: Path, **options) -> DartsStrategy:
    space = SearchSpace.from_dict(space_dict)
    data = search_data(space, {"seed": 0, "val": {"patches": 2, "patch": 24}}, "cpu", progress=False)
    ctx = SearchContext(
        space=space,
        data=data,
        run_dir=tmp_path,
        run_name="r",
        strategy_name="darts",
        evaluator_name="oneshot",
        evaluator=None,
        trials=1,
        options=options,
    )
    return DartsStrategy(ctx)


def test_probabilities_decouple_module_and_budget() -> None:
    arch = ArchParameters({"a": (0, 2, 4), "b": (2, 4)})
    with torch.no_grad():
        arch.beta[0] = 2.0
        arch.alpha[0][1] = 1.0
    with torch.no_grad():
        p = arch.probs(1.0)
    on = torch.sigmoid(torch.tensor(2.0))
    assert float(p["a"][0]) == pytest.approx(float(1 - on))
    q = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    assert p["a"][1:].tolist() == pytest.approx((on * q).tolist())
    assert float(p["a"].sum()) == pytest.approx(1.0) and float(p["b"].sum()) == pytest.approx(1.0)
    assert float(arch.p_on()["b"].detach()) == 1.0  # no 0 budget: always a module


def test_resource_term_pulls_the_expected_cost_to_the_target_from_both_sides(tmp_path: Path) -> None:
    d = strategy(FREE, tmp_path, zero_one=0.0)
    recon = torch.tensor(0.1)

    def beta_grad(beta: float) -> float:
        arch = ArchParameters({n: s.budgets for n, s in d.sites.items()})
        with torch.no_grad():
            arch.beta.fill_(beta)
        d.arch_loss(recon, arch.probs(1.0), arch.p_on()).backward()
        return float(arch.beta.grad.sum())

    low, high = beta_grad(-4.0), beta_grad(4.0)  # E[MACs] far below / far above the target
    e_low = d.expected_macs(ArchParameters({n: s.budgets for n, s in d.sites.items()}).probs(1.0))
    assert low < 0 < high  # gradient descent raises P(module) below the target and lowers it above
    assert d.target > d.plain_macs and float(e_low) > 0


def test_zero_one_regulariser_pushes_away_from_one_half(tmp_path: Path) -> None:
    d = strategy(FREE, tmp_path, resource=0.0)
    arch = ArchParameters({n: s.budgets for n, s in d.sites.items()})
    with torch.no_grad():
        arch.beta.copy_(torch.linspace(-0.5, 0.5, len(arch.beta)))
    d.arch_loss(torch.tensor(0.1), arch.probs(1.0), arch.p_on()).backward()
    g = arch.beta.grad
    assert (g[arch.beta > 0] < 0).all() and (g[arch.beta < 0] > 0).all()  # descent moves each further from 0


def test_derive_by_probability_fills_the_budget(tmp_path: Path) -> None:
    d = strategy(FREE, tmp_path)
    names = list(d.sites)
    p_on = {n: torch.tensor(0.9 - 0.2 * i) for i, n in enumerate(names)}  # descending
    q = {n: torch.tensor([0.2, 0.8]) for n in names}  # K=4 preferred
    arch = d.derive(p_on, q)
    cost = d.ctx.space.cost(arch)["macs"]
    assert cost <= d.target
    # filled: no site left off could be added with any budget without passing the target
    for n in names:
        if n not in arch.modules:
            for k in (2, 4):
                bigger = arch.with_modules({**arch.modules, n: type(next(iter(arch.modules.values())))(k, 1)})
                assert d.ctx.space.cost(bigger)["macs"] > d.target
    assert names[0] in arch.modules  # the likeliest site is placed first
    assert macs_target(d.ctx.space, {"target": 1.05}) == pytest.approx(1.05 * d.plain_macs)


def test_derive_respects_max_modules(tmp_path: Path) -> None:
    d = strategy({**FREE, "constraints": {"max_modules": 1}}, tmp_path, target=10.0)
    arch = d.derive({n: torch.tensor(0.9) for n in d.sites}, {n: torch.tensor([0.5, 0.5]) for n in d.sites})
    assert len(arch.modules) == 1 and d.ctx.space.satisfies(arch)[0]
