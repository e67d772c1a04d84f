"""One search run: space + strategy preset -> run directory (resumable).

Run directory: ``config.yaml`` (everything needed to reproduce), ``trajectory.csv``,
``best_arch.yaml``, ``sites.csv``, ``checkpoints/`` / ``supernet/``, and the Optuna storage
(``study.journal``) for multi-trial strategies. Running the same command on an existing run
directory resumes it; a different configuration is refused rather than mixed in.

Order of work: the flags and files are checked, the study is opened and checked
(:mod:`acla_nas.study`), the data, evaluator and strategy are set up and checked, and only then
is the run directory claimed (``config.yaml``) and anything trained. Scale-out: ``--workers``
runs more trial loops on the same study (more processes or machines may join it through the same
``--storage``); ``--nproc`` (or torchrun) trains the supernet or runs DARTS data-parallel, after
which rank 0 alone runs the trials.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import __version__, distributed
from .arch import read_yaml, write_text_atomic
from .data import check_min_side, fixed_patches, make_source
from .errors import UserError
from .checks import check_int, check_seed
from .device import resolve_device
from .evaluators import OneShotEvaluator, ProxyEvaluator, SearchData, check_train_section, make_evaluator
from .machine import keep_first_machine, machine_info
from .table import parse_table_section
from .space import SearchSpace
from .storage import DEFAULT_JOURNAL, StorageSpec, parse_storage
from .strategies.base import SearchContext, make_strategy, strategy_class
from .tasks import make_task
from .trainer import NonFiniteLossError
from .trajectory import outputs_lock

STRATEGY_KEYS = ("strategy", "evaluator", "trials", "objectives", "options", "supernet", "proxy", "table", "val", "seed")
EVALUATOR_SECTION = {"oneshot": "supernet", "proxy": "proxy", "table": "table"}  # evaluator -> its preset section
RUNTIME_KEYS = ("device", "storage", "workers", "machine", "resumed_on")  # may change between sessions of one run
VAL_LIMITS = {"patches": 10_000, "patch": 4096}  # validation patches are held in memory at once
WORKER_START_TIMEOUT = 600.0  # seconds the main loop waits for --workers processes to be ready


@dataclass
class SearchResult:
    run_dir: Path
    best_arch: Any
    best_scores: dict
    seconds: float
    pending: int = 0  # trials still running in other processes when this one finished


@dataclass
class Plan:
    """A checked search, as every process of it needs it (picklable: sent to spawned processes)."""

    space_path: str
    config: dict
    out: Path
    storage: StorageSpec | None  # the study's storage (multi-trial Optuna strategies)
    elapsed_offset: float | None  # search seconds of earlier sessions
    started: float  # wall clock at the start of this session
    allowed: tuple[str, ...] = ()  # imports the user allowed (--allow-import), for spawned processes


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
    if not isinstance(ev, str) or ev not in EVALUATOR_SECTION:  # a list is unhashable: one line, not a TypeError
        raise UserError(f"expected one of {', '.join(EVALUATOR_SECTION)}, got {ev!r}", file=f, field="evaluator")
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
    check_train_section("supernet", OneShotEvaluator.train_section(data["supernet"], f), OneShotEvaluator.DEFAULTS, f)
    check_train_section("proxy", data["proxy"], ProxyEvaluator.DEFAULTS, f)
    if ev == "table":
        data["table"] = parse_table_section(data.get("table"), f)
    elif data.get("table") is not None:
        raise UserError("a table: section is read by evaluator: table only", file=f, field="table")
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


def check_flags(*, trials: int | None, steps: int | None, seed: int | None, device: str | None, workers: int, nproc: int = 1) -> None:
    """The command-line overrides, before any file is read or anything trained."""
    if trials is not None:
        check_int(trials, "--trials", 1)
    if steps is not None:
        check_int(steps, "--steps", 1)
    if seed is not None:
        check_seed(seed)
    check_int(workers, "--workers", 1)
    check_int(nproc, "--nproc", 1)
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
        "storage": None if storage is None else parse_storage(storage, out).shown,  # no password
        "workers": workers,
        "machine": machine_info(str(resolve_device(device))),  # what reproduces bit for bit: results/README.md
    }
    cfg_path = out / "config.yaml"
    if cfg_path.is_file():
        stored = read_yaml(cfg_path)
        if isinstance(stored, dict):
            # compare through YAML so tuples/lists and key order do not matter
            _compare_configs(stored, yaml.safe_load(yaml.safe_dump(config)), cfg_path)
            config.update(keep_first_machine(stored, config["machine"]))
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
    elif strat["evaluator"] == "table" and strategy_class(strat["strategy"]).multi_trial:
        return  # nothing trains: scores come from the table
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
    elif cls.multi_trial and strat["evaluator"] != "table":
        section = "supernet" if strat["evaluator"] == "oneshot" else "proxy"
        ev = OneShotEvaluator if section == "supernet" else ProxyEvaluator
        o = {**ev.DEFAULTS, **strat[section]}
        batch, patch, fld = o["batch"], o["patch"], f"{section}.batch"
    else:
        return
    check_training(space.template(), batch, patch, resolve_device(config["device"]), fld, config.get("strategy_file"), space.file)


def _context(space: SearchSpace, plan: Plan, progress: bool, worker: bool = False) -> SearchContext:
    """Data, evaluator and checks of this search in this process (nothing is trained here)."""
    config, out = plan.config, plan.out
    strat = config["strategy"]
    data = search_data(space, strat, config["device"], progress)
    _check_patches(strat, data.task, data.train_items, data.val_items, config["strategy_file"])
    cls = strategy_class(strat["strategy"])
    _check_training_memory(space, strat, config, cls)
    evaluator = None
    if cls.multi_trial:
        section = strat.get(EVALUATOR_SECTION[strat["evaluator"]])
        evaluator = make_evaluator(strat["evaluator"], space, data, section, out, config.get("strategy_file"))
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
        started=plan.started,
        elapsed_offset=plan.elapsed_offset,
    )


def _open_study(ctx: SearchContext, plan: Plan) -> None:
    if plan.storage is not None:
        from .study import open_run_study

        ctx.run_study = open_run_study(plan.out, plan.config, plan.storage)


def _plan(space_path: str, strategy_path: str, out: Path, *, trials: int | None, steps: int | None, seed: int | None,
          device: str | None, storage: str | None, workers: int, progress: bool = False) -> tuple[Plan, SearchContext, Any]:
    """Check everything (flags, files, the study, data, evaluator, strategy), then claim the run
    directory (config.yaml); returns the plan and this process's context and strategy."""
    from .strategies.optuna_loop import OptunaStrategy, session_offset
    from .study import open_run_study
    from .trust import allowed_prefixes

    space, config = prepare_config(space_path, strategy_path, out, trials=trials, steps=steps, seed=seed, device=device, storage=storage, workers=workers)
    spec, offset, started = None, None, time.time()
    if issubclass(strategy_class(config["strategy"]["strategy"]), OptunaStrategy):
        spec = parse_storage(storage, out)
        new_run = spec.kind == "journal" and storage is None and not (out / DEFAULT_JOURNAL).exists()
        # a new run's own journal holds nothing to check: it is created once the run directory is claimed
        existing = None if new_run else open_run_study(out, config, spec, create=False)  # checked, not yet created
        offset = 0.0 if existing is None else session_offset(existing.load(), started)
    plan = Plan(str(space_path), config, out, spec, offset, started, allowed_prefixes())
    # data, evaluator and strategy are all set up (and checked) before the run directory is claimed
    ctx = _context(space, plan, progress)
    strategy = make_strategy(ctx, config["strategy_file"])
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_text_atomic(out / "sites.csv", "name,channels,stride\n" + "".join(f"{s.name},{s.channels},{s.stride}\n" for s in space.backbone_sites))
    return plan, ctx, strategy


