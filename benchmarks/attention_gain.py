"""Where does attention pay? Plain backbone vs the paper placement vs two offset controls.

For each benchmark space (synthetic sigma-50 denoising, synthetic x4 SR) and each data set (the
space's generated self-similar images, and the embedded photographs with the same recipe), trains
from scratch, with the same recipe and the same seeds (paired: same initial backbone weights and
the same batches for every variant of a seed):

* ``plain``  -- the backbone alone;
* ``paper``  -- the paper placement (a module after each quarter of the sites, attending to the
  head and the earlier chosen sites), with the space's ACLA options (learned offsets);
* ``fixed``  -- the same modules, offsets frozen at the initial layout (not learned);
* ``random`` -- the same modules, offsets frozen at random positions within ``init_radius``.

A non-local block at the same place is not run: on the 160x160 test images its attention matrix
is 25600^2 floats (2.6 GB per block and image, more for the gradients of 64^2 training
patches x batch), far from cheap on 2 CPU cores.

Prints, per (space, data): test PSNR/SSIM mean +- std over seeds, the per-seed paired
difference to ``plain`` with its mean and std, the median distance (image px) from a query to the
keys it kept on the test images (against the mean lattice period of the test images), the keys
kept per query, and minutes per run; then the target check of the benchmark issue. Runs are
resumable (a finished run is read back, not retrained), so an interrupted benchmark continues.

    python benchmarks/attention_gain.py [--spaces synthetic_denoise_sigma50 synthetic_sr_x4]
        [--data synthetic embedded] [--variants plain paper fixed random] [--seeds 0 1 2]
        [--steps 600] [--extra 'lr1={offset_lr_mult: 1}'] [--jobs 2] [--out runs/bench_attention_gain]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
import yaml

from acla_nas.data.images import to_float
from acla_nas.data.patches import _mix_seed
from acla_nas.data.sources import make_source
from acla_nas.data.synthetic import mean_period, parse_params
from acla_nas.space import SearchSpace
from acla_nas.tasks import make_task
from acla_nas.train.model_file import load_model
from acla_nas.train.retrain import train_arch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "paper", "fixed", "random")
#: the recipe: HR patch per space (x4 SR needs a larger one so an LR patch spans a few periods)
PATCH = {"synthetic_sr_x4": 96}


def variant_doc(space: SearchSpace, variant: str, data: dict, train: dict, extra: dict[str, dict]) -> dict:
    """The arch YAML document of one variant of a space (data and train sections included);
    ``extra`` maps ablation names to ACLA options set over the paper placement's."""
    refs = space.reference_archs()
    doc = refs["plain" if variant == "plain" else "paper"].to_dict()
    if variant in ("fixed", "random"):
        doc["acla"] = {**(doc.get("acla") or {}), "offsets": variant}
    if variant in extra:
        doc["acla"] = {**(doc.get("acla") or {}), **extra[variant]}
    doc["data"] = data
    doc["train"] = train
    return doc


def train_one(job: dict) -> dict:
    """Train (or read back) one run and measure its keys; runs in a worker process."""
    torch.set_num_threads(job["threads"])
    d, data = Path(job["dir"]), job["data"]
    d.mkdir(parents=True, exist_ok=True)
    arch_file = d / "arch.yaml"
    if not arch_file.is_file():
        arch_file.write_text(yaml.safe_dump(job["doc"], sort_keys=False))
    t0 = time.perf_counter()
    result, model_path, _ = train_arch(arch_file, d, {}, progress=False)
    dist, kept = key_stats(model_path, data) if job["variant"] != "plain" else (float("nan"), float("nan"))
    test = result["test"]
    return {
        "space": job["space"],
        "data": job["data_name"],
        "variant": job["variant"],
        "seed": job["seed"],
        "psnr": test["psnr"],
        "ssim": test["ssim"],
        "floor_psnr": test["floor_psnr"],
        "key_dist_px": dist,
        "period_px": job["period"],
        "keys_kept": kept,
        "minutes": result["seconds"] / 60,
        "wall_minutes": (time.perf_counter() - t0) / 60,
    }


@torch.no_grad()
def key_stats(model_path: Path, data: dict, seed: int = 0) -> tuple[float, float]:
    """(median key distance in image px over the kept keys, keys kept per query) on the test split,
    with each image degraded exactly as the evaluation degrades it."""
    model, _arch, payload = load_model(model_path, "cpu")
    task = make_task(payload["task"])
    mods = list(model.acla_modules().values()) if hasattr(model, "acla_modules") else []
    if not mods:
        return float("nan"), float("nan")
    items = make_source(data, task.scale).split("test")
    dists, kept = [], []
    for m in mods:
        m.record = True
    model.eval()
    for i in range(len(items)):
        hr = task.crop_hr(to_float(items[i])[None])
        lq = task.degrade(hr, torch.Generator().manual_seed(_mix_seed(seed, i)))
        model(lq)
        for m in mods:
            fh, fw = m.last_key_map.shape[-2:]
            px_per_query = lq.shape[-1] / fw * task.scale  # image (HR) px per query px
            d = m.key_distances()
            dists.append(d * px_per_query)
            kept.append(float(m.last_key_map.mean()))
    return float(torch.cat(dists).median()), float(sum(kept) / len(kept))


