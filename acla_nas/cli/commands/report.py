"""``acla-nas report RUN_DIR [--out FILE] [--results PATH...]``: one self-contained HTML page of a
search run or of a trained model's folder, with the results of export / train / evaluate found
in it and its sub-folders (or named with ``--results``)."""

from __future__ import annotations

import argparse

from acla_nas.core.errors import UserError
from acla_nas.core.outputs import add_overwrite_flag, output_file, writing

NAME = "report"
HELP = "write a self-contained HTML report of a run (results, best arch, figures, top trials, config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="search run (trajectory.csv) or trained model folder (acla-nas train --out)"
    )
    parser.add_argument("--out", metavar="FILE", default=None, help="output HTML file (default: RUN_DIR/report.html)")
    parser.add_argument(
        "--top-k", type=int, default=10, metavar="K", help="rows of the top-architectures table (default 10)"
    )
    add_overwrite_flag(parser)
    parser.add_argument(
        "--results",
        nargs="+",
        default=[],
        metavar="PATH",
        help="more results: metrics.json, evaluation CSVs, final_table.csv, or folders holding them",
    )


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UserError(f"expected a positive integer, got {args.top_k}", field="--top-k")
    from acla_nas.plots.report import write_report  # lazy: keeps `acla-nas --help` free of matplotlib

    if args.out is not None:  # the default, RUN_DIR/report.html, is the run's own page: refreshed
        output_file(args.out, "--out", args.overwrite, make_parent=True)
    with writing(args.out or args.run_dir):
        path = write_report(args.run_dir, args.out, top_k=args.top_k, results=args.results)
    print(f"wrote {path}")
    return 0
