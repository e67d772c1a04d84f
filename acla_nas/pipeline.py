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

from acla_nas.core.atomic import atomic_path, write_text_atomic
from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, load_arch_file
from acla_nas.nn.cost import count_macs, count_params
from acla_nas.nn.network import build
from acla_nas.runs.run_dir import RunDir
from acla_nas.search.config import RunConfig
from acla_nas.search.flags import SearchFlags

DEFAULT_RECIPE: dict[str, Any] = {
    "steps": 1500,
    "patch": 48,
    "batch": 8,
    "lr": 5.0e-4,
    "schedule": "cosine",
    "val_every": 0,
    "val_patches": 16,
    "ckpt_every": 100,
}
VARIANTS = ("plain", "paper", "discovered")


@dataclass
class PipelineResult:
    run_dir: Path
    table: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def _stage_log(run: RunDir, stage: str, seconds: float) -> None:
    path = run.pipeline_state
    state = json.loads(path.read_text()) if path.is_file() else {}
    state[stage] = {"done": True, "seconds": round(seconds, 1)}
    write_text_atomic(path, json.dumps(state, indent=2))


def _variant_archs(run: RunDir, space: Any) -> dict[str, Arch]:
    refs = space.reference_archs()
    discovered, _ = load_arch_file(run.exported_best / "arch.yaml")
    return {"plain": refs["plain"], "paper": refs["paper"], "discovered": discovered}


def retrain_variants(
    run_dir: Path,
    space: Any,
    recipe: dict,
    seed: int,
    device: str | None,
    progress: bool,
    log: Any = print,
    nproc: int = 1,
    tensorboard: bool = False,
) -> dict[str, dict]:
    """Train each distinct variant once from scratch with the same recipe; returns name -> metrics."""
    from acla_nas.train.retrain import train_arch

    run = RunDir(run_dir)
    archs = _variant_archs(run, space)
    trained: dict[str, tuple[dict, Path]] = {}
    out: dict[str, dict] = {}
    for name in VARIANTS:
        arch = archs[name]
        key = arch.key()
        d = run.retrain(name)
        if key in trained:  # same network as an earlier variant: same recipe and seed, same result
            result, model_path = trained[key]
            log(f"[3/5 retrain] {name}: same architecture as an earlier variant, reusing its result")
        else:
            doc = arch.to_dict()
            doc["data"] = dict(space.spec.data)
            doc["train"] = {**recipe, "seed": seed}
            d.mkdir(parents=True, exist_ok=True)
            arch_file = d / "arch.yaml"
            if not arch_file.is_file():
                write_text_atomic(arch_file, yaml.safe_dump(doc, sort_keys=False))
            log(f"[3/5 retrain] {name}: {arch.n_modules()} ACLA module(s), {recipe['steps']} steps")
            flags = {"device": device, "tensorboard": tensorboard or None}
            result, model_path, _task = train_arch(arch_file, d, flags, progress=progress, nproc=nproc)
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
        rows.append(
            {
                "model": name,
                "modules": ", ".join(
                    f"{s}:K{c.keys}/{c.scope if not isinstance(c.scope, tuple) else '+'.join(c.scope)}"
                    for s, c in v["arch"].modules.items()
                )
                or "-",
                "psnr": test.get("psnr", math.nan),
                "ssim": test.get("ssim", math.nan),
                "val_psnr": v["result"].get("val_psnr", math.nan),
                "params": count_params(model),
                "macs": count_macs(model, size),
                "train_seconds": v["result"].get("seconds", math.nan),
            }
        )
        if test and floor is None:
            floor = {
                "model": "input (floor)",
                "modules": "-",
                "psnr": test.get("floor_psnr"),
                "ssim": test.get("floor_ssim"),
                "val_psnr": math.nan,
                "params": 0,
                "macs": 0,
                "train_seconds": math.nan,
            }
    if floor:
        rows.append(floor)
    return pd.DataFrame(rows)


def format_table(df: pd.DataFrame, input_size: tuple[int, int], test_name: str) -> str:
    lines = [
        f"Test set: {test_name}. MACs for a 3x{input_size[0]}x{input_size[1]} input.",
        f"{'model':<14} {'PSNR (dB)':>9} {'SSIM':>7} {'params':>10} {'MACs (M)':>9}  modules",
    ]
    for _, r in df.iterrows():
        macs = f"{r.macs / 1e6:9.1f}" if r.macs else f"{'-':>9}"
        params = f"{int(r.params):>10,}" if r.params else f"{'-':>10}"
        lines.append(f"{r.model:<14} {r.psnr:9.3f} {r.ssim:7.4f} {params} {macs}  {r.modules}")
    return "\n".join(lines)


