"""``acla-nas plot RUN_DIR... --out DIR``: every figure the runs' data allow.

Figures whose data are absent (no DARTS columns, no best_arch.yaml, ...) are skipped with a
one-line note. With ``--checkpoint`` (or a ``model.pt`` in the run) it also draws the ACLA key
usage of the trained child on ``--image`` (default: a crop of a bundled photograph).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UserError

NAME = "plot"
HELP = "draw search figures (score, DARTS probabilities, Pareto front, top-k choices, architecture)"
ALLOWED_FORMATS = ("png", "svg", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (overlaid in one figure each)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: RUN_DIR/plots of the first run)")
    parser.add_argument("--format", default="png", metavar="FMT[,FMT]", help="comma-separated: png, svg, pdf (default png)")
    parser.add_argument("--top-k", type=int, default=10, metavar="K", help="architectures counted in the frequency map (default 10)")
    parser.add_argument("--checkpoint", metavar="FILE", default=None, help="trained child (model.pt) for the key-usage figure")
    parser.add_argument("--image", metavar="FILE", default=None, help="image for the key-usage figure")


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in ALLOWED_FORMATS]
    if not formats or bad:
        raise UserError(f"expected a comma-separated list of {', '.join(ALLOWED_FORMATS)}, got {text!r}", field="--format")
    return list(dict.fromkeys(formats))


def run(args: argparse.Namespace) -> int:
    formats = parse_formats(args.format)
    if args.top_k < 1:
        raise UserError(f"expected a positive integer, got {args.top_k}", field="--top-k")
    run_dirs = [Path(r) for r in args.run_dirs]
    for rd in run_dirs:
        if not rd.is_dir():
            raise UserError("run directory not found", file=str(rd))
    out = Path(args.out) if args.out else run_dirs[0] / "plots"
    from ..plots.draw import plot_runs  # lazy: matplotlib only for this verb

    res = plot_runs(run_dirs, out, formats, args.top_k)
    notes = list(res.notes)
    files = list(res.files)
    ckpt = Path(args.checkpoint) if args.checkpoint else _find_checkpoint(run_dirs[0])
    if args.checkpoint and not ckpt.exists():
        raise UserError("checkpoint not found", file=str(ckpt), field="--checkpoint")
    if ckpt is not None:
        more, note = _key_usage(ckpt, args.image, out, formats)
        files += more
        if note:
            notes.append(note)
    elif args.image:
        notes.append("key usage skipped: no --checkpoint given and no model.pt in the run")
    for p in files:
        print(p)
    for n in notes:
        print(f"note: {n}")
    return 0


def _find_checkpoint(run_dir: Path) -> Path | None:
    for cand in [run_dir / "model.pt", *sorted(run_dir.glob("export/*/model.pt"))]:
        if cand.exists():
            return cand
    return None


def load_image(path: str | None) -> Any:
    """(3,H,W) float tensor in [0,1]: the file, else a 128 px crop of a bundled photograph."""
    import numpy as np
    import torch

    if path:
        from PIL import Image, UnidentifiedImageError

        try:
            arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"cannot read image ({exc.__class__.__name__})", file=path, field="--image") from None
    else:
        try:
            from skimage import data as skdata

            arr = skdata.astronaut()[20:276, 120:376].astype(np.float32) / 255.0
            arr = arr[::2, ::2]
        except Exception:  # noqa: BLE001 - any failure: fall back to a synthetic pattern
            yy, xx = np.mgrid[0:128, 0:128] / 128.0
            arr = np.stack([xx, yy, 0.5 + 0.5 * np.sin(12 * xx * yy)], -1).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def load_model(path: Path) -> tuple[Any, str | None]:
    """The child network of a ``model.pt`` (as written by train/export), loaded safely
    (``weights_only=True``). Returns (model or None, note)."""
    from ..errors import UserError
    from ..restore import load_model as load_child

    try:
        model, _arch, _payload = load_child(path, "cpu")
    except UserError as exc:
        return None, f"key usage skipped: {exc}"
    return model, None


def _key_usage(ckpt: Path, image: str | None, out: Path, formats: list[str]) -> tuple[list[Path], str | None]:
    model, note = load_model(ckpt)
    if model is None:
        return [], note
    from ..plots.draw import key_usage_figure

    img = load_image(image)
    files: list[Path] = []
    for fmt in formats:
        paths, note = key_usage_figure(model, img, out / f"key_usage.{fmt}")
        if note:
            return files, note
        files += paths
    return files, None
