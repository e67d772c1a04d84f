"""One search run: space + strategy preset -> run directory (resumable).

Run directory: ``config.yaml`` (everything needed to reproduce), ``trajectory.csv``,
``best_arch.yaml``, ``sites.csv``, ``checkpoints/`` / ``supernet/``, and the Optuna storage
(``study.journal``) for multi-trial strategies. Running the same command on an existing run
directory resumes it; a different configuration is refused rather than mixed in.

Order of work: files checked, then the study opened and checked (:mod:`acla_nas.study`), then
``config.yaml`` written, and only then data loaded and networks trained. Scale-out: ``--workers``
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
from .data import fixed_patches, make_source
from .errors import UserError
from .evaluators import SearchData, make_evaluator
from .space import SearchSpace
from .storage import StorageSpec, parse_storage
from .strategies.base import SearchContext, make_strategy, strategy_class
from .tasks import make_task
from .trajectory import outputs_lock

WORKER_START_TIMEOUT = 600.0  # seconds the main loop waits for --workers processes to be ready

STRATEGY_KEYS = ("strategy", "evaluator", "trials", "objectives", "options", "supernet", "proxy", "val", "seed")
RUNTIME_KEYS = ("device", "storage", "workers")  # may change between sessions of one run


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


def load_strategy_file(path: str | Path) -> dict:
    """Read and check a strategy preset (strategies/*.yaml)."""
    data = read_yaml(path)
    f = str(path)
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
    trials = data.setdefault("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"expected a positive integer, got {trials!r}", file=f, field="trials")
    obj = data.setdefault("objectives", ["psnr"])
    if isinstance(obj, str):
        obj = data["objectives"] = [obj]
    if obj not in (["psnr"], ["psnr", "flops"]):
        raise UserError(f"expected [psnr] or [psnr, flops], got {obj!r}", file=f, field="objectives")
    for key in ("options", "supernet", "proxy", "val"):
        if not isinstance(data.setdefault(key, {}), dict):
            raise UserError("expected a mapping", file=f, field=key)
    try:
        strategy_class(data["strategy"], f).check_options(data["options"])
    except UserError as exc:
        raise exc.at(file=f) from None
    for key in data["val"]:
        if key not in ("patches", "patch"):
            raise UserError("unknown key (expected patches, patch)", file=f, field=f"val.{key}")
        v = data["val"][key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"expected a positive integer, got {v!r}", file=f, field=f"val.{key}")
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


def prepare_config(space_path: str, strategy_path: str, out: Path, *, trials: int | None, steps: int | None, seed: int | None, device: str | None, storage: str | None, workers: int) -> tuple[SearchSpace, dict]:
    space = SearchSpace.from_yaml(space_path)
    strat = load_strategy_file(strategy_path)
    if trials is not None:
        strat["trials"] = trials
    if steps is not None:
        # one knob for quick runs: the training length of whatever the strategy trains
        if strat["strategy"] == "darts":
            strat["options"]["steps"] = steps
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
    source = make_source(space.spec.data, task.scale)
    train_items, val_items = source.split("train"), source.split("val")
    v = strat.get("val", {})
    val = fixed_patches(val_items, task, v.get("patches", 16), v.get("patch", 48), seed=int(strat["seed"]))
    return SearchData(task, train_items, val_items, val, device=device, seed=int(strat["seed"]), progress=progress)


def _context(space: SearchSpace, plan: Plan, progress: bool, worker: bool = False) -> SearchContext:
    config, out = plan.config, plan.out
    strat = config["strategy"]
    data = search_data(space, strat, config["device"], progress)
    cls = strategy_class(strat["strategy"])
    evaluator = None
    if cls.multi_trial:
        section = strat.get("supernet") if strat["evaluator"] == "oneshot" else strat.get("proxy")
        evaluator = make_evaluator(strat["evaluator"], space, data, section, out)
    run_study = None
    if plan.storage is not None:
        from .study import open_run_study

        run_study = open_run_study(out, config, plan.storage)
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
        run_study=run_study,
        started=plan.started,
        elapsed_offset=plan.elapsed_offset,
    )


def _plan(space_path: str, strategy_path: str, out: Path, *, trials: int | None, steps: int | None, seed: int | None,
          device: str | None, storage: str | None, workers: int) -> Plan:
    """Check everything, open and check the study, then claim the run directory (config.yaml)."""
    from .strategies.optuna_loop import OptunaStrategy, session_offset
    from .study import open_run_study

    space, config = prepare_config(space_path, strategy_path, out, trials=trials, steps=steps, seed=seed, device=device, storage=storage, workers=workers)
    out.mkdir(parents=True, exist_ok=True)
    spec, offset, started = None, None, time.time()
    if issubclass(strategy_class(config["strategy"]["strategy"]), OptunaStrategy):
        spec = parse_storage(storage, out)
        offset = session_offset(open_run_study(out, config, spec).load(), started)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_text_atomic(out / "sites.csv", "name,channels,stride\n" + "".join(f"{s.name},{s.channels},{s.stride}\n" for s in space.backbone_sites))
    return Plan(str(space_path), config, out, spec, offset, started)


def _worker_main(plan: Plan, ready: Any) -> None:
    """An extra process of ``--workers N``: the same loop on the same Optuna storage."""
    import torch

    torch.set_num_threads(1)
    space = SearchSpace.from_yaml(plan.space_path)
    ctx = _context(space, plan, progress=False, worker=True)
    ctx.on_loop_start = lambda: ready.put(1)  # data, supernet and study loaded: about to ask for trials
    make_strategy(ctx).run()


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
    rank = distributed.current()
    space = SearchSpace.from_yaml(plan.space_path)
    ctx = _context(space, plan, progress and rank.main)
    strategy = make_strategy(ctx, plan.config["strategy_file"])
    if strategy.multi_trial:
        if ctx.evaluator is not None:
            ctx.evaluator.prepare()  # the supernet: data-parallel across the ranks, if any
        distributed.leave()  # trials run on rank 0 (and its --workers), each on one process
        if not rank.main:
            return None
        workers = int(plan.config.get("workers", 1))
        if workers > 1:
            with _workers(plan, workers - 1):
                strategy.run()
        strategy.run()  # finishes what a worker left, writes the final trajectory
    else:
        strategy.run()  # DARTS: every rank, data-parallel
        distributed.leave()
        if not rank.main:
            return None
    out = plan.out
    with outputs_lock(out):
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
    for name, value in (("--workers", workers), ("--nproc", nproc)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"expected a positive integer, got {value!r}", field=name)
    kwargs = dict(trials=trials, steps=steps, seed=seed, device=device, storage=storage, workers=workers)
    if nproc > 1:
        if distributed.from_env().enabled:
            raise UserError("already running under torchrun; leave --nproc out (torchrun starts the processes)", field="--nproc")
        plan = _plan(space_path, strategy_path, out, **kwargs)  # checked before any process starts
        return distributed.launch(nproc, _execute, (plan, progress), device=device)
    with distributed.process_group(device):  # torchrun: join its process group
        plan = distributed.on_main(_plan, space_path, strategy_path, out, **kwargs)
        return _execute(plan, progress)


__all__ = ["SearchResult", "run_search", "load_strategy_file"]
