"""One self-contained HTML page per run: results, best architecture, figures, top trials, then the
configuration (folded away). A trained model's folder (``acla-nas train --out``) gets the same
page without the search parts: results, architecture, key usage, configuration.

Everything is embedded (figures as base64 PNG, CSS inline) so the page can be mailed or archived
alone. Every string that comes from a run file is HTML-escaped. Optional files that do not parse
(config, metrics, final table) are reported on the page instead of failing the whole report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acla_nas.core.atomic import write_text_atomic
from acla_nas.core.errors import UserError
from acla_nas.plots import results as R
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


NUMERIC = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?( [KMG]| s)?$|^-$")  # formatted numbers, "-": right-aligned


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain escaped HTML table; numbers (and numbers already formatted) right-aligned."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for v in r:
            num = R.is_number(v) or (isinstance(v, str) and bool(NUMERIC.match(v)))
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


def _top_section(df: pd.DataFrame, k: int) -> tuple[str, str]:
    """(heading, HTML) of the best distinct architectures: the heading says how many there are,
    since a search that re-evaluates an architecture has fewer distinct ones than trials."""
    sites = site_names(df)
    ok = df[ok_mask(df) & ~darts_mask(df)].copy()
    if ok.empty:
        ok = df[ok_mask(df)].copy()
    if ok.empty:
        return f"Top {k} architectures", '<p class="muted">No completed trial yet.</p>'
    ok["_cost"] = ok["flops"] if "flops" in ok.columns else 0.0
    ok = ok.sort_values(["psnr", "_cost"], ascending=[False, True], kind="stable")
    ok["_modules"] = [_modules_summary(row_arch(r, sites)) for _, r in ok.iterrows()]
    ok = ok.drop_duplicates(subset=["label", "_modules"])
    top = ok.head(k)
    div, unit = R.macs_unit(top["flops"] if "flops" in top.columns else [])
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), 1):
        rows.append(
            (
                rank,
                r["label"],
                int(r["step"]) if np.isfinite(r["step"]) else r["step"],
                R.fmt_psnr(r["psnr"]),
                R.fmt_macs(r["flops"], div) if "flops" in r else "-",
                R.fmt_params(r["params"]) if "params" in r else "-",
                int(r["n_modules"]) if "n_modules" in r and np.isfinite(r["n_modules"]) else "",
                r["_modules"],
            )
        )
    n_fail = int((df["state"] == "FAIL").sum())
    head = (
        f"<p>{len(df)} rows, {int(ok_mask(df).sum())} completed, {n_fail} failed, {len(ok)} distinct "
        "architectures; the best first (an architecture evaluated twice counts once, with its best score).</p>"
    )
    title = f"Top {len(top)} of {len(ok)} distinct architectures"
    header = ["#", "run", "step", "PSNR (dB)", f"MACs ({unit})" if unit else "MACs", "params", "modules"]
    return title, head + html_table(rows, [*header, "ACLA modules (site:K/scope)"])


def _generic_table(path: Path, t: pd.DataFrame) -> str:
    return f"<h3>{esc(path.name)}</h3>" + html_table(
        t.head(200).itertuples(index=False, name=None), [str(c) for c in t.columns]
    )


def _read_csv(path: Path) -> pd.DataFrame | str:
    """The table, or the note that says why it could not be read."""
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f'<p class="note">{esc(path)}: malformed CSV ({esc(first)})</p>'


def _results_section(run_dir: Path, found: Sequence[R.ResultFile]) -> str:
    """Final table, retrained models and evaluations, each as a tidy table; files of another
    shape are shown as they are, bad ones as a note."""
    parts: list[str] = []
    trained: list[list[str]] = []
    evaluations: list[list[str]] = []
    for res in found:
        where = R.relative(res.path, run_dir)
        if res.kind == "metrics":
            try:
                m = R.read_metrics(res.path)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                parts.append(f'<p class="note">{esc(res.path)}: malformed JSON ({esc(exc)})</p>')
                continue
            row = (
                R.metrics_row(where if res.path.name == "metrics.json" else res.path.stem, m)
                if isinstance(m, Mapping)
                else None
            )
            if row is not None:
                trained.append(row)
                continue
            flat = _flatten(m)
            body = (
                html_table(flat, ["metric", "value"])
                if isinstance(m, Mapping) and len(flat) <= 200
                else f"<pre>{esc(json.dumps(m, indent=2))}</pre>"
            )
            parts.append(f"<h3>{esc(res.path.name)}</h3>" + body)
            continue
        t = _read_csv(res.path)
        if isinstance(t, str):
            parts.append(t)
        elif res.kind == "final_table" and (tidy := R.final_table(t)) is not None:
            parts.insert(0, "<h3>Final table (test set)</h3>" + html_table(tidy[1], tidy[0]))
        elif res.kind == "evaluation" and (rows := R.evaluation_table(where, t)) is not None:
            evaluations += rows
        else:
            parts.append(_generic_table(res.path, t))
    if trained:
        parts.append("<h3>Retrained models (metrics.json)</h3>" + html_table(trained, R.METRICS_HEADER))
    if evaluations:
        parts.append("<h3>Evaluations (acla-nas evaluate)</h3>" + html_table(evaluations, R.EVALUATION_HEADER))
    if not parts:
        return (
            '<p class="muted">No results yet: no final_table.csv, metrics.json or evaluation CSV in this folder or '
            "below it (run export, train, evaluate; or name them with --results).</p>"
        )
    return "".join(parts)


def _img(fig: Any, caption: str) -> str:
    from acla_nas.plots.draw import figure_bytes

    data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
    return f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}"><figcaption>{esc(caption)}</figcaption></figure>'


# --------------------------------------------------------------------------------------------


def _page(title: str, sections: Sequence[str]) -> str:
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _config_tail(run_dir: Path) -> list[str]:
    return [
        "<h2>Configuration</h2>",
        f"<details><summary>Settings of this run (config.yaml)</summary>{_config_section(run_dir)}</details>",
    ]


def _search_report(run_dir: Path, found: Sequence[R.ResultFile], top_k: int) -> str:
    df = load_trajectory(run_dir)
    from acla_nas.plots.figures import render

    best_html, arch_fig = _best_section(run_dir, df)
    figs, notes = render([run_dir], top_k, with_model=True)
    figs = [r for r in figs if r.spec.in_report]  # the diagram is shown with the best arch
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    strategies = ", ".join(sorted(set(df["strategy"]))) if len(df) else "?"
    top_title, top_html = _top_section(df, top_k)
    sections = [
        f"<h1>acla-nas run report: {esc(run_dir.resolve().name)}</h1>",
        f'<p class="muted">{esc(run_dir.resolve())} · strategy {esc(strategies)}{esc(_machine_note(run_dir))} · generated {esc(when)}</p>',
        # results first (what a reader opens the page for), the long configuration folded away last
        "<h2>Results</h2>",
        _results_section(run_dir, found),
        "<h2>Best architecture</h2>",
        best_html,
        _img(arch_fig, "Architecture diagram of the best child.") if arch_fig is not None else "",
        "<h2>Figures</h2>",
    ]
    for r in figs:
        sections.append(_img(r.figure, r.spec.caption))
    if notes:
        sections.append("<ul>" + "".join(f'<li class="note">{esc(n)}</li>' for n in notes) + "</ul>")
    sections += [f"<h2>{esc(top_title)}</h2>", top_html, *_config_tail(run_dir)]
    return _page(f"acla-nas report: {run_dir.resolve().name}", sections)


def _model_sections(run_dir: Path) -> list[str]:
    """Architecture (from config.yaml) and key usage (from model.pt) of a trained model's folder."""
    from acla_nas.plots.figures import FIGURES
    from acla_nas.plots.figures.arch import diagram_info, draw_arch
    from acla_nas.plots.figures.key_usage import draw_key_usage
    from acla_nas.plots.key_usage import checkpoint_key_usage
    from acla_nas.plots.load import backbone_sites

    out = []
    try:
        cfg = read_yaml_file(RunDir(run_dir).config) if RunDir(run_dir).config.is_file() else None
    except UserError:
        cfg = None  # the configuration section says what is wrong with it
    arch = cfg.get("arch") if isinstance(cfg, Mapping) else None
    if isinstance(arch, Mapping):
        try:
            info = diagram_info(arch, backbone_sites(dict(arch)) or [])
            out += [
                "<h2>Architecture</h2>",
                f"<p>{esc(info.title)}</p>",
                _img(draw_arch(info), "Architecture diagram."),
            ]
        except UserError as exc:
            out += ["<h2>Architecture</h2>", f'<p class="note">{esc(exc)}</p>']
    model = run_dir / "model.pt"
    if model.is_file():
        infos, note = checkpoint_key_usage(model)
        out.append("<h2>Figures</h2>")
        if infos:
            out.append(_img(draw_key_usage(infos), FIGURES.get("key_usage").caption))
        else:
            out.append(f'<p class="note">{esc(note or "key usage skipped: the model has no ACLA module")}</p>')
    return out


