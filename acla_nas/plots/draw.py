"""Matplotlib drawing of the prepared plot data (see :mod:`acla_nas.plots.data`).

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot's global state,
so drawing is headless, leaks no open figures and works next to a user's own pyplot session.
The Agg backend is selected here (not at package import) only when pyplot is not loaded yet.
"""

from __future__ import annotations

import io
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # switching later would close a user's figures
    matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from acla_nas.plots import data as D

FORMATS = ("png", "svg")
DPI = 130


def _colors(labels: Iterable[str]) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# 1. score


def draw_score(info: D.ScoreInfo) -> Figure:
    """PSNR against trial (and DARTS step) and against wall time, best-so-far as a step line."""
    t = info.table
    kinds = [k for k in ("trial", "darts step") if (t["kind"] == k).any()]
    panels: list[tuple[str, str, pd.DataFrame]] = [
        ("step", "trial" if k == "trial" else "DARTS training step", t[t["kind"] == k]) for k in kinds
    ]
    if np.isfinite(t["seconds"].astype(float)).any():
        panels.append(("seconds", "wall time since search start (s)", t))
    colors = _colors(t["label"])
    fig = Figure(figsize=(5.0 * len(panels) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (xcol, xlabel, sub) in zip(axes, panels):
        below = blended_transform_factory(ax.transData, ax.transAxes)
        for label, g in sub.groupby("label", sort=False):
            c = colors[label]
            ok = g[g["ok"]]
            ax.scatter(ok[xcol], ok["psnr"], s=14, color=c, alpha=0.45, linewidths=0)
            if xcol == "seconds":  # workers may finish out of step order: running max in time
                ok = ok.sort_values("seconds", kind="stable")
                best = np.maximum.accumulate(ok["psnr"].to_numpy()) if len(ok) else []
            else:
                best = ok["best_so_far"].to_numpy()
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
    axes[0].set_ylabel("validation PSNR (dB)")
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


# --------------------------------------------------------------------------------------------
# 2. DARTS


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly uneven) step values for pcolormesh."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _budget_title(b: int) -> str:
    return "budget 0 (no module)" if b == 0 else f"budget K={b}"


def draw_darts(info: D.DartsInfo) -> Figure:
    """Heat maps sites x steps of each budget's probability, temperature strip on top."""
    n_sites, n_b = len(info.sites), len(info.budgets)
    has_t = info.temperature is not None
    panel_h = 0.5 + 0.2 * n_sites
    ratios = ([0.9] if has_t else []) + [panel_h] * n_b
    fig = Figure(figsize=(9.5, sum(ratios) + 1.0), layout="constrained")
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
    xe = _edges(info.steps)
    ye = np.arange(n_sites + 1) - 0.5
    if has_t:
        ax = axes[0]
        ax.plot(info.steps, info.temperature, color="tab:red", lw=1.6)
        ax.set_ylabel("τ", fontsize=11, rotation=0, labelpad=10)
        ax.grid(alpha=0.3)
        ax.set_title("softmax temperature τ of the architecture weights", loc="left", fontsize=9)
    heat_axes = list(axes[1:] if has_t else axes)
    mesh = None
    for ax, b, p in zip(heat_axes, info.budgets, info.probs):
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(p), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_yticks(range(n_sites), info.sites, fontsize=max(6, 9 - n_sites // 12))
        ax.set_ylim(n_sites - 0.5, -0.5)  # head at the top
        ax.set_title(_budget_title(b), loc="left", fontsize=9)
        ax.set_ylabel("site", fontsize=9)
    heat_axes[-1].set_xlabel("DARTS training step")
    if mesh is not None:
        fig.colorbar(mesh, ax=heat_axes, label="probability of the budget", shrink=0.6, aspect=30)
    fig.suptitle(f"{info.label}: architecture probabilities per site and key budget")
    return fig


def draw_expected_keys(info: D.DartsInfo) -> Figure:
    """Expected key count E[K] = sum_b b p(b) per site against the DARTS step."""
    fig = Figure(figsize=(9.0, 4.4), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["tab10" if len(info.sites) <= 10 else "tab20"]
    styles = ["-", "--", ":", "-."]
    for i, site in enumerate(info.sites):
        ax.plot(
            info.steps, info.expected_keys[i], color=cmap(i % cmap.N), ls=styles[(i // cmap.N) % 4], lw=1.6, label=site
        )
    for b in info.budgets:
        ax.axhline(b, color="0.6", lw=0.7, ls=":", zorder=0)
    ax.set_yticks(info.budgets)
    ax.set_xlabel("DARTS training step")
    ax.set_ylabel("expected keys  E[K] = Σ K·p(K)")
    ax.grid(axis="x", alpha=0.3)
    ncol = 1 if len(info.sites) <= 16 else 2
    ax.legend(title="site", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, ncol=ncol, frameon=False)
    ax.set_title(f"{info.label}: expected key count per site")
    return fig


# --------------------------------------------------------------------------------------------
# 3. Pareto


def draw_pareto(infos: Sequence[D.ParetoInfo]) -> Figure:
    """PSNR against each cost: all points faint, each run's non-dominated front connected."""
    fig = Figure(figsize=(5.2 * len(infos) + 0.4, 4.6), layout="constrained")
    axes = fig.subplots(1, len(infos), sharey=True, squeeze=False)[0]
    colors = _colors(lab for info in infos for lab in info.points["label"])
    extra: dict[str, Any] = {}
    for ax, info in zip(axes, infos):
        pts = info.points
        x = pts["cost"] / info.unit_divisor
        for label, g in pts.groupby("label", sort=False):
            c = colors[label]
            ax.scatter(x[g.index], g["psnr"], s=12, color=c, alpha=0.25, linewidths=0)
            f = g[g["on_front"]].sort_values(["cost", "psnr"])
            ax.plot(f["cost"] / info.unit_divisor, f["psnr"], "-o", color=c, ms=4, lw=1.6, label=f"{label} front")
        plain = pts[pts["plain"]]
        if len(plain):
            extra["plain backbone"] = ax.scatter(
                x[plain.index],
                plain["psnr"],
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
                pick["psnr"],
                marker="*",
                s=190,
                color="gold",
                edgecolors="black",
                linewidths=0.9,
                zorder=5,
            )
        ax.set_xlabel(info.unit_label)
        ax.grid(alpha=0.3)
        ax.set_title(f"PSNR vs {'FLOPs' if info.cost == 'flops' else 'parameters'}", fontsize=10)
    axes[0].set_ylabel("validation PSNR (dB)")
    handles, labels = axes[0].get_legend_handles_labels()
    handles += list(extra.values())
    labels += list(extra)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    fig.suptitle("Accuracy-cost trade-off (maximize PSNR, minimize cost; faint: all evaluated)")
    return fig


# --------------------------------------------------------------------------------------------
# 4. top-k frequency


def draw_frequency(infos: Sequence[D.FrequencyInfo]) -> Figure:
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


# --------------------------------------------------------------------------------------------
# 6. key usage


def draw_key_usage(infos: Sequence[D.KeyUsageInfo]) -> Figure:
    """Per ACLA module: keys kept per pixel over the image, and sampled keys of a few queries."""
    n = len(infos)
    h, w = infos[0].image.shape[:2]
    pw = 4.2
    ph = pw * h / w
    fig = Figure(figsize=(2 * pw + 1.6, n * (ph + 0.6) + 0.5), layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    qcolors = colormaps["Set1"]
    for (ax0, ax1), info in zip(axes, infos):
        gray = info.image.mean(axis=-1)
        ax0.imshow(gray, cmap="gray", vmin=0, vmax=1)
        km = info.key_map
        k_max = max([loc.shape[1] for loc in info.locations] + [int(np.nanmax(km)) if np.isfinite(km).any() else 1, 1])
        # one colour per whole key count (counts are integers at inference)
        bounds = np.arange(-0.5, k_max + 1.0, 1.0)
        norm = BoundaryNorm(bounds, 256)
        im = ax0.imshow(km, cmap="viridis", norm=norm, alpha=0.7, interpolation="nearest")
        cb = fig.colorbar(im, ax=ax0, label=f"keys kept per query (of K={k_max})", shrink=0.85)
        cb.set_ticks(np.unique(np.linspace(0, k_max, min(k_max, 8) + 1).round().astype(int)))
        ax0.set_title(f"{info.name}: keys kept per pixel (mean {np.nanmean(km):.2f})", fontsize=9)
        ax1.imshow(info.image)
        for qi, q in enumerate(info.queries):
            c = qcolors(qi % 9)
            ax1.scatter([q[0]], [q[1]], marker="*", s=150, color=[c], edgecolors="black", linewidths=0.7, zorder=3)
            for li, loc in enumerate(info.locations):
                for kx, ky in loc[qi]:  # thin spokes show direction even when keys sit close
                    ax1.plot([q[0], kx], [q[1], ky], color=c, lw=0.5, alpha=0.7, zorder=3)
                ax1.scatter(
                    loc[qi, :, 0],
                    loc[qi, :, 1],
                    s=16,
                    marker=markers[li % len(markers)],
                    color=[c],
                    edgecolors="white",
                    linewidths=0.5,
                    zorder=4,
                )
        names = info.ref_names or [f"layer {i + 1}" for i in range(len(info.locations))]
        for li, nm in enumerate(names[: len(info.locations)]):
            ax1.scatter([], [], marker=markers[li % len(markers)], color="0.4", s=18, label=f"keys from {nm}")
        ax1.scatter([], [], marker="*", color="0.4", s=80, label="query pixel")
        ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        if info.median_distance is not None:
            med, over = info.median_distance, "all queries' kept keys"
        else:
            dists = [
                np.linalg.norm(loc[qi] - q, axis=-1) for loc in info.locations for qi, q in enumerate(info.queries)
            ]
            med, over = (float(np.median(np.concatenate(dists))) if dists else float("nan")), "these queries"
        ax1.set_title(f"sampled key locations: median distance {med:.1f} px\n({over})", fontsize=9)
        for ax in (ax0, ax1):
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
    note = infos[0].note if infos else ""
    title = f"ACLA adaptive key selection on {note}" if note else "ACLA adaptive key selection on one image"
    fig.suptitle("\n".join(textwrap.wrap(title, 80)))
    return fig
