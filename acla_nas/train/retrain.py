"""Retrain a child architecture from scratch (what ``acla-nas train`` and the pipeline run).

Writes ``DIR/config.yaml`` (arch + data + train settings: everything to reproduce),
``DIR/checkpoints/last.pt``, ``DIR/metrics.json`` (validation and test metrics, history) and
``DIR/model.pt`` (weights + arch + task: all that ``evaluate`` and ``restore`` need). Running it
again resumes an interrupted run and leaves a completed one untouched.

Data-parallel: ``nproc > 1`` starts that many processes (:func:`acla_nas.runtime.distributed.launch`);
started by torchrun, each process joins its process group. The global batch (``train.batch``) is
split across them and rank 0 alone writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import yaml

from acla_nas.core.errors import UserError
from acla_nas.runtime.machine import machine_info
from acla_nas.train.config import TrainConfig

OVERRIDES = ("steps", "patch", "batch", "seed", "lr", "val_every", "device", "tensorboard")


def _train_config(section: dict, overrides: dict, file: str, progress: bool = True) -> TrainConfig:
    """The arch file's ``train:`` section under the command-line flags (``--quiet`` last)."""
    section = dict(section)
    if overrides.get("device") is not None:
        section.pop("device", None)  # --device replaces the file's device; only the flag is checked
    return TrainConfig.from_recipe(
        section,
        overrides={name: overrides.get(name) for name in OVERRIDES},
        fixed=None if progress else {"progress": False},
        file=file,
    )


def _check_config_file(out: Path, config: dict[str, Any]) -> None:
    """``config.yaml`` pins the run directory to one experiment; write it once."""
    from acla_nas.nn.arch import read_yaml, write_text_atomic
    from acla_nas.runs.same_run import refuse_other_run

    path = out / "config.yaml"
    comparable = {k: v for k, v in config.items() if k != "runtime"}
    if path.is_file():
        stored = read_yaml(path)
        stored = {k: v for k, v in (stored or {}).items() if k != "runtime"} if isinstance(stored, dict) else stored
        refuse_other_run(
            stored,
            comparable,
            path,
            "the run directory belongs to another config",
            depth=1,
            advice="use another --out directory or the same settings",
        )
        return
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))


def train_arch(
    arch_file: str | Path,
    out: str | Path,
    overrides: dict | None = None,
    progress: bool = True,
    nproc: int = 1,
    sets: Sequence[str] = (),
) -> tuple[dict, Path, Any]:
    """Train the child of ``arch_file`` into ``out``; returns (result, model.pt path, task) (on
    every rank under torchrun; only rank 0 wrote anything). ``overrides`` are the named flags
    (``OVERRIDES``), ``sets`` the ``--set KEY=VALUE`` items applied to the arch file."""
    from acla_nas.core.overrides import parse_overrides

    parse_overrides(sets)  # a malformed item fails before any process starts
    from acla_nas.runtime import distributed
    from acla_nas.tasks import make_task

    device = (overrides or {}).get("device")
    if nproc != 1:
        result, model_path, spec = distributed.launch(
            nproc, _train_job, (arch_file, out, overrides, progress, tuple(sets)), device=device
        )
        return result, Path(model_path), make_task(spec)
    with distributed.process_group(device):
        return _train(arch_file, out, overrides, progress, sets)


def _train_job(
    arch_file: str | Path, out: str | Path, overrides: dict | None, progress: bool, sets: Sequence[str] = ()
) -> tuple[dict, str, dict]:
    """One rank of ``nproc``: what crosses back to the launching process (picklable)."""
    result, model_path, task = _train(arch_file, out, overrides, progress, sets)
    return result, str(model_path), task.spec