def run(args: argparse.Namespace) -> pd.DataFrame:
    extra = {}
    for item in args.extra:
        name, _, opts = item.partition("=")
        extra[name] = yaml.safe_load(opts) or {}
        if not isinstance(extra[name], dict):
            sys.exit(f"--extra {item}: expected NAME={{option: value, ...}}")
    variants = list(args.variants) + [n for n in extra if n not in args.variants]
    jobs = []
    for space_name in args.spaces:
        space = SearchSpace.from_yaml(ROOT / "search_spaces" / f"{space_name}.yaml")
        for data_name in args.data:
            data = dict(space.spec.data) if data_name == "synthetic" else {"kind": "embedded"}
            period = mean_period(parse_params(data)) if data.get("kind") == "synthetic" else float("nan")
            for seed in args.seeds:
                for variant in variants:
                    train = {
                        "steps": args.steps,
                        "batch": args.batch,
                        "patch": PATCH.get(space_name, args.patch),
                        "lr": args.lr,
                        "val_every": 0,
                        "ckpt_every": 200,
                        "progress": False,
                        "seed": seed,
                    }
                    jobs.append(
                        {
                            "space": space_name,
                            "data_name": data_name,
                            "data": data,
                            "variant": variant,
                            "seed": seed,
                            "period": period,
                            "threads": max(1, args.threads // args.jobs),
                            "dir": str(Path(args.out) / space_name / data_name / f"{variant}_seed{seed}"),
                            "doc": variant_doc(space, variant, data, train, extra),
                        }
                    )
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        for r in pool.map(train_one, jobs):
            rows.append(r)
            print(
                f"{r['space']} / {r['data']} / {r['variant']} seed {r['seed']}: PSNR {r['psnr']:.3f} dB, SSIM "
                f"{r['ssim']:.4f}, key distance {r['key_dist_px']:.1f} px, keys kept {r['keys_kept']:.2f}, "
                f"{r['minutes']:.1f} min",
                flush=True,
            )
    return pd.DataFrame(rows)


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def summarize(df: pd.DataFrame, steps: int) -> list[str]:
    """Markdown tables (one per space and data set) and the target check."""
    lines = []
    for (space_name, data_name), g in df.groupby(["space", "data"], sort=False):
        base = g[g.variant == "plain"].set_index("seed")
        period = g.period_px.iloc[0]
        lattice = f"mean lattice period {period:.1f} px" if period == period else "no lattice"
        lines += [
            "",
            f"### {space_name}, {data_name} data ({steps} steps; floor = degraded input "
            f"{g.floor_psnr.iloc[0]:.2f} dB; {lattice})",
            "",
            "| variant | PSNR mean +- std | SSIM mean +- std | paired diff vs plain per seed | mean +- std of diffs "
            "| median key distance (px) | keys kept | min/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for variant, v in g.groupby("variant", sort=False):
            diffs = [r.psnr - base.loc[r.seed, "psnr"] for r in v.itertuples() if r.seed in base.index]
            dtxt = ", ".join(f"{x:+.3f}" for x in diffs) if variant != "plain" else "-"
            mtxt = f"{statistics.mean(diffs):+.3f} +- {_sd(diffs):.3f}" if variant != "plain" and diffs else "-"
            kd = "-" if variant == "plain" else f"{v.key_dist_px.median():.1f}"
            kk = "-" if variant == "plain" else f"{v.keys_kept.mean():.2f}"
            lines.append(
                f"| {variant} | {v.psnr.mean():.3f} +- {_sd(list(v.psnr)):.3f} | {v.ssim.mean():.4f} +- "
                f"{_sd(list(v.ssim)):.4f} | {dtxt} | {mtxt} | {kd} | {kk} | {v.minutes.mean():.1f} |"
            )
    target = df[(df.space == "synthetic_denoise_sigma50") & (df.data == "synthetic")]
    if {"plain", "paper"} <= set(target.variant):
        p = target.pivot_table(index="seed", columns="variant", values="psnr")
        gain = p["paper"] - p["plain"]
        ok_gain = gain.mean() >= 0.15
        ok_snr = len(gain) > 1 and gain.mean() >= 5 * gain.std()
        line = (
            f"Target (synthetic sigma-50 denoising): paper - plain = {gain.mean():+.3f} dB (>= 0.15: "
            f"{'yes' if ok_gain else 'NO'}), std of paired diffs {gain.std():.3f} (mean >= 5x std: "
            f"{'yes' if ok_snr else 'NO'})"
        )
        if "random" in p:
            vs_random = p["paper"] - p["random"]
            line += (
                f"; paper - random = {vs_random.mean():+.3f} +- {vs_random.std():.3f} dB (beats it: "
                f"{'yes' if vs_random.mean() > 0 and (vs_random > 0).all() else 'NO'})"
            )
        lines += ["", line]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["synthetic_denoise_sigma50", "synthetic_sr_x4"])
    ap.add_argument("--data", nargs="+", default=["synthetic", "embedded"], choices=["synthetic", "embedded"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="NAME={OPTION: VALUE}",
        help="ablations: the paper placement with these ACLA options, e.g. 'lr1={offset_lr_mult: 1}'",
    )
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads shared by the jobs")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_attention_gain"))
    args = ap.parse_args()
    if "plain" not in args.variants:
        sys.exit("--variants must include plain (the paired baseline)")
    df = run(args)
    df.to_csv(Path(args.out) / "results.csv", index=False)
    print("\n".join(summarize(df, args.steps)))


if __name__ == "__main__":
    main()
