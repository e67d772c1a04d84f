"""One search run: space + strategy preset -> run directory (resumable).

Run directory: ``config.yaml`` (everything needed to reproduce), ``trajectory.csv``,
``best_arch.yaml``, ``sites.csv``, ``checkpoints/`` / ``supernet/``, and the Optuna storage
(``study.journal``) for multi-trial strategies. Running the same command on an existing run
directory resumes it; a different configuration is refused rather than mixed in.

Order of work: the flags and files are checked, the study is opened and checked
(:mod:`acla_nas.search.storage.study`), the data, evaluator and strategy are set up and checked, and only then
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from acla_nas.core.errors import UserError
from acla_nas.core.quiet import quiet_logger
from acla_nas.data.patches import fixed_patches
from acla_nas.data.sources import check_min_side, make_source
from acla_nas.nn.arch import write_text_atomic
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import outputs_lock, write_sites
from acla_nas.runtime import distributed
from acla_nas.runtime.device import resolve_device
from acla_nas.search.config import RunConfig, check_flags, load_strategy_file, parse_strategy
from acla_nas.search.evaluators import EVALUATORS, SearchData, make_evaluator
from acla_nas.search.storage.backend import StorageSpec, parse_storage
from acla_nas.search.strategies.base import SearchContext, Strategy, make_strategy, strategy_class
from acla_nas.space import SearchSpace
from acla_nas.tasks import make_task
from acla_nas.train.trainer import NonFiniteLossError

WORKER_START_TIMEOUT = 600.0  # seconds the main loop waits for --workers processes to be ready


@dataclass
class SearchResult:
    run_dir: Path
    best_arch: Any
    best_scores: dict
    seconds: float
    pending: int = 0  # trials still running in other processes when this one finished
    session_seconds: float | None = None  # this session's wall time (``seconds``: all sessions of the run)


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
    steps: int | None = None  # --steps (already applied to the preset; strategies may read it)
    tensorboard: bool = False  # --tensorboard: RUN_DIR/tensorboard, written by the main process


def search_data(space: SearchSpace, strat: dict, device: str, progress: bool) -> SearchData:
    task = make_task(space.spec.task)
    try:
        source = make_source(space.spec.data, task.scale)
        train_items, val_items = source.split("train"), source.split("val")
    except UserError as exc:  # data.path and friends are fields of the space file
        raise (exc if exc.file else exc.at(file=space.file)) from None
    # validation images must hold the metric protocol (checked from the file headers)
    check_min_side(
        val_items, task.min_side, f"the {task.name} protocol scores (SSIM window after the border crop)", "data"
    )
    v = strat.get("val", {})
    val = fixed_patches(val_items, task, v.get("patches", 16), v.get("patch", 48), seed=int(strat["seed"]))
    return SearchData(task, train_items, val_items, val, device=device, seed=int(strat["seed"]), progress=progress)


def _training(cls: type[Strategy], strat: dict) -> tuple[int, int, str, str, bool] | None:
    """(batch, patch, batch field, patch field, validation patches too) of whatever the search
    trains: the strategy itself, or its evaluator (None when nothing trains)."""
    own = cls.training(strat["options"])
    if own is not None:
        return own.batch, own.patch, own.batch_field, own.patch_field, own.val_patches
    if not cls.multi_trial:
        return None
    ev = EVALUATORS.get(strat["evaluator"])
    if not ev.SECTION:
        return None
    o = {**ev.DEFAULTS, **strat[ev.SECTION]}
    if "batch" not in o or "patch" not in o:
        return None
    return o["batch"], o["patch"], f"{ev.SECTION}.batch", f"{ev.SECTION}.patch", False


def _check_patches(cls: type[Strategy], strat: dict, task: Any, train_items: Any, val_items: Any, file: str) -> None:
    """The training patch of whatever the search trains: a multiple of the scale that the
    training images hold (checked from the file headers before anything trains)."""
    shape = _training(cls, strat)
    if shape is None:
        return
    _batch, patch, _bf, fld, val = shape
    if val:
        check_min_side(val_items, patch, f"{cls.name} patch ({fld} of {file})", fld)
    if isinstance(patch, int) and patch % task.scale:
        raise UserError(f"expected a multiple of the task's scale ({task.scale}), got {patch}", file=file, field=fld)
    check_min_side(train_items, patch, f"training patch ({fld} of {file})", fld)


def _check_training_memory(space: SearchSpace, cls: type[Strategy], strat: dict, config: dict) -> None:
    """The supernet (or proxy, or strategy) training of this preset must fit in free memory."""
    from acla_nas.nn.footprint import check_training

    shape = _training(cls, strat)
    if shape is None:
        return
    batch, patch, fld, _pf, _val = shape
    check_training(
        space.template(), batch, patch, resolve_device(config["device"]), fld, config.get("strategy_file"), space.file
    )


def _context(
    space: SearchSpace, cls: type[Strategy], plan: Plan, progress: bool, worker: bool = False
) -> SearchContext:
    """Data, evaluator and checks of this search in this process (nothing is trained here)."""
    config, out = plan.config, plan.out
    strat = config["strategy"]
    data = search_data(space, strat, config["device"], progress)
    _check_patches(cls, strat, data.task, data.train_items, data.val_items, config["strategy_file"])
    _check_training_memory(space, cls, strat, config)
    evaluator = None
    if cls.multi_trial:
        ev = EVALUATORS.get(strat["evaluator"], config["strategy_file"])
        section = strat.get(ev.SECTION) if ev.SECTION else None
        evaluator = make_evaluator(strat["evaluator"], space, data, section, out, config["strategy_file"])
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
        steps=plan.steps,
        worker=worker,
        started=plan.started,
        elapsed_offset=plan.elapsed_offset,
    )


def _open_study(ctx: SearchContext, plan: Plan) -> None:
    if plan.storage is not None:
        from acla_nas.search.storage.study import open_run_study

        ctx.run_study = open_run_study(plan.out, plan.config, plan.storage)


def _plan(cfg: RunConfig, progress: bool = False) -> tuple[Plan, SearchContext, Any]:
    """Check everything (the study, data, evaluator, strategy) on top of the checked run
    configuration, then claim the run directory (config.yaml); returns the plan and this
    process's context and strategy."""
    from acla_nas.core.trust import allowed_prefixes
    from acla_nas.search.storage.study import open_run_study
    from acla_nas.search.strategies.optuna_loop import OptunaStrategy, session_offset

    out, config = cfg.run.path, cfg.to_dict()
    spec, offset, started = None, None, time.time()
    if issubclass(cfg.strategy, OptunaStrategy):
        spec = parse_storage(cfg.storage, out)
        new_run = spec.kind == "journal" and cfg.storage is None and not cfg.run.journal.exists()
        # a new run's own journal holds nothing to check: it is created once the run directory is claimed
        existing = None if new_run else open_run_study(out, config, spec, create=False)  # checked, not yet created
        offset = 0.0 if existing is None else session_offset(existing.load(), started)
    plan = Plan(cfg.space_file, config, out, spec, offset, started, allowed_prefixes(), cfg.steps)
    # data, evaluator and strategy are all set up (and checked) before the run directory is claimed
    ctx = _context(cfg.space, cfg.strategy, plan, progress)
    strategy = make_strategy(ctx, cfg.strategy_file)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg.run.config, yaml.safe_dump(config, sort_keys=False))
    write_sites(cfg.run.sites, cfg.space.backbone_sites)
    return plan, ctx, strategy


