"""Figures of searches: data preparation (:mod:`.data`) apart from drawing (:mod:`.draw`,
:mod:`.diagram`), like ``optuna.visualization``.

Importing this package loads no matplotlib; the drawing entry points below import it on first
use, so library code and tests of the data side stay light.

May import: every package below it (``core`` ... ``export``); the HTML report lives here too.
"""

from __future__ import annotations

from typing import Any

from acla_nas.plots.data import (
    DartsInfo,
    DiagramInfo,
    FrequencyInfo,
    KeyUsageInfo,
    ParetoInfo,
    ScoreInfo,
    Site,
    darts_info,
    diagram_info,
    key_usage_info,
    load_runs,
    load_sites,
    load_trajectory,
    match_picks,
    norm_to_pixel,
    pareto_info,
    pareto_mask,
    resolve_scope,
    score_history,
    topk_frequency,
)

_DRAW = {"plot_runs", "render", "save_figure", "key_usage_figure", "PlotResult"}


def __getattr__(name: str) -> Any:
    """Lazy access to the drawing entry points (imports matplotlib only when asked)."""
    if name in ("plot_runs", "render", "PlotResult"):
        from acla_nas.plots import figures

        return getattr(figures, name)
    if name == "key_usage_figure":
        from acla_nas.plots.key_usage import key_usage_figure

        return key_usage_figure
    if name == "save_figure":
        from acla_nas.plots.draw import save_figure

        return save_figure
    if name == "arch_figure":
        from acla_nas.plots.diagram import arch_figure

        return arch_figure
    raise AttributeError(name)


__all__ = [
    "DartsInfo",
    "DiagramInfo",
    "FrequencyInfo",
    "KeyUsageInfo",
    "ParetoInfo",
    "ScoreInfo",
    "Site",
    "darts_info",
    "diagram_info",
    "key_usage_info",
    "load_runs",
    "load_sites",
    "load_trajectory",
    "match_picks",
    "norm_to_pixel",
    "pareto_info",
    "pareto_mask",
    "resolve_scope",
    "score_history",
    "topk_frequency",
    *sorted(_DRAW),
    "arch_figure",
]
