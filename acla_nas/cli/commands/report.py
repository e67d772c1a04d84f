"""``acla-nas report RUN_DIR [--out FILE]``: one self-contained HTML page of a run."""

from __future__ import annotations

import argparse

from acla_nas.core.errors import UserError
from acla_nas.core.outputs import add_overwrite_flag, output_file, writing

NAME = "report"
HELP = "write a self-contained HTML report of a run (results, best arch, figures, top trials, config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding trajectory.csv")
    parser.add_argument("--out", metavar="FILE", default=None, help="output HTML file (default: RUN_DIR/report.html)")
    parser.add_argument(
        "--top-k", type=int, default=10, metavar="K", help="rows of the top-architectures table (default 10)"
    )
    add_overwrite_flag(parser)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UserError(f"expected a positive integer, got {args.top_k}", field="--top-k")
    from acla_nas.plots.report import write_report  # lazy: keeps `acla-nas --help` free of matplotlib

    if args.out is not None:  # the default, RUN_DIR/report.html, is the run's own page: refreshed
        output_file(args.out, "--out", args.overwrite, make_parent=True)
    with writing(args.out or args.run_dir):
        path = write_report(args.run_dir, args.out, top_k=args.top_k)
    print(f"wrote {path}")
    return 0
