"""PSNR by number of ACLA modules: does the score grow with the modules a candidate carries?

Data: the scored multi-trial rows (COMPLETE, finite PSNR; DARTS steps left out), per run label,
grouped by ``n_modules`` with each group's median. Drawing: one strip per module count, jittered
points and the median as a bar, one colour per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from acla_nas.plots.draw import plain_numbers, psnr_shift
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import darts_mask, ok_mask, plain_psnr


@dataclass
class ModulesInfo:
    """``points``: label, n_modules, psnr; ``medians``: label, n_modules, psnr, count."""

    points: pd.DataFrame
    medians: pd.DataFrame
    plain: dict[str, float] = field(default_factory=dict)  # label -> plain backbone PSNR


def modules_psnr_info(df: pd.DataFrame) -> ModulesInfo | None:
    """Scored trials by module count; None when fewer than two counts were tried."""
    if "n_modules" not in df.columns:
        return None
    rows = df[ok_mask(df) & ~darts_mask(df) & np.isfinite(df["n_modules"].astype(float))]
    points = pd.DataFrame(
        {"label": rows["label"], "n_modules": rows["n_modules"].astype(int), "psnr": rows["psnr"].astype(float)}
    )
    if points["n_modules"].nunique() < 2:
        return None
    medians = points.groupby(["label", "n_modules"], sort=True)["psnr"].agg(["median", "count"]).reset_index()
    return ModulesInfo(points.reset_index(drop=True), medians.rename(columns={"median": "psnr"}), plain_psnr(df))


def _data(inp: FigureInput) -> DataResult:
    info = modules_psnr_info(inp.df)
    if info is None:
        return [], ["modules figure skipped: fewer than two module counts among the scored trials"]
    return [("modules_psnr", info)], []


def draw_modules_psnr(info: ModulesInfo) -> Figure:
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(info.points["label"]))
    shift, ylabel = psnr_shift(labels, info.plain)
    width = 0.8 / len(labels)
    rng = np.random.default_rng(0)  # jitter only: the same picture every time
    for i, label in enumerate(labels):
        pts = info.points[info.points["label"] == label]
        x = pts["n_modules"].to_numpy() + (i - (len(labels) - 1) / 2) * width
        ax.scatter(
            x + rng.uniform(-width / 3, width / 3, len(x)),
            pts["psnr"] - shift[label],
            s=14,
            alpha=0.6,
            label=f"{label}: candidates",
            color=f"C{i}",
        )
        med = info.medians[info.medians["label"] == label]
        mx = med["n_modules"].to_numpy() + (i - (len(labels) - 1) / 2) * width
        ax.hlines(
            med["psnr"] - shift[label],
            mx - width / 2,
            mx + width / 2,
            colors=f"C{i}",
            linewidth=2.5,
            label=f"{label}: median",
        )
    if any(shift.values()):
        ax.axhline(0.0, color="0.35", lw=0.9, ls="--", zorder=0, label="plain backbone")
    ax.set_xticks(sorted(info.points["n_modules"].unique()))
    ax.set_xlabel("ACLA modules in the candidate")
    ax.set_ylabel(ylabel)
    plain_numbers(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best", frameon=False)
    fig.suptitle("Validation PSNR by number of ACLA modules (bars: medians)")
    return fig


register_figure(
    FigureSpec(
        "modules_psnr",
        _data,
        draw_modules_psnr,
        "Validation PSNR of the scored candidates by their number of ACLA modules; bars are medians.",
        order=55,
    )
)
