"""Plot data: trajectory tables in, plain values out (pandas/numpy only, no matplotlib).

Every figure is computed here first, as a DataFrame or a small dataclass of arrays (the way
``optuna.visualization`` splits ``_get_*_info`` from drawing), so tests can check the numbers a
figure shows without rendering it and the drawing code stays free of bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acla_nas.core.errors import UserError
from acla_nas.nn.backbones import Site
from acla_nas.runs import trajectory as T
from acla_nas.runs.pareto import pareto_mask
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import OK_STATE, Canonical, row_arch, site_names

# --------------------------------------------------------------------------------------------
# loading


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


# --------------------------------------------------------------------------------------------
# 1. score over the search


def ok_mask(df: pd.DataFrame) -> pd.Series:
    """Rows that count as a scored architecture: COMPLETE with a finite PSNR."""
    return (df["state"] == OK_STATE) & np.isfinite(df["psnr"].astype(float))


def darts_mask(df: pd.DataFrame) -> pd.Series:
    """Rows logged by a DARTS-style search: a temperature or any budget probability present."""
    cols = [c for c in df.columns if c == "temperature" or c.startswith("p:")]
    if not cols:
        return pd.Series(False, index=df.index)
    return df[cols].notna().any(axis=1)


@dataclass
class ScoreInfo:
    """Per-row score data; ``table`` columns: label, run, strategy, kind, step, seconds, psnr,
    ok, failed, best_so_far. ``kind`` is "trial" or "darts step" (different x scales)."""

    table: pd.DataFrame
    n_failed: dict[str, int] = field(default_factory=dict)

    @property
    def total_failed(self) -> int:
        return int(sum(self.n_failed.values()))


def score_history(df: pd.DataFrame) -> ScoreInfo:
    """Score against step/time with the best-so-far (cumulative max over COMPLETE rows only).

    FAIL/PRUNED rows and NaN scores never raise the best-so-far; before the first good row it is
    NaN. Rows are ordered by step within each label (the order the search produced them).
    """
    cols = ["label", "run", "strategy", "step", "psnr", "state"]
    t = df[cols].copy()
    t["seconds"] = df["seconds"] if "seconds" in df.columns else np.nan
    t["kind"] = np.where(darts_mask(df), "darts step", "trial")
    t["ok"] = ok_mask(df)
    t["failed"] = t["state"] == "FAIL"
    t["_order"] = np.arange(len(t))
    # labels keep their order of appearance (run order on the command line), not alphabetical
    t["label"] = pd.Categorical(t["label"], categories=list(dict.fromkeys(t["label"])))
    t = t.sort_values(["label", "step", "_order"], kind="stable")
    t["label"] = t["label"].astype(str)
    good = t["psnr"].where(t["ok"])
    t["best_so_far"] = good.groupby(t["label"], sort=False).cummax()
    # cummax leaves NaN on bad rows; carry the running best forward within each label
    t["best_so_far"] = t.groupby("label", sort=False)["best_so_far"].ffill()
    n_failed = {str(k): int(v) for k, v in t.groupby("label", sort=False)["failed"].sum().items()}
    return ScoreInfo(t.drop(columns="_order").reset_index(drop=True), n_failed)


# --------------------------------------------------------------------------------------------
# 2. DARTS probabilities


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


# --------------------------------------------------------------------------------------------
# 3. Pareto front and exported picks


def cost_unit(values: Sequence[float], base: str) -> tuple[float, str]:
    """(divisor, axis label) so ticks read 1-999: e.g. (1e9, 'FLOPs (GMACs)')."""
    v = np.asarray(values, dtype=float)
    top = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 0.0
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):  # noqa: B007 - used after the loop
        if top >= div:
            break
    else:
        div, prefix = 1.0, ""
    if base == "flops":
        return div, f"FLOPs ({prefix}MACs)"
    return div, f"parameters ({prefix})" if prefix else "parameters"


@dataclass
class ParetoInfo:
    """Points of one cost axis: ``points`` columns label, step, psnr, cost, on_front, picked,
    plain (no module). ``front`` = on-front rows sorted by cost, per label."""

    cost: str
    unit_divisor: float
    unit_label: str
    points: pd.DataFrame

    @property
    def front(self) -> pd.DataFrame:
        return self.points[self.points["on_front"]].sort_values(["label", "cost", "psnr"])


def pareto_info(df: pd.DataFrame, cost: str = "flops", picked: pd.Series | None = None) -> ParetoInfo | None:
    """PSNR against ``cost`` ('flops' or 'params') with the front of each run; None if no data."""
    if cost not in df.columns:
        return None
    keep = ok_mask(df) & np.isfinite(df[cost].astype(float))
    if not keep.any():
        return None
    pts = pd.DataFrame(
        {
            "label": df.loc[keep, "label"],
            "step": df.loc[keep, "step"],
            "psnr": df.loc[keep, "psnr"].astype(float),
            "cost": df.loc[keep, cost].astype(float),
        }
    )
    pts["on_front"] = False
    for _, g in pts.groupby("label", sort=False):
        pts.loc[g.index, "on_front"] = pareto_mask(g["psnr"], g["cost"])
    pts["picked"] = False if picked is None else picked.reindex(pts.index).fillna(False).astype(bool)
    pts["plain"] = (df.loc[keep, "n_modules"] == 0) if "n_modules" in df.columns else False
    div, label = cost_unit(pts["cost"], cost)
    return ParetoInfo(cost, div, label, pts)


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


# --------------------------------------------------------------------------------------------
# 4. top-k frequency


@dataclass
class FrequencyInfo:
    """``counts``: sites (rows, backbone order) x budgets (columns) among the top-k archs."""

    label: str
    k: int
    n_total: int
    counts: pd.DataFrame


def topk_frequency(df: pd.DataFrame, k: int = 10) -> FrequencyInfo | None:
    """How often each site takes each budget among the k best distinct architectures.

    Uses COMPLETE rows with a PSNR; equal architectures (re-evaluations, cached repeats) count
    once, with their best score, so a repeated point cannot fill the top-k. Ties on PSNR go to
    the cheaper architecture. Budgets that occur anywhere in the table get a column, even if
    absent from the top-k, so zero counts are visible.
    """
    sites = site_names(df)
    if not sites or k < 1:
        return None
    kcols = [f"k:{s}" for s in sites]
    scols = [f"scope:{s}" for s in sites if f"scope:{s}" in df.columns]
    g = df[ok_mask(df)].copy()
    if g.empty:
        return None
    g["_cost"] = g["flops"] if "flops" in g.columns else 0.0
    g = g.sort_values(["psnr", "_cost"], ascending=[False, True], kind="stable")
    sig = pd.Series([repr(tuple(r)) for r in g[kcols + scols].itertuples(index=False)], index=g.index)
    g = g[~sig.duplicated().to_numpy()]
    top = g.head(k)
    budgets = sorted({int(v) for v in pd.unique(df[kcols].to_numpy().ravel()) if pd.notna(v)})
    counts = pd.DataFrame(0, index=sites, columns=budgets, dtype=int)
    for s, col in zip(sites, kcols):
        vc = top[col].dropna().astype(int).value_counts()
        for b, n in vc.items():
            counts.loc[s, int(b)] = int(n)
    counts.index.name, counts.columns.name = "site", "budget"
    label = str(df["label"].iloc[0]) if "label" in df.columns and len(df) else ""
    return FrequencyInfo(label, len(top), len(g), counts)


# --------------------------------------------------------------------------------------------
# 5. architecture diagram


@dataclass
class ModuleSpec:
    site: str
    keys: int
    scope: Any
    refs: list[str]


@dataclass
class DiagramInfo:
    """Blocks in order and the attention edges (reference site -> module site)."""

    title: str
    sites: list[Site]
    modules: dict[str, ModuleSpec]
    edges: list[tuple[str, str]]
    tail: str
    notes: list[str] = field(default_factory=list)


def resolve_scope(scope: Any, index: int, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Earlier sites a module at ``names[index]`` attends: int r = the r nearest earlier sites,
    "all" = every earlier site, a list = those names (later/unknown ones dropped with a note)."""
    earlier = list(names[:index])
    sc = T.doc_scope(scope) if scope is not None else None
    notes: list[str] = []
    if sc is None:
        notes.append(f"{names[index]}: no scope given, drawn as 'all'")
        sc = "all"
    if sc == "all":
        return earlier, notes
    if isinstance(sc, (int, float)):
        r = int(sc)
        if r < 1:
            notes.append(f"{names[index]}: scope {r} < 1")
            return [], notes
        return earlier[max(0, len(earlier) - r) :], notes
    refs = []
    for n in sc:
        if n in earlier:
            refs.append(n)
        else:
            notes.append(f"{names[index]}: scope names {n!r}, not an earlier site")
    order = {n: i for i, n in enumerate(names)}
    return sorted(dict.fromkeys(refs), key=order.__getitem__), notes


