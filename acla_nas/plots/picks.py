"""Exported picks: which trajectory rows the architectures in ``RUN_DIR/export`` and
``RUN_DIR/exported.csv`` came from (starred on the Pareto front)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acla_nas.plots.load import ok_mask
from acla_nas.runs import trajectory as T
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import Canonical, row_arch, site_names


def _same(a: Canonical, b: Canonical, with_scope: bool) -> bool:
    if set(a) != set(b):
        return False
    for s in a:
        if a[s][0] != b[s][0]:
            return False
        if with_scope and a[s][1] is not None and b[s][1] is not None and a[s][1] != b[s][1]:
            return False
    return True


@dataclass
class Pick:
    """One exported architecture: its source file, and a step and/or architecture to match."""

    source: str
    step: float | None = None
    run: str | None = None
    arch: Canonical | None = None


def load_picks(run_dir: str | Path, sites: Sequence[str] = ()) -> list[Pick]:
    """Exported architectures: ``RUN_DIR/export/*/arch.yaml`` and rows of ``RUN_DIR/exported.csv``."""
    run_dir = Path(run_dir)
    picks: list[Pick] = []
    export = RunDir(run_dir).export
    for path in sorted(export.glob("*/arch.yaml")) + sorted(export.glob("arch.yaml")):
        data = T.read_yaml_file(path)
        if not isinstance(data, Mapping):
            continue
        prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
        step = next((v for v in (data.get("step"), prov.get("step"), prov.get("trial")) if v is not None), None)
        picks.append(Pick(str(path), _float_or_none(step), None, T.doc_arch(data)))
    csv = RunDir(run_dir).exported
    if csv.exists():
        table = T.read_csv(csv)
        for i, r in table.iterrows():
            rd = {str(k): v for k, v in r.items()}
            arch = T.encoding_arch(rd.get("arch"))
            run = rd.get("run")
            run = None if run is None or pd.isna(run) else str(run)
            picks.append(Pick(f"{csv}:{i + 2}", _float_or_none(rd.get("step")), run, arch))
    return picks


def _float_or_none(v: Any) -> float | None:
    try:
        f = float(v)
        return f if math.isfinite(f) else None
    except (TypeError, ValueError):
        return None


def match_picks(df: pd.DataFrame, picks: Sequence[Pick]) -> tuple[pd.Series, list[str]]:
    """Mark the trajectory rows the exported picks came from; returns (mask, notes).

    Order of evidence: the step (and run when given), then the architecture with scopes, then
    the key budgets alone. Among several equal architectures the best-scoring row is marked.
    """
    mask = pd.Series(False, index=df.index)
    notes: list[str] = []
    sites = site_names(df)
    scored = df[ok_mask(df)]
    archs: dict[Any, Canonical | None] | None = None
    for pick in picks:
        cand = scored
        if pick.run is not None and (cand["run"] == pick.run).any():
            cand = cand[cand["run"] == pick.run]
        hit = None
        if pick.step is not None:
            at = cand[np.isclose(cand["step"].astype(float), pick.step)]
            if len(at) > 1 and pick.arch is not None:
                same = [i for i in at.index if _same(row_arch(at.loc[i], sites) or {}, pick.arch, False)]
                at = at.loc[same] if same else at
            if len(at):
                hit = at["psnr"].idxmax()
        if hit is None and pick.arch is not None:
            if archs is None:
                archs = {i: row_arch(r, sites) for i, r in scored.iterrows()}
            for with_scope in (True, False):
                same = [i for i in cand.index if archs.get(i) is not None and _same(archs[i], pick.arch, with_scope)]
                if same:
                    hit = cand.loc[same, "psnr"].idxmax()
                    break
        if hit is None:
            notes.append(f"exported pick {pick.source} not found in the trajectory")
        else:
            mask[hit] = True
    return mask, notes
