"""``acla-nas train ARCH.yaml --out DIR``: (re)train a child architecture from scratch.

Writes ``DIR/config.yaml`` (arch + data + train settings: everything to reproduce),
``DIR/checkpoints/last.pt``, ``DIR/metrics.json`` (validation and test metrics, history) and
``DIR/model.pt`` (weights + arch + task: all that ``evaluate`` and ``restore`` need). Re-running
the same command resumes an interrupted run and leaves a completed one untouched.
"""

from __future__ import annotations

import argparse

from acla_nas.core.outputs import add_overwrite_flag
from acla_nas.core.overrides import add_set_flag

NAME = "train"
HELP = "train a child architecture (arch YAML) from scratch; re-running resumes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", metavar="ARCH.yaml", help="architecture file (as written by `acla-nas export`)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (created; resumed if it exists)")
    parser.add_argument("--steps", type=int, help="training steps (overrides the file's train.steps)")
    parser.add_argument("--patch", type=int, help="HR patch size")
    parser.add_argument("--batch", type=int, help="batch size")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--val-every", type=int, help="validate every N steps (0 = only at the end)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes (torch.distributed: gloo on CPU, NCCL on GPUs); the batch is the "
        "global batch, split across them. Or start the command under torchrun instead",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (DIR/train.log still gets the lines)")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="write TensorBoard events to DIR/tensorboard (loss, lr, validation and test metrics, keys kept; "
        "needs the tensorboard extra); or train.tensorboard: true in the arch file",
    )
    add_set_flag(parser, "the arch file (e.g. train.lr=2e-4, data.path=DIR, modules.body.3.keys=8)")
    add_overwrite_flag(parser)


def run(args: argparse.Namespace) -> int:
    from acla_nas.core.outputs import output_dir, refuse_foreign_results
    from acla_nas.runtime.distributed import is_main
    from acla_nas.train.retrain import OVERRIDES, report, train_arch

    overrides = {name: getattr(args, name) for name in OVERRIDES}
    out = output_dir(args.out, create=False)  # created by train_arch once its inputs are valid
    # a folder with results but no config.yaml was not written by train (e.g. an export holding
    # inherited weights): refused, so its model.pt is not replaced; a train run resumes as before
    refuse_foreign_results(out, args.overwrite, ours=lambda d: (d / "config.yaml").is_file(), what="acla-nas train")
    result, model_path, task = train_arch(
        args.arch, args.out, overrides, progress=not args.quiet, nproc=args.nproc, sets=args.set
    )
    if is_main():  # under torchrun, rank 0 reports
        report(result, task, model_path)
    return 0
