"""Search quality against a tabulated space: regret of every strategy, one-shot ranking, DARTS.

Needs a complete table (``python -m acla_nas.search.table.build search_spaces/synthetic_table.yaml``).
Three parts, each resumable (runs live under ``--out`` and are read back, not redone):

1. **Multi-trial strategies at equal budget** (``evaluator: table``: a candidate's score is its
   stand-alone PSNR from the table, so regret is exact): each of ``--strategies`` over
   ``--seeds`` search seeds with ``--trials`` trials. Reports the median (and quartiles) of the
   regret (table best - best found so far) against trials, the trials each strategy needs to
   reach random search's median final best (median over seeds; ``>N`` when not reached in N),
   and the final regret. Plot: ``regret.png``.
2. **One-shot ranking**: a supernet per ``--samplings`` (uniform, fair, sandwich) trained on the
   space with the same recipe and seed, then every architecture scored with inherited weights;
   Kendall tau and sparse tau (pairs whose table means differ by less than ``--tie`` dB count as
   ties) against the table's stand-alone means, over all tabulated architectures and over
   ``--n-strat`` architectures stratified by MACs, with bootstrap 95% intervals (``--boot``
   resamples of the architectures); and on the architectures with two seeds against their
   two-seed means.
3. **DARTS**: ``--darts-seeds`` runs of the DARTS strategy on the space (its own supernet); the
   derived child's table PSNR, its rank among the tabulated architectures within DARTS's MACs
   target, and whether it is in their top 10%.

    python benchmarks/search_quality.py [--table results/table/synthetic_table.csv]
        [--space search_spaces/synthetic_table.yaml] [--strategies random tpe evolution nni:TPE ...]
        [--seeds 10] [--trials 40] [--samplings uniform fair sandwich] [--supernet-steps 1000]
        [--darts-seeds 3] [--parts strategies oneshot darts] [--out runs/bench_search_quality]
        [--results results/search_quality]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acla_nas.search.evaluators import OneShotEvaluator  # noqa: E402
from acla_nas.search.run import run_search, search_data  # noqa: E402
from acla_nas.search.strategies.darts import macs_target  # noqa: E402
from acla_nas.search.table.build import arch_key, stratified  # noqa: E402
from acla_nas.search.table.lookup import Table  # noqa: E402
from acla_nas.space import SearchSpace  # noqa: E402

PRESETS = {
    "random": {"strategy": "random"},
    "tpe": {"strategy": "tpe", "options": {"n_startup_trials": 10, "multivariate": True}},
    "evolution": {"strategy": "evolution", "options": {"population": 10, "sample_size": 4}},
}
NNI_TUNERS = ("TPE", "Evolution", "Anneal", "Random")  # NNI's in-process tuners (strategy nni:NAME)
VAL = {"patches": 16, "patch": 48}
VALUE_WORDS = {"seed0": "seed-0 PSNR", "mean": "PSNR averaged over the seeds every architecture has"}


def val(args: argparse.Namespace) -> dict:
    """The validation patches one-shot scores and DARTS use (``--val-patches``, ``--patch``)."""
    return {"patches": args.val_patches, "patch": args.patch}


def nni_available() -> bool:
    """NNI lives in .venv-nni (scripts/setup-nni.sh); there its tuners join the comparison."""
    try:
        import nni  # noqa: F401
    except ImportError:
        return False
    return True


if nni_available():
    PRESETS.update({f"nni:{t}": {"strategy": f"nni:{t}"} for t in NNI_TUNERS})


# -- 1. strategies against the table --------------------------------------------------------------
def strategy_curves(args: argparse.Namespace, space: SearchSpace, values: dict[str, float]) -> pd.DataFrame:
    """Best-so-far table PSNR after each trial, per (strategy, seed)."""
    rows = []
    for name in args.strategies:
        for seed in range(args.seeds):
            tag = name.replace(":", "_")  # nni:TPE -> nni_TPE (a file name)
            run = Path(args.out) / Path(args.search_space or args.space).stem / "strategies" / f"{tag}_s{seed}"
            preset = {
                **PRESETS[name],
                "evaluator": "table",
                "trials": args.trials,
                "seed": seed,
                "val": {"patches": 2, "patch": 48},
                "table": {"path": str(Path(args.table).resolve()), "value": args.value},
            }
            run.parent.mkdir(parents=True, exist_ok=True)
            pfile = run.parent / f"{tag}_s{seed}.yaml"
            pfile.write_text(yaml.safe_dump(preset, sort_keys=False))
            run_search(args.search_space or args.space, str(pfile), run, progress=False)
            traj = pd.read_csv(run / "trajectory.csv")
            traj = traj[traj.state == "COMPLETE"].sort_values("step")
            best = -math.inf
            for i, r in enumerate(traj.itertuples(), start=1):
                v = values[arch_key(space, space.decode(json.loads(r.arch)))]
                best = max(best, v)
                rows.append({"strategy": name, "seed": seed, "trial": i, "best": best})
    return pd.DataFrame(rows)


def summarize_strategies(curves: pd.DataFrame, table_best: float, trials: int) -> tuple[list[str], pd.DataFrame]:
    curves = curves.assign(regret=table_best - curves.best)
    med = (
        curves.groupby(["strategy", "trial"])
        .regret.agg(median="median", q25=lambda x: x.quantile(0.25), q75=lambda x: x.quantile(0.75))
        .reset_index()
    )
    final = curves[curves.trial == curves.groupby(["strategy", "seed"]).trial.transform("max")]
    rand_final = final[final.strategy == "random"].best
    target = float(rand_final.median()) if len(rand_final) else math.nan
    lines = [
        f"Random search's median best after {trials} trials: {target:.3f} dB (table best {table_best:.3f} dB).",
        "",
        "| strategy | final regret median [q25, q75] (dB) | trials to reach random's median best: median [per seed] | "
        "share of seeds reaching it |",
        "|---|---|---|---|",
    ]
    for name, g in curves.groupby("strategy", sort=False):
        f = final[final.strategy == name]
        reach = []
        for _seed, s in g.groupby("seed"):
            hit = s[s.best >= target - 1e-12].trial
            reach.append(int(hit.min()) if len(hit) else math.inf)
        fin = f.best.rsub(table_best)
        finite = [r for r in reach if math.isfinite(r)]
        med_reach = statistics.median(reach) if reach else math.nan
        lines.append(
            f"| {name} | {fin.median():.3f} [{fin.quantile(0.25):.3f}, {fin.quantile(0.75):.3f}] | "
            f"{'>' + str(trials) if not math.isfinite(med_reach) else f'{med_reach:g}'} "
            f"[{', '.join('>' + str(trials) if not math.isfinite(r) else str(r) for r in reach)}] | "
            f"{len(finite)}/{len(reach)} |"
        )
    return lines, med


def plot_regret(med: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, g in med.groupby("strategy", sort=False):
        style = {"color": "black", "ls": "--"} if name == "random" else {}  # the baseline stands out
        line = ax.plot(g.trial, g["median"], label=name, lw=1.8, **style)[0]
        ax.fill_between(g.trial, g.q25, g.q75, alpha=0.15 if name != "random" else 0.08, color=line.get_color())
    ax.set_xlabel("trials")
    ax.set_ylabel("regret: table best - best found (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- 2. one-shot ranking ----------------------------------------------------------------------------
def kendall(x: list[float], y: list[float], tie: float = 0.0) -> float:
    """Kendall tau-b of x against y; with ``tie`` > 0, pairs whose y differ by less than ``tie``
    count as ties (sparse tau: differences within the noise are not ranked)."""
    n, conc, disc, tx, ty = len(x), 0, 0, 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if abs(dy) <= tie:
                dy = 0.0
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else math.nan


def bootstrap(x: list[float], y: list[float], tie: float, n_boot: int, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    idx = list(range(len(x)))
    taus = []
    for _ in range(n_boot):
        pick = [rng.choice(idx) for _ in idx]
        t = kendall([x[i] for i in pick], [y[i] for i in pick], tie)
        if math.isfinite(t):
            taus.append(t)
    taus.sort()
    return taus[int(0.025 * len(taus))], taus[min(len(taus) - 1, int(0.975 * len(taus)))]


def site_effects(values: dict[str, float]) -> tuple[dict[tuple[int, str], float], float]:
    """An additive model of ``values`` over the architecture keys: PSNR ~ plain + one effect per
    (site, choice), choice "0" (no module) the baseline of each site. Returns the effects and R^2.
    Shows *what* a ranking rewards: a supernet that rewards every module alike ranks by count."""
    import numpy as np

    keys = [k for k in values if not k.startswith("_")]
    parts = [k.split("-") for k in keys]
    columns = sorted({(i, c) for p in parts for i, c in enumerate(p) if c != "0"})
    x = np.zeros((len(keys), 1 + len(columns)))
    x[:, 0] = 1.0
    col = {c: j + 1 for j, c in enumerate(columns)}
    for r, p in enumerate(parts):
        for i, c in enumerate(p):
            if c != "0":
                x[r, col[(i, c)]] = 1.0
    y = np.array([values[k] for k in keys])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    return {c: float(beta[col[c]]) for c in columns}, r2


def effects_lines(space: SearchSpace, columns: dict[str, dict[str, float]]) -> list[str]:
    """A markdown table of the additive site effects (dB over the same architecture without that
    module), one column per ranking (the table, each supernet)."""
    fits = {name: site_effects(v) for name, v in columns.items()}
    sites = list(space.sites)
    rows = sorted({c for eff, _ in fits.values() for c in eff}, key=lambda c: (c[0], float(c[1].split("@")[0])))
    lines = [
        "| site, keys | " + " | ".join(fits) + " |",
        "|---|" + "---|" * len(fits),
    ]
    for c in rows:
        lines.append(
            f"| {sites[c[0]]}, {c[1]} | "
            + " | ".join(f"{eff.get(c, math.nan):+.3f}" for eff, _ in fits.values())
            + " |"
        )
    lines.append("| R^2 of the additive model | " + " | ".join(f"{r2:.2f}" for _, r2 in fits.values()) + " |")
    return lines


def oneshot_scores(args: argparse.Namespace, space: SearchSpace, sampling: str) -> dict[str, float]:
    """Every architecture's validation PSNR with weights inherited from a supernet trained with
    ``sampling`` (cached in the run directory)."""
    run = Path(args.out) / "oneshot" / sampling
    cache = run / "scores.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run.mkdir(parents=True, exist_ok=True)
    data = search_data(space, {"seed": 0, "val": val(args)}, args.device, progress=False)
    ev = OneShotEvaluator(
        space,
        data,
        {
            "sampling": sampling,
            "steps": args.supernet_steps,
            "batch": 8,
            "patch": args.patch,
            "lr": args.supernet_lr,
            "ckpt_every": 100,
            **yaml.safe_load(args.supernet_extra or "{}"),
        },
        run,
    )
    t0 = time.perf_counter()
    ev.prepare()
    scores = {arch_key(space, a): ev.evaluate(a).psnr for a in space.enumerate()}
    scores["_seconds"] = ev.train_result.get("seconds", time.perf_counter() - t0) if ev.train_result else math.nan
    cache.write_text(json.dumps(scores))
    return scores


def summarize_oneshot(args: argparse.Namespace, space: SearchSpace, table: Table) -> list[str]:
    means = table.values(args.value)
    two = {k: e.value("mean")[0] for k, e in table.entries.items() if len(e.psnr) > 1}
    tabulated = [a for a in space.enumerate() if arch_key(space, a) in means]
    strat_keys = [arch_key(space, a) for a in stratified(space, tabulated, args.n_strat)]
    lines = [
        f"Supernets: {args.supernet_steps} steps, batch 8, patch {args.patch}, lr {args.supernet_lr:g}, seed 0"
        f"{' (' + args.supernet_extra + ')' if args.supernet_extra else ''}; scores on {args.val_patches} validation "
        f"patches. Table: stand-alone {VALUE_WORDS[args.value]} (two-seed means on the last row). Sparse tau: table differences below {args.tie} dB are ties.",
        "",
        "| sampling | architectures | tau [95% CI] | sparse tau [95% CI] | supernet training (s) |",
        "|---|---|---|---|---|",
    ]
    columns = {"stand-alone (table)": means}
    for sampling in args.samplings:
        scores = oneshot_scores(args, space, sampling)
        columns[f"one-shot {sampling}"] = {k: v for k, v in scores.items() if k in means}
        sets = (
            (f"all {len(means)}", [k for k in means if k in scores], means),
            (f"{len(strat_keys)} stratified", strat_keys, means),
            (f"{len(two)} with 2 seeds (means)", list(two), two),
        )
        for label, keys, ref in sets:
            x = [scores[k] for k in keys]
            y = [ref[k] for k in keys]
            tau, sparse = kendall(x, y), kendall(x, y, args.tie)
            lo, hi = bootstrap(x, y, 0.0, args.boot)
            slo, shi = bootstrap(x, y, args.tie, args.boot)
            lines.append(
                f"| {sampling} | {label} | {tau:.3f} [{lo:.3f}, {hi:.3f}] | {sparse:.3f} [{slo:.3f}, {shi:.3f}] | "
                f"{scores.get('_seconds', math.nan):.0f} |"
            )
    lines += [
        "",
        "What each ranking rewards: an additive model over the tabulated architectures, PSNR = plain + "
        "one effect per (site, keys), in dB (least squares; R^2 on its last row).",
        "",
        *effects_lines(space, columns),
    ]
    return lines


# -- 3. DARTS ---------------------------------------------------------------------------------------
def darts_search(args: argparse.Namespace, seed: int, space_path: str, run: Path) -> tuple[object, dict]:
    """The benchmark's DARTS search of ``space_path`` with ``seed`` in ``run`` (read back when
    done), and its preset."""
    run = run.resolve()  # absolute: the run records its preset's path
    preset = {
        "strategy": "darts",
        "seed": seed,
        "val": val(args),
        "options": {"steps": args.darts_steps, **yaml.safe_load(args.darts_options or "{}")},
    }
    pfile = run.parent / f"darts_s{seed}.yaml"
    run.parent.mkdir(parents=True, exist_ok=True)
    pfile.write_text(yaml.safe_dump(preset, sort_keys=False))
    return run_search(space_path, str(pfile), run, progress=False), preset


def summarize_darts(args: argparse.Namespace, space: SearchSpace, table: Table) -> list[str]:
    means = table.values(args.value)
    lines = [
        "| seed | derived child | MACs / target | table PSNR | rank among archs within the target | top 10%? | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed in range(args.darts_seeds):
        res, preset = darts_search(args, seed, args.space, Path(args.out) / "darts" / f"s{seed}")
        minutes = res.seconds / 60  # the search's own time (across sessions), also when read back
        ctx_target = macs_target(space, preset["options"])
        key = arch_key(space, res.best_arch)
        if key not in means:
            lines.append(f"| {seed} | {key} | - | not tabulated yet | - | - | {minutes:.1f} |")
            continue
        within = {k: v for k, v in means.items() if table.entries[k].macs <= ctx_target * (1 + 1e-9)}
        ranked = sorted(within.values(), reverse=True)
        rank = 1 + sum(v > means[key] for v in within.values())
        top = rank <= max(1, math.ceil(0.1 * len(ranked)))
        lines.append(
            f"| {seed} | {key} | {table.entries[key].macs / 1e6:.1f}M / {ctx_target / 1e6:.1f}M | {means[key]:.3f} | "
            f"{rank} of {len(ranked)} | {'yes' if top else 'no'} | {minutes:.1f} |"
        )
    return lines


# -- 4. end to end ----------------------------------------------------------------------------------
def e2e_search(args: argparse.Namespace, strategy: str, base: Path) -> tuple[object, str]:
    """The end-to-end part's search (DARTS on the tabulated space is the DARTS part's seed-0
    search, read back rather than run twice), and how the summary names it."""
    space_path = args.search_space or args.space
    if strategy == "darts":
        same = Path(space_path).resolve() == Path(args.space).resolve()
        run = Path(args.out) / "darts" / "s0" if same else base / "search"
        return darts_search(args, 0, space_path, run)[0], f"DARTS ({args.darts_steps} steps, seed 0)"
    preset = {
        "strategy": "evolution",
        "evaluator": "oneshot",
        "trials": args.trials,
        "seed": 0,
        "val": VAL,
        "options": {"population": 10, "sample_size": 4},
        "supernet": {"steps": args.supernet_steps, "batch": 8, "patch": 48, "lr": 5e-4, "sampling": "fair"},
    }
    base.mkdir(parents=True, exist_ok=True)
    pfile = base / "search.yaml"
    pfile.write_text(yaml.safe_dump(preset, sort_keys=False))
    res = run_search(space_path, str(pfile), base / "search", progress=False)
    return res, f"evolution, {args.trials} trials, one-shot supernet ({args.supernet_steps} steps, fair sampling)"


def end_to_end(args: argparse.Namespace, space: SearchSpace, table: Table, strategy: str = "evolution") -> list[str]:
    """The search as a user runs it (``strategy``: evolution on a fair-sampled one-shot
    supernet, or DARTS; no table), then its child, the plain backbone and 5 random architectures
    of about the child's MACs, each trained stand-alone with the table's recipe and seeds 0, 1, 2
    (runs the table already holds are read from it: same recipe, same seed)."""
    from acla_nas.search.table.build import RECIPE, run_one, run_spec

    meta = table.path.with_suffix(".meta.yaml")
    recipe = (yaml.safe_load(meta.read_text()) or {}).get("recipe", RECIPE) if meta.is_file() else RECIPE

    stem = Path(args.search_space or args.space).stem
    base = Path(args.out) / stem / ("e2e" if strategy == "evolution" else f"e2e_{strategy}")
    res, described = e2e_search(args, strategy, base)
    child, search_min = res.best_arch, res.seconds / 60  # the search's own clock, also when read back
    ckey = arch_key(space, child)
    cmacs = table.entries[ckey].macs
    in_space = {arch_key(space, a) for a in space.enumerate()}
    near = sorted((k for k in in_space if k != ckey), key=lambda k: (abs(table.entries[k].macs - cmacs), k))
    within = [k for k in near if abs(table.entries[k].macs / cmacs - 1) <= 0.05]
    # 5 drawn among those within 5% of the child's MACs (the 5 nearest when fewer are that close)
    randoms = random.Random(0).sample(within, 5) if len(within) >= 5 else near[:5]
    spread = max(abs(table.entries[k].macs / cmacs - 1) for k in randoms) * 100
    plain = arch_key(space, space.template())
    by_key = {arch_key(space, a): a for a in space.enumerate()}
    psnr: dict[str, dict[int, float]] = {}
    for key in [ckey, plain, *randoms]:
        psnr[key] = {}
        for seed in (0, 1, 2):
            if seed in table.entries[key].psnr:
                psnr[key][seed] = table.entries[key].psnr[seed]
                continue
            row = run_one(run_spec(space, by_key[key], seed, recipe, base))
            psnr[key][seed] = float(row["psnr"])
    seeds = (0, 1, 2)
    child_v = [psnr[ckey][s] for s in seeds]
    plain_v = [psnr[plain][s] for s in seeds]
    rand_med = [statistics.median(psnr[k][s] for k in randoms) for s in seeds]
    d_plain = [c - p for c, p in zip(child_v, plain_v)]
    d_rand = [c - r for c, r in zip(child_v, rand_med)]
    lines = [
        f"Search: {described}, {search_min:.1f} min; child {ckey} ({cmacs / 1e6:.1f}M MACs). Random archs of equal MACs "
        f"(within {spread:.1f}%): {', '.join(randoms)}. Stand-alone, table recipe, seeds 0/1/2 (paired).",
        "",
        "| network | PSNR seed 0 / 1 / 2 | mean |",
        "|---|---|---|",
    ]
    lines.append(f"| discovered {ckey} | {' / '.join(f'{v:.3f}' for v in child_v)} | {statistics.fmean(child_v):.3f} |")
    lines.append(f"| plain {plain} | {' / '.join(f'{v:.3f}' for v in plain_v)} | {statistics.fmean(plain_v):.3f} |")
    lines.append(
        f"| median of the 5 random | {' / '.join(f'{v:.3f}' for v in rand_med)} | {statistics.fmean(rand_med):.3f} |"
    )
    lines += [
        "",
        f"Discovered - plain per seed: {', '.join(f'{d:+.3f}' for d in d_plain)} (mean {statistics.fmean(d_plain):+.3f} dB; "
        f"target >= +0.1: {'yes' if statistics.fmean(d_plain) >= 0.1 else 'NO'}). Discovered - random median per seed: "
        f"{', '.join(f'{d:+.3f}' for d in d_rand)} (mean {statistics.fmean(d_rand):+.3f} dB; target >= +0.05: "
        f"{'yes' if statistics.fmean(d_rand) >= 0.05 else 'NO'}).",
    ]
    return lines


def replication_lines(table: Table, n_boot: int) -> list[str]:
    """Does the table's order survive a second seed? Kendall tau of seed 1 against seed 0 over the
    architectures with both, and each seed's additive site effects: the ceiling of any ranking
    measured against one seed of the table."""
    pairs = {k: e.psnr for k, e in table.entries.items() if 0 in e.psnr and 1 in e.psnr}
    if len(pairs) < 3:
        return []
    x, y = [p[0] for p in pairs.values()], [p[1] for p in pairs.values()]
    lo, hi = bootstrap(x, y, 0.0, n_boot)
    e0, _ = site_effects({k: p[0] for k, p in pairs.items()})
    e1, _ = site_effects({k: p[1] for k, p in pairs.items()})
    top0 = max(e0, key=e0.get)
    return [
        f"Replication: Kendall tau of seed 1 against seed 0 over the {len(pairs)} architectures with both: "
        f"{kendall(x, y):.3f} [{lo:.3f}, {hi:.3f}]. Seed 0's largest site effect (site {top0[0]}, keys {top0[1]}: "
        f"{e0[top0]:+.3f} dB) is {e1.get(top0, math.nan):+.3f} dB with seed 1 (additive fits over these architectures).",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(ROOT / "results/table/synthetic_table.csv"))
    ap.add_argument(
        "--space",
        default=str(ROOT / "search_spaces/synthetic_table.yaml"),
        help="the tabulated space: supernets and DARTS search it; tau over its tabulated architectures",
    )
    ap.add_argument(
        "--search-space",
        help="the space the multi-trial strategies and the end-to-end search explore "
        "(default --space; a sub-space such as synthetic_table_k048.yaml while the table is incomplete)",
    )
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["strategies", "oneshot", "darts", "e2e"],
        choices=["strategies", "oneshot", "darts", "e2e"],
    )
    ap.add_argument(
        "--strategies",
        nargs="+",
        default=list(PRESETS),
        choices=list(PRESETS),
        help="default: every built-in strategy, and NNI's tuners (nni:TPE ...) where NNI imports (.venv-nni)",
    )
    ap.add_argument(
        "--value",
        choices=("seed0", "mean"),
        default="seed0",
        help="what the table answers: seed 0's run, or the mean over the seeds every architecture has",
    )
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--samplings", nargs="+", default=["uniform", "fair", "sandwich"])
    ap.add_argument("--supernet-steps", type=int, default=1000)
    ap.add_argument("--supernet-lr", type=float, default=5e-4)
    ap.add_argument(
        "--supernet-extra",
        help="more supernet training options as YAML, e.g. '{clip_groups: true, freeze_backbone: true}'",
    )
    ap.add_argument("--darts-options", help="more DARTS options as YAML, e.g. '{patch: 64, lr: 0.001}'")
    ap.add_argument("--patch", type=int, default=48, help="supernet training and validation patch (HR px)")
    ap.add_argument("--val-patches", type=int, default=16, help="validation patches the one-shot scores use")
    ap.add_argument("--device", default="cpu", help="where supernets train and score (DARTS: its own device rule)")
    ap.add_argument("--n-strat", type=int, default=24)
    ap.add_argument("--tie", type=float, default=0.02)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--darts-seeds", type=int, default=3)
    ap.add_argument("--darts-steps", type=int, default=400)
    ap.add_argument(
        "--e2e-strategies",
        nargs="+",
        default=["evolution", "darts"],
        choices=["evolution", "darts"],
        help="the searches of the end-to-end part (evolution on a one-shot supernet; DARTS)",
    )
    ap.add_argument("--out", default="runs/bench_search_quality")
    ap.add_argument("--results", default=str(ROOT / "results/search_quality"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    space, table = SearchSpace.from_yaml(args.space), Table(args.table)
    search_space = SearchSpace.from_yaml(args.search_space) if args.search_space else space
    missing = [a for a in search_space.enumerate() if arch_key(search_space, a) not in table.entries]
    if missing and {"strategies", "e2e"} & set(args.parts):
        sys.exit(
            f"{args.table}: {len(missing)} architectures of {args.search_space or args.space} are not tabulated yet; "
            "finish the table first (or search a tabulated sub-space with --search-space)"
        )
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    values = {k: v for k, v in table.values(args.value).items()}  # seed-0 runs: one seed, paired differences
    in_search = {arch_key(search_space, a) for a in search_space.enumerate()}
    svalues = {k: v for k, v in values.items() if k in in_search}
    best_key = max(svalues, key=svalues.get)
    noise = table.noise()
    plain = arch_key(space, space.template())
    out = [
        f"# Search quality on {Path(args.search_space or args.space).name} ({len(svalues)} architectures; the table holds "
        f"{len(values)} of {Path(args.space).name}'s {len(space.enumerate())})",
        "",
        f"Best of the searched space: {best_key} at {svalues[best_key]:.3f} dB; plain {values.get(plain, math.nan):.3f} dB; "
        f"spread (max - min) {max(svalues.values()) - min(svalues.values()):.3f} dB; seed noise from "
        f"{noise['pairs']} paired archs: std of (seed 1 - seed 0) {noise['diff_std']:.3f} dB, per run "
        f"{noise['run_std']:.3f} dB; mean (seed 1 - seed 0) {noise['diff_mean']:+.3f} dB (a seed offset shared by "
        f"all architectures: compare within a seed). Values below: {VALUE_WORDS[args.value]}.",
        "",
        *replication_lines(table, args.boot),
    ]
    if "strategies" in args.parts:
        curves = strategy_curves(args, search_space, svalues)
        curves.to_csv(res / "curves.csv", index=False)
        lines, med = summarize_strategies(curves, svalues[best_key], args.trials)
        plot_regret(
            med, res / "regret.png", f"{len(svalues)}-architecture table, {args.seeds} seeds: median regret, IQR"
        )
        out += ["## Strategies at equal budget (evaluator: table)", ""] + lines + [""]
    if "oneshot" in args.parts:
        out += ["## One-shot ranking against the table", ""] + summarize_oneshot(args, space, table) + [""]
    if "darts" in args.parts:
        out += ["## DARTS", ""] + summarize_darts(args, space, table) + [""]
    if "e2e" in args.parts:
        out += ["## End to end", ""]
        for strategy in args.e2e_strategies:
            out += [f"### {strategy}", ""] + end_to_end(args, search_space, table, strategy) + [""]
    text = "\n".join(out)
    (res / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
