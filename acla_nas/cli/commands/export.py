"""``acla-nas export RUN_DIR --out DIR``: the discovered architecture(s) as fixed child networks."""

from __future__ import annotations

import argparse

from acla_nas.core.outputs import add_overwrite_flag

NAME = "export"
HELP = "export the best (or top-K / Pareto) architecture of a search run as a child network"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (one subfolder per architecture)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--top", type=int, metavar="K", help="the K best distinct architectures of the trajectory")
    group.add_argument("--pareto", action="store_true", help="the Pareto front (PSNR up, MACs down)")
    p.add_argument("--no-weights", action="store_true", help="do not export weights inherited from the supernet")
    p.add_argument("--torchscript", action="store_true", help="also write a traced TorchScript model (model.ts)")
    p.add_argument("--onnx", action="store_true", help="also write ONNX (model.onnx; needs the onnx extra)")
    p.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size for the FLOPs in the model card"
    )
    add_overwrite_flag(p)


def run(args: argparse.Namespace) -> int:
    from acla_nas.core.errors import UserError
    from acla_nas.export.exporter import INPUT_SIDE, export_run

    if args.top is not None and args.top < 1:
        raise UserError(f"expected a positive integer, got {args.top}", field="--top")
    lo, hi = INPUT_SIDE
    if args.input_size and not all(lo <= v <= hi for v in args.input_size):
        h, w = args.input_size
        raise UserError(
            f"expected H W in {lo}..{hi} (the input size of the exported models), got {h} {w}", field="--input-size"
        )
    dirs = export_run(
        args.run_dir,
        args.out,
        top=args.top,
        pareto=args.pareto,
        weights=not args.no_weights,
        torchscript=args.torchscript,
        onnx=args.onnx,
        input_size=tuple(args.input_size) if args.input_size else None,
        overwrite=args.overwrite,
    )
    for d in dirs:
        print(f"exported {d} ({', '.join(sorted(p.name for p in d.iterdir()))})")
    return 0
