"""search -> export -> retrain -> evaluate -> plots, resuming at the stage where it stopped.

Stages and where they leave their results in RUN_DIR:

1. search: ``trajectory.csv``, ``best_arch.yaml`` (resumes like ``acla-nas search``);
2. export: ``export/best/`` (arch.yaml, model card, inherited weights);
3. retrain: ``retrain/{plain,paper,discovered}/`` — the plain backbone, the paper-style fixed
   placement and the discovered child, all trained from scratch with the same recipe and seed
   (each resumes like ``acla-nas train``; identical architectures are trained once);
4. evaluate: ``final_table.csv`` — test PSNR/SSIM (task protocol, full test images), params and
   MACs, plus the naive floor (bicubic / noisy input);
5. plots: ``plots/`` and ``report.html``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .arch import Arch, load_arch_file, write_text_atomic
from .cost import count_macs, count_params
from .errors import UserError
from .network import build

DEFAULT_RECIPE: dict[str, Any] = {"steps": 1500, "patch": 48, "batch": 8, "lr": 5.0e-4, "schedule": "cosine", "val_every": 0, "val_patches": 16, "ckpt_every": 100}
VARIANTS = ("plain", "paper", "discovered")


@dataclass
class PipelineResult:
    run_dir: Path
    table: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def _stage_log(run_dir: Path, stage: str, seconds: float) -> None:
    path = run_dir / "pipeline.json"
    state = json.loads(path.read_text()) if path.is_file() else {}
    state[stage] = {"done": True, "seconds": round(seconds, 1)}
    write_text_atomic(path, json.dumps(state, indent=2))


def _variant_archs(run_dir: Path, space: Any) -> dict[str, Arch]:
    refs = space.reference_archs()
    discovered, _ = load_arch_file(run_dir / "export" / "best" / "arch.yaml")
    return {"plain": refs["plain"], "paper": refs["paper"], "discovered": discovered}


def retrain_variants(run_dir: Path, space: Any, recipe: dict, seed: int, device: str | None, progress: bool, log: Any = print,
                     nproc: int = 1) -> dict[str, dict]:
    """Train each distinct variant once from scratch with the same recipe; returns name -> metrics."""
    from .retrain import train_arch

    archs = _variant_archs(run_dir, space)
    trained: dict[str, tuple[dict, Path]] = {}
    out: dict[str, dict] = {}
    for name in VARIANTS:
        arch = archs[name]
        key = arch.key()
        d = run_dir / "retrain" / name
        if key in trained:  # same network as an earlier variant: same recipe and seed, same result
            result, model_path = trained[key]
            log(f"[retrain] {name}: same architecture as an earlier variant, reusing its result")
        else:
            doc = arch.to_dict()
            doc["data"] = dict(space.spec.data)
            doc["train"] = {**recipe, "seed": seed}
            d.mkdir(parents=True, exist_ok=True)
            arch_file = d / "arch.yaml"
            if not arch_file.is_file():
                write_text_atomic(arch_file, yaml.safe_dump(doc, sort_keys=False))
            log(f"[retrain] {name}: {arch.n_modules()} ACLA module(s), {recipe['steps']} steps")
            result, model_path, _task = train_arch(arch_file, d, {"device": device}, progress=progress, nproc=nproc)
            trained[key] = (result, model_path)
        out[name] = {"arch": arch, "result": result, "model": model_path}
    return out


def final_table(space: Any, variants: dict[str, dict]) -> pd.DataFrame:
    """One row per variant (and the naive floor): test PSNR/SSIM, params, MACs."""
    size = tuple(space.spec.input_size)
    rows = []
    floor = None
    for name, v in variants.items():
        test = v["result"].get("test") or {}
        model = build(v["arch"])
        rows.append({
            "model": name,
            "modules": ", ".join(f"{s}:K{c.keys}/{c.scope if not isinstance(c.scope, tuple) else '+'.join(c.scope)}" for s, c in v["arch"].modules.items()) or "-",
            "psnr": test.get("psnr", math.nan),
            "ssim": test.get("ssim", math.nan),
            "val_psnr": v["result"].get("val_psnr", math.nan),
            "params": count_params(model),
            "macs": count_macs(model, size),
            "train_seconds": v["result"].get("seconds", math.nan),
        })
        if test and floor is None:
            floor = {"model": "input (floor)", "modules": "-", "psnr": test.get("floor_psnr"), "ssim": test.get("floor_ssim"),
                     "val_psnr": math.nan, "params": 0, "macs": 0, "train_seconds": math.nan}
    if floor:
        rows.append(floor)
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame, input_size: tuple[int, int], test_name: str) -> str:
    lines = [f"Test set: {test_name}. MACs for a 3x{input_size[0]}x{input_size[1]} input.",
             f"{'model':<14} {'PSNR (dB)':>9} {'SSIM':>7} {'params':>10} {'MACs (M)':>9}  modules"]
    for _, r in df.iterrows():
        macs = f"{r.macs / 1e6:9.1f}" if r.macs else f"{'-':>9}"
        params = f"{int(r.params):>10,}" if r.params else f"{'-':>10}"
        lines.append(f"{r.model:<14} {r.psnr:9.3f} {r.ssim:7.4f} {params} {macs}  {r.modules}")
    return "\n".join(lines)


def run_pipeline(
    space_path: str,
    strategy_path: str,
    out: str | Path,
    *,
    trials: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    nproc: int = 1,
    retrain: dict | None = None,
    progress: bool = True,
    log: Any = print,
) -> PipelineResult:
    from . import distributed
    from .export import export_run
    from .search import run_search

    if distributed.from_env().enabled:
        raise UserError("the pipeline starts its own processes: run it with --nproc N, not under torchrun "
                        "(torchrun works with the search and train verbs)", field="--nproc")

    run_dir = Path(out)
    recipe = {**DEFAULT_RECIPE, **(retrain or {})}
    from .trainer import TrainConfig

    try:
        TrainConfig.from_dict(recipe)
    except UserError as exc:  # a --retrain-* flag (the defaults are valid)
        key = (exc.field or "").removeprefix("train.")
        raise UserError(exc.message, field=f"--retrain-{key}" if key in ("steps", "batch", "patch") else "retrain") from None
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    log("[1/5 search] " + ("resuming" if (run_dir / "config.yaml").is_file() else "starting") + f" in {run_dir}")
    res = run_search(space_path, strategy_path, run_dir, trials=trials, steps=steps, seed=seed, device=device, storage=storage,
                     workers=workers, nproc=nproc, progress=progress)
    seconds["search"] = time.perf_counter() - t
    _stage_log(run_dir, "search", seconds["search"])
    space = _space_of(run_dir)
    seed_value = int(yaml.safe_load((run_dir / "config.yaml").read_text())["strategy"]["seed"])

    t = time.perf_counter()
    best_dir = run_dir / "export" / "best"
    if best_dir.joinpath("arch.yaml").is_file() and load_arch_file(best_dir / "arch.yaml")[0] == res.best_arch:
        log("[2/5 export] already exported")
    else:
        export_run(run_dir, run_dir / "export")
        log(f"[2/5 export] {best_dir}")
    seconds["export"] = time.perf_counter() - t
    _stage_log(run_dir, "export", seconds["export"])

    t = time.perf_counter()
    variants = retrain_variants(run_dir, space, recipe, seed_value, device, progress, log, nproc=nproc)
    seconds["retrain"] = time.perf_counter() - t
    _stage_log(run_dir, "retrain", seconds["retrain"])

    t = time.perf_counter()
    table = final_table(space, variants)
    table.to_csv(run_dir / "final_table.csv", index=False)
    seconds["evaluate"] = time.perf_counter() - t
    _stage_log(run_dir, "evaluate", seconds["evaluate"])

    t = time.perf_counter()
    try:
        from .plots import plot_runs
        from .report import write_report

        from .plots.key_usage import plot_key_usage

        plot_runs([run_dir], run_dir / "plots")
        child = run_dir / "retrain" / "discovered" / "model.pt"
        if child.is_file():
            _files, note = plot_key_usage(child, None, run_dir / "plots", ["png"])
            if note:
                log(f"[5/5 plots] {note}")
        write_report(run_dir)
        log(f"[5/5 plots] {run_dir / 'plots'}, {run_dir / 'report.html'}")
    except UserError as exc:  # a figure the data cannot support is not a failed pipeline
        log(f"[5/5 plots] skipped: {exc}")
    seconds["plots"] = time.perf_counter() - t
    _stage_log(run_dir, "plots", seconds["plots"])
    return PipelineResult(run_dir, table, seconds)


def _space_of(run_dir: Path) -> Any:
    from .space import SearchSpace

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return SearchSpace.from_dict(cfg["space"], file=str(run_dir / "config.yaml"))