def _plan_only(cfg: RunConfig) -> Plan:
    """The plan alone (what crosses to other ranks)."""
    return _plan(cfg)[0]


def _worker_main(plan: Plan, ready: Any) -> None:
    """An extra process of ``--workers N``: the same loop on the same Optuna storage, with the
    imports the user allowed in the parent process."""
    import torch

    from acla_nas.core.trust import allow_imports

    torch.set_num_threads(1)
    with allow_imports(plan.allowed), quiet_logger("optuna"):
        space = SearchSpace.from_yaml(plan.space_path)  # another process: parsed there
        ctx = _context(space, strategy_class(plan.config["strategy"]["strategy"]), plan, progress=False, worker=True)
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
    from acla_nas.core.trust import allow_imports

    rank = distributed.current()
    with allow_imports(plan.allowed), quiet_logger("optuna"), _run_log(plan, rank.main):
        if built is None:
            cls = strategy_class(plan.config["strategy"]["strategy"])  # another process: resolved there
            ctx = _context(SearchSpace.from_yaml(plan.space_path), cls, plan, progress and rank.main)
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


@contextlib.contextmanager
def _run_log(plan: Plan, main: bool) -> Iterator[None]:
    """RUN_DIR/search.log (and RUN_DIR/tensorboard with --tensorboard) in the main process."""
    from acla_nas.runtime.run_log import TB_DIR, log_line, run_log, tensorboard_to

    if not main:
        yield
        return
    with run_log(plan.out / "search.log"), tensorboard_to(plan.out / TB_DIR if plan.tensorboard else None):
        s = plan.config["strategy"]
        again = "resumed" if plan.elapsed_offset else "started"
        log_line(
            f"acla-nas search {again}: {plan.config['space_file']} with {plan.config['strategy_file']} "
            f"({s['strategy']}, {s['trials']} trials, seed {s['seed']}) -> {plan.out}"
        )
        yield