def _plan_only(*args: Any, **kwargs: Any) -> Plan:
    """The plan alone (what crosses to other ranks)."""
    return _plan(*args, **kwargs)[0]


def _worker_main(plan: Plan, ready: Any) -> None:
    """An extra process of ``--workers N``: the same loop on the same Optuna storage, with the
    imports the user allowed in the parent process."""
    import torch

    from .trust import allow_imports

    torch.set_num_threads(1)
    with allow_imports(plan.allowed):
        space = SearchSpace.from_yaml(plan.space_path)
        ctx = _context(space, plan, progress=False, worker=True)
        _open_study(ctx, plan)
        ctx.on_loop_start = lambda: ready.put(1)  # data, supernet and study loaded: about to ask for trials
        _run_strategy(make_strategy(ctx), plan.config)


@contextlib.contextmanager
def _naming_preset(config: dict) -> Iterator[None]:
    """A non-finite loss names the preset whose settings led to it."""
    try:
        yield
    except NonFiniteLossError as exc:
        raise (exc if exc.file else exc.at(file=config["strategy_file"])) from None


def _run_strategy(strategy: Any, config: dict) -> None:
    with _naming_preset(config):
        strategy.run()


def _wait_ready(ready: Any, procs: list[Any]) -> None:
    """Let the workers load data and weights before the main loop starts, so the trials are
    shared among them (fast one-shot trials would otherwise all go to the main process)."""
    waiting, deadline = len(procs), time.monotonic() + WORKER_START_TIMEOUT
    while waiting and time.monotonic() < deadline:
        try:
            ready.get(timeout=0.5)
            waiting -= 1
        except queue_mod.Empty:
            if all(p.exitcode is not None for p in procs):
                return


