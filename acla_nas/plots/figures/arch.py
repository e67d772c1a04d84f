"""Architecture diagram of a child: the backbone as a row of blocks, ACLA modules above their
sites, curved arrows from the earlier sites each module attends.

Data come from an Arch dict and the backbone's site list (:func:`diagram_info`), so no torch
model is needed; the figure is a plain ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from acla_nas.core.errors import UserError
from acla_nas.nn.backbones import Site
from acla_nas.nn.scope import scope_refs
from acla_nas.plots.draw import slug
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure
from acla_nas.plots.load import load_best_arch, run_sites
from acla_nas.runs import trajectory as T


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
    sc = T.doc_scope(scope) if scope is not None else None
    notes: list[str] = []
    if sc is None:
        notes.append(f"{names[index]}: no scope given, drawn as 'all'")
        sc = "all"
    res = scope_refs(names, names[index], sc)
    dropped = (n for n in sc if n in res.unknown or n in res.later) if isinstance(sc, tuple) else ()
    notes += [f"{names[index]}: scope names {n!r}, not an earlier site" for n in dropped]
    return list(res.refs), notes


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
    """Blocks and edges for :func:`draw_arch` from an Arch dict.

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


BLOCK_W, BLOCK_H = 0.62, 1.0
MOD_Y, MOD_H = 1.35, 0.55
MOD_TOP = MOD_Y + MOD_H


def _rad(dist: int) -> float:
    """Arc curvature: short hops bend more so they clear the module boxes in between."""
    return min(0.9, 0.35 + 0.5 / max(1, dist))


def _scope_text(scope: Any) -> str:
    if scope == "all":
        return "all"
    if isinstance(scope, (int, float)):
        return f"r={int(scope)}"
    if isinstance(scope, tuple):
        return f"{len(scope)} named"
    return str(scope)


def _site_text(s: Site) -> str:
    parts = []
    if s.channels is not None:
        parts.append(f"{s.channels} ch")
    if s.stride is not None:
        parts.append(f"/{s.stride}")
    return "\n".join(parts)


