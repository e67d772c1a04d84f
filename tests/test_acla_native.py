"""The fused C attention core (acla_nas/nn/attention_native.py): the node core's function, its
gradients, its build and its fallbacks."""

from __future__ import annotations

import subprocess

import pytest
import torch
from test_acla import gradcheck_module, outputs_and_grads, randomize, reference, worst_relative

from acla_nas.nn import attention_native
from acla_nas.nn.acla import ACLA
from acla_nas.nn.attention_core import select_core, use_core
from acla_nas.nn.cost import count_macs
from acla_nas.nn.network import build

pytestmark = pytest.mark.skipif(
    not attention_native.available(), reason=f"no C compiler here: {attention_native.unavailable_reason()}"
)


def layers(seed: int = 0, scale: float = 1.0):
    """A query map and 4 earlier layers: two sizes, two channel counts, not in runs of one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 7, 9, generator=g)
    shapes = [(2, 6, 7, 9), (2, 3, 4, 5), (2, 3, 4, 5), (2, 6, 7, 9)]
    return x, [torch.randn(*s, generator=g) * scale for s in shapes]


def run_cores(m: ACLA, x, refs, cores=("node", "native"), **kwargs):
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    out = {}
    for core in cores:
        torch.manual_seed(1)  # the same Gumbel noise of the training gate
        with use_core(core):
            out[core] = outputs_and_grads(lambda a, r: m(a, r, **kwargs), m, x, refs, gy)
    return out


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("adaptive", [True, False])
def test_equals_node_core_outputs_and_all_gradients(train: bool, adaptive: bool) -> None:
    m = randomize(ACLA(6, [6, 3, 3, 6], 5, adaptive=adaptive)).train(train)
    x, refs = layers()
    res = run_cores(m, x, refs)
    (y0, g0), (y1, g1) = res["node"], res["native"]
    assert (y0 - y1).abs().max().item() < 1e-5
    assert worst_relative(g0, g1) < 1e-4


def test_equals_the_per_key_loop_reference() -> None:
    m = randomize(ACLA(6, [6, 3], 5)).eval()
    g = torch.Generator().manual_seed(0)
    x, refs = (
        torch.randn(2, 6, 7, 9, generator=g),
        [torch.randn(2, 6, 7, 9, generator=g), torch.randn(2, 3, 4, 5, generator=g)],
    )
    with use_core("native"):
        out = m(x, refs)
    assert (out - reference(m, x, refs, 5)).abs().max().item() < 1e-5


@pytest.mark.parametrize("kwargs", [{"k": 2}, {"active": [1, 3]}, {"mix": ([0, 2, 5], torch.tensor([0.2, 0.3, 0.5]))}])
def test_key_budget_scope_and_mix_equal_node(kwargs: dict) -> None:
    m = randomize(ACLA(6, [6, 3, 3, 6], 5)).train()
    x, refs = layers(1)
    res = run_cores(m, x, refs, **kwargs)
    assert (res["node"][0] - res["native"][0]).abs().max().item() < 1e-5
    assert worst_relative(res["node"][1], res["native"][1]) < 1e-4


def test_keys_far_outside_the_map_sample_zeros_like_grid_sample() -> None:
    """Offsets of +-1e4 px (all 4 corners outside) and keys straddling the border."""
    m = randomize(ACLA(6, [6, 3, 3, 6], 4, adaptive=False)).train()
    with torch.no_grad():
        m.offset.bias[::3].add_(1e4)
        m.offset.bias[1::3].sub_(2.5)
    x, refs = layers(2)
    res = run_cores(m, x, refs)
    assert torch.isfinite(res["native"][0]).all()
    assert (res["node"][0] - res["native"][0]).abs().max().item() < 1e-5
    assert worst_relative(res["node"][1], res["native"][1]) < 1e-4


@pytest.mark.parametrize("train", [False, True])
def test_whole_vector_channel_counts_equal_node(train: bool) -> None:
    """16, 32 and 64 channels take the kernel's register path (whole vectors kept across a
    query's keys); 24 the general one: every path against the node core, gradients included."""
    m = randomize(ACLA(16, [16, 32, 64, 24], 5)).train(train)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 7, 9, generator=g)
    refs = [torch.randn(2, c, *hw, generator=g) for c, hw in ((16, (7, 9)), (32, (4, 5)), (64, (7, 9)), (24, (7, 9)))]
    res = run_cores(m, x, refs)
    assert (res["node"][0] - res["native"][0]).abs().max().item() < 1e-4
    assert worst_relative(res["node"][1], res["native"][1]) < 1e-4


def test_gradcheck_float64_whole_vectors() -> None:
    """float64 gradcheck where the double build takes its register path (16 channels: 2 vectors)."""
    m = randomize(ACLA(16, [16, 16], 3, offset_kernel=1), seed=2).double().eval()
    g = torch.Generator().manual_seed(4)
    x, r1, r2 = (
        torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
        for shape in ((1, 16, 3, 4), (1, 16, 3, 4), (1, 16, 2, 3))
    )
    with use_core("native"):
        assert torch.autograd.gradcheck(lambda a, b, c: m(a, [b, c]), (x, r1, r2), eps=1e-6, atol=1e-5)


def test_gradcheck_float64() -> None:
    with use_core("native"):
        gradcheck_module("cpu")


