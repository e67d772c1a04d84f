"""NNI's tuners as strategies (nni:TPE, nni:Evolution, nni:Anneal, nni:Random) and the to_nni() export.

Runs where NNI is installed: CI runs this file in a virtual environment of its own (.venv-nni,
see scripts/setup-nni.sh), since NNI 3.0 pins filelock<3.12 and typeguard<4.1.3. Elsewhere it is
skipped with the reason printed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip(
    "nni", reason="NNI is not installed here (CI runs this file in .venv-nni: bash scripts/setup-nni.sh)"
)

from tiny_space import TINY_SPACE  # noqa: E402

from acla_nas.nn.arch import load_arch_file  # noqa: E402
from acla_nas.search.evaluators import OneShotEvaluator  # noqa: E402
from acla_nas.search.run import run_search  # noqa: E402
from acla_nas.search.storage.study import load_run_study  # noqa: E402
from acla_nas.search.strategies.nni_tuner import NNI_ATTR, legacy_space, make_tuner, to_flat  # noqa: E402
from acla_nas.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))
FAST = {"supernet": {"steps": 3, "batch": 2, "patch": 24}, "val": {"patches": 3, "patch": 24}}
TUNERS = ["TPE", "Evolution", "Anneal", "Random"]
pytestmark = pytest.mark.nni


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_to_nni_exports_every_shipped_space(path: Path) -> None:
    """One Categorical per flat choice, in NNI's legacy form too; NNI's own samples decode."""
    from nni.mutable import Categorical

    space = SearchSpace.from_yaml(path)
    mutable = space.to_nni()
    assert set(mutable) == set(space.choices())
    for name, values in space.choices().items():
        assert isinstance(mutable[name], Categorical) and list(mutable[name].values) == list(values)
        assert mutable[name].as_legacy_dict() == {"_type": "choice", "_value": list(values)}
    sample = dict(mutable.random(random_state=np.random.RandomState(0)))
    flat = {k: v for k, v in sample.items() if not (k.endswith(".scope") and sample[k[:-6] + ".keys"] == 0)}
    assert space.contains(space.decode(flat))[0]


@pytest.mark.parametrize("kind", TUNERS)
def test_nni_tuners_accept_the_slot_space_and_mostly_propose_feasible_archs(kind: str) -> None:
    """On the demo space (8 sites, at most 3 modules, +25% MACs) the flat export gave 0 feasible
    proposals of 6 (issue 17); the slot space keeps max_modules by construction."""
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "edsr_x2_demo.yaml")
    tuner = make_tuner(kind, 0, {"population_size": 8})
    tuner.update_search_space(legacy_space(space))
    feasible = 0
    for i in range(40):
        arch = space.decode(to_flat(space, tuner.generate_parameters(i)))
        assert len(arch.modules) <= 3
        if space.satisfies(arch)[0]:
            feasible += 1
            tuner.receive_trial_result(i, None, 30.0 + len(arch.modules))
        tuner.trial_end(i, space.satisfies(arch)[0])
    assert feasible >= 20, feasible


@pytest.mark.parametrize("kind", TUNERS)
def test_nni_strategy_searches_and_records_like_the_others(tmp_path: Path, kind: str) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({**TINY_SPACE, "constraints": {"max_modules": 2, "max_flops": "+20%"}}))
    strat = tmp_path / "s.yaml"
    strat.write_text(
        yaml.safe_dump(
            {
                "strategy": f"nni:{kind}",
                "trials": 4,
                **FAST,
                **({"options": {"population_size": 2}} if kind == "Evolution" else {}),
            }
        )
    )
    out = tmp_path / "run"
    res = run_search(str(space_file), str(strat), out, progress=False)
    space = SearchSpace.from_yaml(space_file)
    df = pd.read_csv(out / "trajectory.csv")
    assert (df["strategy"] == f"nni:{kind}").all()
    done = df[df.state == "COMPLETE"]
    assert len(done) == 4 and done.psnr.map(math.isfinite).all()
    arch, extra = load_arch_file(out / "best_arch.yaml")
    assert space.satisfies(arch)[0] and arch == res.best_arch and extra["provenance"]["strategy"] == f"nni:{kind}"
    study = load_run_study(out)
    proposed = [t for t in study.get_trials() if NNI_ATTR in t.system_attrs]
    assert len(proposed) == len(df)  # every row was proposed by the tuner
    for t in proposed:  # the study's parameters are the decoded proposal
        flat = to_flat(space, t.system_attrs[NNI_ATTR])
        assert space.decode(flat) == space.decode(t.params)
    # infeasible proposals (over +20% MACs: about half of the slot space) are PRUNED rows that do not use up the budget
    pruned = df[df.state == "PRUNED"]
    assert len(pruned) >= 1  # seeded: each tuner proposes at least one infeasible architecture here
    for _, row in pruned.iterrows():
        assert not space.satisfies(space.decode(to_flat(space, study.trials[int(row.step)].system_attrs[NNI_ATTR])))[0]


@pytest.mark.parametrize("kind", ["TPE", "Evolution"])
def test_nni_strategy_resumes_without_losing_or_repeating_trials(tmp_path: Path, kind: str, monkeypatch) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    strat = tmp_path / "s.yaml"
    strat.write_text(yaml.safe_dump({"strategy": f"nni:{kind}", "trials": 5, **FAST}))
    out = tmp_path / "run"
    calls: list[str] = []
    original = OneShotEvaluator._score

    def flaky(self, arch):
        calls.append(arch.key())
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, arch)

    monkeypatch.setattr(OneShotEvaluator, "_score", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_search(str(space_file), str(strat), out, progress=False)
    before = pd.read_csv(out / "trajectory.csv")
    assert (before.state == "COMPLETE").sum() == 2
    imported: list[int] = []
    from acla_nas.search.strategies import nni_tuner

    real = nni_tuner.NNISampler._import
    monkeypatch.setattr(
        nni_tuner.NNISampler,
        "_import",
        lambda self, trials: imported.extend(t.number for t in trials) or real(self, trials),
    )
    monkeypatch.setattr(OneShotEvaluator, "_score", original)
    run_search(str(space_file), str(strat), out, progress=False)
    after = pd.read_csv(out / "trajectory.csv")
    assert (after.state == "COMPLETE").sum() == 5
    keep = lambda df: df[df.state == "COMPLETE"].iloc[:2].reset_index(drop=True).astype(str)  # noqa: E731
    pd.testing.assert_frame_equal(keep(after), keep(before))
    first_two = sorted(before[before.state == "COMPLETE"].step.astype(int))
    assert sorted(imported)[:2] == first_two  # the new session's tuner learnt the earlier results


def test_nni_strategy_refuses_two_objectives(tmp_path: Path) -> None:
    from acla_nas.core.errors import UserError

    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    strat = tmp_path / "s.yaml"
    strat.write_text(yaml.safe_dump({"strategy": "nni:TPE", "trials": 2, "objectives": ["psnr", "flops"], **FAST}))
    with pytest.raises(UserError, match="one objective"):
        run_search(str(space_file), str(strat), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
