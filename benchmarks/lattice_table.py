"""The lattice benchmark on a pretrained backbone: pilot gate, table v2, variable-period offsets.

Issue 21's design, in one resumable command (everything under ``--out``; re-running skips what
is done):

1. **Warm start.** Per seed, the plain backbone of the space is trained from scratch
   (``--plain-steps``); every architecture of that seed is then fine-tuned from it
   (``--ft-steps``, ACLA modules starting at identity, gradient norms clipped for backbone and
   modules apart). Same seed = same backbone, batches, noise and evaluation images (common random
   numbers), so per-seed differences to the fine-tuned plain network are paired.
2. **Pilot gate.** ``--pilot`` architectures (the plain one, every site at every budget alone,
   some pairs and the all-sites extreme) x ``--seeds`` seeds, plus the random-offset control
   (``acla.offsets: random``) at two single-module placements. Reports each architecture's
   paired gain over plain (mean +- sd over seeds), the per-site and per-budget effects, the
   seed-to-seed Kendall tau, and the gate: tau >= 0.6 and best-minus-median >= 5x the paired noise.
3. **Table v2** (when the gate passes, or with ``--table always``): every architecture of the
   space with seeds 0 and 1, a third seed on 32 architectures stratified by MACs; written as
   ``table.csv`` in the format of ``acla_nas.search.table`` (``evaluator: table`` reads it).
4. **Variable period** (``--varperiod SPACE``; ``--varperiod-only`` runs this part alone): plain fine-tuned vs one K=8 module with learned
   offsets from the paper's local predictor, from the wider-context predictors
   (``acla.offset_context: dilated`` and ``pooled``), with offsets frozen at the start layout, and at random.

Runs go through ``acla_nas.train.retrain.train_arch`` in a pool of ``--jobs`` processes (one GPU
holds many of these small networks at once). ``--budget-s`` stops launching runs when the time
is spent and still writes the summary. ``--smoke`` is a seconds-long CPU run of the whole flow.

    python benchmarks/lattice_table.py --space search_spaces/lattice_denoise_sigma75.yaml \\
        --varperiod search_spaces/lattice_varperiod_denoise_sigma75.yaml --device cuda --jobs 12 --out runs/lattice
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acla_nas.nn.arch import Arch, ModuleChoice  # noqa: E402
from acla_nas.search.table.build import COLUMNS, arch_key, stratified  # noqa: E402
from acla_nas.space import SearchSpace  # noqa: E402

PLAIN = {"batch": 8, "patch": 64, "lr": 1e-3, "val_every": 0, "val_patches": 16, "ckpt_every": 200}
FINE_TUNE = {**PLAIN, "clip_groups": True}
RUN_COLUMNS = (
    "set",
    "name",
    "arch",
    "variant",
    "seed",
    "psnr",
    "ssim",
    "val_psnr",
    "macs",
    "params",
    "seconds",
    "steps",
)
SMOKE_DATA = {"size": 64, "n_train": 2, "n_val": 1, "n_test": 1}
SMOKE_RECIPE = {"batch": 2, "patch": 32, "val_patches": 2}


# --------------------------------------------------------------------------- jobs


def run_job(job: dict) -> dict:
    """Train one job (a child from ``job['doc']``) in a worker process; returns its row."""
    import torch

    from acla_nas.train.retrain import train_arch

    torch.set_num_threads(job.get("threads", 1))
    d = Path(job["dir"])
    d.mkdir(parents=True, exist_ok=True)
    arch_file = d / "arch.yaml"
    if not arch_file.is_file():
        arch_file.write_text(yaml.safe_dump(job["doc"], sort_keys=False))
    t0 = time.perf_counter()
    result, model_path, _task = train_arch(arch_file, d, {"device": job["device"]}, progress=False)
    test = result.get("test") or {}
    return {
        **{k: job[k] for k in ("set", "name", "arch", "variant", "seed", "macs", "params")},
        "psnr": test.get("psnr"),
        "ssim": test.get("ssim"),
        "val_psnr": result.get("val_psnr"),
        "seconds": round(float(result.get("seconds") or (time.perf_counter() - t0)), 2),
        "steps": result.get("steps"),
        "model": str(model_path),
    }


def make_job(
    space: SearchSpace,
    arch: Arch,
    seed: int,
    recipe: dict,
    out: Path,
    args: argparse.Namespace,
    *,
    set_name: str,
    variant: str = "",
    weights: str | None = None,
    acla: dict | None = None,
) -> dict:
    doc = arch.to_dict()
    doc["backbone"].pop("weights_sha256", None)
    if weights is not None:  # fine-tuned from this seed's plain backbone
        doc["backbone"]["weights"] = weights
    else:  # trained from scratch, whatever the space names
        doc["backbone"].pop("weights", None)
    if acla:
        doc["acla"] = {**doc.get("acla", {}), **acla}
    doc["data"] = dict(space.spec.data, **(SMOKE_DATA if args.smoke else {}))
    doc["train"] = {**recipe, **(SMOKE_RECIPE if args.smoke else {}), "seed": seed, "progress": False}
    key = arch_key(space, arch)
    name = f"{key}{'_' + variant if variant else ''}"
    cost = space.cost(arch)
    return {
        "set": set_name,
        "name": name,
        "arch": key,
        "variant": variant,
        "seed": seed,
        "doc": doc,
        "dir": str(out / "runs" / set_name / f"{name}_s{seed}"),
        "device": args.device,
        "threads": args.threads,
        "macs": cost["macs"],
        "params": cost["params"],
    }


class Runner:
    """A process pool that records each finished job in ``runs.csv`` (and skips recorded ones)."""

    def __init__(self, out: Path, jobs: int, budget_s: float) -> None:
        self.path = out / "runs.csv"
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.rows: dict[tuple[str, str, int], dict] = {}
        if self.path.is_file():
            with self.path.open(newline="") as f:
                for r in csv.DictReader(f):
                    self.rows[(r["set"], r["name"], int(r["seed"]))] = r
        self.pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) if jobs > 1 else None
        self.skipped = 0

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def run(self, jobs: list[dict]) -> list[dict]:
        """Run the jobs not yet recorded (while the budget lasts); return every recorded row of them."""
        todo = [j for j in jobs if (j["set"], j["name"], j["seed"]) not in self.rows]
        if todo and self.left() <= 0:
            self.skipped += len(todo)
            todo = []
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=(*RUN_COLUMNS, "model"), extrasaction="ignore")
            if new:
                w.writeheader()

            def record(row: dict) -> None:
                w.writerow(row)
                f.flush()
                self.rows[(row["set"], row["name"], int(row["seed"]))] = {k: str(v) for k, v in row.items()}
                print(
                    f"[{time.perf_counter() - self.t0:6.0f} s] {row['set']:<9} {row['name']:<24} seed {row['seed']}: "
                    f"{float(row['psnr']):.3f} dB ({float(row['seconds']):.0f} s)",
                    flush=True,
                )

            if self.pool is None:
                for j in todo:
                    if self.left() <= 0:
                        self.skipped += 1
                        continue
                    record(run_job(j))
            else:
                pending = set()
                queue = list(todo)
                while queue or pending:
                    while queue and len(pending) < self.pool._max_workers * 2 and self.left() > 0:
                        pending.add(self.pool.submit(run_job, queue.pop(0)))
                    if not pending:
                        self.skipped += len(queue)
                        break
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        record(fut.result())
        return [self.rows[k] for k in ((j["set"], j["name"], j["seed"]) for j in jobs) if k in self.rows]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# --------------------------------------------------------------------------- statistics


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall tau-b of two equally long lists."""
    conc = disc = ta = tb = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ta += 1
        elif db == 0:
            tb += 1
        elif (da > 0) == (db > 0):
            conc += 1
        else:
            disc += 1
    den = math.sqrt((conc + disc + ta) * (conc + disc + tb))
    return (conc - disc) / den if den else float("nan")


