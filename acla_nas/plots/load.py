"""Reading runs for the figures: trajectories (several overlaid), sites, the best architecture,
and the row masks every figure shares (scored rows, DARTS rows).

Plain pandas/numpy, no matplotlib: tests check the numbers a figure shows without drawing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from acla_nas.core.errors import UserError
from acla_nas.nn.backbones import Site
from acla_nas.runs import trajectory as T
from acla_nas.runs.pareto import pareto_mask
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import OK_STATE, row_arch, site_names


def load_trajectory(run_dir: str | Path) -> pd.DataFrame:
    """``RUN_DIR/trajectory.csv`` read through the schema (:func:`acla_nas.runs.trajectory.load_trajectory`),
    plus ``label`` ("run (strategy)") and ``run_dir`` for overlaying runs."""
    df = T.load_trajectory(run_dir)
    df["label"] = df["run"] + " (" + df["strategy"] + ")"
    df["run_dir"] = str(T.trajectory_path(run_dir).parent)
    return df


def load_runs(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Trajectories of several runs in one table; equal labels from different dirs get '#2'."""
    frames: list[pd.DataFrame] = []
    seen: set[str] = set()
    for i, rd in enumerate(run_dirs):
        df = load_trajectory(rd)
        clash = set(df["label"]) & seen
        if clash:
            df["label"] = df["label"].where(~df["label"].isin(clash), df["label"] + f" #{i + 1}")
        seen |= set(df["label"])
        frames.append(df)
    if not frames:
        raise UserError("no run directory given")
    return pd.concat(frames, ignore_index=True, sort=False)


def load_sites(run_dir: str | Path, df: pd.DataFrame | None = None) -> list[Site]:
    """The backbone's ordered sites: ``sites.csv`` if written, else the ``k:`` column order."""
    sites = T.read_sites(RunDir(run_dir).sites)
    if sites is not None:
        return sites
    if df is None:
        tpath = RunDir(run_dir).trajectory
        df = T.read_csv(tpath) if tpath.exists() else pd.DataFrame()
    return [Site(s, None, None) for s in site_names(df)]


def load_best_arch(run_dir: str | Path) -> dict | None:
    """``RUN_DIR/best_arch.yaml`` as a dict, or None when the run has not written one."""
    return T.load_best_arch(run_dir)


def backbone_sites(arch: dict) -> list[Site] | None:
    """The backbone's full ordered site list (head included) by building it; None if that fails.

    ``sites.csv`` lists only the space's candidate sites, which may leave out the head that the
    first module attends, so the backbone itself is the better source when it can be built.
    """
    try:
        from acla_nas.nn.backbones import create_backbone

        bb = arch.get("backbone") or {}
        task = arch.get("task") or {}
        if isinstance(bb, str):
            bb = {"name": bb}
        scale = int(task.get("scale", 1)) if task.get("name") == "sr" else 1
        model = create_backbone(str(bb["name"]), scale=scale, kwargs=bb.get("kwargs") or {}, sites=bb.get("sites"))
        sites = getattr(model, "acla_sites", None) or model.sites
        return [Site(str(x.name), int(x.channels), int(x.stride)) for x in sites]
    except Exception:  # noqa: BLE001 - any failure (no torch, user factory, odd spec): fall back
        return None


def run_sites(run_dir: str | Path, arch: dict, df: pd.DataFrame | None = None) -> list[Site]:
    """Sites for the diagram: the built backbone's, else ``sites.csv``, else the ``k:`` columns."""
    return backbone_sites(arch) or load_sites(run_dir, df)


def ok_mask(df: pd.DataFrame) -> pd.Series:
    """Rows that count as a scored architecture: COMPLETE with a finite PSNR."""
    return (df["state"] == OK_STATE) & np.isfinite(df["psnr"].astype(float))


def darts_mask(df: pd.DataFrame) -> pd.Series:
    """Rows logged by a DARTS-style search: a temperature or any budget probability present."""
    cols = [c for c in df.columns if c == "temperature" or c.startswith("p:")]
    if not cols:
        return pd.Series(False, index=df.index)
    return df[cols].notna().any(axis=1)


def plain_psnr(df: pd.DataFrame) -> dict[str, float]:
    """Best PSNR of the plain backbone (a scored row with no ACLA module) per run label: the
    reference the figures subtract. Labels whose search never scored it are left out."""
    if "n_modules" not in df.columns or "label" not in df.columns:
        return {}
    rows = df[ok_mask(df) & (df["n_modules"] == 0)]
    return {str(k): float(v) for k, v in rows.groupby("label", sort=False)["psnr"].max().items()}


__all__ = [
    "Site",
    "backbone_sites",
    "darts_mask",
    "load_best_arch",
    "load_runs",
    "load_sites",
    "load_trajectory",
    "ok_mask",
    "pareto_mask",
    "plain_psnr",
    "row_arch",
    "run_sites",
    "site_names",
]
