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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
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
from acla_nas.search.config import RunConfig, load_strategy_file, parse_strategy
from acla_nas.search.evaluators import EVALUATORS, SearchData, make_evaluator
from acla_nas.search.flags import SearchFlags
from acla_nas.search.launch import launch
from acla_nas.search.storage.backend import StorageSpec, parse_storage
from acla_nas.search.strategies.base import SearchContext, Strategy, make_strategy
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
    """A checked search, as every process of it needs it: the run configuration whole, plus this
    session's study and clock (picklable: sent to --workers processes and ranks)."""

    cfg: RunConfig
    storage: StorageSpec | None  # the study's storage (multi-trial Optuna strategies)
    elapsed_offset: float | None  # search seconds of earlier sessions
    started: float  # wall clock at the start of this session
    allowed: tuple[str, ...] = ()  # imports the user allowed (--allow-import), for spawned processes
    built: tuple[SearchContext, Any] | None = None  # this process's context and strategy (not pickled)

    @property
    def out(self) -> Path:
        return self.cfg.run.path

    @property
    def tensorboard(self) -> bool:
        return self.cfg.flags.tensorboard  # --tensorboard: RUN_DIR/tensorboard, written by the main process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "built": None}  # another process builds its own (data, evaluator)


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


def _check_training_memory(cfg: RunConfig) -> None:
    """The supernet (or proxy, or strategy) training of this preset must fit in free memory."""
    from acla_nas.nn.footprint import check_training

    shape = _training(cfg.strategy, cfg.preset)
    if shape is None:
        return
    batch, patch, fld, _pf, _val = shape
    space = cfg.space
    check_training(space.template(), batch, patch, cfg.flags.target, fld, cfg.strategy_file, space.file)


def _context(plan: Plan, progress: bool, worker: bool = False) -> SearchContext:
    """Data, evaluator and checks of this search in this process (nothing is trained here)."""
    cfg, out = plan.cfg, plan.out
    space, cls, strat = cfg.space, cfg.strategy, cfg.preset
    data = search_data(space, strat, cfg.device, progress)
    _check_patches(cls, strat, data.task, data.train_items, data.val_items, cfg.strategy_file)
    _check_training_memory(cfg)
    evaluator = None
    if cls.multi_trial:
        ev = EVALUATORS.get(strat["evaluator"], cfg.strategy_file)
        section = strat.get(ev.SECTION) if ev.SECTION else None
        evaluator = make_evaluator(strat["evaluator"], space, data, section, out, cfg.strategy_file)
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
        storage=cfg.storage,
        workers=cfg.workers,
        objectives=tuple(strat["objectives"]),
        options=dict(strat.get("options") or {}),
        worker=worker,
        started=plan.started,
        elapsed_offset=plan.elapsed_offset,
    )


def _open_study(ctx: SearchContext, plan: Plan) -> None:
    if plan.storage is not None:
        from acla_nas.search.storage.study import open_run_study

        ctx.run_study = open_run_study(plan.out, plan.cfg.to_dict(), plan.storage)


def _plan(cfg: RunConfig, progress: bool = False) -> Plan:
    """Check everything (the study, data, evaluator, strategy) on top of the checked run
    configuration, then claim the run directory (config.yaml); the plan carries this process's
    context and strategy."""
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
    plan = Plan(cfg, spec, offset, started, allowed_prefixes())
    # data, evaluator and strategy are all set up (and checked) before the run directory is claimed
    ctx = _context(plan, progress)
    plan.built = (ctx, make_strategy(ctx, cfg.strategy_file))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg.run.config, yaml.safe_dump(config, sort_keys=False))
    write_sites(cfg.run.sites, cfg.space.backbone_sites)
    return plan


