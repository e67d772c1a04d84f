"""Search strategies measured side by side on one space (default: the CPU demo space).

Prints, from one run:

* wall time of each strategy (random, TPE, evolution with the one-shot evaluator; DARTS);
* one-shot milliseconds per candidate and strategy overhead per trial (trial wall time minus
  evaluation time: sampling, constraint checks, storage I/O);
* Kendall tau between one-shot scores and proxy-trained PSNR on N random architectures
  (how well the supernet ranks candidates);
* best validation PSNR found by each strategy at an equal evaluation budget, all re-scored with
  the same supernet so the numbers are comparable (DARTS's answer included), against random.

The multi-trial strategies share one supernet: it is trained once and copied into each run
directory (the trainer then finds the completed run and loads it), so their wall times measure
the search itself. Usage:

    python benchmarks/search_strategies.py [--space search_spaces/edsr_x2_demo.yaml] [--trials 40]
        [--supernet-steps 300] [--darts-steps 300] [--tau-archs 15] [--proxy-steps 150] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

from acla_nas.search.evaluators import OneShotEvaluator, ProxyEvaluator
from acla_nas.search.run import run_search, search_data
from acla_nas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties handled), without scipy."""
    n = len(a)
    conc = disc = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = ((conc + disc + ties_a) * (conc + disc + ties_b)) ** 0.5
    return (conc - disc) / denom if denom else float("nan")


def preset(name: str, trials: int, supernet: dict, darts_steps: int) -> dict:
    base = yaml.safe_load((ROOT / "strategies" / f"{name}.yaml").read_text())
    base["trials"] = trials
    if name == "darts":
        base["options"]["steps"] = darts_steps
    else:
        base["supernet"] = supernet
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "edsr_x2_demo.yaml"))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--supernet-steps", type=int, default=300)
    ap.add_argument("--darts-steps", type=int, default=300)
    ap.add_argument("--tau-archs", type=int, default=15)
    ap.add_argument("--proxy-steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_strategies"))
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    space = SearchSpace.from_yaml(args.space)
    supernet_cfg = {"steps": args.supernet_steps, "batch": 8, "patch": 48, "lr": 5e-4}

    # 1. the shared supernet
    t = time.perf_counter()
    strat = {"seed": args.seed, "val": {"patches": 16, "patch": 48}}
    data = search_data(space, strat, "cpu", progress=False)
    shared = out / "shared"
    ev = OneShotEvaluator(space, data, supernet_cfg, shared)
    ev.prepare()
    supernet_seconds = time.perf_counter() - t
    print(f"supernet: {args.supernet_steps} steps in {supernet_seconds:.1f} s")

    # 2. strategies at an equal evaluation budget
    rows = []
    best_archs = {}
    for name in ("random", "tpe", "evolution", "darts"):
        run_dir = out / name
        run_dir.mkdir()
        if name != "darts":
            shutil.copytree(shared / "supernet", run_dir / "supernet")
        f = out / f"{name}.yaml"
        f.write_text(yaml.safe_dump(preset(name, args.trials, supernet_cfg, args.darts_steps)))
        t = time.perf_counter()
        res = run_search(args.space, str(f), run_dir, seed=args.seed, device="cpu", progress=False)
        wall = time.perf_counter() - t
        df = pd.read_csv(run_dir / "trajectory.csv")
        row = {"strategy": name, "wall_s": wall}
        if name != "darts":
            from acla_nas.search.storage.study import load_run_study

            study = load_run_study(run_dir)
            trials = [tr for tr in study.trials if tr.state.name == "COMPLETE"]
            fresh = [tr for tr in trials if not tr.user_attrs.get("cached")]
            evals = [tr.user_attrs["eval_seconds"] for tr in trials]
            spans = [(tr.datetime_complete - tr.datetime_start).total_seconds() for tr in trials]
            row["ms_per_candidate"] = 1000 * sum(evals) / max(1, len(fresh))
            row["overhead_ms_per_trial"] = 1000 * (sum(spans) - sum(evals)) / len(spans)
            row["repeats_from_cache"] = len(trials) - len(fresh)
            row["infeasible_proposals"] = sum(1 for tr in study.trials if tr.state.name == "PRUNED")
            row["evaluations"] = len(trials)
        else:
            row["evaluations"] = len(df)
        best_archs[name] = res.best_arch
        rows.append(row)
        print(json.dumps(row))

    # 3. every strategy's answer re-scored with the same supernet
    for row in rows:
        row["best_psnr_shared_supernet"] = ev.evaluate(best_archs[row["strategy"]]).psnr
        row["best_modules"] = (
            ", ".join(f"{s}:K{c.keys}" for s, c in best_archs[row["strategy"]].modules.items()) or "none"
        )
    ref = next(r["best_psnr_shared_supernet"] for r in rows if r["strategy"] == "random")
    for row in rows:
        row["vs_random_db"] = row["best_psnr_shared_supernet"] - ref

    # 4. ranking quality of the one-shot evaluator
    rng = random.Random(args.seed + 1)
    archs, seen = [], set()
    while len(archs) < args.tau_archs:
        a = space.sample(rng)
        if a.key() not in seen:
            seen.add(a.key())
            archs.append(a)
    proxy = ProxyEvaluator(space, data, {"steps": args.proxy_steps, "batch": 8, "patch": 48, "lr": 5e-4})
    t = time.perf_counter()
    pairs = []
    for a in archs:
        pairs.append((ev.evaluate(a).psnr, proxy.evaluate(a).psnr))
    proxy_seconds = time.perf_counter() - t
    tau = kendall_tau([p[0] for p in pairs], [p[1] for p in pairs])

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print()
    print(
        f"space {Path(args.space).name}: {args.trials} evaluations per multi-trial strategy, DARTS {args.darts_steps} steps; "
        f"shared supernet {args.supernet_steps} steps ({supernet_seconds:.0f} s, not included in wall_s)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(
        f"Kendall tau (one-shot score vs proxy-trained PSNR, {len(pairs)} random archs, proxy {args.proxy_steps} steps, "
        f"{proxy_seconds:.0f} s): {tau:.3f}"
    )
    print("pairs (one-shot dB, proxy dB):", ", ".join(f"({a:.2f}, {b:.2f})" for a, b in pairs))
    table.to_csv(out / "strategies.csv", index=False)
    pd.DataFrame(pairs, columns=["oneshot_psnr", "proxy_psnr"]).to_csv(out / "kendall_pairs.csv", index=False)


if __name__ == "__main__":
    main()