def _finish(strategy: Any, ctx: SearchContext, plan: Plan) -> SearchResult:
    """best_arch.yaml from the study's current state (under the run directory's outputs lock)."""
    out = plan.out
    best = strategy.best()
    if best is None:
        raise UserError(
            "the search finished without a single successful evaluation (see trajectory.csv)",
            file=str(RunDir(out).trajectory),
        )
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
    write_text_atomic(RunDir(out).best_arch, yaml.safe_dump(doc, sort_keys=False))
    pending = 0
    if ctx.run_study is not None and hasattr(strategy, "pending"):
        pending = len(strategy.pending(ctx.run_study.load()))
    from acla_nas.runtime.run_log import log_line

    session = time.time() - plan.started
    log_line(
        f"acla-nas: best so far: {', '.join(f'{k} {v}' for k, v in doc['provenance'].items() if k in scores)}; "
        f"search time {ctx.elapsed():.0f} s in all sessions, {session:.0f} s in this one"
    )
    return SearchResult(out, arch, scores, ctx.elapsed(), pending, session)


def search(cfg: RunConfig, *, nproc: int = 1, progress: bool = True, tensorboard: bool = False) -> SearchResult | None:
    """Start or resume the search of ``cfg``; returns the best architecture found (None on the
    ranks after 0 of a torchrun job). ``tensorboard``: RUN_DIR/tensorboard (trial scores, the
    supernet's loss)."""
    if tensorboard:
        from acla_nas.runtime.run_log import tensorboard_available

        if (why := tensorboard_available()) is not None:
            raise UserError(why, field="--tensorboard")
    check_flags(trials=None, steps=None, seed=None, device=None, workers=cfg.workers, nproc=nproc)
    if nproc > 1:
        if distributed.from_env().enabled:
            raise UserError(
                "already running under torchrun; leave --nproc out (torchrun starts the processes)", field="--nproc"
            )
        plan = _plan_only(cfg)  # checked before any process starts
        plan.tensorboard = tensorboard
        return distributed.launch(
            nproc, _execute, (plan, progress), device=None if cfg.device == "auto" else cfg.device
        )
    if distributed.from_env().enabled:  # torchrun: join its process group; rank 0 checks and claims
        with distributed.process_group(None if cfg.device == "auto" else cfg.device):
            plan = distributed.on_main(_plan_only, cfg)
            plan.tensorboard = tensorboard
            return _execute(plan, progress)
    plan, ctx, strategy = _plan(cfg, progress=progress)
    plan.tensorboard = tensorboard
    return _execute(plan, progress, (ctx, strategy))


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
    overrides: Sequence[str] = (),
    tensorboard: bool = False,
) -> SearchResult | None:
    """:func:`search` from file names and overrides (the ``search`` verb and library use). Under
    torchrun, rank 0 alone reads the files and claims the run directory; the other ranks receive
    the plan (or the one-line error, which rank 0 alone prints)."""

    def build() -> RunConfig:
        return RunConfig.from_files(
            space_path,
            strategy_path,
            out,
            trials=trials,
            steps=steps,
            seed=seed,
            device=device,
            storage=storage,
            workers=workers,
            nproc=nproc,
            overrides=overrides,
        )

    if nproc == 1 and distributed.from_env().enabled:
        check_flags(trials=trials, steps=steps, seed=seed, device=device, workers=workers)
        with distributed.process_group(device):
            plan = distributed.on_main(lambda: _plan_only(build()))
            plan.tensorboard = tensorboard
            return _execute(plan, progress)
    return search(build(), nproc=nproc, progress=progress, tensorboard=tensorboard)


__all__ = ["RunConfig", "SearchResult", "load_strategy_file", "parse_strategy", "run_search", "search"]
