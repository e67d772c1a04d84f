"""Top-k frequency: how often each site takes each key budget among the k best distinct
architectures (a sites x budgets count map per run)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import darts_mask, ok_mask
from acla_nas.runs.trajectory import site_names


@dataclass
class FrequencyInfo:
    """``counts``: sites (rows, backbone order) x budgets (columns) among the top-k archs."""

    label: str
    k: int
    n_total: int
    counts: pd.DataFrame


def topk_frequency(df: pd.DataFrame, k: int = 10) -> FrequencyInfo | None:
    """How often each site takes each budget among the k best distinct architectures.

    Uses COMPLETE rows with a PSNR; equal architectures (re-evaluations, cached repeats) count
    once, with their best score, so a repeated point cannot fill the top-k. Ties on PSNR go to
    the cheaper architecture. Budgets that occur anywhere in the table get a column, even if
    absent from the top-k, so zero counts are visible.
    """
    sites = site_names(df)
    if not sites or k < 1:
        return None
    kcols = [f"k:{s}" for s in sites]
    scols = [f"scope:{s}" for s in sites if f"scope:{s}" in df.columns]
    g = df[ok_mask(df)].copy()
    if g.empty:
        return None
    g["_cost"] = g["flops"] if "flops" in g.columns else 0.0
    g = g.sort_values(["psnr", "_cost"], ascending=[False, True], kind="stable")
    sig = pd.Series([repr(tuple(r)) for r in g[kcols + scols].itertuples(index=False)], index=g.index)
    g = g[~sig.duplicated().to_numpy()]
    top = g.head(k)
    budgets = sorted({int(v) for v in pd.unique(df[kcols].to_numpy().ravel()) if pd.notna(v)})
    counts = pd.DataFrame(0, index=sites, columns=budgets, dtype=int)
    for s, col in zip(sites, kcols):
        vc = top[col].dropna().astype(int).value_counts()
        for b, n in vc.items():
            counts.loc[s, int(b)] = int(n)
    counts.index.name, counts.columns.name = "site", "budget"
    label = str(df["label"].iloc[0]) if "label" in df.columns and len(df) else ""
    return FrequencyInfo(label, len(top), len(g), counts)


def draw_frequency(infos: Sequence[FrequencyInfo]) -> Figure:
    """Sites x budgets heat map of counts among the top-k architectures, one panel per run."""
    n = len(infos)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    n_sites = max(len(i.counts.index) for i in infos)
    n_b = max(len(i.counts.columns) for i in infos)
    w = 1.6 + 0.75 * n_b + 1.2
    h = 1.3 + 0.3 * n_sites
    fig = Figure(figsize=(w * ncols + 0.4, h * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, info in zip(axes, infos):
        m = info.counts.to_numpy(dtype=float)
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, info.k), aspect="auto")
        ax.set_xticks(range(m.shape[1]), [("0\n(none)" if b == 0 else str(b)) for b in info.counts.columns])
        ax.set_yticks(range(m.shape[0]), list(info.counts.index), fontsize=max(6, 9 - n_sites // 12))
        ax.set_xlabel("key budget K")
        ax.set_ylabel("site")
        for (r, c), v in np.ndenumerate(m):
            ax.text(
                c,
                r,
                f"{int(v)}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v > 0.6 * max(1, info.k) else "black",
            )
        ax.set_title(f"{info.label}\ntop-{info.k} of {info.n_total} distinct archs", fontsize=9)
        fig.colorbar(im, ax=ax, label="count in top-k", shrink=0.8)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("Site and key-budget choices among the best architectures")
    return fig


def _data(inp: FigureInput) -> DataResult:
    trials = inp.df[~darts_mask(inp.df)]
    infos = [f for _, g in trials.groupby("label", sort=False) if (f := topk_frequency(g, inp.top_k)) is not None]
    if infos:
        return [("topk_frequency", infos)], []
    return [], ["top-k frequency skipped: no completed multi-trial rows with k:<site> columns"]


register_figure(
    FigureSpec(
        "topk_frequency",
        _data,
        draw_frequency,
        "How often each site takes each key budget among the best architectures.",
        order=50,
    )
)
