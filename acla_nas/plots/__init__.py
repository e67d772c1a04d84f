"""Figures of searches and the HTML report.

Layout: :mod:`.load` reads runs (trajectories, sites, best architecture, the shared row masks),
:mod:`.picks` finds the exported architectures in a trajectory, :mod:`.draw` holds what every
drawing shares (colours, the PSNR axis, saving), :mod:`.key_usage` runs a trained child once
for the key-usage figure, and :mod:`.figures` is the figure table with one module per figure
(its data, its drawing and its row), built-ins and plug-ins alike. :mod:`.report` writes the
HTML page.

Importing this package loads no matplotlib: every name below is imported on first use, so
library code and tests of the data side stay light.

May import: every package below it (``core`` ... ``export``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    "acla_nas.plots.load": (
        "Site",
        "load_best_arch",
        "load_runs",
        "load_sites",
        "load_trajectory",
        "ok_mask",
        "darts_mask",
        "pareto_mask",
        "plain_psnr",
        "run_sites",
        "site_names",
    ),
    "acla_nas.plots.picks": ("Pick", "load_picks", "match_picks"),
    "acla_nas.plots.key_usage": ("KeyUsageInfo", "key_usage_info", "norm_to_pixel", "reach_distances"),
    "acla_nas.plots.draw": ("save_figure",),
    "acla_nas.plots.figures": ("plot_runs", "render", "PlotResult"),
    "acla_nas.plots.figures.score": ("ScoreInfo", "score_history"),
    "acla_nas.plots.figures.darts": ("DartsInfo", "darts_info"),
    "acla_nas.plots.figures.pareto": ("ParetoInfo", "cost_unit", "pareto_info"),
    "acla_nas.plots.figures.topk_frequency": ("FrequencyInfo", "topk_frequency"),
    "acla_nas.plots.figures.arch": ("DiagramInfo", "arch_figure", "diagram_info", "draw_arch", "resolve_scope"),
    "acla_nas.plots.figures.key_usage": ("key_usage_figure",),
}
_WHERE = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    """Lazy access: a name's module is imported (with matplotlib, for drawing) when first asked."""
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(import_module(_WHERE[name]), name)


__all__ = sorted(_WHERE)
