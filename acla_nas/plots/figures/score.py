"""Score over the search: validation PSNR of every trial (or DARTS step) against step and wall
time, the best so far as a line, failed trials marked at the bottom."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from acla_nas.plots.draw import colors, plain_numbers, psnr_shift
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import darts_mask, ok_mask, plain_psnr


@dataclass
class ScoreInfo:
    """Per-row score data; ``table`` columns: label, run, strategy, kind, step, seconds, psnr,
    ok, failed, best_so_far. ``kind`` is "trial" or "darts step" (different x scales)."""

    table: pd.DataFrame
    n_failed: dict[str, int] = field(default_factory=dict)
    plain: dict[str, float] = field(default_factory=dict)  # label -> plain backbone PSNR

    @property
    def total_failed(self) -> int:
        return int(sum(self.n_failed.values()))


def score_history(df: pd.DataFrame) -> ScoreInfo:
    """Score against step/time with the best-so-far (cumulative max over COMPLETE rows only).

    FAIL/PRUNED rows and NaN scores never raise the best-so-far; before the first good row it is
    NaN. Rows are ordered by step within each label (the order the search produced them).
    """
    cols = ["label", "run", "strategy", "step", "psnr", "state"]
    t = df[cols].copy()
    t["seconds"] = df["seconds"] if "seconds" in df.columns else np.nan
    t["kind"] = np.where(darts_mask(df), "darts step", "trial")
    t["ok"] = ok_mask(df)
    t["failed"] = t["state"] == "FAIL"
    t["_order"] = np.arange(len(t))
    # labels keep their order of appearance (run order on the command line), not alphabetical
    t["label"] = pd.Categorical(t["label"], categories=list(dict.fromkeys(t["label"])))
    t = t.sort_values(["label", "step", "_order"], kind="stable")
    t["label"] = t["label"].astype(str)
    good = t["psnr"].where(t["ok"])
    t["best_so_far"] = good.groupby(t["label"], sort=False).cummax()
    # cummax leaves NaN on bad rows; carry the running best forward within each label
    t["best_so_far"] = t.groupby("label", sort=False)["best_so_far"].ffill()
    n_failed = {str(k): int(v) for k, v in t.groupby("label", sort=False)["failed"].sum().items()}
    return ScoreInfo(t.drop(columns="_order").reset_index(drop=True), n_failed, plain_psnr(df))


def draw_score(info: ScoreInfo) -> Figure:
    """PSNR against trial (and DARTS step) and against wall time, best-so-far as a step line."""
    t = info.table
    kinds = [k for k in ("trial", "darts step") if (t["kind"] == k).any()]
    panels: list[tuple[str, str, pd.DataFrame]] = [
        ("step", "trial" if k == "trial" else "DARTS training step", t[t["kind"] == k]) for k in kinds
    ]
    if np.isfinite(t["seconds"].astype(float)).any():
        panels.append(("seconds", "wall time since search start (s)", t))
    cmap = colors(t["label"])
    shift, ylabel = psnr_shift(t["label"], info.plain)
    fig = Figure(figsize=(5.0 * len(panels) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (xcol, xlabel, sub) in zip(axes, panels):
        below = blended_transform_factory(ax.transData, ax.transAxes)
        for label, g in sub.groupby("label", sort=False):
            c = cmap[label]
            ok = g[g["ok"]]
            ax.scatter(ok[xcol], ok["psnr"] - shift[label], s=14, color=c, alpha=0.45, linewidths=0)
            if xcol == "seconds":  # workers may finish out of step order: running max in time
                ok = ok.sort_values("seconds", kind="stable")
                best = np.maximum.accumulate(ok["psnr"].to_numpy()) if len(ok) else np.array([])
            else:
                best = ok["best_so_far"].to_numpy()
            best = best - shift[label]
            ax.plot(ok[xcol], best, drawstyle="steps-post", color=c, lw=2, label=label)
            bad = g[g["failed"]]
            if len(bad):
                ax.scatter(
                    bad[xcol],
                    np.full(len(bad), 0.035),
                    transform=below,
                    marker="x",
                    s=26,
                    color=c,
                    linewidths=1.3,
                    clip_on=False,
                )
        x = sub[xcol].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        if len(x):  # failed rows are drawn in axes coordinates: include them in the x range
            pad = 0.03 * (x.max() - x.min()) or 0.5
            ax.set_xlim(x.min() - pad, x.max() + pad)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if any(shift.values()):  # the reference the axis counts from
        for i, ax in enumerate(axes):
            ax.axhline(0.0, color="0.35", lw=0.9, ls="--", zorder=0, label="plain backbone" if i == 0 else None)
    axes[0].set_ylabel(ylabel)
    plain_numbers(axes[0])
    if info.total_failed:  # a strip at the bottom for the × markers, clear of the data
        lo, hi = axes[0].get_ylim()
        axes[0].set_ylim(lo - 0.08 * (hi - lo), hi)
    title = "Validation PSNR during the search (line: best so far)"
    if info.total_failed:
        title += f"; {info.total_failed} failed trial{'s' if info.total_failed != 1 else ''} marked × at the bottom"
    fig.suptitle(title)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, max(1, len(labels))), frameon=False)
    return fig


def _data(inp: FigureInput) -> DataResult:
    info = score_history(inp.df)
    if info.table["ok"].any():
        return [("score", info)], []
    return [], [f"score figure skipped: no completed row yet ({info.total_failed} failed)"]


register_figure(
    FigureSpec(
        "score",
        _data,
        draw_score,
        "Validation PSNR against trial / step and wall time, best so far as a line.",
        order=10,
    )
)
