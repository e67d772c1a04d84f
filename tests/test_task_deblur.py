"""The deblurring task: kernels, seeding, spec checks, and a whole search on it."""

from __future__ import annotations

import math

import pytest
import torch

from acla_nas.core.errors import UserError
from acla_nas.tasks import make_task
from acla_nas.tasks.deblur import gaussian_kernel, motion_kernel


def test_kernels_are_normalised_and_shaped() -> None:
    g = gaussian_kernel(15, 3.0, 1.0, 0.0)
    assert g.shape == (15, 15) and math.isclose(float(g.sum()), 1.0, rel_tol=1e-5)
    assert float(g[7, 7]) == float(g.max())  # centred
    assert float(g[7, 10]) > float(g[10, 7])  # the wide axis is horizontal at angle 0
    m = motion_kernel(15, 9.0, 0.0)
    assert math.isclose(float(m.sum()), 1.0, rel_tol=1e-5)
    assert set(torch.nonzero(m)[:, 0].tolist()) <= {7}  # a horizontal line stays on the centre row
    assert int((m[7] > 0).sum()) in (9, 10, 11)  # about `length` pixels long


@pytest.mark.parametrize("spec", [{"name": "deblur"}, {"name": "deblur", "kernel": "motion", "length": 7, "size": 11}])
def test_seeded_blur_keeps_size_and_softens(spec: dict) -> None:
    task = make_task(spec)
    assert make_task(task.spec) == task and task.scale == 1
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    hr = (0.5 + 0.5 * torch.sin(xx * 1.3 + yy * 0.7)).expand(2, 3, 32, 40).clone()  # high-frequency pattern
    a = task.degrade(hr, torch.Generator().manual_seed(1))
    assert a.shape == hr.shape and torch.equal(a, task.degrade(hr, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, task.degrade(hr, torch.Generator().manual_seed(2)))  # kernels are drawn
    assert not torch.equal(a[0], a[1])  # one kernel per image
    assert float(a.diff(dim=-1).abs().mean()) < 0.5 * float(hr.diff(dim=-1).abs().mean())
    assert torch.equal(a, a.mul(255).round().div(255))  # 8-bit, like a saved photograph


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"name": "deblur", "kernel": "box"}, "task.kernel"),
        ({"name": "deblur", "size": 14}, "task.size"),
        ({"name": "deblur", "sigma": 0}, "task.sigma"),
        ({"name": "deblur", "kernel": "motion", "length": 99}, "task.length"),
        ({"name": "deblur", "angle": 3}, "task.angle"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(UserError) as info:
        make_task(spec)
    assert info.value.field == field


def test_a_search_runs_on_the_deblur_task(tmp_path) -> None:
    """The task needs no change anywhere else: a space names it and a search runs."""
    import yaml
    from tiny_space import TINY_SPACE

    from acla_nas.search.run import run_search

    space = {**TINY_SPACE, "task": {"name": "deblur", "kernel": "motion"}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump(
            {
                "strategy": "random",
                "trials": 2,
                "supernet": {"steps": 2, "batch": 2, "patch": 24},
                "val": {"patches": 2, "patch": 24},
            }
        )
    )
    res = run_search(str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "run", progress=False)
    assert res is not None and math.isfinite(res.best_scores["psnr"])
