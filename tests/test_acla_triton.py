"""The fused Triton core without a GPU: its arithmetic in Triton's interpreter (CPU tensors)
against the per-key loop and the CPU core, and its compilation for a real GPU (sm_90 cubins).

Stated tolerances: float32 outputs within 1e-5 of the per-key loop and gradients within 1e-4
relative (as the CPU core); float64 within 1e-12 and 1e-10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip(
    "triton", reason="Triton is not installed (pip install 'acla-nas[gpu]'): the fused kernel is not checked"
)

from test_acla import make_inputs, outputs_and_grads, randomize, reference, worst_relative  # noqa: E402

from acla_nas.nn import acla_triton  # noqa: E402
from acla_nas.nn.acla import ACLA  # noqa: E402
from acla_nas.nn.attention_core import use_core  # noqa: E402

TRITON_VERSION = tuple(int(v) for v in triton.__version__.split(".")[:2])
if not acla_triton.INTERPRETED:
    WHY_NOT = "Triton compiles here (CUDA present, or TRITON_INTERPRET unset): tests/test_cuda.py checks the kernel on the GPU"
elif TRITON_VERSION < (3, 9):  # seen with 3.6.0 and numpy 2: int() of a 1-element array for the loop bound
    WHY_NOT = (
        f"Triton {triton.__version__}'s interpreter cannot run the kernel's loop with a runtime bound; checked with 3.9"
    )
else:
    WHY_NOT = ""
interpreted = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)


@pytest.fixture()
def big_blocks(monkeypatch):
    """One program per batch item and layer: the interpreter's cost is per program."""
    monkeypatch.setattr(
        acla_triton, "BLOCKS", {m: (64, 8, 4) for m in (acla_triton.DOT, acla_triton.AGG, acla_triton.BWD)}
    )


@interpreted
@pytest.mark.parametrize(
    "dtype, adaptive, fwd_tol, grad_tol",
    [(torch.float32, True, 1e-5, 1e-4), (torch.float32, False, 1e-5, 1e-4), (torch.float64, True, 1e-12, 1e-10)],
    ids=["float32-gate", "float32-softmax", "float64-gate"],
)
def test_matches_per_key_loop(big_blocks, dtype: torch.dtype, adaptive: bool, fwd_tol: float, grad_tol: float) -> None:
    m = randomize(ACLA(6, [6, 3], 5, adaptive=adaptive)).to(dtype).eval()
    x, refs = make_inputs(dtype=dtype)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    with use_core("triton"):
        y, grads = outputs_and_grads(lambda a, r: m(a, r), m, x, refs, gy)
    y0, grads0 = outputs_and_grads(lambda a, r: reference(m, a, r, 5), m, x, refs, gy)
    assert (y - y0).abs().max().item() < fwd_tol
    assert worst_relative(grads0, grads) < grad_tol


@interpreted
def test_training_gate_budget_mix_and_layer_subset_match_cpu_core(big_blocks) -> None:
    """Train mode (Gumbel gate), a smaller budget, one active layer, and the DARTS
    budget mix with its weights' gradient: the fused core against the CPU core, same noise."""
    m = randomize(ACLA(6, [6, 3], 6), seed=3, gate_std=0.5).train()
    x, refs = make_inputs(5)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    mix_w = torch.tensor([0.2, 0.3, 0.5])
    calls = {
        "k=3": lambda a, r: m(a, r, k=3),
        "active=[1]": lambda a, r: m(a, [None, r[1]], active=[1]),
        "mix": lambda a, r: m(a, r, mix=([0, 2, 6], mix_w)),
    }
    for name, call in calls.items():
        results = {}
        for core in ("node", "triton"):
            mix_w.grad = None
            mix_w.requires_grad_(name == "mix")
            torch.manual_seed(7)
            with use_core(core):
                y, grads = outputs_and_grads(call, m, x, refs, gy)
            results[core] = y, grads + ([mix_w.grad.clone()] if name == "mix" else [])
        (y0, g0), (y1, g1) = results["node"], results["triton"]
        assert (y0 - y1).abs().max().item() < 1e-5, name
        assert worst_relative(g0, g1) < 1e-4, name


@interpreted
def test_several_pixel_and_channel_blocks(monkeypatch) -> None:
    """Blocks smaller than the maps: partial pixel blocks, channel blocks summed with atomics."""
    monkeypatch.setattr(
        acla_triton, "BLOCKS", {m: (16, 2, 4) for m in (acla_triton.DOT, acla_triton.AGG, acla_triton.BWD)}
    )
    m = randomize(ACLA(5, [5, 3], 2), seed=4).eval()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 5, 5, 7, generator=g)
    refs = [torch.randn(1, 5, 5, 7, generator=g), torch.randn(1, 3, 3, 4, generator=g)]
    gy = torch.randn(x.shape, generator=g)
    with use_core("triton"):
        y, grads = outputs_and_grads(lambda a, r: m(a, r), m, x, refs, gy)
    y0, grads0 = outputs_and_grads(lambda a, r: reference(m, a, r, 2), m, x, refs, gy)
    assert (y - y0).abs().max().item() < 1e-5
    assert worst_relative(grads0, grads) < 1e-4


def test_kernel_compiles_for_sm90_without_spills() -> None:
    """Ahead-of-time compilation to an sm_90 cubin (no GPU needed) of every kernel mode, in
    float32 and bfloat16: it compiles, nothing spills to local memory, and every mode fits at
    least four programs per SM's 64K registers (<= 128 registers per thread at 4 warps)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    code = "import json; from acla_nas.nn.acla_triton import compile_report as r; print(json.dumps({d: r(90, d) for d in ('fp32', 'bf16')}))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for dtype, modes in report.items():
        assert set(modes) == {"dot", "dot+atomic", "agg", "bwd", "bwd+atomic"}
        for mode, usage in modes.items():
            assert usage["stack"] == 0, (dtype, mode, usage)
            assert 0 < usage["regs"] <= 128, (dtype, mode, usage)
