"""Plot data values (hand-checked) and that every figure renders to non-empty PNG/SVG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import acla_nas.plots as D
from acla_nas.core.errors import UserError

SITES = ["head"] + [f"body.{i}" for i in range(8)] + ["body_conv"]
BUDGETS = [0, 4, 8, 16]


# ------------------------------------------------------------------------- synthetic tables
def make_trials(
    strategy: str = "random",
    n: int = 40,
    seed: int = 0,
    run: str = "r1",
    sites=SITES,
    budgets=BUDGETS,
    fail_every: int = 13,
) -> pd.DataFrame:
    """A multi-trial trajectory following the column contract of docs/internals.md."""
    rng = np.random.default_rng(seed)
    gain = np.linspace(0.05, 0.25, len(sites))  # later sites help more
    rows = []
    t = 0.0
    for step in range(n):
        ks = rng.choice(budgets, size=len(sites), p=[0.55] + [0.45 / (len(budgets) - 1)] * (len(budgets) - 1))
        scopes = rng.choice(["1", "2", "all"], size=len(sites))
        t += rng.uniform(5, 15)
        failed = fail_every and step % fail_every == fail_every - 1
        psnr = 30.0 + float(np.sum(gain * np.log1p(ks))) + rng.normal(0, 0.05)
        row = {
            "run": run,
            "strategy": strategy,
            "evaluator": "oneshot",
            "step": step,
            "state": "FAIL" if failed else "COMPLETE",
            "psnr": math.nan if failed else psnr,
            "flops": 2.0e9 + float(np.sum(ks)) * 1.5e7,
            "params": 1.37e6 + float(np.sum(ks > 0)) * 2.1e4,
            "seconds": t,
            "n_modules": int(np.sum(ks > 0)),
            "arch": json.dumps(
                {
                    **{f"{s}.keys": int(k) for s, k in zip(sites, ks)},
                    **{f"{s}.scope": str(c) for s, c in zip(sites, scopes)},
                }
            ),
        }
        row.update({f"k:{s}": int(k) for s, k in zip(sites, ks)})
        row.update({f"scope:{s}": str(c) for s, c in zip(sites, scopes)})
        rows.append(row)
    return pd.DataFrame(rows)


def make_darts(n_steps: int = 60, run: str = "d1", sites=SITES, budgets=BUDGETS, seed: int = 1) -> pd.DataFrame:
    """A DARTS trajectory: one row per logged step with temperature and p:<site>:<budget>."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, len(budgets), size=len(sites))
    rows = []
    for i in range(n_steps):
        frac = i / max(1, n_steps - 1)
        logits = rng.normal(0, 0.2, size=(len(sites), len(budgets)))
        logits[np.arange(len(sites)), target] += 4 * frac
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        ks = np.asarray(budgets)[p.argmax(1)]
        row = {
            "run": run,
            "strategy": "darts",
            "evaluator": "supernet",
            "step": i * 50,
            "state": "COMPLETE",
            "psnr": 28 + 3 * (1 - math.exp(-4 * frac)) + rng.normal(0, 0.05),
            "flops": 2.0e9 + float(ks.sum()) * 1.5e7,
            "params": 1.37e6 + float((ks > 0).sum()) * 2.1e4,
            "seconds": 3.0 * i,
            "n_modules": int((ks > 0).sum()),
            "arch": "{}",
            "temperature": 5.0 * (0.1**frac),
        }
        row.update({f"k:{s}": int(k) for s, k in zip(sites, ks)})
        row.update({f"scope:{s}": "all" for s in sites})
        row.update({f"p:{s}:{b}": float(p[si, bi]) for si, s in enumerate(sites) for bi, b in enumerate(budgets)})
        rows.append(row)
    return pd.DataFrame(rows)


def write_run(dir_: Path, df: pd.DataFrame, best: dict | None = None, sites: list | None = None) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    df.to_csv(dir_ / "trajectory.csv", index=False)
    if best is not None:
        (dir_ / "best_arch.yaml").write_text(yaml.safe_dump(best))
    if sites is not None:
        pd.DataFrame(sites, columns=["name", "channels", "stride"]).to_csv(dir_ / "sites.csv", index=False)
    return dir_


