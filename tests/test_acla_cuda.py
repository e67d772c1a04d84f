"""Which attention core runs where (acla_nas/nn/attention_core.py): defaults, fallbacks, overrides."""

from __future__ import annotations

import pytest
import torch
from test_acla import make_inputs, randomize

from acla_nas.nn import acla_triton
from acla_nas.nn import attention_core as acla_cuda
from acla_nas.nn.acla import ACLA

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def test_defaults_per_device(monkeypatch) -> None:
    monkeypatch.delenv(acla_cuda.ENV, raising=False)
    monkeypatch.setattr(acla_triton, "triton", object())  # "installed"
    monkeypatch.setattr(acla_cuda, "native_available", lambda: True)  # a C compiler works
    # the kernel is opt-in on CUDA: slower than plain on an H200 (benchmarks/README.md)
    assert [acla_cuda.select_core(d) for d in (CPU, CUDA, MPS)] == ["native", "plain", "plain"]
    monkeypatch.setattr(acla_cuda, "TRITON_DEFAULT_ON_CUDA", True)
    assert [acla_cuda.select_core(d) for d in (CPU, CUDA, MPS)] == ["native", "triton", "plain"]
    monkeypatch.setattr(acla_triton, "triton", None)  # not installed: CUDA falls back to plain
    assert [acla_cuda.select_core(d) for d in (CPU, CUDA, MPS)] == ["native", "plain", "plain"]
    monkeypatch.setattr(acla_cuda, "native_available", lambda: False)  # no C compiler: the node core
    assert [acla_cuda.select_core(d) for d in (CPU, CUDA, MPS)] == ["node", "plain", "plain"]
    with pytest.raises(RuntimeError, match="needs Triton"):
        acla_cuda.core_function("triton")


def test_environment_and_use_core_override(monkeypatch) -> None:
    monkeypatch.setenv(acla_cuda.ENV, "plain")
    assert acla_cuda.select_core(CPU) == "plain"
    with acla_cuda.use_core("node"):
        assert acla_cuda.select_core(CUDA) == "node"
        with acla_cuda.use_core("auto"):  # back to the environment's choice
            assert acla_cuda.select_core(CPU) == "plain"
    assert acla_cuda.select_core(CPU) == "plain"
    monkeypatch.setenv(acla_cuda.ENV, "fast")
    with pytest.raises(ValueError, match="ACLA_NAS_CORE"):
        acla_cuda.select_core(CPU)
    with pytest.raises(ValueError, match="unknown ACLA core"):
        with acla_cuda.use_core("fused"):
            pass


def test_module_runs_the_selected_core(monkeypatch) -> None:
    """The forced core is the one that runs: a core that raises shows it was called."""
    m = randomize(ACLA(6, [6, 3], 3)).eval()
    x, refs = make_inputs()
    with acla_cuda.use_core("plain"):
        plain = m(x, refs)

    class Called(Exception):
        pass

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            raise Called

    monkeypatch.setattr("acla_nas.nn.acla.core_function", lambda name: Probe)
    with acla_cuda.use_core("node"), pytest.raises(Called):
        m(x, refs)
    with acla_cuda.use_core("plain"):
        assert torch.equal(m(x, refs), plain)  # plain never asks for an autograd core
