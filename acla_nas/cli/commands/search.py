"""``acla-nas search SPACE.yaml --strategy STRATEGY.yaml --out RUN_DIR``."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acla_nas.search.run import SearchResult

NAME = "search"
HELP = "search where to insert ACLA modules and how many keys each may use"
DESCRIPTION = (
    "Run (or resume) a search. Re-running the same command on an existing run directory resumes "
    "it; completed trials are never lost or repeated."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acla_nas.search.flags import add_search_flags

    add_search_flags(p)  # SPACE.yaml, --strategy, --out, --trials ... --tensorboard, --set: declared there alone
    p.add_argument("--quiet", action="store_true", help="no progress bar (RUN_DIR/search.log still gets the lines)")


def search_time(res: SearchResult) -> str:
    """``search time 62 s`` alone read as this session's after a resume: say which is which."""
    total, session = res.seconds, res.session_seconds
    if session is None or total - session < 0.05:  # a fresh run: this session is all of it (clock noise aside)
        return f"search time {total:.0f} s"
    return f"search time {total:.0f} s in all sessions of this run ({session:.0f} s in this one)"


def run(args: argparse.Namespace) -> int:
    from acla_nas.search.config import RunConfig
    from acla_nas.search.flags import SearchFlags
    from acla_nas.search.run import launch_search

    # the RunConfig is built once, where the launcher says (under torchrun: on rank 0 alone)
    res = launch_search(SearchFlags.from_args(args), lambda: RunConfig.from_args(args), progress=not args.quiet)
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