BEST = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 64}},
    "task": {"name": "sr", "scale": 2},
    "modules": {
        "body.3": {"keys": 8, "scope": "all"},
        "body.7": {"keys": 4, "scope": 2},
        "body_conv": {"keys": 16, "scope": ["head", "body.3"]},
    },
}


# ------------------------------------------------------------------------- loading / errors
def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        D.load_trajectory(tmp_path / "nope")
    with pytest.raises(UserError, match="no trajectory.csv"):
        D.load_trajectory(tmp_path)
    (tmp_path / "trajectory.csv").write_text("run,step\nx,1\n")
    with pytest.raises(UserError, match="psnr") as e:
        D.load_trajectory(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "trajectory.csv").write_text("step,psnr\n1,abc\n")
    with pytest.raises(UserError, match="line 2"):
        D.load_trajectory(tmp_path)
    (tmp_path / "trajectory.csv").write_text('step,psnr\n1,"30\n')
    with pytest.raises(UserError, match="malformed CSV"):
        D.load_trajectory(tmp_path)


# ------------------------------------------------------------------------- 1. score
def test_best_so_far_ignores_failed_rows() -> None:
    df = pd.DataFrame(
        {
            "run": "a",
            "strategy": "tpe",
            "step": [0, 1, 2, 3, 4, 5],
            "state": ["FAIL", "COMPLETE", "FAIL", "COMPLETE", "PRUNED", "COMPLETE"],
            "psnr": [99.0, 30.0, 50.0, 29.0, 40.0, 31.0],
            "seconds": [1, 2, 3, 4, 5, 6],
        }
    )
    df["label"] = "a (tpe)"
    info = D.score_history(df)
    best = info.table["best_so_far"].tolist()
    assert math.isnan(best[0]) and best[1:] == [30.0, 30.0, 30.0, 30.0, 31.0]
    assert info.n_failed == {"a (tpe)": 2}
    assert info.table["ok"].tolist() == [False, True, False, True, False, True]


def test_best_so_far_per_run_sorted_by_step() -> None:
    df = pd.concat([make_trials(run="a", n=10), make_trials(run="b", n=10, seed=3)])
    df = df.sample(frac=1.0, random_state=0)  # shuffled rows
    df["label"] = df["run"]
    t = D.score_history(df).table
    for _run, g in t.groupby("label"):
        assert g["step"].is_monotonic_increasing
        ok = g[g["ok"]]
        assert np.allclose(ok["best_so_far"], np.maximum.accumulate(ok["psnr"]))


# ------------------------------------------------------------------------- 2. DARTS
def test_darts_matrix_pivoted_from_p_columns() -> None:
    sites = ["a", "b:x", "c"]  # a ':' inside a site name must survive the parse
    df = make_darts(n_steps=5, sites=sites, budgets=[0, 4, 8])
    df["label"] = "d"
    assert D.darts_info(make_trials(n=5).assign(label="x")) == []
    (info,) = D.darts_info(pd.concat([df, make_trials(n=5, sites=sites, budgets=[0, 4, 8]).assign(label="t")]))
    assert info.sites == sites and info.budgets == [0, 4, 8]
    assert info.probs.shape == (3, 3, 5)
    assert np.allclose(info.probs[1, 1], df["p:b:x:4"])
    assert np.allclose(info.prob_frame(8).loc["c"].to_numpy(), df["p:c:8"])
    assert np.allclose(info.probs.sum(0), 1.0)
    assert np.allclose(info.expected_keys[2], 4 * df["p:c:4"] + 8 * df["p:c:8"])
    assert np.allclose(info.temperature, df["temperature"])


# ------------------------------------------------------------------------- 3. Pareto
def test_pareto_front_membership() -> None:
    psnr = [30.0, 31.0, 30.5, 29.0, 31.0, 32.0, math.nan]
    cost = [1.0, 2.0, 2.5, 0.5, 2.0, 4.0, 0.1]
    # (30.5, 2.5) is dominated by (31, 2); duplicates (31, 2) both stay; NaN never on the front
    assert D.pareto_mask(psnr, cost).tolist() == [True, True, False, True, True, True, False]


