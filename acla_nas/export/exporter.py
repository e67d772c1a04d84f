"""Export: a search run -> fixed child networks (arch.yaml, model card, weights, TorchScript, ONNX).

The exported child is a plain ``nn.Module`` rebuilt from ``arch.yaml`` alone
(:func:`acla_nas.nn.network.build`). Picks: the run's best architecture (default), the top-K
distinct architectures of the trajectory, or its Pareto front (PSNR up, MACs down).
Weights inherited from the supernet are exported when the run trained one (one-shot or DARTS),
so a child can be used or fine-tuned without retraining from scratch.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from acla_nas.core.atomic import atomic_path, write_text_atomic
from acla_nas.core.errors import UserError
from acla_nas.core.outputs import output_dir, refuse_foreign_results
from acla_nas.core.yaml_io import read_yaml
from acla_nas.nn.arch import Arch
from acla_nas.nn.cost import count_macs, count_params
from acla_nas.nn.network import build, copy_child_weights
from acla_nas.runs.pareto import pareto_mask
from acla_nas.runs.run_dir import RunDir
from acla_nas.search.config import RunConfig, load_run_config
from acla_nas.space import SearchSpace

INPUT_SIDE = (8, 4096)  # input heights/widths the exported models (ONNX dynamic shapes) accept


@dataclass
class Pick:
    name: str
    arch: Arch
    scores: dict[str, Any]


def load_run(run_dir: Path) -> tuple[dict, SearchSpace, pd.DataFrame]:
    """A run directory's config, space (rebuilt from config.yaml) and trajectory."""
    from acla_nas.runs.trajectory import load_trajectory

    config, space = load_run_config(run_dir)
    return config, space, load_trajectory(RunDir(run_dir))


def _row_scores(row: pd.Series) -> dict[str, Any]:
    return {
        "psnr": float(row["psnr"]),
        "flops": int(row["flops"]),
        "params": int(row["params"]),
        "step": int(row["step"]),
    }


def select(
    run_dir: Path, space: SearchSpace, df: pd.DataFrame, top: int | None = None, pareto: bool = False
) -> list[Pick]:
    """The architectures to export (distinct, COMPLETE rows only)."""
    done = df[df["state"] == "COMPLETE"].copy()
    done = done[done["psnr"].map(lambda v: isinstance(v, float) and math.isfinite(v))]
    if pareto or top:
        if done.empty:
            raise UserError("no completed trial to export", file=str(RunDir(run_dir).trajectory))
        done = done.sort_values(["psnr", "step"], ascending=[False, True]).drop_duplicates("arch")
    if pareto:
        on = pareto_mask(done["psnr"], done["flops"])
        front = sorted((r for (_, r), keep in zip(done.iterrows(), on) if keep), key=lambda r: r.flops)
        return [Pick(f"pareto{i + 1}", space.decode(json.loads(r.arch)), _row_scores(r)) for i, r in enumerate(front)]
    if top:
        return [
            Pick(f"top{i + 1}", space.decode(json.loads(r.arch)), _row_scores(r))
            for i, (_, r) in enumerate(done.head(top).iterrows())
        ]
    best_path = RunDir(run_dir).best_arch
    if not best_path.is_file():
        raise UserError("the run has no best_arch.yaml (is the search finished?)", file=str(best_path))
    from acla_nas.nn.arch import load_arch_file

    arch, extra = load_arch_file(best_path)
    prov = extra.get("provenance", {})
    return [Pick("best", arch, {k: prov.get(k) for k in ("psnr", "flops", "params", "step", "trial") if k in prov})]


def supernet_weights(run_dir: Path, config: dict) -> dict[str, torch.Tensor] | None:
    """The trained supernet's state dict of a run, from its strategy (:meth:`Strategy.saved_weights`;
    a plug-in strategy's class loads under the same trust rules as when the run was made)."""
    from acla_nas.search.strategies.base import strategy_class

    strat = config.get("strategy") or {}
    cls = strategy_class(str(strat.get("strategy")), str(RunDir(run_dir).config))
    return cls.saved_weights(RunDir(run_dir))


