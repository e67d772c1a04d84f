"""SearchSpace: shipped spaces, exact sizes, sampling, encoding, enumeration, cost model, networks."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.nn.cost import count_macs, count_params
from acla_nas.nn.network import build
from acla_nas.space import SearchSpace, approx
from acla_nas.space.counting import ModuleCountSampler

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))


def tiny(**over) -> dict:
    """EDSR with 4 blocks (sites head, body.0..3) and small choices; ``over`` replaces keys."""
    d = {
        "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 4}},
        "task": {"name": "sr", "scale": 2},
        "eval": {"input_size": [16, 16]},
        "keys": [0, 2, 4],
        "scopes": [1, 2, "all"],
    }
    d.update(over)
    return d


def per_site_product(space: SearchSpace) -> int:
    """Hand count: per site, 1 (no module) + non-zero budgets x valid distinct scopes."""
    return math.prod((0 in s.budgets) + len([k for k in s.budgets if k]) * len(s.scopes) for s in space.sites.values())


# -- shipped spaces ----------------------------------------------------------------------------
def test_shipped_spaces_present():
    names = {p.name for p in SHIPPED}
    for n in (
        "edsr_x2_demo",
        "edsr_x4_paper",
        "rcan_x2",
        "unet_denoise_sigma25",
        "edsr_demosaic",
        "edsr_jpeg_q10",
        "user_backbone_example",
    ):
        assert f"{n}.yaml" in names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_space_parses_and_round_trips(path):
    assert path.read_text().lstrip().startswith("#"), "a comment header says what the space is for"
    s = SearchSpace.from_yaml(path)
    assert s.size() == per_site_product(s) > 1
    assert s.size_at_most_modules() <= s.size()
    again = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict())))
    assert again.to_dict() == s.to_dict()
    assert again.choices() == s.choices()
    arch = s.sample(random.Random(0))
    assert s.contains(arch) == (True, "")
    assert s.decode(s.encode(arch)) == arch


def test_shipped_sizes_exact():
    demo = SearchSpace.from_yaml(ROOT / "search_spaces/edsr_x2_demo.yaml")
    # body.0: scopes {1} (2 and all collapse/drop), body.1: {1, 2} ('all' = 2), body.2..7: {1, 2, all}
    assert demo.size() == (1 + 3 * 1) * (1 + 3 * 2) * (1 + 3 * 3) ** 6 == 28_000_000
    paper = SearchSpace.from_yaml(ROOT / "search_spaces/edsr_x4_paper.yaml")
    assert len(paper.sites) == 32
    assert paper.size() == 4 * 7 * 10**30
    assert approx(paper.size()) == "~2.8e+31"


def test_demo_space_is_small_and_constrained():
    s = SearchSpace.from_yaml(ROOT / "search_spaces/edsr_x2_demo.yaml")
    assert s.spec.kwargs["n_resblocks"] == 8 and 16 <= s.spec.kwargs["n_feats"] <= 32
    assert s.k_max == 8 and s.max_modules == 3
    assert 0 < s.size(constrained=True) < s.size_at_most_modules()


# -- sizes and counting ------------------------------------------------------------------------
def test_scopes_resolved_per_site():
    s = SearchSpace.from_dict(tiny())
    assert list(s.sites) == ["body.0", "body.1", "body.2", "body.3"]
    assert s.sites["body.0"].scopes == (1,)  # 2 dropped, all == 1 merged
    assert s.sites["body.1"].scopes == (1, 2)  # all == 2 merged
    assert s.sites["body.2"].scopes == (1, 2, "all")
    assert s.size() == 3 * 5 * 7 * 7


def test_size_astronomical_is_exact_int():
    s = SearchSpace.from_dict(
        tiny(backbone={"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 32}}, keys=[0, 4, 8, 16])
    )
    n = s.size()
    assert isinstance(n, int) and n == 4 * 7 * 10**30


def test_module_count_dp_matches_brute_force():
    sites = [(1, 3), (1, 6), (0, 2), (1, 9), (1, 1)]
    for mm in (None, 0, 1, 2, 3, 5):
        brute = 0
        for picks in itertools.product(*[[None] * off + list(range(on)) for off, on in sites]):
            if mm is None or sum(p is not None for p in picks) <= mm:
                brute += 1
        sampler = ModuleCountSampler(sites, mm)
        if sum(off == 0 for off, _ in sites) > (5 if mm is None else mm):
            assert sampler.total == 0
        else:
            assert sampler.total == brute


def test_enumerate_equals_constrained_size():
    s = SearchSpace.from_dict(tiny(constraints={"max_modules": 2, "max_flops": "+30%"}))
    archs = s.enumerate()
    assert len(archs) == s.size(constrained=True) > 0
    assert len({a.key() for a in archs}) == len(archs)
    assert all(s.satisfies(a)[0] for a in archs)
    unconstrained = s.enumerate(constrained=False)
    assert len(unconstrained) == s.size() > len(archs)
    only_mm = SearchSpace.from_dict(tiny(constraints={"max_modules": 1}))
    assert len(only_mm.enumerate()) == only_mm.size(constrained=True) == 1 + 2 * (1 + 2 + 3 + 3)


def test_enumerate_refuses_large_space():
    s = SearchSpace.from_yaml(ROOT / "search_spaces/edsr_x4_paper.yaml")
    with pytest.raises(UserError, match="enumeration limit"):
        s.enumerate()


# -- sampling ----------------------------------------------------------------------------------
def test_samples_respect_constraints():
    s = SearchSpace.from_yaml(ROOT / "search_spaces/edsr_x2_demo.yaml")
    rng = random.Random(1)
    archs = [s.sample(rng) for _ in range(200)]
    assert all(s.satisfies(a) == (True, "") for a in archs)
    assert all(s.contains(a)[0] for a in archs)
    assert max(a.n_modules() for a in archs) == 3
    assert len({a.key() for a in archs}) > 150


def test_sampling_is_uniform_on_a_tiny_space():
    s = SearchSpace.from_dict(
        tiny(backbone={"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 2}}, constraints={"max_modules": 1})
    )
    n = s.size(constrained=True)  # body.0: 1+2*1, body.1: 1+2*2 -> 0 modules: 1, one module: 2 + 4
    assert n == 7
    rng = random.Random(0)
    counts: dict[str, int] = {}
    draws = 7000
    for _ in range(draws):
        k = s.sample(rng).key()
        counts[k] = counts.get(k, 0) + 1
    assert len(counts) == n
    assert all(abs(c - draws / n) < 5 * math.sqrt(draws / n) for c in counts.values())


def test_sample_accepts_seeds_and_is_reproducible():
    s = SearchSpace.from_dict(tiny())
    assert s.sample(3) == s.sample(3)
    np = pytest.importorskip("numpy")
    assert s.contains(s.sample(np.random.default_rng(0)))[0]


def test_unsatisfiable_by_sampling_names_the_field():
    # each module alone is allowed by the bound checked at load time (min cost), but with a forced
    # module at every site the sum never fits
    s = SearchSpace.from_dict(tiny(keys=[0, 2, 4], constraints={"max_flops": 1.0000001}))
    assert s.size(constrained=True) == 1  # only the plain network
    arch = s.sample(0)
    assert arch.n_modules() == 0
    forced = tiny(keys=[2, 4], constraints={"max_flops": "+1%"})
    with pytest.raises(UserError, match="max_flops"):
        SearchSpace.from_dict(forced)


# -- encoding and membership -------------------------------------------------------------------
def test_encode_decode_round_trip():
    s = SearchSpace.from_dict(tiny())
    choices = s.choices()
    assert choices["body.2.keys"] == [0, 2, 4]
    assert choices["body.2.scope"] == ["1", "2", "all"]
    assert choices["body.0.scope"] == ["1"]
    rng = random.Random(0)
    for _ in range(50):
        a = s.sample(rng)
        flat = s.encode(a)
        assert set(flat) == set(choices)
        assert all(flat[k] in choices[k] for k in flat)
        assert s.decode(flat) == a
        assert s.encode(s.decode(flat)) == flat


def test_decode_errors_and_defaults():
    s = SearchSpace.from_dict(tiny())
    flat = {f"{n}.keys": 0 for n in s.sites}
    assert s.decode(flat).modules == {}  # scope may be left out where keys are 0
    flat["body.0.keys"] = 2  # a single scope choice: may be left out too
    assert s.decode(flat).modules == {"body.0": ModuleChoice(2, 1)}
    with pytest.raises(UserError, match="body.3.keys"):
        s.decode({**flat, "body.3.keys": 3})
    with pytest.raises(UserError, match="body.2.scope"):
        s.decode({**flat, "body.2.keys": 2, "body.2.scope": "7"})
    with pytest.raises(UserError, match="bogus"):
        s.decode({**flat, "bogus": 1})
    del flat["body.1.keys"]
    with pytest.raises(UserError, match="body.1.keys"):
        s.decode(flat)


def test_encode_canonicalises_equivalent_scopes():
    s = SearchSpace.from_dict(tiny())
    a = s.template().with_modules({"body.1": ModuleChoice(2, "all"), "body.0": ModuleChoice(4, ("head",))})
    flat = s.encode(a)
    assert flat["body.1.scope"] == "2" and flat["body.0.scope"] == "1"
    assert s.decode(flat).modules == {"body.0": ModuleChoice(4, 1), "body.1": ModuleChoice(2, 2)}


def test_contains_reasons():
    s = SearchSpace.from_dict(tiny())
    t = s.template()
    assert s.contains(t) == (True, "")
    cases = [
        (t.with_modules({"body.2": ModuleChoice(3, 1)}), "key budget 3"),
        (t.with_modules({"body.2": ModuleChoice(2, ("body.0",))}), "scope"),
        (t.with_modules({"nonsite": ModuleChoice(2, 1)}), "not a candidate site"),
        (Arch("rcan", dict(t.task)), "backbone"),
        (Arch("edsr", {"name": "sr", "scale": 3}, {}, dict(t.backbone_kwargs)), "task"),
        (Arch("edsr", dict(t.task), {}, {"n_feats": 16, "n_resblocks": 4}), "kwargs"),
        (Arch("edsr", dict(t.task), {}, dict(t.backbone_kwargs), acla={"adaptive": False}), "acla"),
    ]
    for arch, word in cases:
        ok, reason = s.contains(arch)
        assert not ok and word in reason, (reason, word)
    forced = SearchSpace.from_dict(tiny(overrides={"body.3": {"keys": [4]}}))
    ok, reason = forced.contains(forced.template())
    assert not ok and "body.3" in reason


def test_overrides_and_site_lists():
    s = SearchSpace.from_dict(
        tiny(sites=["body.1", "body.3"], overrides={"body.3": {"keys": [0, 8], "scopes": [["head", "body.1"]]}})
    )
    assert list(s.sites) == ["body.1", "body.3"]
    assert s.sites["body.3"].budgets == (0, 8)
    assert s.sites["body.3"].scopes == (("head", "body.1"),)
    assert s.choices()["body.3.scope"] == ["head,body.1"]
    assert s.size() == (1 + 2 * 2) * (1 + 1)
    pat = SearchSpace.from_dict(tiny(sites="body.*", overrides={"body.*": {"keys": [0, 4]}}))
    assert all(x.budgets == (0, 4) for x in pat.sites.values())


# -- cost model --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        tiny(),
        tiny(
            backbone={"name": "unet", "kwargs": {"n_feats": 4, "n_enc": 1, "n_mid": 2, "n_dec": 1}},
            task={"name": "denoise", "sigma": 25},
            eval={"input_size": [15, 18]},
            acla={"offset_kernel": 1, "adaptive": False},
        ),
    ],
    ids=["edsr", "unet"],
)
def test_additive_cost_is_exact(spec):
    s = SearchSpace.from_dict(spec)
    rng = random.Random(0)
    archs = [s.sample(rng) for _ in range(6)] + [s.reference_archs()["paper"]]
    for a in archs:
        net = build(a)
        est = s.cost(a)
        assert est == {"macs": count_macs(net, s.spec.input_size), "params": count_params(net)}, a.modules
    assert s.cost(s.template())["macs"] == count_macs(build(s.template()), s.spec.input_size)


def test_constraints_relative_and_absolute():
    base = SearchSpace.from_dict(tiny())
    plain = base.cost(base.template())
    rel = SearchSpace.from_dict(tiny(constraints={"max_flops": "+10%", "max_params": 1.5}))
    assert rel.limits() == {"macs": plain["macs"] * rel.spec.max_flops.factor, "params": plain["params"] * 1.5}
    absolute = SearchSpace.from_dict(tiny(constraints={"max_flops": f"{plain['macs'] / 1e6 + 1}M"}))
    assert plain["macs"] < absolute.limits()["macs"] < plain["macs"] + 10**6 + 1
    ok, reason = rel.satisfies(rel.template().with_modules({n: ModuleChoice(4, "all") for n in rel.sites}))
    assert not ok and reason.startswith("max_flops")


# -- reference archs, networks, user backbones -------------------------------------------------
def test_reference_archs_build_and_run():
    s = SearchSpace.from_dict(tiny(backbone={"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 8}}))
    refs = s.reference_archs()
    assert refs["plain"].modules == {}
    paper = refs["paper"].modules
    assert list(paper) == ["body.1", "body.3", "body.5", "body.7"]
    assert paper["body.5"] == ModuleChoice(4, ("head", "body.1", "body.3"))
    assert all(c.keys == s.k_max for c in paper.values())
    x = torch.rand(1, 3, 8, 8)
    for arch in refs.values():
        assert build(arch)(x).shape == (1, 3, 16, 16)


def test_supernet_builds_and_runs_a_sample():
    s = SearchSpace.from_dict(tiny(constraints={"max_modules": 2}))
    net = s.supernet()
    assert set(net.acla_modules()) == set(s.sites)
    a = s.sample(0)
    y = net.use(a.modules)(torch.rand(1, 3, 8, 8))
    assert y.shape == (1, 3, 16, 16)


@pytest.mark.usefixtures("allow_test_modules")
def test_user_backbone_space():
    d = tiny(
        backbone={"name": "user_backbones:tiny_net", "kwargs": {"channels": 4}, "sites": "stem, layers.*, down, up"},
        task={"name": "denoise", "sigma": 15},
    )
    s = SearchSpace.from_dict(d)
    assert [r[0] for r in s.site_table()] == ["layers.0", "layers.1", "layers.2", "down", "up"]
    assert dict((r[0], r[1:]) for r in s.site_table())["down"] == (8, 2)
    a = s.sample(0)
    assert s.cost(a)["macs"] == count_macs(build(a), s.spec.input_size)
    assert build(s.reference_archs()["paper"])(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.usefixtures("allow_test_modules")
def test_user_backbone_that_needs_real_tensors():
    d = tiny(
        backbone={"name": "user_backbones:real_only_net", "sites": "stem, layers.*"},
        task={"name": "denoise", "sigma": 15},
    )
    s = SearchSpace.from_dict(d)
    assert list(s.sites) == ["layers.0", "layers.1"]
    a = s.sample(0)
    assert s.cost(a)["macs"] == count_macs(build(a), s.spec.input_size)
    d["backbone"]["name"] = "user_backbones:broken_net"
    with pytest.raises(UserError, match="weights file missing") as info:
        SearchSpace.from_dict(d, file="x.yaml")
    assert info.value.field == "backbone.name" and info.value.file == "x.yaml"


def test_describe_and_site_table():
    s = SearchSpace.from_yaml(ROOT / "search_spaces/unet_denoise_sigma25.yaml")
    text = s.describe()
    assert "unet" in text and "denoise" in text and "max_params" in text and str(s.size()) in text
    table = dict((r[0], r[1:]) for r in s.site_table())
    assert table["mid.0"] == (64, 2) and table["dec.0"] == (32, 1)
    assert s.sites["mid.1"].budgets == (0, 4)


def test_to_nni_round_trip():
    pytest.importorskip("nni")
    s = SearchSpace.from_dict(tiny())
    sample = s.to_nni().random()
    assert s.contains(s.decode(dict(sample)))[0]
