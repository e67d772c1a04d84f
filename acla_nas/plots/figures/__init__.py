"""The figure table: one row per figure (name, data function, draw function, caption, whether it
needs a trained model), used by ``acla-nas plot``, the report and the pipeline alike.

A data function turns a :class:`FigureInput` into ``(items, notes)``: ``items`` are
``(file stem, data)`` pairs (one figure each; several for per-run figures), ``notes`` say why a
figure was skipped. The draw function turns one item's data into a matplotlib ``Figure`` and does
nothing else. A new figure is one module in this package that calls :func:`register_figure` (the
registry imports every module here), or a plug-in of the entry-point group ``acla_nas.figures``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from acla_nas.core.registry import Registry
from acla_nas.plots.load import load_runs
from acla_nas.runs.run_dir import RunDir

DataResult = tuple[list[tuple[str, Any]], list[str]]


@dataclass
class FigureInput:
    """What a figure's data function may read: the runs' trajectories and files, and the model."""

    run_dirs: list[Path]
    df: pd.DataFrame  # every run's trajectory, with ``label`` and ``run_dir`` (plots.load.load_runs)
    top_k: int = 10
    checkpoint: Path | None = None  # the trained child for figures that need a model
    image: str | None = None  # their input image (None: the child's own test image)
    strict: bool = False  # the user named the checkpoint: a bad file is an error, not a note

    @property
    def multi(self) -> bool:
        return len(self.run_dirs) > 1


@dataclass(frozen=True)
class FigureSpec:
    """One row of the figure table."""

    name: str
    data: Callable[[FigureInput], DataResult]
    draw: Callable[[Any], Any]  # data item -> matplotlib Figure
    caption: str
    needs_model: bool = False
    in_report: bool = True  # the report shows it among its figures (the diagram sits elsewhere)
    order: int = 100  # position in listings, reports and files (built-ins 10..90)


FIGURES: Registry[FigureSpec] = Registry(
    "figure",
    "acla_nas.figures",
    "figure",
    package=__name__,
    check=lambda f: isinstance(f, FigureSpec),
    expected="acla_nas.plots.figures.FigureSpec",
)


def register_figure(spec: FigureSpec) -> FigureSpec:
    """Add a row to the figure table (returns it, so a module can keep a name for it)."""
    FIGURES.add(spec.name, spec)
    return spec


def figure_table() -> list[FigureSpec]:
    """Every figure, in order."""
    return sorted(FIGURES.items().values(), key=lambda f: (f.order, f.name))


@dataclass
class Rendered:
    spec: FigureSpec
    stem: str
    figure: Any


def render(
    run_dirs: Sequence[str | Path],
    top_k: int = 10,
    *,
    with_model: bool = False,
    checkpoint: Path | None = None,
    image: str | None = None,
    strict: bool = False,
    names: Sequence[str] | None = None,
) -> tuple[list[Rendered], list[str]]:
    """Every figure the runs' data allow (those needing a model only ``with_model``), plus one
    note per skipped figure. All data are prepared before anything is drawn, so a bad file the
    user named stops the command before a figure is written."""
    run_dirs = [Path(r) for r in run_dirs]
    df = load_runs(run_dirs)
    if df.empty:
        return [], ["trajectory has no rows yet: nothing to plot"]
    if with_model and checkpoint is None:
        checkpoint = RunDir(run_dirs[0]).trained_child()
    inp = FigureInput(run_dirs, df, top_k, checkpoint, image, strict)
    prepared: list[tuple[FigureSpec, list[tuple[str, Any]]]] = []
    notes: list[str] = []
    for spec in figure_table():
        if (names is not None and spec.name not in names) or (spec.needs_model and not with_model):
            continue
        items, more = spec.data(inp)
        prepared.append((spec, items))
        notes += more
    return [Rendered(spec, stem, spec.draw(item)) for spec, items in prepared for stem, item in items], notes


@dataclass
class PlotResult:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plot_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    formats: Sequence[str] = ("png",),
    top_k: int = 10,
    **model: Any,
) -> PlotResult:
    """Write every figure of :func:`render` to ``out_dir`` in each format (``model``: the
    keyword arguments of :func:`render` for figures that need a trained model)."""
    from acla_nas.plots.draw import save_figure

    figs, notes = render(run_dirs, top_k, **model)
    res = PlotResult(notes=notes)
    for r in figs:
        res.files += save_figure(r.figure, out_dir, r.stem, formats)
    return res


__all__ = [
    "FIGURES",
    "FigureInput",
    "FigureSpec",
    "PlotResult",
    "Rendered",
    "figure_table",
    "plot_runs",
    "register_figure",
    "render",
]
