"""The built-in rows of the figure table: search score, DARTS heat maps, Pareto front, top-k
frequency, architecture diagram and the key usage of a trained child."""

from __future__ import annotations

import pandas as pd

from acla_nas.plots import data as D
from acla_nas.plots import draw
from acla_nas.plots.diagram import draw_arch
from acla_nas.plots.figures import DataResult, FigureInput, FigureSpec, register_figure


def _score(inp: FigureInput) -> DataResult:
    info = D.score_history(inp.df)
    if info.table["ok"].any():
        return [("score", info)], []
    return [], [f"score figure skipped: no completed row yet ({info.total_failed} failed)"]


def _darts(inp: FigureInput, stem: str, note: bool) -> DataResult:
    infos = D.darts_info(inp.df)
    if not infos:
        return [], ["DARTS heat maps skipped: no temperature / p:<site>:<budget> columns with data"] if note else []
    suffix = inp.multi or len(infos) > 1
    return [(f"{stem}_{draw.slug(i.label)}" if suffix else stem, i) for i in infos], []


def _pareto(inp: FigureInput) -> DataResult:
    df, notes = inp.df, []
    picked = pd.Series(False, index=df.index)
    for rd in inp.run_dirs:
        rows = df[df["run_dir"] == str(rd)]
        picks = D.load_picks(rd, D.site_names(rows))
        if picks:
            mask, more = D.match_picks(rows, picks)
            picked[mask.index] = mask
            notes += more
    infos = [p for p in (D.pareto_info(df, "flops", picked), D.pareto_info(df, "params", picked)) if p is not None]
    if infos:
        return [("pareto", infos)], notes
    return [], [*notes, "Pareto front skipped: no completed rows with flops/params"]


def _frequency(inp: FigureInput) -> DataResult:
    trials = inp.df[~D.darts_mask(inp.df)]
    infos = [f for _, g in trials.groupby("label", sort=False) if (f := D.topk_frequency(g, inp.top_k)) is not None]
    if infos:
        return [("topk_frequency", infos)], []
    return [], ["top-k frequency skipped: no completed multi-trial rows with k:<site> columns"]


def _diagram(inp: FigureInput) -> DataResult:
    items, notes = [], []
    for rd in inp.run_dirs:
        arch = D.load_best_arch(rd)
        if arch is None:
            notes.append(f"architecture diagram skipped: no best_arch.yaml in {rd}")
            continue
        info = D.diagram_info(arch, D.run_sites(rd, arch, inp.df[inp.df["run_dir"] == str(rd)]))
        notes += [f"diagram ({rd.name}): {n}" for n in info.notes]
        items.append((f"arch_{draw.slug(rd.name)}" if inp.multi else "arch", info))
    return items, notes


def _key_usage(inp: FigureInput) -> DataResult:
    from acla_nas.plots.key_usage import checkpoint_key_usage

    if inp.checkpoint is None:
        return [], ["key usage skipped: no --checkpoint given and no model.pt in the run"] if inp.image else []
    infos, note = checkpoint_key_usage(inp.checkpoint, inp.image, strict=inp.strict)
    if not infos:
        return [], [note or "key usage skipped: the model has no ACLA module"]
    return [("key_usage", infos)], []


register_figure(
    FigureSpec(
        "score",
        _score,
        draw.draw_score,
        "Validation PSNR against trial / step and wall time, best so far as a line.",
        order=10,
    )
)
register_figure(
    FigureSpec(
        "darts_probs",
        lambda inp: _darts(inp, "darts_probs", True),
        draw.draw_darts,
        "DARTS: probability of each key budget per site over training, temperature on top.",
        order=20,
    )
)
register_figure(
    FigureSpec(
        "darts_keys",
        lambda inp: _darts(inp, "darts_keys", False),
        draw.draw_expected_keys,
        "DARTS: expected key count per site over training.",
        order=30,
    )
)
register_figure(
    FigureSpec(
        "pareto",
        _pareto,
        draw.draw_pareto,
        "PSNR against FLOPs and parameters; the non-dominated front connected, exported picks starred.",
        order=40,
    )
)
register_figure(
    FigureSpec(
        "topk_frequency",
        _frequency,
        draw.draw_frequency,
        "How often each site takes each key budget among the best architectures.",
        order=50,
    )
)
register_figure(
    FigureSpec("arch", _diagram, draw_arch, "Architecture diagram of the best child.", in_report=False, order=60)
)
register_figure(
    FigureSpec(
        "key_usage",
        _key_usage,
        draw.draw_key_usage,
        "Trained child on one image: keys kept per query pixel by each ACLA module (the adaptive "
        "selection) and the sampled key locations of a few query pixels.",
        needs_model=True,
        order=90,
    )
)