def _task_text(task: Any) -> str:
    if not isinstance(task, Mapping):
        return str(task) if task else ""
    name = str(task.get("name", ""))
    if name == "sr":
        return f"SR ×{task.get('scale', '?')}"
    if name == "denoise":
        return f"denoise σ={task.get('sigma', '?')}"
    if name == "jpeg":
        return f"JPEG q={task.get('quality', '?')}"
    return name


def diagram_info(arch: Mapping[str, Any], sites: Sequence[Site | tuple | str]) -> DiagramInfo:
    """Blocks and edges for :func:`acla_nas.plots.diagram.draw_arch` from an Arch dict.

    ``sites`` is the backbone's ordered site list, as Site, (name, channels, stride) tuples or
    bare names. Modules at sites missing from the list are appended (noted) so nothing vanishes.
    """
    if hasattr(arch, "to_dict") and not isinstance(arch, Mapping):
        arch = arch.to_dict()
    if not isinstance(arch, Mapping):
        raise UserError("expected an architecture mapping with backbone, task, modules")
    specs: list[Site] = []
    for s in sites:
        if isinstance(s, Site):
            specs.append(s)
        elif isinstance(s, str):
            specs.append(Site(s, None, None))
        else:
            t = tuple(s) + (None, None)
            specs.append(Site(str(t[0]), t[1], t[2]))
    raw = arch.get("modules") or {}
    if not isinstance(raw, Mapping):
        raise UserError("expected a mapping site -> {keys, scope}", field="modules")
    notes: list[str] = []
    names = [s.name for s in specs]
    for site in raw:
        if str(site) not in names:
            notes.append(f"module site {site!r} is not in the site list; drawn at the end")
            specs.append(Site(str(site), None, None))
            names.append(str(site))
    modules: dict[str, ModuleSpec] = {}
    edges: list[tuple[str, str]] = []
    for site, choice in raw.items():
        site = str(site)
        if isinstance(choice, Mapping):
            keys, scope = T.keys_value(choice.get("keys")), choice.get("scope")
        else:
            keys, scope = T.keys_value(choice), None
        if not keys:
            continue
        refs, more = resolve_scope(scope, names.index(site), names)
        notes += more
        if not refs:
            notes.append(f"{site}: no earlier site to attend")
        modules[site] = ModuleSpec(site, keys, T.doc_scope(scope) if scope is not None else "all", refs)
        edges += [(r, site) for r in refs]
    bb = arch.get("backbone")
    bb_name = bb.get("name", "") if isinstance(bb, Mapping) else str(bb or "")
    task = _task_text(arch.get("task"))
    n = len(modules)
    title = f"{bb_name} {task}".strip() + f" — {n} ACLA module{'s' if n != 1 else ''}"
    return DiagramInfo(title, specs, modules, edges, task, notes)


