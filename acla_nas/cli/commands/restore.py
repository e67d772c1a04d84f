"""``acla-nas restore CHECKPOINT IN.png OUT.png``: restore (for SR: upscale) one image.

Runs tiled inference (``--tile``, ``--overlap``) so large images fit in memory. ``--degrade``
first applies the task's own degradation to IN (a clean image), to see the model at work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acla_nas.core.outputs import add_overwrite_flag

NAME = "restore"
HELP = "restore one image with a trained model (tiled inference)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="model.pt written by `acla-nas train` (or its run directory)"
    )
    parser.add_argument("input", metavar="IN", help="input image (the degraded one: LR for SR, noisy, ...)")
    parser.add_argument("output", metavar="OUT", help="output image (format from the suffix: .png, .bmp, .tif, ...)")
    parser.add_argument("--tile", type=int, default=256, help="LR tile size (0 = whole image; default 256)")
    parser.add_argument("--overlap", type=int, default=16, help="tile overlap in LR pixels (default 16)")
    parser.add_argument("--degrade", action="store_true", help="apply the task's degradation to IN first")
    parser.add_argument("--seed", type=int, default=0, help="seed of --degrade (noise)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    add_overwrite_flag(parser)


def _output_format(path: Path) -> str:
    from PIL import Image

    from acla_nas.core.errors import UserError

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"unknown image format {path.suffix!r} (use .png, .bmp, .tif or .jpg)", field="OUT")
    return fmt


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from acla_nas.core.atomic import atomic_path
    from acla_nas.core.checks import check_seed
    from acla_nas.core.errors import UserError
    from acla_nas.core.outputs import output_file, writing
    from acla_nas.data.images import load_image
    from acla_nas.nn.footprint import check_inference
    from acla_nas.runtime.device import resolve_device
    from acla_nas.runtime.memory import require
    from acla_nas.tasks import make_task
    from acla_nas.train.inference import restore_rows
    from acla_nas.train.model_file import load_model

    src, dst = Path(args.input), Path(args.output)
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError("OUT is the input file; choose another output name", file=str(dst))
    output_file(dst, "OUT", args.overwrite)  # a typo in the folder does not create a stray tree
    fmt = _output_format(dst)
    if args.tile and (args.tile < 8 or not 0 <= args.overlap < args.tile):
        raise UserError(
            f"got --tile {args.tile} --overlap {args.overlap}; expected tile >= 8 and 0 <= overlap < tile",
            field="--tile",
        )
    check_seed(args.seed)
    device = resolve_device(args.device)
    lq = load_image(src)[None]
    model, arch, payload = load_model(args.checkpoint, device)
    task = make_task(payload["task"])
    if args.degrade:
        hr = task.crop_hr(lq)
        if min(hr.shape[-2:]) < task.scale:
            raise UserError(
                f"the image is {lq.shape[-1]}x{lq.shape[-2]}, too small to degrade for {task.describe()} "
                f"(expected at least {task.scale}x{task.scale})",
                file=str(src),
                field="IN",
            )
        lq = task.degrade(hr, torch.Generator().manual_seed(args.seed))
    h, w = lq.shape[-2:]
    tile = (min(h, args.tile), min(w, args.tile)) if args.tile else (h, w)
    check_inference(arch, tile, device, "--tile", "use tiled inference (--tile 256) or a smaller image", str(src))
    H, W = h * task.scale, w * task.scale
    # the output is held as 8-bit (3 bytes a pixel) and filled row block by row block as tiles
    # finish: float memory stays bounded by the tile; refuse up front if even that cannot fit
    require(
        3 * H * W + lq.numel() * lq.element_size(),
        "cpu",
        f"restoring a {w}x{h} image to {W}x{H}",
        "restore a smaller image or crop it",
        str(src),
        "IN",
    )
    out8 = np.empty((H, W, 3), dtype=np.uint8)
    with torch.no_grad():
        for row, block in restore_rows(model, lq.to(device), task.scale, args.tile or None, args.overlap):
            block = block.float()
            if not bool(torch.isfinite(block).all()):
                raise UserError(
                    f"the model produced NaN or infinite values on {src}; nothing was written",
                    file=str(args.checkpoint),
                )
            rows = block[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            out8[row : row + rows.shape[0]] = rows
    with writing(dst), atomic_path(dst) as tmp:
        Image.fromarray(out8, "RGB").save(tmp, format=fmt)
    print(f"{task.describe()}: {src} {w}x{h} -> {dst} {W}x{H}")
    return 0
