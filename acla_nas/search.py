"""One search run: space + strategy preset -> run directory (resumable).

Run directory: ``config.yaml`` (everything needed to reproduce), ``trajectory.csv``,
``best_arch.yaml``, ``sites.csv``, ``checkpoints/`` / ``supernet/``, and the Optuna storage
(``study.journal``) for multi-trial strategies. Running the same command on an existing run
directory resumes it; a different configuration is refused rather than mixed in.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .arch import read_yaml, write_text_atomic
from .data import check_min_side, fixed_patches, make_source
from .errors import UserError
from .checks import check_int, check_seed
from .device import resolve_device
from .evaluators import OneShotEvaluator, ProxyEvaluator, SearchData, check_train_section, make_evaluator
from .space import SearchSpace
from .strategies.base import SearchContext, make_strategy, strategy_class
from .tasks import make_task
from .trainer import NonFiniteLossError

STRATEGY_KEYS = ("strategy", "evaluator", "trials", "objectives", "options", "supernet", "proxy", "val", "seed")
RUNTIME_KEYS = ("device", "storage", "workers")  # may change between sessions of one run
VAL_LIMITS = {"patches": 10_000, "patch": 4096}  # validation patches are held in memory at once


@dataclass
class SearchResult:
    run_dir: Path
    best_arch: Any
    best_scores: dict
    seconds: float


def load_strategy_file(path: str | Path) -> dict:
    """Read and check a strategy preset (strategies/*.yaml)."""
    return parse_strategy(read_yaml(path), str(path))


def parse_strategy(data: Any, f: str | None = None) -> dict:
    """Check a strategy preset mapping read from file ``f``; returns it with defaults filled in."""
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping at the top level, got {type(data).__name__}", file=f)
    for key in data:
        if key not in STRATEGY_KEYS:
            raise UserError(f"unknown key (expected {', '.join(STRATEGY_KEYS)})", file=f, field=str(key))
    if not isinstance(data.get("strategy"), str):
        raise UserError("expected a strategy name (random, tpe, evolution, darts) or package.module:Class", file=f, field="strategy")
    strategy_class(data["strategy"], f)
    ev = data.setdefault("evaluator", "oneshot")
    if ev not in ("oneshot", "proxy"):
        raise UserError(f"expected oneshot or proxy, got {ev!r}", file=f, field="evaluator")
    check_int(data.setdefault("trials", 20), "trials", 1, file=f)
    obj = data.setdefault("objectives", ["psnr"])
    if isinstance(obj, str):
        obj = data["objectives"] = [obj]
    if obj not in (["psnr"], ["psnr", "flops"]):
        raise UserError(f"expected [psnr] or [psnr, flops], got {obj!r}", file=f, field="objectives")
    for key in ("options", "supernet", "proxy", "val"):
        if data.setdefault(key, {}) is None:
            data[key] = {}
        if not isinstance(data[key], dict):
            raise UserError("expected a mapping", file=f, field=key)
    if "seed" in data:
        check_seed(data["seed"], "seed", f)
    try:
        strategy_class(data["strategy"], f).check_options(data["options"])
    except UserError as exc:
        raise exc.at(file=f) from None
    check_train_section("supernet", data["supernet"], OneShotEvaluator.DEFAULTS, f)
    check_train_section("proxy", data["proxy"], ProxyEvaluator.DEFAULTS, f)
    for key in data["val"]:
        if key not in ("patches", "patch"):
            raise UserError("unknown key (expected patches, patch)", file=f, field=f"val.{key}")
        check_int(data["val"][key], f"val.{key}", 1, VAL_LIMITS[key], f)
    return data


def _comparable(config: dict) -> dict:
    """The parts of a config that define the run (the trial budget may grow: more trials extend it)."""
    out = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    if isinstance(out.get("strategy"), dict):
        out["strategy"] = {k: v for k, v in out["strategy"].items() if k != "trials"}
    return out


def _compare_configs(stored: dict, current: dict, path: Path) -> None:
    a, b = _comparable(stored), _comparable(current)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise UserError(
            f"this run directory holds a search with another configuration (differs in: {', '.join(diff)}); "
            "run the same command to resume it, or choose another --out",
            file=str(path),
        )


def check_flags(*, trials: int | None, steps: int | None, seed: int | None, device: str | None, workers: int) -> None:
    """The command-line overrides, before any file is read or anything trained."""
    if trials is not None:
        check_int(trials, "--trials", 1)
    if steps is not None:
        check_int(steps, "--steps", 1)
    if seed is not None:
        check_seed(seed)
    check_int(workers, "--workers", 1)
    resolve_device(device)


def prepare_config(space_path: str, strategy_path: str, out: Path, *, trials: int | None, steps: int | None, seed: int | None, device: str | None, storage: str | None, workers: int) -> tuple[SearchSpace, dict]:
    check_flags(trials=trials, steps=steps, seed=seed, device=device, workers=workers)
    space = SearchSpace.from_yaml(space_path)
    strat = load_strategy_file(strategy_path)
    if trials is not None:
        strat["trials"] = trials
    if steps is not None:
        # one knob for quick runs: the training length of whatever the strategy trains
        if strat["strategy"] == "darts":
            strat["options"]["steps"] = steps
            try:
                strategy_class(strat["strategy"], str(strategy_path)).check_options(strat["options"])
            except UserError as exc:  # e.g. an integer warm-up no longer shorter than --steps
                raise exc.at(file=str(strategy_path)) from None
        strat["supernet"]["steps"] = steps
        strat["proxy"]["steps"] = steps
    if seed is not None:
        strat["seed"] = seed
    strat.setdefault("seed", 0)
    config = {
        "acla_nas": __version__,
        "space_file": str(space_path),
        "space": space.to_dict(),
        "strategy_file": str(strategy_path),
        "strategy": strat,
        "device": device or "auto",
        "storage": storage,
        "workers": workers,
    }
    cfg_path = out / "config.yaml"
    if cfg_path.is_file():
        stored = read_yaml(cfg_path)
        if isinstance(stored, dict):
            # compare through YAML so tuples/lists and key order do not matter
            _compare_configs(stored, yaml.safe_load(yaml.safe_dump(config)), cfg_path)
    return space, config


def search_data(space: SearchSpace, strat: dict, device: str, progress: bool) -> SearchData:
    task = make_task(space.spec.task)
    try:
        source = make_source(space.spec.data, task.scale)
        train_items, val_items = source.split("train"), source.split("val")
    except UserError as exc:  # data.path and friends are fields of the space file
        raise (exc if exc.file else exc.at(file=space.file)) from None
    # validation images must hold the metric protocol (checked from the file headers)
    check_min_side(val_items, task.min_side, f"the {task.name} protocol scores (SSIM window after the border crop)", "data")
    v = strat.get("val", {})
    val = fixed_patches(val_items, task, v.get("patches", 16), v.get("patch", 48), seed=int(strat["seed"]))
    return SearchData(task, train_items, val_items, val, device=device, seed=int(strat["seed"]), progress=progress)


def _check_patches(strat: dict, task: Any, train_items: Any, val_items: Any, file: str) -> None:
    """The training patch of whatever the strategy trains: a multiple of the scale that the
    training images hold (checked from the file headers before anything trains)."""
    if strat["strategy"] == "darts":  # DARTS samples training and validation patches of options.patch
        patch, fld = strat["options"].get("patch", 48), "options.patch"
        check_min_side(val_items, patch, f"DARTS patch ({fld} of {file})", fld)
    else:
        section = "supernet" if strat["evaluator"] == "oneshot" else "proxy"
        patch, fld = strat[section].get("patch", 48), f"{section}.patch"
    if isinstance(patch, int) and patch % task.scale:
        raise UserError(f"expected a multiple of the task's scale ({task.scale}), got {patch}", file=file, field=fld)
    check_min_side(train_items, patch, f"training patch ({fld} of {file})", fld)


def _check_training_memory(space: SearchSpace, strat: dict, config: dict, cls: Any) -> None:
    """The supernet (or proxy, or DARTS) training of this preset must fit in free memory."""
    from .memory import check_training
    from .strategies.darts import DartsStrategy

    if issubclass(cls, DartsStrategy):
        o = {**DartsStrategy.DEFAULTS, **strat["options"]}
        batch, patch, fld = o["batch"], o["patch"], "options.batch"
    elif cls.multi_trial:
        section = "supernet" if strat["evaluator"] == "oneshot" else "proxy"
        ev = OneShotEvaluator if section == "supernet" else ProxyEvaluator
        o = {**ev.DEFAULTS, **strat[section]}
        batch, patch, fld = o["batch"], o["patch"], f"{section}.batch"
    else:
        return
    check_training(space.template(), batch, patch, resolve_device(config["device"]), fld, config.get("strategy_file"), space.file)


def _context(space: SearchSpace, config: dict, out: Path, progress: bool, worker: bool = False) -> SearchContext:
    strat = config["strategy"]
    data = search_data(space, strat, config["device"], progress)
    _check_patches(strat, data.task, data.train_items, data.val_items, config["strategy_file"])
    cls = strategy_class(strat["strategy"])
    _check_training_memory(space, strat, config, cls)
    evaluator = None
    if cls.multi_trial:
        section = strat.get("supernet") if strat["evaluator"] == "oneshot" else strat.get("proxy")
        evaluator = make_evaluator(strat["evaluator"], space, data, section, out)
    return SearchContext(
        space=space,
        data=data,
        run_dir=out,
        run_name=out.name,
        strategy_name=strat["strategy"],
        evaluator_name=strat["evaluator"] if cls.multi_trial else "oneshot",
        evaluator=evaluator,
        trials=int(strat["trials"]),
        seed=int(strat["seed"]),
        storage=config.get("storage"),
        workers=int(config.get("workers", 1)),
        objectives=tuple(strat["objectives"]),
        options=dict(strat.get("options") or {}),
        steps=None,
        worker=worker,
    )


def _worker_main(space_path: str, config: dict, out: str, allowed: tuple[str, ...] = ()) -> None:
    """An extra process of ``--workers N``: the same loop on the same Optuna storage, with the
    imports the user allowed in the parent process."""
    import torch

    from .trust import allow_imports

    torch.set_num_threads(1)
    with allow_imports(allowed):
        space = SearchSpace.from_yaml(space_path)
        ctx = _context(space, config, Path(out), progress=False, worker=True)
        make_strategy(ctx).run()


def _run_strategy(strategy: Any, config: dict) -> None:
    """Run the strategy; a non-finite loss names the preset whose settings led to it."""
    try:
        strategy.run()
    except NonFiniteLossError as exc:
        raise (exc if exc.file else exc.at(file=config["strategy_file"])) from None


def run_search(
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
    progress: bool = True,
) -> SearchResult:
    """Start or resume the search in ``out``; returns the best architecture found."""
    out = Path(out)
    space, config = prepare_config(space_path, strategy_path, out, trials=trials, steps=steps, seed=seed, device=device, storage=storage, workers=workers)
    # data, evaluator and strategy are all set up (and checked) before the run directory is claimed
    ctx = _context(space, config, out, progress)
    strategy = make_strategy(ctx, config["strategy_file"])
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_text_atomic(out / "sites.csv", "name,channels,stride\n" + "".join(f"{s.name},{s.channels},{s.stride}\n" for s in space.backbone_sites))
    if workers > 1 and strategy.multi_trial:
        if ctx.evaluator is not None:
            ctx.evaluator.prepare()  # train the supernet once, before the workers load it
        from .trust import allowed_prefixes

        allowed = allowed_prefixes()
        procs = [mp.get_context("spawn").Process(target=_worker_main, args=(space_path, config, str(out), allowed)) for _ in range(workers - 1)]
        for p in procs:
            p.start()
        try:
            _run_strategy(strategy, config)
        finally:
            for p in procs:
                p.join()
        _run_strategy(strategy, config)  # writes the final trajectory (and finishes anything a worker left)
    else:
        _run_strategy(strategy, config)
    best = strategy.best()
    if best is None:
        raise UserError("the search finished without a single successful evaluation (see trajectory.csv)", file=str(out / "trajectory.csv"))
    arch, scores = best
    doc = arch.to_dict()
    doc["provenance"] = {
        "space": config["space_file"],
        "strategy": config["strategy"]["strategy"],
        "evaluator": ctx.evaluator_name,
        "run": str(out),
        "seed": ctx.seed,
        **{k: (float(v) if isinstance(v, float) else v) for k, v in scores.items() if v is not None},
    }
    write_text_atomic(out / "best_arch.yaml", yaml.safe_dump(doc, sort_keys=False))
    return SearchResult(out, arch, scores, ctx.elapsed())


__all__ = ["SearchResult", "run_search", "load_strategy_file", "parse_strategy"]