# --------------------------------------------------------------------------------------------
# 6. key usage of a trained child


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def image_hwc(image: Any) -> np.ndarray:
    """(H,W,3) float image in [0,1] from a tensor (B,3,H,W)/(3,H,W) or an array (H,W[,C])."""
    a = _np(image)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.max(initial=0.0) > 1.5:  # 8-bit
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def norm_to_pixel(coords: Any, width: int, height: int) -> np.ndarray:
    """Normalized grid_sample (x, y) in [-1, 1] (align_corners=False) -> pixel (x, y) of an
    image ``width`` x ``height``, pixel centres at integers: -1 is the left edge of pixel 0."""
    c = _np(coords)
    out = np.empty_like(c)
    out[..., 0] = ((c[..., 0] + 1.0) * width - 1.0) / 2.0
    out[..., 1] = ((c[..., 1] + 1.0) * height - 1.0) / 2.0
    return out


def upsample_nearest(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize that keeps integer key counts integers (pixel-centre aligned)."""
    h, w = a.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return a[rows][:, cols]


@dataclass
class KeyUsageInfo:
    """Key usage of one ACLA module on one image, in image pixel coordinates.

    ``key_map``: (H,W) keys kept per query, upsampled to the image; ``queries``: (N,2) pixel
    (x,y) of the chosen query pixels (feature-pixel centres); ``locations``: one (N,K,2) array of
    pixel (x,y) per reference layer.
    """

    name: str
    image: np.ndarray
    key_map: np.ndarray
    queries: np.ndarray
    locations: list[np.ndarray]
    ref_names: list[str] = field(default_factory=list)
    median_distance: float | None = None  # over every query's kept keys, image px
    note: str = ""  # what the image is (e.g. its lattice periods), for the caption


def default_queries(height: int, width: int, n: int) -> list[tuple[int, int]]:
    """``n`` feature-map pixels (row, col) spread over the map: a centred grid, row-major."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    out = []
    for r in range(rows):
        for c in range(cols):
            if len(out) < n:
                out.append(
                    (min(height - 1, int((r + 0.5) * height / rows)), min(width - 1, int((c + 0.5) * width / cols)))
                )
    return out


def key_usage_info(
    key_map: Any,
    locations: Sequence[Any],
    image: Any,
    *,
    queries: Sequence[tuple[int, int]] | None = None,
    n_queries: int = 4,
    batch: int = 0,
    name: str = "",
    ref_names: Sequence[str] = (),
    median_distance: float | None = None,
    note: str = "",
) -> KeyUsageInfo:
    """Numpy key-usage data from an ACLA module's recorded tensors.

    ``key_map`` (B,h,w) and ``locations`` [(B,K,h,w,2) per layer] are at the module's feature
    resolution; ``queries`` are feature pixels (row, col) (default: ``n_queries`` spread evenly).
    Normalized coordinates are resolution-free, so they map straight onto the image.
    """
    img = image_hwc(image)
    H, W = img.shape[:2]
    km = _np(key_map)
    if km.ndim == 3:
        km = km[batch]
    if km.ndim != 2:
        raise ValueError(f"key_map must be (B,H,W) or (H,W), got shape {km.shape}")
    h, w = km.shape
    q = list(queries) if queries is not None else default_queries(h, w, n_queries)
    qpix = np.array([[(c + 0.5) * W / w - 0.5, (r + 0.5) * H / h - 0.5] for r, c in q], dtype=float).reshape(-1, 2)
    locs: list[np.ndarray] = []
    for loc in locations:
        a = _np(loc)
        if a.ndim == 5:
            a = a[batch]
        if a.ndim != 4 or a.shape[-1] != 2:
            raise ValueError(f"locations must be (B,K,H,W,2), got shape {a.shape}")
        picked = np.stack([a[:, r, c, :] for r, c in q]) if q else np.zeros((0, a.shape[0], 2))
        locs.append(norm_to_pixel(picked, W, H))
    return KeyUsageInfo(name, img, upsample_nearest(km, H, W), qpix, locs, list(ref_names), median_distance, note)