def _worker_main(plan: Plan, ready: Any) -> None:
    """An extra process of ``--workers N``: the same loop on the same Optuna storage, with the
    imports the user allowed in the parent process."""
    import torch

    from acla_nas.core.trust import allow_imports

    torch.set_num_threads(1)
    with allow_imports(plan.allowed), quiet_logger("optuna"):
        ctx = _context(plan, progress=False, worker=True)  # the parent's space and strategy, as received
        _open_study(ctx, plan)
        ctx.on_loop_start = lambda: ready.put(1)  # data, supernet and study loaded: about to ask for trials
        _run_strategy(make_strategy(ctx, plan.cfg.strategy_file), plan.cfg)


@contextlib.contextmanager
def _naming_preset(cfg: RunConfig) -> Iterator[None]:
    """A non-finite loss names the preset whose settings led to it."""
    try:
        yield
    except NonFiniteLossError as exc:
        raise (exc if exc.file else exc.at(file=cfg.strategy_file)) from None


def _run_strategy(strategy: Any, cfg: RunConfig) -> None:
    with _naming_preset(cfg):
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


def _execute(plan: Plan, progress: bool) -> SearchResult | None:
    """The search in this process (a rank of a process group, or alone); rank 0 returns the result."""
    from acla_nas.core.trust import allow_imports

    rank, cfg = distributed.current(), plan.cfg
    with allow_imports(plan.allowed), quiet_logger("optuna"), _run_log(plan, rank.main):
        if plan.built is None:  # another process: built here from the configuration received
            ctx = _context(plan, progress and rank.main)
            strategy = make_strategy(ctx, cfg.strategy_file)
        else:
            ctx, strategy = plan.built
        if rank.main:
            _open_study(ctx, plan)
        if strategy.multi_trial:
            if ctx.evaluator is not None:
                with _naming_preset(cfg):
                    ctx.evaluator.prepare()  # the supernet: data-parallel across the ranks, if any
            distributed.leave()  # trials run on rank 0 (and its --workers), each on one process
            if not rank.main:
                return None
            if cfg.workers > 1:
                with _workers(plan, cfg.workers - 1):
                    _run_strategy(strategy, cfg)
            _run_strategy(strategy, cfg)  # finishes what a worker left, writes the final trajectory
        else:
            _run_strategy(strategy, cfg)  # DARTS: every rank, data-parallel
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
        cfg, s = plan.cfg, plan.cfg.preset
        again = "resumed" if plan.elapsed_offset else "started"
        log_line(
            f"acla-nas search {again}: {cfg.space_file} with {cfg.strategy_file} "
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
        "space": plan.cfg.space_file,
        "strategy": plan.cfg.preset["strategy"],
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


def launch_search(flags: SearchFlags, build: Callable[[], RunConfig], *, progress: bool = True) -> SearchResult | None:
    """Start or resume the search that ``build`` configures, in the processes
    :func:`~acla_nas.search.launch.launch` decides on (``build`` runs once: on rank 0 under
    torchrun, whose other ranks receive the plan or the one-line error that rank 0 alone prints);
    returns the best architecture found (None on the other ranks)."""
    return launch(flags, lambda: _plan(build(), progress), partial(_execute, progress=progress))


def search(cfg: RunConfig, *, progress: bool = True) -> SearchResult | None:
    """Start or resume the search of ``cfg``."""
    return launch_search(cfg.flags, lambda: cfg, progress=progress)


def run_search(
    space_path: str | Path,
    strategy_path: str | Path,
    out: str | Path,
    flags: SearchFlags | None = None,
    *,
    progress: bool = True,
    **overrides: Any,
) -> SearchResult | None:
    """:func:`search` from file names (library use); ``overrides`` are the :class:`SearchFlags`
    fields as keywords (``trials=5``, ``nproc=2``)."""
    flags = flags if flags is not None else SearchFlags(**overrides)
    return launch_search(flags, lambda: RunConfig.from_files(space_path, strategy_path, out, flags), progress=progress)


__all__ = [
    "RunConfig",
    "SearchFlags",
    "SearchResult",
    "launch_search",
    "load_strategy_file",
    "parse_strategy",
    "run_search",
    "search",
]
