"""What every figure's drawing shares: colours, the PSNR axis, file names and saving.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot's global state,
so drawing is headless, leaks no open figures and works next to a user's own pyplot session.
The Agg backend is selected here (not at package import) only when pyplot is not loaded yet.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # switching later would close a user's figures
    matplotlib.use("Agg")

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

FORMATS = ("png", "pdf", "svg")  # what `acla-nas plot --format` accepts
DPI = 130


def colors(labels: Iterable[str]) -> dict[str, Any]:
    """One stable colour per run label, in order of first appearance."""
    uniq = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(uniq) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(uniq)}


def save_figure(fig: Figure, out_dir: str | Path, stem: str, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``out_dir/stem.<fmt>`` for each format; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=DPI)
        paths.append(path)
    return paths


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    """The figure encoded in memory (for the HTML report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI if fmt == "png" else None)
    return buf.getvalue()


def slug(text: str) -> str:
    """A file-name-safe version of a run label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def psnr_shift(labels: Iterable[str], plain: Mapping[str, float]) -> tuple[dict[str, float], str]:
    """Per run label, the PSNR to subtract, and the y-axis label.

    Papers report what a module buys over the network without it, so when every run has a
    scored plain backbone (``plain``: label -> its PSNR) the axis shows the difference to it;
    otherwise absolute PSNR (one run without a plain point would make the axis ambiguous)."""
    uniq = list(dict.fromkeys(labels))
    if uniq and all(lab in plain for lab in uniq):
        if len(uniq) == 1:
            return {
                uniq[0]: plain[uniq[0]]
            }, f"PSNR gain over the plain backbone (dB)\nplain backbone: {plain[uniq[0]]:.2f} dB"
        return {lab: plain[lab] for lab in uniq}, "PSNR gain over each run's plain backbone (dB)"
    return dict.fromkeys(uniq, 0.0), "validation PSNR (dB)"


def plain_numbers(ax: Any, axis: str = "y") -> None:
    """Tick labels as plain numbers: no "+1.9e1" offset nor scientific notation on an axis."""
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
