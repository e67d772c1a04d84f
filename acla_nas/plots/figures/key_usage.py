"""Key usage of a trained child on one image: per ACLA module, the keys each query pixel kept
(the adaptive selection) and where a few query pixels sample their keys.

The data (one recorded run of the model) are prepared by :mod:`acla_nas.plots.key_usage`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure

from acla_nas.plots.draw import save_figure
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.key_usage import KeyUsageInfo, checkpoint_key_usage, key_usage_infos


def _reach_text(info: KeyUsageInfo) -> str:
    """What the median distance counts, said on the figure: key 0 starts at the query itself."""
    if info.median_distance is not None:
        med, over = info.median_distance, "all query pixels"
    else:  # only the drawn queries' keys are known
        dists = [
            np.linalg.norm(loc[qi, 1:] - q, axis=-1) for loc in info.locations for qi, q in enumerate(info.queries)
        ]
        flat = np.concatenate(dists) if dists else np.zeros(0)
        if not flat.size:
            return "only key 0 (at the query)"
        med, over = float(np.median(flat)), "the drawn query pixels"
    return f"median reach {med:.1f} px\n(kept keys of {over} but key 0, which sits at the query)"


def draw_key_usage(infos: Sequence[KeyUsageInfo]) -> Figure:
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
        ax1.set_title(f"sampled key locations; {_reach_text(info)}", fontsize=9)
        for ax in (ax0, ax1):
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
    note = infos[0].note if infos else ""
    title = f"ACLA adaptive key selection on {note}" if note else "ACLA adaptive key selection on one image"
    fig.suptitle("\n".join(textwrap.wrap(title, 80)))
    return fig


def _data(inp: FigureInput) -> DataResult:
    if inp.checkpoint is None:
        return [], ["key usage skipped: no --checkpoint given and no model.pt in the run"] if inp.image else []
    infos, note = checkpoint_key_usage(inp.checkpoint, inp.image, strict=inp.strict)
    if not infos:
        return [], [note or "key usage skipped: the model has no ACLA module"]
    return [("key_usage", infos)], []


def key_usage_figure(model: Any, image: Any, out: str | Path, n_queries: int = 4) -> tuple[list[Path], str | None]:
    """Draw the key usage of every ACLA module of ``model`` on ``image`` into ``out``.

    ``out`` is a file (format from its suffix, PNG when none). Returns (paths, note); the note
    says why nothing was drawn (no ACLA module, or :mod:`acla_nas.nn.acla` unavailable).
    """
    try:
        infos = key_usage_infos(model, image, n_queries)
    except ImportError as exc:
        return [], f"key usage skipped: acla_nas.nn.acla unavailable ({exc})"
    if not infos:
        return [], "key usage skipped: the model has no ACLA module"
    out = Path(out)
    fmt = out.suffix.lstrip(".") or "png"
    return save_figure(draw_key_usage(infos), out.parent, out.stem if out.suffix else out.name, [fmt]), None


register_figure(
    FigureSpec(
        "key_usage",
        _data,
        draw_key_usage,
        "Trained child on one image: keys kept per query pixel by each ACLA module (the adaptive "
        "selection) and the sampled key locations of a few query pixels; the median distance "
        "leaves out key 0, which sits at the query.",
        needs_model=True,
        order=90,
    )
)