def _model_report(run_dir: Path, found: Sequence[R.ResultFile]) -> str:
    """The report of a folder written by ``acla-nas train`` (or holding evaluation CSVs only)."""
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sections = [
        f"<h1>acla-nas model report: {esc(run_dir.resolve().name)}</h1>",
        f'<p class="muted">{esc(run_dir.resolve())} · trained model{esc(_machine_note(run_dir))} · generated {esc(when)}</p>',
        "<h2>Results</h2>",
        _results_section(run_dir, found),
        *_model_sections(run_dir),
        *_config_tail(run_dir),
    ]
    return _page(f"acla-nas report: {run_dir.resolve().name}", sections)


def build_report(run_dir: str | Path, top_k: int = 10, results: Sequence[str | Path] = ()) -> str:
    """The HTML text of the report of ``run_dir``: a search run (``trajectory.csv``) or a trained
    model's folder (``metrics.json``, ``model.pt``, evaluation CSVs); ``results`` adds results
    files or folders from elsewhere. Raises UserError for a folder that is neither."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError("run directory not found", file=str(run_dir))
    found = R.find_results(run_dir, results)
    if RunDir(run_dir).trajectory.is_file():
        return _search_report(run_dir, found, top_k)
    if found or (run_dir / "model.pt").is_file():
        return _model_report(run_dir, found)
    raise UserError(
        "expected trajectory.csv (a search run), or metrics.json, model.pt or an evaluation CSV (a trained model)",
        file=str(run_dir),
    )


def write_report(
    run_dir: str | Path, out: str | Path | None = None, top_k: int = 10, results: Sequence[str | Path] = ()
) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically; returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else RunDir(run_dir).report
    write_text_atomic(out, build_report(run_dir, top_k, results))
    return out
