"""``acla-nas plot RUN_DIR... --out DIR``: every figure the runs' data allow.

Figures whose data are absent (no DARTS columns, no best_arch.yaml, ...) are skipped with a
one-line note. With ``--checkpoint`` (or a ``model.pt`` in the run) it also draws the ACLA key
usage of the trained child on ``--image`` (default: a crop of a bundled photograph).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acla_nas.core.errors import UserError
from acla_nas.core.outputs import add_overwrite_flag, output_dir, refuse_foreign_results

NAME = "plot"
HELP = "draw search figures (score, DARTS probabilities, Pareto front, top-k choices, architecture)"
ALLOWED_FORMATS = ("png", "svg", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (overlaid in one figure each)")
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output folder (default: RUN_DIR/plots of the first run)"
    )
    parser.add_argument(
        "--format", default="png", metavar="FMT[,FMT]", help="comma-separated: png, svg, pdf (default png)"
    )
    parser.add_argument(
        "--top-k", type=int, default=10, metavar="K", help="architectures counted in the frequency map (default 10)"
    )
    parser.add_argument(
        "--checkpoint", metavar="FILE", default=None, help="trained child (model.pt) for the key-usage figure"
    )
    parser.add_argument("--image", metavar="FILE", default=None, help="image for the key-usage figure")
    add_overwrite_flag(parser)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in ALLOWED_FORMATS]
    if not formats or bad:
        raise UserError(
            f"expected a comma-separated list of {', '.join(ALLOWED_FORMATS)}, got {text!r}", field="--format"
        )
    return list(dict.fromkeys(formats))


SOURCES = ".acla-nas-plot.yaml"  # which runs a folder's figures were drawn from


def _sources(run_dirs: list[Path]) -> list[str]:
    return [str(rd.resolve()) for rd in run_dirs]


def _plotted(folder: Path) -> list[str] | None:
    from acla_nas.core.yaml_io import read_yaml

    f = folder / SOURCES
    try:
        doc = read_yaml(f, allow_empty=True) if f.is_file() else None
    except UserError:
        return None
    return doc.get("runs") if isinstance(doc, dict) else None


def _record_sources(folder: Path, run_dirs: list[Path]) -> None:
    import yaml

    from acla_nas.core.atomic import write_text_atomic

    write_text_atomic(folder / SOURCES, yaml.safe_dump({"runs": _sources(run_dirs)}))


def run(args: argparse.Namespace) -> int:
    formats = parse_formats(args.format)
    if args.top_k < 1:
        raise UserError(f"expected a positive integer, got {args.top_k}", field="--top-k")
    run_dirs = [Path(r) for r in args.run_dirs]
    for rd in run_dirs:
        if not rd.is_dir():
            raise UserError("run directory not found", file=str(rd))
    out = Path(args.out) if args.out else run_dirs[0] / "plots"
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and not ckpt.exists():
        raise UserError("checkpoint not found", file=str(ckpt), field="--checkpoint")
    refuse_foreign_results(  # checked before anything is drawn; the folder is made by plot_runs
        output_dir(out, create=False),
        args.overwrite,
        ours=lambda d: not args.out or _plotted(d) == _sources(run_dirs),
        what="acla-nas plot of these runs",
        names=(),
        suffixes=(".png", ".pdf", ".svg"),
    )
    from acla_nas.plots.figures import plot_runs  # lazy: matplotlib only for this verb

    # a checkpoint the user named is loaded (and refused, if bad) before any figure is written
    res = plot_runs(
        run_dirs, out, formats, args.top_k, with_model=True, checkpoint=ckpt, image=args.image, strict=ckpt is not None
    )
    _record_sources(out, run_dirs)
    for p in res.files:
        print(p)
    for n in res.notes:
        print(f"note: {n}")
    return 0