def _train(
    arch_file: str | Path, out: str | Path, overrides: dict | None, progress: bool, sets: Sequence[str] = ()
) -> tuple[dict, Path, Any]:
    from acla_nas.core.overrides import naming_overrides, parse_overrides
    from acla_nas.data.patches import PatchSampler, fixed_patches
    from acla_nas.data.sources import check_min_side, make_source
    from acla_nas.nn.arch import load_arch_file
    from acla_nas.nn.footprint import check_training
    from acla_nas.nn.network import build
    from acla_nas.runtime import distributed
    from acla_nas.runtime.device import resolve_device
    from acla_nas.runtime.run_log import TB_DIR, log_line, run_log, tensorboard_to
    from acla_nas.tasks import make_task
    from acla_nas.train.checkpoint import seed_everything
    from acla_nas.train.evaluate import evaluate_model
    from acla_nas.train.model_file import save_model_file
    from acla_nas.train.trainer import NonFiniteLossError, Trainer

    file = str(arch_file)
    parsed = parse_overrides(sets)
    with naming_overrides(parsed):
        arch, extra = load_arch_file(file, parsed)
        try:
            task = make_task(arch.task)
            cfg = _train_config(extra.get("train") or {}, overrides or {}, file, progress)
        except UserError as exc:
            raise (exc if exc.file or (exc.field or "").startswith("--") else exc.at(file=file)) from None
    data_spec = extra.get("data") or {"kind": "embedded"}
    try:
        source = make_source(data_spec, task.scale)
        train_items = source.split("train")
        val_items = source.split("val")
    except UserError as exc:
        raise (exc if exc.file else exc.at(file=file)) from None

    patch_field = "--patch" if (overrides or {}).get("patch") is not None else "train.patch"
    if cfg.patch % task.scale:
        raise UserError(
            f"expected a multiple of the task's scale ({task.scale}), got {cfg.patch}", file=file, field=patch_field
        )
    check_min_side(train_items, cfg.patch, f"training patch ({patch_field} of {file})", patch_field)
    test_items = source.split("test") if source.splits.get("test") else None
    for items in (val_items, test_items or []):
        check_min_side(
            items, task.min_side, f"the {task.name} protocol scores (SSIM window after the border crop)", "data"
        )
    batch_field = "--batch" if (overrides or {}).get("batch") is not None else "train.batch"
    check_training(arch, cfg.batch, cfg.patch, resolve_device(cfg.device), batch_field, file, file)
    seed_everything(cfg.seed)
    model = build(arch, file=file)
    sampler = PatchSampler(train_items, task, cfg.patch, cfg.batch, seed=cfg.seed)
    val = fixed_patches(val_items, task, cfg.val_patches, cfg.patch, seed=cfg.seed)

    # only a fully checked setup may claim the run directory
    out = Path(out)
    train_dict = cfg.to_dict()
    runtime = {k: train_dict.pop(k) for k in ("device", "progress", "tensorboard")}
    runtime["machine"] = machine_info(str(resolve_device(cfg.device)))  # kept from the first session
    if parsed:  # their values are in arch / data / train above; the list says where they came from
        runtime["overrides"] = [o.text for o in parsed]
    distributed.on_main(
        _check_config_file,
        out,
        {"arch": arch.to_dict(), "data": dict(data_spec), "train": train_dict, "runtime": runtime},
    )

    def final_eval(m) -> dict:
        if not test_items:
            return {}
        res = evaluate_model(m, test_items, task, m_device(m))
        return {"data": source.name, **res}

    trainer = Trainer(
        model, task, sampler, cfg, out, val_data=val, final_eval=final_eval, meta={"arch": arch.to_dict()}
    )
    main = distributed.is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        with (
            run_log(out / "train.log") if main else nullcontext(),
            tensorboard_to(out / TB_DIR if cfg.tensorboard and main else None, "train.tensorboard"),
        ):
            if main:
                log_line(f"acla-nas train {file} -> {out}: {task.describe()}, {cfg.steps} steps, batch {cfg.batch}")
            result = trainer.fit()
            if main:
                val = result.get("val_psnr")
                log_line(f"acla-nas: done: {result['steps']} steps, validation PSNR {_db(val)}")
    except NonFiniteLossError as exc:  # train.lr / train.grad_clip of this arch file (or the flags)
        raise (exc if exc.file else exc.at(file=file)) from None
    model_path = out / "model.pt"
    if distributed.is_main() and not model_path.is_file():
        save_model_file(
            model_path,
            trainer.model,
            arch.to_dict(),
            task.spec,
            {k: result.get(k) for k in ("val_psnr", "test", "steps", "final_loss")},
        )
    return result, model_path, task


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} dB"


def m_device(model) -> Any:
    """The device a model's parameters live on (CPU for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else "cpu"


def report(result: dict, task, model_path: Path) -> None:
    val = result.get("val_psnr")
    line = f"{task.describe()}: {result['steps']} steps"
    if val is not None:
        line += f", validation PSNR {val:.2f} dB"
    test = result.get("test") or {}
    if test.get("n"):
        line += (
            f"; test ({test.get('data')}, {test['n']} images) PSNR {test['psnr']:.2f} dB / SSIM {test['ssim']:.4f}"
            f" (input {test['floor_psnr']:.2f} dB / {test['floor_ssim']:.4f})"
        )
    print(line)
    if test.get("keys_used"):
        print(
            "keys kept per query (test mean): " + ", ".join(f"{site} {k:.2f}" for site, k in test["keys_used"].items())
        )
    print(f"model: {model_path}")
