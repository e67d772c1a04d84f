"""``acla-nas evaluate CHECKPOINT``: PSNR/SSIM per data set, next to the naive floor.

The task's protocol applies (SR: Y channel, border = scale; others: RGB). Data sets: the
embedded test photographs by default; each ``--data DIR`` is one more set named by its folder
(HR images degraded by the task, or ``HR/`` + ``LR/`` subfolders used as pairs).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from acla_nas.core.outputs import add_overwrite_flag

NAME = "evaluate"
HELP = "PSNR/SSIM of a trained model (model.pt) per data set, with the input's floor"

_COLUMNS = ("dataset", "image", "psnr", "ssim", "floor_psnr", "floor_ssim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="model.pt written by `acla-nas train` (or its run directory)"
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="DIR",
        default=[],
        help="a folder of test images (repeatable); default: the embedded test photographs",
    )
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--tile", type=int, default=0, help="tiled inference with this LR tile size (0 = whole images)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation (noise)")
    parser.add_argument(
        "--out", metavar="CSV", help="CSV file to write (default: evaluation.csv next to the checkpoint)"
    )
    add_overwrite_flag(parser)


def _table(rows: list[dict]) -> str:
    head = f"{'dataset':<20} {'images':>6} {'PSNR':>8} {'SSIM':>7} {'floor PSNR':>11} {'floor SSIM':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['dataset']:<20} {r['n']:>6} {r['psnr']:>8.2f} {r['ssim']:>7.4f} {r['floor_psnr']:>11.2f} "
            f"{r['floor_ssim']:>11.4f}"
        )
    return "\n".join(lines)


def _write_csv(path: Path, per_set: list[dict]) -> None:
    from acla_nas.core.atomic import write_text_atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for res in per_set:
        for row in res["per_image"]:
            writer.writerow({"dataset": res["dataset"], **{k: row[k] for k in _COLUMNS[1:]}})
        writer.writerow({"dataset": res["dataset"], "image": "(mean)", **{k: res[k] for k in _COLUMNS[2:]}})
    write_text_atomic(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    from acla_nas.core.checks import check_seed
    from acla_nas.core.errors import UserError
    from acla_nas.core.outputs import output_file, writing
    from acla_nas.data.sources import check_min_side, embedded_source, source_for_dir
    from acla_nas.nn.footprint import check_inference
    from acla_nas.runtime.device import resolve_device
    from acla_nas.tasks import make_task
    from acla_nas.train.evaluate import evaluate_model
    from acla_nas.train.model_file import load_model

    if args.tile < 0 or 0 < args.tile < 8:
        raise UserError(f"got {args.tile}, expected 0 (off) or a tile size >= 8", field="--tile")
    if args.out and Path(args.out).suffix.lower() != ".csv":
        raise UserError(f"expected a .csv file name, got {args.out}", field="--out")
    ckpt = Path(args.checkpoint)
    # the default CSV beside the model is evaluate's own (re-running refreshes it); a path the
    # user names is checked, and an existing file there kept, before anything is evaluated
    out = (
        output_file(args.out, "--out", args.overwrite)
        if args.out
        else (ckpt if ckpt.is_dir() else ckpt.parent) / "evaluation.csv"
    )
    check_seed(args.seed)
    device = resolve_device(args.device)
    model, arch, payload = load_model(args.checkpoint, device)
    sets = []  # resolve and size-check every data set before evaluating any, so bad input fails fast
    task = make_task(payload["task"])
    if args.data:
        for d in args.data:
            src = source_for_dir(d, task.scale)
            items = src.all()
            check_min_side(
                items, task.min_side, f"the {task.name} protocol scores (SSIM window after the border crop)", "--data"
            )
            sets.append((src.name, items))
    else:
        sets.append(("embedded-test", embedded_source().split("test")))
    for name, items in sets:
        largest = max(items.hr_sizes(), key=lambda hw: hw[0] * hw[1])
        lr = (largest[0] // task.scale, largest[1] // task.scale)
        tile = (min(lr[0], args.tile), min(lr[1], args.tile)) if args.tile else lr
        check_inference(
            arch,
            tile,
            device,
            "--tile",
            f"the largest image of {name} is {largest[1]}x{largest[0]}; use tiled inference (--tile 256)",
        )
    results = []
    for name, items in sets:
        try:
            res = evaluate_model(
                model, items, task, device, tile=args.tile or None, seed=args.seed, require_finite=True, progress=True
            )
        except UserError as exc:
            raise (exc if exc.file else exc.at(file=str(args.checkpoint))) from None
        results.append({"dataset": name, **res})
    print(f"{task.describe()}")
    print(_table(results))
    with writing(out):
        _write_csv(out, results)
    print(f"wrote {out}")
    return 0
