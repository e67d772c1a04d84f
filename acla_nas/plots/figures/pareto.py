"""Pareto front: PSNR against MACs and against parameters, each run's non-dominated front
connected, the plain backbone and the exported picks marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from acla_nas.plots.draw import colors, plain_numbers, psnr_shift
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import ok_mask, pareto_mask, plain_psnr
from acla_nas.plots.picks import load_picks, match_picks
from acla_nas.runs.trajectory import site_names


def cost_unit(values: Sequence[float], base: str) -> tuple[float, str]:
    """(divisor, axis label) so ticks read 1-999 in one unit: e.g. (1e6, 'MACs (M)').

    The trajectory's ``flops`` column counts multiply-accumulates, so the axis says MACs only."""
    v = np.asarray(values, dtype=float)
    top = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 0.0
    div, prefix = next(((d, p) for d, p in ((1e9, "G"), (1e6, "M"), (1e3, "K")) if top >= d), (1.0, ""))
    name = "MACs" if base == "flops" else "parameters"
    return div, f"{name} ({prefix})" if prefix else name


@dataclass
class ParetoInfo:
    """Points of one cost axis: ``points`` columns label, step, psnr, cost, on_front, picked,
    plain (no module). ``front`` = on-front rows sorted by cost, per label."""

    cost: str
    unit_divisor: float
    unit_label: str
    points: pd.DataFrame
    plain_psnr: dict[str, float] = field(default_factory=dict)  # label -> plain backbone PSNR

    @property
    def front(self) -> pd.DataFrame:
        return self.points[self.points["on_front"]].sort_values(["label", "cost", "psnr"])


def pareto_info(df: pd.DataFrame, cost: str = "flops", picked: pd.Series | None = None) -> ParetoInfo | None:
    """PSNR against ``cost`` ('flops' or 'params') with the front of each run; None if no data."""
    if cost not in df.columns:
        return None
    keep = ok_mask(df) & np.isfinite(df[cost].astype(float))
    if not keep.any():
        return None
    pts = pd.DataFrame(
        {
            "label": df.loc[keep, "label"],
            "step": df.loc[keep, "step"],
            "psnr": df.loc[keep, "psnr"].astype(float),
            "cost": df.loc[keep, cost].astype(float),
        }
    )
    pts["on_front"] = False
    for _, g in pts.groupby("label", sort=False):
        pts.loc[g.index, "on_front"] = pareto_mask(g["psnr"], g["cost"])
    pts["picked"] = False if picked is None else picked.reindex(pts.index).fillna(False).astype(bool)
    pts["plain"] = (df.loc[keep, "n_modules"] == 0) if "n_modules" in df.columns else False
    div, label = cost_unit(pts["cost"], cost)
    return ParetoInfo(cost, div, label, pts, plain_psnr(df))


def draw_pareto(infos: Sequence[ParetoInfo]) -> Figure:
    """PSNR against each cost: all points faint, each run's non-dominated front connected."""
    fig = Figure(figsize=(5.2 * len(infos) + 0.4, 4.6), layout="constrained")
    axes = fig.subplots(1, len(infos), sharey=True, squeeze=False)[0]
    cmap = colors(lab for info in infos for lab in info.points["label"])
    shift, ylabel = psnr_shift(cmap, infos[0].plain_psnr)
    extra: dict[str, Any] = {}
    for ax, info in zip(axes, infos):
        pts = info.points
        x = pts["cost"] / info.unit_divisor
        y = pts["psnr"] - pts["label"].map(shift).astype(float)
        for label, g in pts.groupby("label", sort=False):
            c = cmap[label]
            ax.scatter(x[g.index], y[g.index], s=12, color=c, alpha=0.25, linewidths=0)
            f = g[g["on_front"]].sort_values(["cost", "psnr"])
            ax.plot(f["cost"] / info.unit_divisor, y[f.index], "-o", color=c, ms=4, lw=1.6, label=f"{label} front")
        plain = pts[pts["plain"]]
        if len(plain):
            extra["plain backbone"] = ax.scatter(
                x[plain.index],
                y[plain.index],
                marker="D",
                s=36,
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
                zorder=4,
            )
        pick = pts[pts["picked"]]
        if len(pick):
            extra["exported"] = ax.scatter(
                x[pick.index],
                y[pick.index],
                marker="*",
                s=190,
                color="gold",
                edgecolors="black",
                linewidths=0.9,
                zorder=5,
            )
        ax.set_xlabel(info.unit_label)
        plain_numbers(ax, "x")
        ax.grid(alpha=0.3)
        ax.set_title(f"PSNR vs {'MACs' if info.cost == 'flops' else 'parameters'}", fontsize=10)
    axes[0].set_ylabel(ylabel)
    plain_numbers(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()
    handles += list(extra.values())
    labels += list(extra)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    fig.suptitle("Accuracy-cost trade-off (maximize PSNR, minimize cost; faint: all evaluated)")
    return fig


def _data(inp: FigureInput) -> DataResult:
    df, notes = inp.df, []
    picked = pd.Series(False, index=df.index)
    for rd in inp.run_dirs:
        rows = df[df["run_dir"] == str(rd)]
        picks = load_picks(rd, site_names(rows))
        if picks:
            mask, more = match_picks(rows, picks)
            picked[mask.index] = mask
            notes += more
    infos = [p for p in (pareto_info(df, "flops", picked), pareto_info(df, "params", picked)) if p is not None]
    if infos:
        return [("pareto", infos)], notes
    return [], [*notes, "Pareto front skipped: no completed rows with flops/params"]


register_figure(
    FigureSpec(
        "pareto",
        _data,
        draw_pareto,
        "PSNR against MACs and parameters; the non-dominated front connected, exported picks starred.",
        order=40,
    )
)
