"""Export (arch.yaml, model card, inherited weights, TorchScript, ONNX) and the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from acla_nas.cli.main import main
from acla_nas.export.exporter import export_run
from acla_nas.nn.arch import load_arch_file
from acla_nas.nn.network import build
from acla_nas.pipeline import run_pipeline
from acla_nas.search.run import run_search
from acla_nas.space import SearchSpace
from acla_nas.train.model_file import load_model

SPACE = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 3, "image_skip": True}},
    "task": {"name": "sr", "scale": 2},
    "eval": {"input_size": [16, 16]},
    "sites": "all",
    "keys": [0, 2, 4],
    "scopes": [1, "all"],
    "constraints": {"max_modules": 2},
}
STRATEGY = {
    "strategy": "random",
    "trials": 4,
    "objectives": ["psnr", "flops"],
    "supernet": {"steps": 3, "batch": 2, "patch": 24},
    "val": {"patches": 3, "patch": 24},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("exp")
    space = d / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    strat = d / "random.yaml"
    strat.write_text(yaml.safe_dump(STRATEGY))
    run_search(str(space), str(strat), d / "run", progress=False)
    return d / "run", str(space)


def test_export_best_is_rebuilt_from_arch_yaml_alone(run, tmp_path: Path) -> None:
    run_dir, space_file = run
    (d,) = export_run(run_dir, tmp_path / "out")
    arch, extra = load_arch_file(d / "arch.yaml")
    best, _ = load_arch_file(run_dir / "best_arch.yaml")
    assert arch == best and extra["data"] == {"kind": "embedded"} and extra["provenance"]["strategy"] == "random"
    card = json.loads((d / "card.json").read_text())
    space = SearchSpace.from_yaml(space_file)
    assert card["macs"] == space.cost(arch)["macs"] and card["params"] == space.cost(arch)["params"]
    text = (d / "model_card.md").read_text()
    assert f"{card['params']:,}" in text and "3x16x16" in text and "Provenance" in text
    # inherited weights equal the supernet path on the same input
    model, arch2, _ = load_model(d / "model.pt")
    assert arch2 == arch.to_dict() if isinstance(arch2, dict) else arch2 == arch
    sn = space.supernet()
    sn.load_state_dict(torch.load(run_dir / "supernet" / "checkpoints" / "last.pt", weights_only=True)["model"])
    x = torch.rand(1, 3, 12, 12)
    sn.eval().use(arch.modules)
    assert torch.allclose(model.eval()(x), sn(x), atol=1e-5)
    rows = pd.read_csv(run_dir / "exported.csv")
    assert list(rows.name) == ["best"]


def test_export_top_k_and_pareto(run, tmp_path: Path) -> None:
    run_dir, _ = run
    df = pd.read_csv(run_dir / "trajectory.csv")
    done = df[df.state == "COMPLETE"].drop_duplicates("arch")
    tops = export_run(run_dir, tmp_path / "top", top=2, weights=False)
    assert [p.name for p in tops] == ["top1", "top2"]
    best_psnr = sorted(done.psnr, reverse=True)[:2]
    got = [json.loads((p / "card.json").read_text())["scores"]["psnr"] for p in tops]
    assert got == pytest.approx(best_psnr)
    assert not (tops[0] / "model.pt").exists()
    front = export_run(run_dir, tmp_path / "pareto", weights=False)
    assert len(front) == 1
    pareto = export_run(run_dir, tmp_path / "p2", pareto=True, weights=False)
    flops = [json.loads((p / "card.json").read_text())["macs"] for p in pareto]
    psnrs = [json.loads((p / "card.json").read_text())["scores"]["psnr"] for p in pareto]
    assert flops == sorted(flops) and psnrs == sorted(psnrs)  # cheaper is worse along a front


def test_torchscript_and_onnx_match_pytorch(run, tmp_path: Path, capfd) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run_dir, _ = run
    capfd.readouterr()
    (d,) = export_run(run_dir, tmp_path / "out", torchscript=True, onnx=True)
    assert "torchvision" not in capfd.readouterr().err  # torch's exporter logs about absent torchvision ops
    model, _, _ = load_model(d / "model.pt")
    model.eval()
    with torch.no_grad():
        for m in model.acla_modules().values():  # make the modules matter
            torch.nn.init.normal_(m.out.weight, std=0.05)
    arch, _ = load_arch_file(d / "arch.yaml")
    # re-export those weights through the same functions the exporter uses
    from acla_nas.export.exporter import export_onnx, export_torchscript

    x = torch.rand(1, 3, 16, 16)
    export_onnx(model, d / "check.onnx", x)
    export_torchscript(model, d / "check.ts", x)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(d / "check.onnx"))
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert abs(out - ref).max() < 1e-4
    x2 = torch.rand(1, 3, 20, 12)  # dynamic height and width
    out2 = sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})[0]
    with torch.no_grad():
        assert abs(out2 - model(x2).numpy()).max() < 1e-4
    ts = torch.jit.load(str(d / "check.ts"))
    assert torch.allclose(ts(x), torch.from_numpy(ref), atol=1e-5)
    assert (d / "model.onnx").stat().st_size > 0 and (d / "model.ts").stat().st_size > 0


def test_export_bad_run_dir_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_pipeline_runs_all_stages_and_resumes(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    strat = tmp_path / "s.yaml"
    strat.write_text(yaml.safe_dump({**STRATEGY, "objectives": ["psnr"], "trials": 3}))
    recipe = {"steps": 4, "batch": 2, "patch": 24, "ckpt_every": 2}
    lines: list[str] = []
    res = run_pipeline(str(space), str(strat), tmp_path / "run", retrain=recipe, progress=False, log=lines.append)
    stages = [line.split()[0] for line in lines]  # every stage line numbered, none skipped, in order
    assert sorted(set(stages)) == ["[1/5", "[2/5", "[3/5", "[4/5", "[5/5"] and stages == sorted(stages), lines
    table = res.table.set_index("model")
    assert list(table.index) == ["plain", "paper", "discovered", "input (floor)"]
    assert table.loc["paper", "params"] > table.loc["plain", "params"]
    assert (table.psnr > 5).all() and (table.ssim > 0).all()
    run_dir = tmp_path / "run"
    for name in ("plain", "paper", "discovered"):
        assert (run_dir / "retrain" / name / "model.pt").is_file() or name != "plain"
    assert (run_dir / "final_table.csv").is_file() and (run_dir / "report.html").is_file()
    assert any((run_dir / "plots").glob("*.png"))
    has_modules = table.loc["discovered", "modules"] != "-"
    assert (run_dir / "plots" / "key_usage.png").is_file() == has_modules  # the retrained child's gates
    assert ("keys kept per query" in (run_dir / "report.html").read_text()) == has_modules
    state = json.loads((run_dir / "pipeline.json").read_text())
    assert set(state) == {"search", "export", "retrain", "evaluate", "plots"}
    # resuming a finished pipeline retrains nothing and gives the same table
    before = (run_dir / "retrain" / "plain" / "metrics.json").read_text()
    again = run_pipeline(str(space), str(strat), tmp_path / "run", retrain=recipe, progress=False, log=lambda *_: None)
    assert (run_dir / "retrain" / "plain" / "metrics.json").read_text() == before
    pd.testing.assert_frame_equal(
        again.table.drop(columns=["train_seconds"]), res.table.drop(columns=["train_seconds"])
    )


def test_paper_reference_child_is_the_plain_network_plus_quarter_modules() -> None:
    space = SearchSpace.from_dict(SPACE)
    refs = space.reference_archs()
    paper, plain = build(refs["paper"]).eval(), build(refs["plain"]).eval()
    plain.load_state_dict({k: v for k, v in paper.state_dict().items() if not k.startswith("acla.")})
    x = torch.rand(1, 3, 10, 10)
    assert torch.allclose(paper(x), plain(x))  # zero-initialised outputs: same function at init
    last = list(refs["paper"].modules)[-1]
    assert set(refs["paper"].modules[last].scope) == {"head", *list(refs["paper"].modules)[:-1]}
