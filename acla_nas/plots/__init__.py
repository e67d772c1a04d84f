"""Figures of searches: data preparation (:mod:`.data`) apart from drawing (:mod:`.draw`,
:mod:`.diagram`), like ``optuna.visualization``.

Importing this package loads no matplotlib; the drawing entry points below import it on first
use, so library code and tests of the data side stay light.
"""
from __future__ import annotations

from typing import Any

from .data import (
    DartsInfo,
    DiagramInfo,
    FrequencyInfo,
    KeyUsageInfo,
    ParetoInfo,
    ScoreInfo,
    SiteSpec,
    canonical_arch,
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

_DRAW = {"plot_runs", "run_figures", "save_figure", "key_usage_figure", "PlotResult"}


def __getattr__(name: str) -> Any:
    """Lazy access to the drawing entry points (imports matplotlib only when asked)."""
    if name in _DRAW:
        from . import draw

        return getattr(draw, name)
    if name == "arch_figure":
        from .diagram import arch_figure

        return arch_figure
    raise AttributeError(name)


__all__ = [
    "DartsInfo", "DiagramInfo", "FrequencyInfo", "KeyUsageInfo", "ParetoInfo", "ScoreInfo", "SiteSpec",
    "canonical_arch", "darts_info", "diagram_info", "key_usage_info", "load_runs", "load_sites",
    "load_trajectory", "match_picks", "norm_to_pixel", "pareto_info", "pareto_mask", "resolve_scope",
    "score_history", "topk_frequency", *sorted(_DRAW), "arch_figure",
]