def test_same_result_with_one_and_two_threads() -> None:
    """Each output element is computed by one thread in a fixed order: the kernel's passes give
    the same bits whatever the thread count (the convolutions around it need not)."""
    g = torch.Generator().manual_seed(3)
    n, b, h, w, k, c = 2, 3, 5, 6, 4, 7
    q = [torch.randn(b, h, w, c, generator=g) for _ in range(n)]
    ref = [torch.randn(b, 4, 5, c, generator=g) for _ in range(n)]
    off = torch.randn(b, 2 * n * k + 3, h, w, generator=g) * 3  # 3 more channels, like the gate's
    attn, glogit = torch.rand(2, b, n, k, h, w, generator=g)
    dims = attention_native.Dims(n, b, h, w, k, [c] * n, [(4, 5)] * n, [0.3, 0.4], [2 * k, 0], torch.float32)
    threads = torch.get_num_threads()
    runs = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            logit = torch.empty(b, n, k, h, w)
            outs, gq = ([torch.full((b, h, w, c), 7.0) for _ in range(n)] for _ in range(2))  # written whole
            gref = [torch.full_like(r, 7.0) for r in ref]
            goff = torch.zeros_like(off)
            attention_native._run(0, dims, off, q=q, ref=ref, logit=logit)
            attention_native._run(1, dims, off, ref=ref, out=outs, attn=attn)
            attention_native._run(
                2, dims, off, q=q, ref=ref, g=q, out=gq, gref=gref, goff=goff, attn=attn, glogit=glogit
            )
            runs.append([logit, *outs, *gq, *gref, goff])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert runs[0][0].abs().sum() > 0 and runs[0][-1][:, : 2 * n * k].abs().sum() > 0
    assert not runs[0][-1][:, 2 * n * k :].any()  # channels of no key are left alone


def test_bfloat16_autocast_computes_in_float32_like_node() -> None:
    m = randomize(ACLA(6, [6, 3], 3)).eval()
    x, refs = layers(4)
    outs = {}
    for core in ("node", "native"):
        with use_core(core), torch.autocast("cpu", dtype=torch.bfloat16):
            outs[core] = m(x, refs[:2])
    assert outs["node"].dtype == outs["native"].dtype
    assert (outs["node"].float() - outs["native"].float()).abs().max().item() < 1e-2


def test_is_the_cpu_default_and_macs_do_not_depend_on_the_core(monkeypatch) -> None:
    monkeypatch.delenv("ACLA_NAS_CORE", raising=False)
    assert select_core(torch.device("cpu")) == "native"
    from acla_nas.nn.arch import Arch, ModuleChoice
    from acla_nas.space import SearchSpace

    space = SearchSpace.from_dict(
        {
            "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 3}},
            "task": {"name": "sr", "scale": 2},
            "keys": [0, 4],
        }
    )
    arch: Arch = space.template().with_modules({"body.2": ModuleChoice(4, "all")})
    net = build(arch)
    macs = {}
    for core in ("native", "node", "triton"):  # a forced triton core too (the search's cost probe runs on CPU)
        with use_core(core):
            macs[core] = count_macs(net, (16, 16))
    assert macs["native"] == macs["node"] == macs["triton"] > count_macs(build(space.template()), (16, 16))


def test_build_cache_reuse_and_missing_compiler(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(attention_native.CACHE_ENV, str(tmp_path))
    lib = attention_native._build("float")
    assert lib.parent == tmp_path and lib.exists()

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(subprocess, "run", no_compile)
    assert attention_native._build("float") == lib  # built once per source, compiler and machine
    monkeypatch.setattr(attention_native, "_compiler", lambda: None)
    with pytest.raises(OSError, match="no C compiler"):
        attention_native._build("double")


def test_a_compiler_that_fails_is_reported(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(attention_native.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(attention_native, "_compiler", lambda: "/bin/false")
    with pytest.raises(OSError, match="could not compile"):
        attention_native._build("double")
    assert not list(tmp_path.glob("*.so"))  # no half-written library left behind


def test_size_one_maps_and_a_batch_of_one() -> None:
    """1 x W and H x 1 query maps, batch 1 (channels-last views whose size-1 strides are arbitrary)."""
    for shape in ((1, 6, 1, 9), (1, 6, 7, 1), (2, 6, 1, 1)):
        m = randomize(ACLA(6, [6, 3], 3)).train()
        g = torch.Generator().manual_seed(5)
        x = torch.randn(*shape, generator=g)
        refs = [torch.randn(*shape, generator=g), torch.randn(shape[0], 3, 2, 3, generator=g)]
        res = run_cores(m, x, refs)
        assert (res["node"][0] - res["native"][0]).abs().max().item() < 1e-5
        assert worst_relative(res["node"][1], res["native"][1]) < 1e-4


def test_a_damaged_cached_library_is_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(attention_native.CACHE_ENV, str(tmp_path))
    lib = attention_native._build("double")
    lib.write_bytes(b"not a shared library")
    attention_native._library.cache_clear()
    try:
        assert attention_native._library("double").acla_run is not None
        assert lib.read_bytes() != b"not a shared library"
    finally:
        attention_native._library.cache_clear()


@pytest.mark.parametrize("channels", [16, 32, 64])
def test_specialised_channel_counts_equal_node(channels: int) -> None:
    """16, 32 and 64 channels run fixed-length copies of the kernel's loops."""
    m = randomize(ACLA(channels, [channels, channels], 3), gate_std=0.1).train()
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 5, 6, generator=g)
    refs = [torch.randn(2, channels, 5, 6, generator=g), torch.randn(2, channels, 3, 4, generator=g)]
    res = run_cores(m, x, refs)
    assert (res["node"][0] - res["native"][0]).abs().max().item() < 1e-4
    assert worst_relative(res["node"][1], res["native"][1]) < 1e-4


def test_refuses_tensors_off_the_cpu() -> None:
    """Raw pointers of another device's memory must never reach the C kernel."""
    m = randomize(ACLA(6, [6], 3)).eval().to("meta")
    x = torch.empty(1, 6, 4, 4, device="meta")
    with use_core("native"), pytest.raises(ValueError, match="CPU tensors"):
        m(x, [torch.empty(1, 6, 4, 4, device="meta")])