def check_recipe(retrain: dict | None) -> dict:
    """The retraining recipe: the defaults with the ``--retrain-*`` flags, checked."""
    from acla_nas.train.config import TrainConfig

    given = {k: v for k, v in (retrain or {}).items() if v is not None}
    TrainConfig.from_recipe(  # checked here, built by each retraining from its arch file
        defaults=DEFAULT_RECIPE,
        overrides=given,
        flag=lambda key: f"--retrain-{key}" if key in ("steps", "batch", "patch") else "retrain",
    )
    return {**DEFAULT_RECIPE, **given}


def refuse_torchrun() -> None:
    """The pipeline starts its own processes (--nproc); under torchrun every rank would run it all."""
    from acla_nas.runtime import distributed

    if distributed.from_env().enabled:
        raise UserError(
            "the pipeline starts its own processes: run it with --nproc N, not under torchrun "
            "(torchrun works with the search and train verbs)",
            field="--nproc",
        )


def pipeline(cfg: RunConfig, *, recipe: dict | None = None, progress: bool = True, log: Any = print) -> PipelineResult:
    """The whole job on one checked run configuration (its space is the one every stage uses)."""
    from acla_nas.export.exporter import export_run
    from acla_nas.search.run import search

    refuse_torchrun()
    recipe = recipe or dict(DEFAULT_RECIPE)
    run, space = cfg.run, cfg.space
    device = None if cfg.device == "auto" else cfg.device
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    log("[1/5 search] " + ("resuming" if run.config.is_file() else "starting") + f" in {run}")
    res = search(cfg, progress=progress)
    seconds["search"] = time.perf_counter() - t
    _stage_log(run, "search", seconds["search"])

    t = time.perf_counter()
    best_dir = run.exported_best
    if best_dir.joinpath("arch.yaml").is_file() and load_arch_file(best_dir / "arch.yaml")[0] == res.best_arch:
        log("[2/5 export] already exported")
    else:
        export_run(run.path, run.export, config=cfg)
        log(f"[2/5 export] {best_dir}")
    seconds["export"] = time.perf_counter() - t
    _stage_log(run, "export", seconds["export"])

    t = time.perf_counter()
    flags = cfg.flags
    variants = retrain_variants(
        run.path, space, recipe, cfg.seed, device, progress, log, nproc=flags.nproc, tensorboard=flags.tensorboard
    )
    seconds["retrain"] = time.perf_counter() - t
    _stage_log(run, "retrain", seconds["retrain"])

    t = time.perf_counter()
    table = final_table(space, variants)
    with atomic_path(run.final_table) as tmp:
        table.to_csv(tmp, index=False)
    log(f"[4/5 evaluate] {run.final_table}")
    seconds["evaluate"] = time.perf_counter() - t
    _stage_log(run, "evaluate", seconds["evaluate"])

    t = time.perf_counter()
    try:
        from acla_nas.plots import plot_runs
        from acla_nas.plots.report import write_report

        res_plots = plot_runs([run.path], run.plots, with_model=True)
        for note in res_plots.notes:
            if note.startswith("key usage"):
                log(f"[5/5 plots] {note}")
        write_report(run.path)
        log(f"[5/5 plots] {run.plots}, {run.report}")
    except UserError as exc:  # a figure the data cannot support is not a failed pipeline
        log(f"[5/5 plots] skipped: {exc}")
    seconds["plots"] = time.perf_counter() - t
    _stage_log(run, "plots", seconds["plots"])
    return PipelineResult(run.path, table, seconds)


def run_pipeline(
    space_path: str | Path,
    strategy_path: str | Path,
    out: str | Path,
    flags: SearchFlags | None = None,
    *,
    retrain: dict | None = None,
    progress: bool = True,
    log: Any = print,
    **overrides: Any,
) -> PipelineResult:
    """:func:`pipeline` from file names (library use); ``overrides`` are the
    :class:`~acla_nas.search.flags.SearchFlags` fields as keywords."""
    refuse_torchrun()
    recipe = check_recipe(retrain)
    cfg = RunConfig.from_files(space_path, strategy_path, out, flags, **overrides)
    return pipeline(cfg, recipe=recipe, progress=progress, log=log)