def model_card(
    pick: Pick, arch: Arch, config: dict, run_dir: Path, cost: dict, input_size: tuple[int, int], files: list[str]
) -> str:
    strat = config.get("strategy", {})
    lines = [
        f"# ACLA child `{pick.name}` from run `{run_dir.name}`",
        "",
        f"- backbone: `{arch.backbone}` {json.dumps(arch.backbone_kwargs)}",
        f"- task: {json.dumps(arch.task)}",
        f"- parameters: {cost['params']:,}",
        f"- multiply-adds (MACs) for a 3x{input_size[0]}x{input_size[1]} input: {cost['macs']:,} ({cost['macs'] / 1e9:.3f} G)",
        f"- plain backbone for comparison: {cost['plain_params']:,} parameters, {cost['plain_macs']:,} MACs",
        "",
        "## ACLA modules",
        "",
        "| site | keys | scope (attends to) |",
        "|---|---|---|",
    ]
    from acla_nas.nn.scope import resolve_refs

    order = [s.name for s in build(arch).sites]
    for site, choice in arch.modules.items():
        refs = resolve_refs(order, site, choice.scope)
        lines.append(
            f"| {site} | {choice.keys} | {choice.scope if not isinstance(choice.scope, tuple) else list(choice.scope)} -> {', '.join(refs)} |"
        )
    if not arch.modules:
        lines.append("| (none: the plain backbone) | | |")
    score = pick.scores.get("psnr")
    lines += [
        "",
        "## Provenance",
        "",
        f"- space: `{config.get('space_file')}`",
        f"- strategy: `{strat.get('strategy')}` (evaluator `{strat.get('evaluator')}`, seed {strat.get('seed')})",
        f"- run: `{run_dir}`",
        f"- search score: {f'validation PSNR {score:.3f} dB (search-time estimate, not a retrained result)' if isinstance(score, (int, float)) and score == score else 'n/a'}",
        f"- step/trial: {pick.scores.get('step', pick.scores.get('trial', 'n/a'))}",
        "",
        "## Files",
        "",
        *[f"- `{f}`" for f in files],
        "",
        "Rebuild with `acla_nas.nn.network.build(acla_nas.nn.arch.Arch.from_yaml('arch.yaml'))`; retrain with",
        "`acla-nas train arch.yaml --out DIR`.",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def _quiet_torch_onnx_log() -> Iterator[None]:
    """torch's ONNX exporter logs a warning per torchvision operator it cannot register when
    torchvision is absent (12 lines that concern no acla-nas model): raised to ERROR meanwhile."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_onnx(model: torch.nn.Module, path: Path, example: torch.Tensor) -> None:
    """ONNX (opset 18) with dynamic height and width, through torch.export."""
    try:
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError("ONNX export needs the onnx extra: pip install 'acla-nas[onnx]'", field="--onnx") from exc
    h = torch.export.Dim("height", min=INPUT_SIDE[0], max=INPUT_SIDE[1])
    w = torch.export.Dim("width", min=INPUT_SIDE[0], max=INPUT_SIDE[1])
    with warnings.catch_warnings(), _quiet_torch_onnx_log(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=True,
            opset_version=18,
            input_names=["lq"],
            output_names=["restored"],
            dynamic_shapes={"x": {2: h, 3: w}},
            external_data=False,
            verbose=False,
        )


def export_torchscript(model: torch.nn.Module, path: Path, example: torch.Tensor) -> None:
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(tmp))


def _exported_from(folder: Path) -> str | None:
    """The run an export folder's arch.yaml names (None when there is none or it is unreadable)."""
    try:
        doc = read_yaml(folder / "arch.yaml")
    except UserError:
        return None
    prov = doc.get("provenance") if isinstance(doc, dict) else None
    return str(prov.get("run")) if isinstance(prov, dict) and prov.get("run") is not None else None


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    top: int | None = None,
    pareto: bool = False,
    weights: bool = True,
    torchscript: bool = False,
    onnx: bool = False,
    input_size: tuple[int, int] | None = None,
    config: RunConfig | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write each pick to ``out/<name>/``; returns the pick directories. A pick folder that holds
    files of another export (another run) is refused unless ``overwrite``; re-exporting the same
    run refreshes its own files."""
    from acla_nas.train.model_file import save_model_file

    run_dir, out = Path(run_dir), Path(out)
    if config is None:
        stored, space, df = load_run(run_dir)
    else:  # the pipeline's own run configuration: the space is not parsed again
        from acla_nas.runs.trajectory import load_trajectory

        stored, space, df = config.to_dict(), config.space, load_trajectory(config.run)
    config_doc = stored
    picks = select(run_dir, space, df, top, pareto)
    size = tuple(input_size or space.spec.input_size)
    if (onnx or torchscript) and not all(INPUT_SIDE[0] <= v <= INPUT_SIDE[1] for v in size):
        raise UserError(
            f"the example input {size[0]}x{size[1]} is outside {INPUT_SIDE[0]}..{INPUT_SIDE[1]}, the sizes the "
            "exported models accept; pass --input-size H W",
            file=str(RunDir(run_dir).config),
            field="space.eval.input_size",
        )
    supernet_state = supernet_weights(run_dir, config_doc) if weights else None
    supernet = None
    if supernet_state is not None:
        supernet = space.supernet()
        supernet.load_state_dict(supernet_state)
    plain_cost = space.cost(space.template())
    output_dir(out)
    for pick in picks:  # every folder checked before anything is written
        refuse_foreign_results(
            out / pick.name, overwrite, ours=lambda d: _exported_from(d) == str(run_dir), what=f"an export of {run_dir}"
        )
    written = []
    rows = []
    for pick in picks:
        d = out / pick.name
        d.mkdir(parents=True, exist_ok=True)
        arch = pick.arch
        doc = arch.to_dict()
        doc["data"] = dict(space.spec.data)
        doc["provenance"] = {
            "space": config_doc.get("space_file"),
            "strategy": config_doc.get("strategy", {}).get("strategy"),
            "run": str(run_dir),
            **pick.scores,
        }
        write_text_atomic(d / "arch.yaml", yaml.safe_dump(doc, sort_keys=False))
        files = ["arch.yaml", "model_card.md", "card.json"]
        model = build(arch).eval()
        cost = {
            "macs": count_macs(model, size),
            "params": count_params(model),
            "plain_macs": plain_cost["macs"],
            "plain_params": plain_cost["params"],
        }
        if supernet is not None:
            copy_child_weights(supernet, model)
            save_model_file(
                d / "model.pt",
                model,
                arch.to_dict(),
                dict(arch.task),
                {"source": "inherited from the supernet (not retrained)"},
            )
            files.append("model.pt")
        example = torch.rand(1, 3, *size)
        if torchscript:
            export_torchscript(model, d / "model.ts", example)
            files.append("model.ts")
        if onnx:
            export_onnx(model, d / "model.onnx", example)
            files.append("model.onnx")
        card = {
            "name": pick.name,
            "arch": arch.to_dict(),
            "input_size": list(size),
            **cost,
            "scores": pick.scores,
            "files": files,
        }
        write_text_atomic(d / "card.json", json.dumps(card, indent=2))
        write_text_atomic(d / "model_card.md", model_card(pick, arch, config_doc, run_dir, cost, size, files))
        rows.append(
            {
                "name": pick.name,
                "step": pick.scores.get("step", pick.scores.get("trial")),
                "psnr": pick.scores.get("psnr"),
                "flops": cost["macs"],
                "params": cost["params"],
                "arch": json.dumps(space.encode(arch), sort_keys=True),
                "dir": str(d),
            }
        )
        written.append(d)
    with atomic_path(RunDir(run_dir).exported) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return written
