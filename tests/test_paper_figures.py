"""Figures as a paper prints them: PSNR as a gain over the plain backbone with plain tick labels,
MACs in one unit, a title on every figure, PDF output, and a key-usage reach without key 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_plots import BEST, make_darts, make_trials, write_run

import acla_nas.plots as D
from acla_nas.cli.main import main


def _with_plain(df):
    df = df.assign(label="r")
    df.loc[0, "n_modules"] = 0
    df.loc[0, "psnr"] = 19.0  # a plain backbone near 19 dB: the "+1.9e1" offset case
    df["psnr"] = 19.0 + (df["psnr"] - df["psnr"].min()) / 1000  # candidates within a few mdB
    return df


def _drawn_ylabel_and_offset(fig) -> tuple[str, str]:
    fig.canvas.draw()  # tick labels (and any offset text) exist only once drawn
    ax = fig.axes[0]
    return ax.get_ylabel(), ax.yaxis.get_offset_text().get_text()


def test_score_and_pareto_show_the_gain_over_the_plain_backbone() -> None:
    from acla_nas.plots.figures.modules_psnr import draw_modules_psnr, modules_psnr_info
    from acla_nas.plots.figures.pareto import draw_pareto
    from acla_nas.plots.figures.score import draw_score

    df = _with_plain(make_trials(n=20, fail_every=0))
    info = D.score_history(df)
    assert info.plain == {"r": 19.0}
    for fig in (
        draw_score(info),
        draw_pareto([D.pareto_info(df, "flops")]),
        draw_modules_psnr(modules_psnr_info(df)),
    ):
        label, offset = _drawn_ylabel_and_offset(fig)
        assert "gain over the plain backbone" in label and "19.00 dB" in label
        assert offset == ""  # no "+1.9e1"
        lo, hi = fig.axes[0].get_ylim()
        assert lo < 0.01 and hi < 0.1  # differences in dB, not absolute PSNR


def test_without_a_plain_backbone_the_axis_is_absolute_psnr_without_offset() -> None:
    from acla_nas.plots.figures.score import draw_score

    df = make_trials(n=20, fail_every=0).assign(label="r")
    df["n_modules"] = df["n_modules"].clip(lower=1)
    df["psnr"] = 19.0 + np.linspace(0, 0.005, len(df))
    label, offset = _drawn_ylabel_and_offset(draw_score(D.score_history(df)))
    assert label == "validation PSNR (dB)" and offset == ""


def test_cost_units_are_one_unit() -> None:
    assert D.cost_unit([2.4e7, 9e7], "flops") == (1e6, "MACs (M)")
    assert D.cost_unit([4.5e3, 9e4], "params") == (1e3, "parameters (K)")


def test_every_figure_has_a_title(tmp_path: Path) -> None:
    from acla_nas.plots.figures import render

    trials = _with_plain(make_trials(n=20, fail_every=0))
    runs = [write_run(tmp_path / "t", trials, BEST), write_run(tmp_path / "d", make_darts(n_steps=8))]
    figs, _ = render(runs, 5)
    names = {r.spec.name for r in figs}
    assert {"score", "darts_probs", "darts_keys", "pareto", "topk_frequency", "modules_psnr", "arch"} <= names
    for r in figs:
        titles = [r.figure._suptitle.get_text() if r.figure._suptitle else ""]
        titles += [ax.get_title() for ax in r.figure.axes]
        assert any(t.strip() for t in titles), r.spec.name


def test_modules_psnr_has_a_legend_with_the_median() -> None:
    from acla_nas.plots.figures.modules_psnr import draw_modules_psnr, modules_psnr_info

    fig = draw_modules_psnr(modules_psnr_info(make_trials(n=30).assign(label="only run")))
    legend = fig.axes[0].get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert "only run: candidates" in texts and "only run: median" in texts
    assert "ACLA modules" in fig._suptitle.get_text()


def test_plot_format_pdf_writes_pdfs(tmp_path: Path) -> None:
    rd = write_run(tmp_path / "run", make_trials(n=10), BEST)
    assert main(["plot", str(rd), "--out", str(tmp_path / "p"), "--format", "pdf"]) == 0
    pdfs = sorted((tmp_path / "p").glob("*.pdf"))
    assert {p.stem for p in pdfs} >= {"score", "pareto", "arch"}
    assert not list((tmp_path / "p").glob("*.png"))
    assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)


def test_reach_leaves_out_key_0_and_dropped_keys() -> None:
    """Key 0 sits on the query (distance 0); the reach is the median of the other kept keys."""
    h = w = 4
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    k = 3
    loc = np.zeros((1, k, h, w, 2))
    for key, dx in enumerate((0.0, 2.0, 5.0)):  # key 0 at the query, key 1 two px right, key 2 five
        loc[0, key, ..., 0] = (2 * (xs + dx) + 1) / w - 1  # pixel -> normalised (align_corners=False)
        loc[0, key, ..., 1] = (2 * ys + 1) / h - 1
    d = D.reach_distances([loc])
    assert d.shape == (2 * h * w,) and np.allclose(np.sort(np.unique(d.round(6))), [2.0, 5.0])
    mask = np.ones((1, k, h, w))
    mask[0, 2] = 0  # every query dropped key 2
    assert np.allclose(D.reach_distances([loc], mask), 2.0)
    assert D.reach_distances([loc[:, :1]]).size == 0  # only key 0: nothing to measure


def _titles(fig) -> str:
    return "\n".join(ax.get_title() for ax in fig.axes)


def test_key_usage_title_says_what_the_reach_counts() -> None:
    from acla_nas.plots.figures.key_usage import draw_key_usage

    info = D.key_usage_info(np.full((1, 4, 4), 2.0), [np.zeros((1, 2, 4, 4, 2))], np.zeros((16, 16)), n_queries=1)
    info.median_distance = 3.0
    title = _titles(draw_key_usage([info]))
    assert "median reach 3.0 px" in title and "but key 0" in title
    info.median_distance = None
    assert "but key 0" in _titles(draw_key_usage([info]))


def test_key_usage_with_only_key_0_says_so() -> None:
    from acla_nas.plots.figures.key_usage import draw_key_usage

    info = D.key_usage_info(np.ones((1, 2, 2)), [np.zeros((1, 1, 2, 2, 2))], np.zeros((8, 8)), n_queries=1)
    assert "only key 0 (at the query)" in _titles(draw_key_usage([info]))
