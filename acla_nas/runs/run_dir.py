"""The run directory: the one owner of every path in it (the layout is a file-format contract).

``config.yaml`` (everything needed to reproduce), ``trajectory.csv``, ``best_arch.yaml``,
``sites.csv``, ``pareto.csv``, ``checkpoints/`` (strategies that train), ``supernet/`` (the
one-shot evaluator's training), ``study.journal`` (the default Optuna storage), and after the
later stages ``export/``, ``exported.csv``, ``retrain/<variant>/``, ``final_table.csv``,
``pipeline.json``, ``plots/`` and ``report.html``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_JOURNAL = "study.journal"  # the default Optuna storage of a run


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created or read here)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str] | RunDir) -> None:
        object.__setattr__(self, "path", path.path if isinstance(path, RunDir) else Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- the search ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def trajectory(self) -> Path:
        return self.path / "trajectory.csv"

    @property
    def best_arch(self) -> Path:
        return self.path / "best_arch.yaml"

    @property
    def sites(self) -> Path:
        return self.path / "sites.csv"

    @property
    def pareto(self) -> Path:
        return self.path / "pareto.csv"

    @property
    def checkpoints(self) -> Path:
        """Checkpoints of a strategy that trains by itself (DARTS)."""
        return self.path / "checkpoints"

    @property
    def supernet(self) -> Path:
        """The one-shot evaluator's training directory."""
        return self.path / "supernet"

    @property
    def supernet_checkpoint(self) -> Path:
        return self.supernet / "checkpoints" / "last.pt"

    @property
    def journal(self) -> Path:
        """The default Optuna storage of multi-trial strategies."""
        return self.path / DEFAULT_JOURNAL

    # -- the later stages ------------------------------------------------------------------------
    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def exported_best(self) -> Path:
        return self.export / "best"

    @property
    def exported(self) -> Path:
        """The table of what ``acla-nas export`` wrote."""
        return self.path / "exported.csv"

    def retrain(self, variant: str) -> Path:
        return self.path / "retrain" / variant

    @property
    def final_table(self) -> Path:
        return self.path / "final_table.csv"

    @property
    def pipeline_state(self) -> Path:
        return self.path / "pipeline.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def trained_child(self) -> Path | None:
        """The trained child for figures that run a model: a ``model.pt`` in the directory, the
        retrained discovered child (its gates are trained, unlike inherited supernet weights),
        else the first exported child with weights."""
        for path in (self.path / "model.pt", self.retrain("discovered") / "model.pt"):
            if path.is_file():
                return path
        found = sorted(self.export.glob("*/model.pt"))
        return found[0] if found else None


__all__ = ["RunDir"]
