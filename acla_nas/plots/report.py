"""One self-contained HTML page per run: results, best architecture, figures, top trials, then the
configuration (folded away).

Everything is embedded (figures as base64 PNG, CSS inline) so the page can be mailed or archived
alone. Every string that comes from a run file is HTML-escaped. Optional files that do not parse
(config, metrics, final table) are reported on the page instead of failing the whole report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acla_nas.core.atomic import write_text_atomic
from acla_nas.core.errors import UserError
from acla_nas.plots.load import darts_mask, load_best_arch, load_trajectory, ok_mask, run_sites
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import Canonical, read_yaml_file, row_arch, site_names

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
.note{color:#8a5a00}.muted{color:#777}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        return f"{v:.4g}" if abs(v) >= 1e4 or abs(v) < 1e-3 and v != 0 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain escaped HTML table; numbers right-aligned."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for v in r:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{esc(_fmt(v))}</td>' if num else f"<td>{esc(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and len(obj) > 8:
        return [(prefix, f"[{len(obj)} items]")]
    return [(prefix, json.dumps(obj) if isinstance(obj, list) else obj)]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------------------------
# sections


def _config_section(run_dir: Path) -> str:
    path = RunDir(run_dir).config
    if not path.exists():
        return '<p class="muted">No config.yaml in this run directory.</p>'
    text = _read_text(path) or ""
    try:
        cfg = read_yaml_file(path)
    except UserError as exc:
        return f'<p class="note">{esc(exc)}</p><pre>{esc(text)}</pre>'
    rows = _flatten(cfg) if isinstance(cfg, Mapping) else [("config", cfg)]
    table = html_table(rows[:80], ["setting", "value"])
    more = f'<p class="muted">{len(rows) - 80} more settings in the file below.</p>' if len(rows) > 80 else ""
    return f"{table}{more}<details><summary>config.yaml</summary><pre>{esc(text)}</pre></details>"


def _machine_note(run_dir: Path) -> str:
    """`` · made on <machine>`` from config.yaml (numbers reproduce bit for bit only there)."""
    from acla_nas.nn.arch import read_yaml
    from acla_nas.runtime.machine import describe

    try:
        cfg = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    except UserError:
        return ""
    machine = cfg.get("machine") if isinstance(cfg, Mapping) else None
    return f" · made on {describe(machine)}" if isinstance(machine, Mapping) else ""


def _modules_summary(arch: Canonical | None) -> str:
    if not arch:
        return "none"
    parts = []
    for s, (k, sc) in arch.items():
        scope = "" if sc is None else f"/{'+'.join(sc) if isinstance(sc, tuple) else sc}"
        parts.append(f"{s}:K{k}{scope}")
    return ", ".join(parts)


def _best_section(run_dir: Path, df: pd.DataFrame) -> tuple[str, Any]:
    """Best-architecture HTML and the diagram figure (or None)."""
    path = RunDir(run_dir).best_arch
    if not path.exists():
        return '<p class="muted">No best_arch.yaml yet.</p>', None
    text = _read_text(path) or ""
    try:
        from acla_nas.plots.figures.arch import diagram_info, draw_arch

        arch = load_best_arch(run_dir)
        info = diagram_info(arch, run_sites(run_dir, arch, df))
    except UserError as exc:
        return f'<p class="note">{esc(exc)}</p><pre>{esc(text)}</pre>', None
    rows = [
        (m.site, m.keys, m.scope if not isinstance(m.scope, tuple) else ", ".join(m.scope), ", ".join(m.refs))
        for m in info.modules.values()
    ]
    html_mods = (
        html_table(rows, ["site", "keys K", "scope", "attends"]) if rows else "<p>No ACLA module (plain backbone).</p>"
    )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in info.notes)

    return (
        f"<p>{esc(info.title)}</p>{html_mods}{notes}<details><summary>best_arch.yaml</summary><pre>{esc(text)}</pre></details>",
        draw_arch(info),
    )


def _top_section(df: pd.DataFrame, k: int) -> str:
    sites = site_names(df)
    ok = df[ok_mask(df) & ~darts_mask(df)].copy()
    if ok.empty:
        ok = df[ok_mask(df)].copy()
    if ok.empty:
        return '<p class="muted">No completed trial yet.</p>'
    ok["_cost"] = ok["flops"] if "flops" in ok.columns else 0.0
    ok = ok.sort_values(["psnr", "_cost"], ascending=[False, True], kind="stable")
    ok["_modules"] = [_modules_summary(row_arch(r, sites)) for _, r in ok.iterrows()]
    ok = ok.drop_duplicates(subset=["label", "_modules"])
    rows = []
    for rank, (_, r) in enumerate(ok.head(k).iterrows(), 1):
        rows.append(
            (
                rank,
                r["label"],
                int(r["step"]) if np.isfinite(r["step"]) else r["step"],
                float(r["psnr"]),
                float(r["flops"]) / 1e9 if "flops" in r else np.nan,
                float(r["params"]) / 1e6 if "params" in r else np.nan,
                int(r["n_modules"]) if "n_modules" in r and np.isfinite(r["n_modules"]) else "",
                r["_modules"],
            )
        )
    n_fail = int((df["state"] == "FAIL").sum())
    head = f"<p>{len(df)} rows, {int(ok_mask(df).sum())} completed, {n_fail} failed; best distinct architectures first.</p>"
    return head + html_table(
        rows, ["#", "run", "step", "PSNR (dB)", "GMACs", "params (M)", "modules", "ACLA modules (site:K/scope)"]
    )


def _results_section(run_dir: Path) -> str:
    parts = []
    table = RunDir(run_dir).final_table
    if table.exists():
        try:
            t = pd.read_csv(table)
            parts.append(
                "<h3>final_table.csv</h3>"
                + html_table(t.head(200).itertuples(index=False, name=None), [str(c) for c in t.columns])
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            parts.append(
                f'<p class="note">{esc(table)}: malformed CSV ({esc(str(exc).splitlines()[0] if str(exc) else "")})</p>'
            )
    metrics = RunDir(run_dir).metrics
    if metrics.exists():
        text = _read_text(metrics) or ""
        try:
            m = json.loads(text)
            flat = _flatten(m)
            body = (
                html_table(flat, ["metric", "value"])
                if isinstance(m, Mapping) and len(flat) <= 200
                else f"<pre>{esc(json.dumps(m, indent=2))}</pre>"
            )
            parts.append("<h3>metrics.json</h3>" + body)
        except ValueError as exc:
            parts.append(f'<p class="note">{esc(metrics)}: malformed JSON ({esc(exc)})</p>')
    return (
        "".join(parts) or '<p class="muted">No final_table.csv or metrics.json yet (run export, train, evaluate).</p>'
    )


def _img(fig: Any, caption: str) -> str:
    from acla_nas.plots.draw import figure_bytes

    data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
    return f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}"><figcaption>{esc(caption)}</figcaption></figure>'


# --------------------------------------------------------------------------------------------


def build_report(run_dir: str | Path, top_k: int = 10) -> str:
    """The HTML text of the report of ``run_dir`` (raises UserError for a bad trajectory)."""
    run_dir = Path(run_dir)
    df = load_trajectory(run_dir)
    from acla_nas.plots.figures import render

    best_html, arch_fig = _best_section(run_dir, df)
    figs, notes = render([run_dir], top_k, with_model=True)
    figs = [r for r in figs if r.spec.in_report]  # the diagram is shown with the best arch
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    strategies = ", ".join(sorted(set(df["strategy"]))) if len(df) else "?"
    sections = [
        f"<h1>acla-nas run report: {esc(run_dir.resolve().name)}</h1>",
        f'<p class="muted">{esc(run_dir.resolve())} · strategy {esc(strategies)}{esc(_machine_note(run_dir))} · generated {esc(when)}</p>',
        # results first (what a reader opens the page for), the long configuration folded away last
        "<h2>Results</h2>",
        _results_section(run_dir),
        "<h2>Best architecture</h2>",
        best_html,
        _img(arch_fig, "Architecture diagram of the best child.") if arch_fig is not None else "",
        "<h2>Figures</h2>",
    ]
    for r in figs:
        sections.append(_img(r.figure, r.spec.caption))
    if notes:
        sections.append("<ul>" + "".join(f'<li class="note">{esc(n)}</li>' for n in notes) + "</ul>")
    sections += [
        f"<h2>Top {top_k} architectures</h2>",
        _top_section(df, top_k),
        "<h2>Configuration</h2>",
        f"<details><summary>Settings of this run (config.yaml)</summary>{_config_section(run_dir)}</details>",
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>acla-nas report: {esc(run_dir.resolve().name)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, top_k: int = 10) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically; returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else RunDir(run_dir).report
    write_text_atomic(out, build_report(run_dir, top_k))
    return out