def by_arch_seed(rows: list[dict]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        out.setdefault(r["name"], {})[int(r["seed"])] = float(r["psnr"])
    return out


def gains(table: dict[str, dict[int, float]], plain: str) -> dict[str, list[float]]:
    """Per architecture, its per-seed PSNR difference to plain (paired)."""
    base = table.get(plain, {})
    return {n: [v[s] - base[s] for s in sorted(v) if s in base] for n, v in table.items()}


def paired_noise(g: dict[str, list[float]], plain: str) -> float:
    """Pooled standard deviation over seeds of the paired gains."""
    var = [statistics.variance(v) for n, v in g.items() if n != plain and len(v) > 1]
    return math.sqrt(statistics.mean(var)) if var else float("nan")


def seed_taus(table: dict[str, dict[int, float]], seeds: list[int]) -> list[tuple[int, int, float, int]]:
    out = []
    for s, t in itertools.combinations(seeds, 2):
        names = [n for n, v in table.items() if s in v and t in v]
        if len(names) >= 3:
            out.append((s, t, kendall_tau([table[n][s] for n in names], [table[n][t] for n in names]), len(names)))
    return out


def fmt(x: float, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{nd}f}"


# --------------------------------------------------------------------------- the stages


def pilot_archs(space: SearchSpace) -> list[Arch]:
    """Plain, each site at each budget alone, pairs of sites, and every site at the top budget."""
    t = space.template()
    sites = list(space.sites)
    budgets = sorted(b for b in space.spec.keys if b > 0)
    scope = space.spec.scopes[0]
    archs = [t]
    archs += [t.with_modules({s: ModuleChoice(k, scope)}) for s in sites for k in budgets]
    top, low = budgets[-1], budgets[0]
    pairs = [(sites[0], sites[-1], top), (sites[1 % len(sites)], sites[2 % len(sites)], top)]
    pairs += [(sites[0], sites[1 % len(sites)], low), (sites[-2], sites[-1], low)]
    for a, b, k in pairs:
        if a != b:
            archs.append(t.with_modules({a: ModuleChoice(k, scope), b: ModuleChoice(k, scope)}))
    archs.append(t.with_modules({s: ModuleChoice(top, scope) for s in sites}))
    seen, out = set(), []
    for a in archs:
        if a.key() not in seen and space.satisfies(a)[0]:
            seen.add(a.key())
            out.append(a)
    return out


def plain_jobs(space: SearchSpace, seeds: list[int], out: Path, args: argparse.Namespace, set_name: str) -> list[dict]:
    recipe = {**PLAIN, "steps": args.plain_steps}
    return [
        make_job(space, space.template(), s, recipe, out, args, set_name=set_name, variant="scratch") for s in seeds
    ]


def ft_jobs(
    space: SearchSpace,
    archs: list[Arch],
    seeds: list[int],
    plains: dict[int, str],
    out: Path,
    args: argparse.Namespace,
    set_name: str,
    variant: str = "",
    acla: dict | None = None,
) -> list[dict]:
    recipe = {**FINE_TUNE, "steps": args.ft_steps}
    return [
        make_job(space, a, s, recipe, out, args, set_name=set_name, variant=variant, weights=plains[s], acla=acla)
        for s in seeds
        if s in plains
        for a in archs
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces/lattice_denoise_sigma75.yaml"))
    ap.add_argument("--varperiod", default=None, help="the variable-period space (part 4); omitted: skipped")
    ap.add_argument("--out", default="runs/lattice")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--plain-steps", type=int, default=600)
    ap.add_argument("--ft-steps", type=int, default=300)
    ap.add_argument("--table", choices=("gate", "always", "never"), default="gate")
    ap.add_argument("--third-seed", type=int, default=32, help="architectures of the table with a third seed")
    ap.add_argument("--budget-s", type=float, default=float("inf"))
    ap.add_argument("--smoke", action="store_true", help="a seconds-long CPU run of the whole flow")
    ap.add_argument(
        "--varperiod-only", action="store_true", help="only part 4 (the offset predictors on --varperiod's space)"
    )
    args = ap.parse_args()
    if args.varperiod_only and not args.varperiod:
        ap.error("--varperiod-only needs --varperiod SPACE")
    if args.smoke:
        args.plain_steps, args.ft_steps, args.seeds, args.third_seed = 3, 2, [0, 1], 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.from_yaml(args.space)
    runner = Runner(out, args.jobs, args.budget_s)
    lines = [f"# Lattice benchmark: {Path(args.varperiod if args.varperiod_only else args.space).name}", ""]
    lines.append(
        f"device {args.device}, {args.jobs} jobs, seeds {args.seeds}, plain {args.plain_steps} steps from scratch, "
        f"fine-tune {args.ft_steps} steps (batch {PLAIN['batch']} x {PLAIN['patch']}^2, lr {PLAIN['lr']}, "
        "backbone and module gradients clipped apart)"
    )
    try:
        # 1. plain backbones (and those of the variable-period space) first, all at once
        vp = SearchSpace.from_yaml(args.varperiod) if args.varperiod else None
        jobs = [] if args.varperiod_only else plain_jobs(space, args.seeds, out, args, "plain")
        if vp is not None:
            jobs += plain_jobs(vp, args.seeds, out, args, "vp-plain")
        rows = runner.run(jobs)
        plains = {int(r["seed"]): r["model"] for r in rows if r["set"] == "plain"}
        vp_plains = {int(r["seed"]): r["model"] for r in rows if r["set"] == "vp-plain"}

        # 2. pilot + controls + variable period, all at once
        archs = [] if args.varperiod_only else pilot_archs(space)[: 3 if args.smoke else None]
        plain_name = arch_key(space, space.template())
        singles = [
            a for a in archs if a.n_modules() == 1 and max(c.keys for c in a.modules.values()) == max(space.spec.keys)
        ]
        controls = [singles[0], singles[-1]] if len(singles) > 1 else singles
        jobs = ft_jobs(space, archs, args.seeds, plains, out, args, "pilot")
        jobs += ft_jobs(space, controls, args.seeds, plains, out, args, "control", "random", {"offsets": "random"})
        vp_variants = {
            "local": {"offset_context": "local"},
            "dilated": {"offset_context": "dilated"},
            "pooled": {"offset_context": "pooled"},
            "frozen": {"offsets": "fixed"},
            "random": {"offsets": "random"},
        }
        if vp is not None:
            site = list(vp.sites)[-1]
            vp_arch = vp.template().with_modules({site: ModuleChoice(max(vp.spec.keys), vp.spec.scopes[0])})
            jobs += ft_jobs(vp, [vp.template()], args.seeds, vp_plains, out, args, "varperiod", "plain")
            for v, opts in vp_variants.items():
                jobs += ft_jobs(vp, [vp_arch], args.seeds, vp_plains, out, args, "varperiod", v, opts)
        rows = runner.run(jobs)
        if not args.varperiod_only:  # the pilot gate and the table
            pilot = by_arch_seed([r for r in rows if r["set"] == "pilot"])
            g = gains(pilot, plain_name)
            noise = paired_noise(g, plain_name)
            means = {n: statistics.mean(v.values()) for n, v in pilot.items() if v}
            taus = seed_taus(pilot, args.seeds)
            mean_tau = statistics.mean(t for *_, t, _ in taus) if taus else float("nan")
            spread = max(means.values()) - statistics.median(means.values()) if means else float("nan")
            gate = bool(taus) and mean_tau >= 0.6 and spread >= 5 * noise
            lines += ["", "## Pilot gate", ""]
            lines.append(
                f"{len(archs)} architectures x seeds {args.seeds}; keys per site in order {', '.join(space.sites)}."
            )
            lines += [
                "",
                "| architecture | mean PSNR | gain over plain (mean +- sd over seeds) | per seed |",
                "|---|---|---|---|",
            ]
            for n in sorted(pilot, key=lambda n: -means.get(n, -1e9)):
                gv = g.get(n, [])
                sd = statistics.stdev(gv) if len(gv) > 1 else float("nan")
                lines.append(
                    f"| {n} | {means[n]:.3f} | {fmt(statistics.mean(gv) if gv else float('nan'))} +- {sd:.3f} | "
                    f"{', '.join(fmt(x) for x in gv)} |"
                )
            ctrl = by_arch_seed([r for r in rows if r["set"] == "control"])
            for n, v in ctrl.items():
                base = pilot.get(plain_name, {})
                d = [v[s] - base[s] for s in sorted(v) if s in base]
                lines.append(
                    f"| {n} (control) | {statistics.mean(v.values()):.3f} | {fmt(statistics.mean(d) if d else float('nan'))} | {', '.join(fmt(x) for x in d)} |"
                )
            # effects: per site (mean gain of its single-module archs) and per budget
            lines += ["", "Site and budget effects (single-module architectures, paired gain over plain):", ""]
            for s in space.sites:
                for k in sorted(b for b in space.spec.keys if b > 0):
                    n = arch_key(space, space.template().with_modules({s: ModuleChoice(k, space.spec.scopes[0])}))
                    if n in g and g[n]:
                        gv = g[n]
                        sd = statistics.stdev(gv) if len(gv) > 1 else float("nan")
                        lines.append(f"- {s} K={k}: {fmt(statistics.mean(gv))} +- {sd:.3f} dB ({len(gv)} seeds)")
            lines += [
                "",
                "Main effects (mean over the other factor of the single-module paired gains; sd over seeds):",
                "",
            ]
            budgets = sorted(b for b in space.spec.keys if b > 0)
            for label, groups in (
                ("site", {s: [(s, k) for k in budgets] for s in space.sites}),
                ("budget", {f"K={k}": [(s, k) for s in space.sites] for k in budgets}),
            ):
                for level, cells in groups.items():
                    names = [
                        arch_key(space, space.template().with_modules({s: ModuleChoice(k, space.spec.scopes[0])}))
                        for s, k in cells
                    ]
                    per_seed = [
                        statistics.mean(pilot[n][sd] - pilot[plain_name][sd] for n in names)
                        for sd in args.seeds
                        if sd in pilot.get(plain_name, {}) and all(sd in pilot.get(n, {}) for n in names)
                    ]
                    if per_seed:
                        sd = statistics.stdev(per_seed) if len(per_seed) > 1 else float("nan")
                        lines.append(
                            f"- {label} {level}: {fmt(statistics.mean(per_seed))} +- {sd:.3f} dB ({len(per_seed)} seeds)"
                        )
            lines += ["", f"Paired noise (pooled sd over seeds of the gains): {noise:.4f} dB"]
            for s, t, tau, n in taus:
                lines.append(f"Kendall tau seed {s} vs seed {t}: {tau:.3f} over {n} architectures")
            lines.append(
                f"Gate: mean seed-to-seed tau {mean_tau:.3f} (need >= 0.6), best - median {spread:.3f} dB = "
                f"{spread / noise if noise else float('nan'):.1f}x the paired noise (need >= 5): **{'PASSED' if gate else 'NOT PASSED'}**"
            )

            # 3. table v2
            if args.table == "always" or (args.table == "gate" and gate):
                everything = space.enumerate() if not args.smoke else space.enumerate()[:4]
                third = stratified(space, everything, args.third_seed)
                jobs = ft_jobs(space, everything, [s for s in args.seeds[:2]], plains, out, args, "pilot")
                if len(args.seeds) > 2:
                    jobs += ft_jobs(space, third, [args.seeds[2]], plains, out, args, "pilot")
                runner.run(jobs)
                table_rows = [r for r in runner.rows.values() if r["set"] == "pilot"]
                with (out / "table.csv").open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                    w.writeheader()
                    for r in sorted(table_rows, key=lambda r: (r["arch"], int(r["seed"]))):
                        w.writerow(r)
                (out / "table.meta.yaml").write_text(
                    yaml.safe_dump(
                        {
                            "space": str(args.space),
                            "sites": list(space.sites),
                            "recipe": {
                                "plain": {**PLAIN, "steps": args.plain_steps},
                                "fine_tune": {**FINE_TUNE, "steps": args.ft_steps},
                            },
                            "warm_start": "per seed: the plain child trained from scratch, then every architecture fine-tuned from it",
                            "device": args.device,
                            "command": " ".join(sys.argv),
                        },
                        sort_keys=False,
                    )
                )
                tab = by_arch_seed(table_rows)
                n_arch = len(tab)
                complete = sum(1 for v in tab.values() if {args.seeds[0], args.seeds[1]} <= set(v))
                ttaus = seed_taus(tab, args.seeds)
                tmeans = {n: statistics.mean(v.values()) for n, v in tab.items()}
                tg = gains(tab, plain_name)
                tnoise = paired_noise(tg, plain_name)
                tspread = max(tmeans.values()) - statistics.median(tmeans.values())
                hours = sum(float(r["seconds"]) for r in table_rows) / 3600
                lines += ["", "## Table v2", ""]
                lines.append(
                    f"{n_arch} architectures, {complete} with seeds {args.seeds[:2]}, {len(table_rows)} runs, {hours:.2f} device-hours of training"
                )
                for s, t, tau, n in ttaus:
                    lines.append(f"Kendall tau seed {s} vs seed {t}: {tau:.3f} over {n} architectures")
                lines.append(
                    f"Paired noise {tnoise:.4f} dB; best - median {tspread:.3f} dB ({tspread / tnoise if tnoise else float('nan'):.1f}x)"
                )
                best = sorted(tmeans, key=lambda n: -tmeans[n])[:5]
                lines.append("Top 5 (seed means): " + "; ".join(f"{n} {tmeans[n]:.3f}" for n in best))
            else:
                lines += [
                    "",
                    "## Table v2",
                    "",
                    "Not built: the pilot gate did not pass (run with --table always to build it anyway).",
                ]

        # 4. variable period
        if vp is not None:
            vrows = by_arch_seed([r for r in rows if r["set"] == "varperiod"])
            base = next((v for n, v in vrows.items() if n.endswith("_plain")), {})
            lines += ["", "## Variable period (16-32 px): what the offset predictor needs", ""]
            lines += ["| variant | mean PSNR | gain over plain (mean +- sd) | per seed |", "|---|---|---|---|"]
            for n, v in vrows.items():
                d = [v[s] - base[s] for s in sorted(v) if s in base]
                sd = statistics.stdev(d) if len(d) > 1 else float("nan")
                lines.append(
                    f"| {n} | {statistics.mean(v.values()):.3f} | {fmt(statistics.mean(d) if d else float('nan'))} +- {sd:.3f} | {', '.join(fmt(x) for x in d)} |"
                )
        if runner.skipped:
            lines += [
                "",
                f"**Budget spent: {runner.skipped} runs were not started** (--budget-s {args.budget_s:.0f}); re-run to continue.",
            ]
        lines += ["", f"Wall time {time.perf_counter() - runner.t0:.0f} s."]
    finally:
        runner.close()
        (out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
