"""The module and the training paths per device: the CPU variants run everywhere, the CUDA ones
(marker ``cuda``) wherever a CUDA device is present and are skipped, with the reason printed,
elsewhere. On a GPU machine: ``pytest -m cuda``.

Stated tolerances (float32, TF32 off): outputs within 1e-5 of the per-key loop, every gradient
within 1e-4 of the per-key loop's relative to that gradient's largest entry. Autocast against
float32 on a small EDSR with one module (measured on CPU, node and plain cores: outputs
8.6e-3 / 2.7e-3 relative to the output's range, gradients 9.4e-3 / 3.2e-3 relative in norm, for
bf16 / fp16): outputs within 3e-2 / 1e-2, gradients within 5e-2 / 2e-2.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from test_acla import gradcheck_module, make_inputs, outputs_and_grads, randomize, reference, worst_relative
from tiny_space import TINY_SPACE

from acla_nas.data.images import embedded_dir
from acla_nas.nn.acla import ACLA
from acla_nas.nn.arch import Arch
from acla_nas.nn.attention_core import triton_available, use_core
from acla_nas.nn.network import build

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA device here: the cuda tests run where one is present (pytest -m cuda)"
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)])
DEVICES = ["cpu", CUDA]


def cuda_core(core: str) -> pytest.param:
    """(cuda, core), skipped without CUDA (and without Triton for the triton core)."""
    marks = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)]
    if core == "triton":
        marks.append(
            pytest.mark.skipif(
                HAS_CUDA and not triton_available(), reason="Triton is not installed (pip install 'acla-nas[gpu]')"
            )
        )
    return pytest.param("cuda", core, marks=marks, id=f"cuda-{core}")


# The CPU variants of the triton core run in Triton's interpreter (tests/test_acla_triton.py).
DEVICE_CORES = [
    pytest.param("cpu", "node", id="cpu-node"),
    pytest.param("cpu", "plain", id="cpu-plain"),
    cuda_core("node"),
    cuda_core("plain"),
    cuda_core("triton"),
]


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 means float32: TF32 convolutions and matmuls (the CUDA default for convolutions)
    would move offsets and logits by ~1e-3 relative and drown the comparisons."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("device, core", DEVICE_CORES)
def test_cores_match_per_key_loop(device: str, core: str, adaptive: bool) -> None:
    m = randomize(ACLA(6, [6, 3], 5, adaptive=adaptive)).eval().to(device)
    x, refs = make_inputs()
    x, refs = x.to(device), [r.to(device) for r in refs]
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4)).to(device)
    with use_core(core):
        y, grads = outputs_and_grads(lambda a, r: m(a, r), m, x, refs, gy)
    y0, grads0 = outputs_and_grads(lambda a, r: reference(m, a, r, 5), m, x, refs, gy)
    assert (y - y0).abs().max().item() < 1e-5
    assert worst_relative(grads0, grads) < 1e-4


@pytest.mark.parametrize("core", ["node", "plain", "triton"])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_gradcheck_float64_on_cuda(core: str) -> None:
    """The CPU variant is tests/test_acla.py::test_gradcheck_float64 (same helper)."""
    if core == "triton" and not triton_available():
        pytest.skip("Triton is not installed (pip install 'acla-nas[gpu]')")
    with use_core(core):
        gradcheck_module("cuda")


# -- training on the device --------------------------------------------------------------------
SPACE = TINY_SPACE
VAL = {"patches": 3, "patch": 24}


def on_device(state: dict, device: str) -> bool:
    """Every tensor of a saved state dict was saved from ``device``."""
    return all(t.device.type == device for t in state.values() if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("device", DEVICES)
def test_retraining_steps_on_device(tmp_path: Path, device: str) -> None:
    from acla_nas.train.retrain import train_arch

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, box in enumerate(
        [(0, 0, 48, 48), (200, 150, 248, 198), (100, 300, 148, 348), (300, 40, 348, 88), (60, 200, 108, 248)]
    ):
        Image.open(embedded_dir() / "astronaut.png").convert("RGB").crop(box).save(photos / f"p{i}.png")
    arch = {
        **{k: SPACE[k] for k in ("backbone", "task")},
        "modules": {"body.1": {"keys": 4, "scope": "all"}},
        "data": {"kind": "folder", "path": str(photos), "val_fraction": 0.2, "test_fraction": 0.2},
        "train": {"steps": 3, "patch": 24, "batch": 2, "val_patches": 2, "val_every": 0, "progress": False},
    }
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(arch))
    result, model_path, _ = train_arch(tmp_path / "arch.yaml", tmp_path / "run", {"device": device}, progress=False)
    assert result["steps"] == 3 and math.isfinite(result["final_loss"]) and math.isfinite(result["test"]["psnr"])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert on_device(state, device) and any(k.startswith("acla.") for k in state)


@pytest.mark.parametrize("strategy", ["random", "darts"])
@pytest.mark.parametrize("device", DEVICES)
def test_supernet_and_darts_steps_on_device(tmp_path: Path, device: str, strategy: str) -> None:
    """Supernet training (the one-shot evaluator behind random search) and DARTS, a few steps."""
    pytest.importorskip("optuna", reason="the search runs keep their trials in an Optuna study")
    from acla_nas.search.run import run_search

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    strat = (
        {"strategy": "random", "trials": 2, "supernet": {"steps": 3, "batch": 2, "patch": 24}, "val": VAL}
        if strategy == "random"
        else {
            "strategy": "darts",
            "options": {"steps": 3, "warmup": 1, "batch": 2, "patch": 24, "log_every": 3, "ckpt_every": 50},
            "val": VAL,
        }
    )
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(strat))
    run_search(str(tmp_path / "space.yaml"), str(tmp_path / "s.yaml"), tmp_path / "run", device=device, progress=False)
    rows = pd.read_csv(tmp_path / "run" / "trajectory.csv")
    assert (rows.state == "COMPLETE").all() and rows.psnr.map(math.isfinite).all()
    if strategy == "random":
        state = torch.load(tmp_path / "run" / "supernet" / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert on_device(state, device)
    else:
        ck = torch.load(tmp_path / "run" / "supernet" / "checkpoints" / "last.pt", weights_only=True)
        assert ck["step"] == 3 and on_device(ck["model"], device) and on_device(ck["extra"]["alpha"], device)


# -- mixed precision ---------------------------------------------------------------------------
AMP_TOLERANCE = {torch.bfloat16: (3e-2, 5e-2), torch.float16: (1e-2, 2e-2)}  # (outputs, gradients)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("device, core", DEVICE_CORES)
def test_autocast_stays_close_to_float32(device: str, core: str, dtype: torch.dtype) -> None:
    """A training step of a small EDSR with one module (gate on, Gumbel noise seeded alike)."""
    arch = Arch.from_dict(
        {
            "backbone": {"name": "edsr", "kwargs": {"n_feats": 16, "n_resblocks": 2}},
            "task": {"name": "sr", "scale": 2},
            "modules": {"body.1": {"keys": 4, "scope": "all"}},
        }
    )
    torch.manual_seed(0)
    net = build(arch).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("acla."):  # make the module matter (its output starts at zero)
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    net.to(device)
    x, hr = torch.rand(2, 3, 24, 24, generator=g).to(device), torch.rand(2, 3, 48, 48, generator=g).to(device)

    def step(amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
        net.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        with use_core(core), torch.autocast(device, dtype=dtype, enabled=amp):
            y = net(x)
        F.l1_loss(y.float(), hr).backward()
        return y.detach().float(), torch.cat([p.grad.flatten() for p in net.parameters()])

    y32, g32 = step(False)
    y, grads = step(True)
    out_tol, grad_tol = AMP_TOLERANCE[dtype]
    assert ((y - y32).abs().max() / y32.abs().max()).item() < out_tol
    assert ((grads - g32).norm() / g32.norm()).item() < grad_tol


# -- export ------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_onnx_export_of_a_child_on_cuda(tmp_path: Path) -> None:
    """The exporter traces a child that lives on the GPU (the CPU case: tests/test_export_pipeline.py)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from acla_nas.export.exporter import export_onnx

    arch = Arch.from_dict(
        {**{k: SPACE[k] for k in ("backbone", "task")}, "modules": {"body.1": {"keys": 4, "scope": "all"}}}
    )
    torch.manual_seed(0)
    model = build(arch).eval()
    with torch.no_grad():
        for m in model.acla_modules().values():
            torch.nn.init.normal_(m.out.weight, std=0.05)
    model.to("cuda")
    x = torch.rand(1, 3, 16, 16)
    export_onnx(model, tmp_path / "child.onnx", x.to("cuda"))
    sess = ort.InferenceSession(str(tmp_path / "child.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 16, 16), (1, 3, 20, 12)):
        xi = torch.rand(*shape)
        with torch.no_grad():
            expected = model(xi.to("cuda")).cpu().numpy()
        out = sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})[0]
        assert abs(out - expected).max() < 1e-4