def test_pareto_info_units_and_plain() -> None:
    df = make_trials(n=20).assign(label="r")
    df.loc[0, ["n_modules"]] = 0
    info = D.pareto_info(df, "flops")
    assert info.unit_divisor == 1e9 and info.unit_label == "MACs (G)"  # one unit: no "FLOPs (GMACs)"
    assert info.plain_psnr == {"r": float(df.loc[0, "psnr"])}  # the reference the y axis counts from
    assert len(info.points) == int(D.ok_mask(df).sum())
    assert D.pareto_info(df, "params").unit_label == "parameters (M)"
    front = info.front
    assert front["psnr"].is_monotonic_increasing  # cheaper front points score lower
    assert D.pareto_info(df.drop(columns="flops"), "flops") is None


def test_pick_matching(tmp_path: Path) -> None:
    df = make_trials(n=30, fail_every=0).assign(label="r")
    sites = D.site_names(df)
    target = df.iloc[17]
    modules = {s: {"keys": int(target[f"k:{s}"]), "scope": target[f"scope:{s}"]} for s in sites if target[f"k:{s}"] > 0}
    # 1) arch.yaml with Arch modules; 2) exported.csv by step; 3) exported.csv by its flat encoding
    (tmp_path / "export" / "best").mkdir(parents=True)
    (tmp_path / "export" / "best" / "arch.yaml").write_text(
        yaml.safe_dump({"backbone": {"name": "edsr"}, "modules": modules})
    )
    flat = {f"{s}.keys": m["keys"] for s, m in modules.items()} | {f"{s}.scope": m["scope"] for s, m in modules.items()}
    pd.DataFrame({"step": [5, None], "arch": ["", json.dumps(flat)]}).to_csv(tmp_path / "exported.csv", index=False)
    picks = D.load_picks(tmp_path, sites)
    assert len(picks) == 3
    mask, notes = D.match_picks(df, picks)
    assert notes == []
    assert sorted(df.index[mask].tolist()) == [5, 17]
    # scope spelled differently only falls back to a keys-only match; unknown arch -> note
    other = D.Pick("x", arch={s: (m["keys"], "all") for s, m in modules.items()})
    nothing = D.Pick("y", arch={"head": (99, 1)})
    mask, notes = D.match_picks(df, [other, nothing])
    assert df.index[mask].tolist() == [17] and len(notes) == 1 and "y" in notes[0]


def test_schema_reads_one_spelling() -> None:
    """Arch files, flat encodings and trajectory rows are read by the schema's strict readers."""
    from acla_nas.runs import trajectory as T

    sites = ["body.1", "body.10"]
    assert T.doc_arch({"modules": {"body.10": {"keys": 8, "scope": "all"}, "body.1": {"keys": 0, "scope": 1}}}) == {
        "body.10": (8, "all")
    }
    assert T.doc_arch({"modules": {"body.1": {"keys": 4, "scope": "previous2"}}}) == {
        "body.1": (4, 2)
    }  # the arch file's parser
    enc = {"body.1.keys": 4, "body.1.scope": "2", "body.10.keys": 8, "body.10.scope": "head,body.1"}
    assert T.encoding_arch(json.dumps(enc)) == {"body.1": (4, 2), "body.10": (8, ("head", "body.1"))}
    assert T.encoding_arch("not json at all [") is None and T.encoding_arch("") is None
    row = {"k:body.1": 0, "scope:body.1": "", "k:body.10": 8, "scope:body.10": "head,body.1"}
    assert T.row_arch(row, sites) == {"body.10": (8, ("head", "body.1"))}
    for scope in (2, "all", ("head", "body.1")):
        assert T.scope_value(T.scope_text(scope)) == scope


# ------------------------------------------------------------------------- 4. top-k
def test_topk_frequency_counts() -> None:
    rows = [  # psnr, k:a, k:b
        (33.0, 4, 0),
        (32.0, 4, 8),
        (32.0, 4, 8),
        (31.0, 0, 8),
        (30.0, 8, 0),
        (np.nan, 4, 4),
    ]
    df = pd.DataFrame(rows, columns=["psnr", "k:a", "k:b"])
    df["step"], df["label"] = range(len(df)), "r"
    df["state"] = ["COMPLETE"] * 5 + ["FAIL"]
    df["scope:a"] = ["all", "1", "1", None, "2", None]  # empty scope where keys are 0, as written
    df["scope:b"] = [None, "all", "all", "1", None, "1"]
    info = D.topk_frequency(df, k=3)
    # duplicate (4, 8) counts once: top-3 = (4,0), (4,8), (0,8)
    assert info.k == 3 and info.n_total == 4
    assert list(info.counts.columns) == [0, 4, 8]  # every budget seen, even if not in the top-k
    assert info.counts.loc["a"].tolist() == [1, 2, 0]
    assert info.counts.loc["b"].tolist() == [1, 0, 2]
    assert (info.counts.sum(axis=1) == 3).all()


