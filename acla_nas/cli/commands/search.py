"""``acla-nas search SPACE.yaml --strategy STRATEGY.yaml --out RUN_DIR``."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acla_nas.search.config import RunConfig
    from acla_nas.search.run import SearchResult

NAME = "search"
HELP = "search where to insert ACLA modules and how many keys each may use"
DESCRIPTION = (
    "Run (or resume) a search. Re-running the same command on an existing run directory resumes "
    "it; completed trials are never lost or repeated."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acla_nas.core.overrides import add_set_flag

    p.add_argument("space", metavar="SPACE.yaml", help="search-space file (see search_spaces/)")
    p.add_argument("--strategy", required=True, metavar="STRATEGY.yaml", help="strategy preset (see strategies/)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created, or resumed)")
    p.add_argument("--trials", type=int, help="number of evaluated trials (multi-trial strategies)")
    p.add_argument("--steps", type=int, help="training steps of the supernet / DARTS / proxy training")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's, else 0)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage: a journal file path (default RUN_DIR/study.journal), sqlite:///FILE or "
        "postgresql://USER@HOST/DB; the study is named after RUN_DIR, so machines sharing a database "
        "join one search by using the same RUN_DIR name and files",
    )
    p.add_argument("--workers", type=int, default=1, help="trial loops (processes) on the storage (multi-trial)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes that train the supernet / run DARTS data-parallel (torch.distributed; "
        "or start the command under torchrun instead)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (RUN_DIR/search.log still gets the lines)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard events to RUN_DIR/tensorboard (trial scores, supernet loss and lr; "
        "needs the tensorboard extra)",
    )
    add_set_flag(p, "the space or the strategy preset, by its top-level key")


def run_config(args: argparse.Namespace) -> RunConfig:
    """The one typed run configuration of ``search`` and ``pipeline`` (the space parsed once)."""
    from acla_nas.search.config import RunConfig

    return RunConfig.from_files(
        args.space,
        args.strategy,
        args.out,
        trials=args.trials,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        storage=args.storage,
        workers=args.workers,
        nproc=args.nproc,
        overrides=args.set,
    )


def search_time(res: SearchResult) -> str:
    """``search time 62 s`` alone read as this session's after a resume: say which is which."""
    total, session = res.seconds, res.session_seconds
    if session is None or total - session < 1:
        return f"search time {total:.0f} s"
    return f"search time {total:.0f} s in all sessions of this run ({session:.0f} s in this one)"


def run(args: argparse.Namespace) -> int:
    from acla_nas.search.run import run_search  # builds the RunConfig (under torchrun: on rank 0 alone)

    res = run_search(
        args.space,
        args.strategy,
        args.out,
        trials=args.trials,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        storage=args.storage,
        workers=args.workers,
        nproc=args.nproc,
        progress=not args.quiet,
        overrides=args.set,
        tensorboard=args.tensorboard,
    )
    if res is None:  # a rank after 0 under torchrun: rank 0 reports
        return 0
    s = res.best_scores
    psnr = s.get("psnr")
    psnr_text = f"{psnr:.3f} dB" if isinstance(psnr, float) and math.isfinite(psnr) else "n/a"
    mods = ", ".join(f"{site}:K{c.keys}" for site, c in res.best_arch.modules.items()) or "none (plain backbone)"
    print(
        f"best: val PSNR {psnr_text}, {int(s.get('flops') or 0) / 1e6:.1f} M MACs, {int(s.get('params') or 0):,} params; modules: {mods}"
    )
    print(f"run directory: {res.run_dir} (trajectory.csv, best_arch.yaml, search.log); {search_time(res)}")
    if res.pending:
        print(
            f"{res.pending} trial(s) still running in other processes; their results land in the study when they "
            "finish (the last process to finish rewrites trajectory.csv and best_arch.yaml)"
        )
    return 0
