"""DARTS figures: the probability of each key budget per site over training (heat maps, the
softmax temperature on top), and the expected key count per site."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from acla_nas.plots.draw import slug
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import darts_mask
from acla_nas.runs import trajectory as T
from acla_nas.runs.trajectory import site_names


def darts_columns(df: pd.DataFrame) -> dict[str, dict[int, str]]:
    """``{site: {budget: column}}`` of the ``p:<site>:<budget>`` columns."""
    out: dict[str, dict[int, str]] = {}
    for col in df.columns:
        parsed = T.parse_p_column(col)
        if parsed:
            out.setdefault(parsed[0], {})[parsed[1]] = col
    return out


@dataclass
class DartsInfo:
    """One DARTS run: ``probs[b, s, t]`` = P(budget b at site s) at logged step t."""

    label: str
    sites: list[str]
    budgets: list[int]
    steps: np.ndarray
    probs: np.ndarray
    temperature: np.ndarray | None
    expected_keys: np.ndarray  # (n_sites, n_steps): sum_b b * p

    def prob_frame(self, budget: int) -> pd.DataFrame:
        """Sites x steps table of one budget's probability (rows in site order)."""
        return pd.DataFrame(self.probs[self.budgets.index(budget)], index=self.sites, columns=self.steps)


def darts_info(df: pd.DataFrame) -> list[DartsInfo]:
    """One :class:`DartsInfo` per run with DARTS columns holding data; empty list if none.

    Sites keep the ``k:`` column order when available (the backbone's order), so heat-map rows
    read head to tail. A missing probability (site/budget not logged) stays NaN.
    """
    cols = darts_columns(df)
    if not cols:
        return []
    order = [s for s in site_names(df) if s in cols] + [s for s in cols if s not in site_names(df)]
    budgets = sorted({b for per in cols.values() for b in per})
    out: list[DartsInfo] = []
    mask = darts_mask(df)
    for label, g in df[mask].groupby("label", sort=False):
        g = g.sort_values("step", kind="stable")
        steps = g["step"].to_numpy(dtype=float)
        probs = np.full((len(budgets), len(order), len(g)), np.nan)
        for si, site in enumerate(order):
            for bi, b in enumerate(budgets):
                col = cols[site].get(b)
                if col is not None:
                    probs[bi, si] = g[col].to_numpy(dtype=float)
        if not np.isfinite(probs).any():
            continue
        weights = np.asarray(budgets, dtype=float)[:, None, None]
        expected = np.nansum(probs * weights, axis=0)
        expected[~np.isfinite(probs).any(axis=0)] = np.nan
        temp = g["temperature"].to_numpy(dtype=float) if "temperature" in g.columns else None
        if temp is not None and not np.isfinite(temp).any():
            temp = None
        out.append(DartsInfo(str(label), order, budgets, steps, probs, temp, expected))
    return out


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly uneven) step values for pcolormesh."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _budget_title(b: int) -> str:
    return "budget 0 (no module)" if b == 0 else f"budget K={b}"


def draw_darts(info: DartsInfo) -> Figure:
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


def draw_expected_keys(info: DartsInfo) -> Figure:
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


def _data(inp: FigureInput, stem: str, note: bool) -> DataResult:
    infos = darts_info(inp.df)
    if not infos:
        return [], ["DARTS heat maps skipped: no temperature / p:<site>:<budget> columns with data"] if note else []
    suffix = inp.multi or len(infos) > 1
    return [(f"{stem}_{slug(i.label)}" if suffix else stem, i) for i in infos], []


register_figure(
    FigureSpec(
        "darts_probs",
        lambda inp: _data(inp, "darts_probs", True),
        draw_darts,
        "DARTS: probability of each key budget per site over training, temperature on top.",
        order=20,
    )
)
register_figure(
    FigureSpec(
        "darts_keys",
        lambda inp: _data(inp, "darts_keys", False),
        draw_expected_keys,
        "DARTS: expected key count per site over training.",
        order=30,
    )
)