# ------------------------------------------------------------------------- 5. diagram
def test_diagram_edges_from_scopes() -> None:
    sites = [("head", 64, 1), ("b0", 64, 1), ("b1", 64, 1), ("b2", 128, 2), ("b3", 128, 2)]
    arch = {
        "backbone": {"name": "unet"},
        "task": {"name": "denoise", "sigma": 25},
        "modules": {
            "b1": {"keys": 8, "scope": "all"},
            "b3": {"keys": 4, "scope": 2},
            "b2": {"keys": 16, "scope": ["head", "b3", "zz"]},
            "b0": {"keys": 0, "scope": 1},
        },
    }
    info = D.diagram_info(arch, sites)
    assert info.edges == [("head", "b1"), ("b0", "b1"), ("b1", "b3"), ("b2", "b3"), ("head", "b2")]
    assert set(info.modules) == {"b1", "b3", "b2"}  # keys 0 = no module
    assert info.sites[3].channels == 128 and info.sites[3].stride == 2
    assert any("b3" in n for n in info.notes) and any("zz" in n for n in info.notes)
    assert D.resolve_scope(5, 2, ["x", "y", "z"])[0] == ["x", "y"]  # r larger than available
    assert "denoise" in info.title and "3 ACLA modules" in info.title


def test_sites_fallback_to_k_columns(tmp_path: Path) -> None:
    write_run(tmp_path, make_trials(n=3))
    assert [s.name for s in D.load_sites(tmp_path)] == SITES
    assert D.load_sites(tmp_path)[0].channels is None
    write_run(tmp_path, make_trials(n=3), sites=[(s, 64, 1) for s in SITES])
    assert D.load_sites(tmp_path)[2] == D.Site("body.1", 64, 1)


# ------------------------------------------------------------------------- 6. key usage
def test_norm_to_pixel() -> None:
    # align_corners=False: -1 / +1 are the outer pixel edges, pixel centres at integers
    px = D.norm_to_pixel(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.75, 0.5]]), width=4, height=8)
    assert np.allclose(px, [[-0.5, -0.5], [3.5, 7.5], [1.5, 3.5], [0.0, 5.5]])


def test_key_usage_info_synthetic() -> None:
    B, K, h, w = 1, 3, 4, 6
    key_map = np.arange(h * w, dtype=float).reshape(1, h, w) % 4
    loc = np.zeros((B, K, h, w, 2))
    # key k of query (r, c) sits at the centre of feature pixel (r, c + k) in normalised coords
    for r in range(h):
        for c in range(w):
            for k in range(K):
                loc[0, k, r, c] = [(2 * (c + k) + 1) / w - 1, (2 * r + 1) / h - 1]
    image = np.zeros((3, 2 * h, 2 * w))  # image twice the feature size
    info = D.key_usage_info(key_map, [loc, loc], image, queries=[(1, 2), (3, 0)])
    assert info.image.shape == (8, 12, 3) and info.key_map.shape == (8, 12)
    assert info.key_map[2, 4] == key_map[0, 1, 2] and info.key_map[3, 5] == key_map[0, 1, 2]
    assert np.allclose(info.queries, [[4.5, 2.5], [0.5, 6.5]])
    assert len(info.locations) == 2 and info.locations[0].shape == (2, K, 2)
    # feature pixel (1, 2+k) centre in image pixels: x = 2*(2+k)+0.5, y = 2.5
    assert np.allclose(info.locations[1][0, :, 0], [4.5, 6.5, 8.5])
    assert np.allclose(info.locations[1][0, :, 1], 2.5)
    assert len(D.key_usage_info(key_map, [loc], image, n_queries=4).queries) == 4