def draw_arch(info: DiagramInfo) -> Figure:
    """The child network as blocks: input, sites in order (head first), tail."""
    names = ["input"] + [s.name for s in info.sites] + ["tail"]
    n = len(names)
    xs = {name: i for i, name in enumerate(names)}
    longest = max((len(a) for a in names), default=5)
    # arc heights grow with the distance spanned; leave room for the highest one
    # arcs: quadratic Bezier between (x_ref, y0) and (x_mod, MOD_TOP), peak = rad * chord / 2
    peak = max(
        (0.5 * (BLOCK_H + MOD_TOP) + _rad(xs[d] - xs[r]) * (xs[d] - xs[r]) / 2 for r, d in info.edges), default=0.0
    )
    top = (max(MOD_TOP, peak) if info.modules else BLOCK_H) + 0.25
    width = max(6.0, 0.78 * n + 1.0)
    height = 1.6 + 0.55 * (top + 1.2) + 0.05 * longest
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["tab10"]
    mod_color = {site: cmap(i % 10) for i, site in enumerate(info.modules)}
    known = any(s.channels is not None or s.stride is not None for s in info.sites)
    fs = 8 if longest <= 10 else 7

    for i, name in enumerate(names):
        is_site = 0 < i < n - 1
        mod = info.modules.get(name) if is_site else None
        face = "#dfe7f2" if is_site else "#eeeeee"
        ax.add_patch(
            FancyBboxPatch(
                (i - BLOCK_W / 2, 0),
                BLOCK_W,
                BLOCK_H,
                boxstyle="round,pad=0.02,rounding_size=0.06",
                facecolor=face,
                edgecolor=mod_color[name] if mod else "0.35",
                lw=2.0 if mod else 0.9,
            )
        )
        ax.text(
            i, BLOCK_H / 2, name, rotation=90 if is_site and len(name) > 4 else 0, ha="center", va="center", fontsize=fs
        )
        below = _site_text(info.sites[i - 1]) if is_site else (info.tail if i == n - 1 else "")
        if below:  # channels/stride under sites, the task under the tail
            ax.text(i, -0.08, below, ha="center", va="top", fontsize=7, color="0.3")
        if i < n - 1:  # data flow
            ax.add_patch(
                FancyArrowPatch(
                    (i + BLOCK_W / 2, BLOCK_H / 2),
                    (i + 1 - BLOCK_W / 2, BLOCK_H / 2),
                    arrowstyle="-|>",
                    mutation_scale=8,
                    color="0.45",
                    lw=0.8,
                    shrinkA=1,
                    shrinkB=1,
                )
            )
        if mod:
            c = mod_color[name]
            ax.add_patch(
                FancyBboxPatch(
                    (i - BLOCK_W / 2, MOD_Y),
                    BLOCK_W,
                    MOD_H,
                    boxstyle="round,pad=0.02,rounding_size=0.08",
                    facecolor=c,
                    edgecolor="black",
                    lw=0.6,
                    alpha=0.9,
                    zorder=3,
                )
            )
            ax.text(
                i,
                MOD_Y + MOD_H * 0.62,
                f"K={mod.keys}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="white",
                weight="bold",
                zorder=4,
            )
            ax.text(
                i,
                MOD_Y + MOD_H * 0.24,
                _scope_text(mod.scope),
                ha="center",
                va="center",
                fontsize=6.5,
                color="white",
                zorder=4,
            )
            ax.plot([i, i], [BLOCK_H, MOD_Y], color=c, lw=1.2, zorder=2)

    for ref, dst in info.edges:
        xr, xd = xs[ref], xs[dst]
        c = mod_color[dst]
        start_y = MOD_TOP if ref in info.modules else BLOCK_H  # refs are seen after their own module
        # spread arrow heads over the module's top edge: the farthest reference lands leftmost
        refs = info.modules[dst].refs
        j = refs.index(ref)
        end_x = xd - 0.26 + (0.34 * j / (len(refs) - 1) if len(refs) > 1 else 0.2)
        ax.add_patch(
            FancyArrowPatch(
                (xr, start_y),
                (end_x, MOD_TOP),
                connectionstyle=f"arc3,rad={-_rad(xd - xr)}",
                arrowstyle="-|>",
                mutation_scale=9,
                color=c,
                lw=1.1,
                alpha=0.75,
                shrinkA=2,
                shrinkB=1,
                zorder=1,
            )
        )

    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(-0.75 if known else -0.45, top)
    ax.set_aspect("auto")
    ax.axis("off")
    parts = ["curved arrows: the earlier sites each ACLA module attends", "K = keys sampled per attended site"]
    if not info.modules:
        parts = ["no ACLA module (plain backbone)"]
    if not known:
        parts.append("channels/stride unknown (no sites.csv)")
    sub = "\n".join(textwrap.wrap("; ".join(parts), width=int(width * 11)))
    ax.set_title(f"{info.title}\n{sub}", fontsize=10)
    return fig


def arch_figure(arch: Mapping[str, Any], sites: Sequence[Site | tuple | str]) -> Figure:
    """Convenience: :func:`draw_arch` of :func:`diagram_info`."""
    return draw_arch(diagram_info(arch, sites))


def _data(inp: FigureInput) -> DataResult:
    items, notes = [], []
    for rd in inp.run_dirs:
        arch = load_best_arch(rd)
        if arch is None:
            notes.append(f"architecture diagram skipped: no best_arch.yaml in {rd}")
            continue
        info = diagram_info(arch, run_sites(rd, arch, inp.df[inp.df["run_dir"] == str(rd)]))
        notes += [f"diagram ({rd.name}): {n}" for n in info.notes]
        items.append((f"arch_{slug(rd.name)}" if inp.multi else "arch", info))
    return items, notes


register_figure(
    FigureSpec("arch", _data, draw_arch, "Architecture diagram of the best child.", in_report=False, order=60)
)