@contextlib.contextmanager
def _workers(plan: Plan, n: int) -> Iterator[None]:
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(plan, ready)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        _wait_ready(ready, procs)
        yield
    finally:
        for p in procs:
            p.join()


def _execute(plan: Plan, progress: bool, built: tuple[SearchContext, Any] | None = None) -> SearchResult | None:
    """The search in this process (a rank of a process group, or alone); rank 0 returns the result."""
    from .trust import allow_imports

    rank = distributed.current()
    with allow_imports(plan.allowed):
        if built is None:
            ctx = _context(SearchSpace.from_yaml(plan.space_path), plan, progress and rank.main)
            strategy = make_strategy(ctx, plan.config["strategy_file"])
        else:
            ctx, strategy = built
        if rank.main:
            _open_study(ctx, plan)
        if strategy.multi_trial:
            if ctx.evaluator is not None:
                with _naming_preset(plan.config):
                    ctx.evaluator.prepare()  # the supernet: data-parallel across the ranks, if any
            distributed.leave()  # trials run on rank 0 (and its --workers), each on one process
            if not rank.main:
                return None
            workers = int(plan.config.get("workers", 1))
            if workers > 1:
                with _workers(plan, workers - 1):
                    _run_strategy(strategy, plan.config)
            _run_strategy(strategy, plan.config)  # finishes what a worker left, writes the final trajectory
        else:
            _run_strategy(strategy, plan.config)  # DARTS: every rank, data-parallel
            distributed.leave()
            if not rank.main:
                return None
        with outputs_lock(plan.out):
            return _finish(strategy, ctx, plan)


def _finish(strategy: Any, ctx: SearchContext, plan: Plan) -> SearchResult:
    """best_arch.yaml from the study's current state (under the run directory's outputs lock)."""
    out = plan.out
    best = strategy.best()
    if best is None:
        raise UserError("the search finished without a single successful evaluation (see trajectory.csv)", file=str(out / "trajectory.csv"))
    arch, scores = best
    doc = arch.to_dict()
    doc["provenance"] = {
        "space": plan.config["space_file"],
        "strategy": plan.config["strategy"]["strategy"],
        "evaluator": ctx.evaluator_name,
        "run": str(out),
        "seed": ctx.seed,
        **{k: (float(v) if isinstance(v, float) else v) for k, v in scores.items() if v is not None},
    }
    write_text_atomic(out / "best_arch.yaml", yaml.safe_dump(doc, sort_keys=False))
    pending = 0
    if ctx.run_study is not None and hasattr(strategy, "pending"):
        pending = len(strategy.pending(ctx.run_study.load()))
    return SearchResult(out, arch, scores, ctx.elapsed(), pending)


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
    nproc: int = 1,
    progress: bool = True,
) -> SearchResult | None:
    """Start or resume the search in ``out``; returns the best architecture found (None on the
    ranks after 0 of a torchrun job)."""
    out = Path(out)
    check_flags(trials=trials, steps=steps, seed=seed, device=device, workers=workers, nproc=nproc)
    kwargs = dict(trials=trials, steps=steps, seed=seed, device=device, storage=storage, workers=workers)
    if nproc > 1:
        if distributed.from_env().enabled:
            raise UserError("already running under torchrun; leave --nproc out (torchrun starts the processes)", field="--nproc")
        plan = _plan_only(space_path, strategy_path, out, **kwargs)  # checked before any process starts
        return distributed.launch(nproc, _execute, (plan, progress), device=device)
    if distributed.from_env().enabled:  # torchrun: join its process group; rank 0 checks and claims
        with distributed.process_group(device):
            plan = distributed.on_main(_plan_only, space_path, strategy_path, out, **kwargs)
            return _execute(plan, progress)
    plan, ctx, strategy = _plan(space_path, strategy_path, out, progress=progress, **kwargs)
    return _execute(plan, progress, (ctx, strategy))


__all__ = ["SearchResult", "run_search", "load_strategy_file", "parse_strategy"]