# ------------------------------------------------------------------------- rendering
def test_plot_runs_writes_png_and_svg(tmp_path: Path) -> None:
    from acla_nas.plots.figures import plot_runs

    a = write_run(tmp_path / "evo", make_trials("evolution", n=24, run="evo"), BEST, [(s, 64, 1) for s in SITES])
    d = write_run(tmp_path / "darts", make_darts(n_steps=12))
    pd.DataFrame({"step": [3]}).to_csv(a / "exported.csv", index=False)
    res = plot_runs([a, d], tmp_path / "out", formats=("png", "svg"), top_k=5)
    stems = {p.stem for p in res.files}
    assert {"score", "pareto", "topk_frequency", "arch_evo", "darts_probs_d1_darts", "darts_keys_d1_darts"} <= stems, (
        stems
    )
    assert all(p.stat().st_size > 1000 for p in res.files)
    assert {p.suffix for p in res.files} == {".png", ".svg"}
    assert any("darts" in n and "best_arch" in n for n in res.notes)


def test_plot_skips_darts_with_note(tmp_path: Path) -> None:
    from acla_nas.plots.figures import plot_runs

    a = write_run(tmp_path / "r", make_trials(n=8))
    res = plot_runs([a], tmp_path / "out")
    assert any(n.startswith("DARTS heat maps skipped") for n in res.notes)
    assert not any("darts" in p.stem for p in res.files)


def test_key_usage_figure_with_acla(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    acla = pytest.importorskip("acla_nas.nn.acla")
    from acla_nas.plots.figures.key_usage import key_usage_figure

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.att = acla.ACLA(8, [8, 8], k_max=4)

        def forward(self, x):
            a = self.head(x)
            b = self.down(a)
            return self.att(b, [a, b])

    torch.manual_seed(0)
    paths, note = key_usage_figure(Tiny(), torch.rand(3, 16, 20), tmp_path / "keys.png")
    assert note is None and paths[0].stat().st_size > 1000
    paths, note = key_usage_figure(torch.nn.Conv2d(3, 3, 1), torch.rand(3, 8, 8), tmp_path / "none.png")
    assert paths == [] and "no ACLA" in note


def test_run_sites_falls_back_to_sites_csv(tmp_path: Path) -> None:

    write_run(tmp_path, make_trials(n=3), sites=[(s, 48, 2) for s in SITES])
    sites = D.run_sites(tmp_path, {"backbone": {"name": "no_such_backbone"}, "modules": {}})
    assert sites[0] == D.Site("head", 48, 2) and len(sites) == len(SITES)


def test_key_usage_of_a_run_uses_its_own_degraded_test_image(tmp_path: Path) -> None:
    """A child trained on generated data: the figure shows its first test image, noisy as the
    network sees it, with the lattice periods and a median distance over every query."""
    pytest.importorskip("torch")
    import yaml

    from acla_nas.nn.arch import Arch, ModuleChoice
    from acla_nas.nn.network import build
    from acla_nas.plots.key_usage import checkpoint_key_usage
    from acla_nas.train.model_file import save_model_file

    data = {
        "kind": "synthetic",
        "size": 48,
        "n_train": 1,
        "n_val": 1,
        "n_test": 1,
        "periods": [12, 20],
        "supersample": 2,
    }
    task = {"name": "denoise", "sigma": 50}
    arch = Arch(
        backbone="edsr",
        backbone_kwargs={"n_feats": 8, "n_resblocks": 2},
        task=task,
        modules={"body.1": ModuleChoice(4, ("head",))},
        acla={"key_layout": "spiral", "init_radius": 6.0},
    )
    save_model_file(tmp_path / "model.pt", build(arch), arch.to_dict(), task)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"arch": arch.to_dict(), "data": data}))
    infos, note = checkpoint_key_usage(tmp_path / "model.pt")
    assert note is None and len(infos) == 1
    info = infos[0]
    assert "synthetic_test_000" in info.note and "lattice periods" in info.note
    assert info.image.shape[:2] == (48, 48) and info.image.std() > 0.15  # sigma-50 noise is in the input
    # untrained: every query keeps its 4 keys at the spiral radii 0, 6, 1, 2.45 px; key 0 (at the
    # query itself) is left out of the reach, so the median is that of 6, 1, 2.45
    assert info.median_distance == pytest.approx(6**0.5, abs=1e-3)
    (tmp_path / "config.yaml").unlink()  # without the run's data: the bundled photograph, no note
    infos, _ = checkpoint_key_usage(tmp_path / "model.pt")
    assert infos[0].note == ""
