"""Does ACLA help? The plain backbone vs children with ACLA modules, same recipe, several seeds.

Trains each variant from scratch with the same recipe for each seed (``acla_nas.train.retrain``,
the code behind ``acla-nas train``), evaluates on the test split with the task's protocol, and
prints mean +- std of test PSNR/SSIM per variant, the naive floor (bicubic input), the gain over
the plain backbone per seed (paired), and the training throughput (steps/s) of each variant,
measured side by side in this one run.

    python benchmarks/acla_vs_plain.py [--space search_spaces/edsr_x2_demo.yaml] [--steps 1000]
        [--seeds 0 1 2] [--variants plain paper] [--arch extra.yaml ...] [--out runs/bench_acla_vs_plain]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import yaml

from acla_nas.nn.arch import load_arch_file
from acla_nas.space import SearchSpace
from acla_nas.train.retrain import train_arch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "edsr_x2_demo.yaml"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["plain", "paper"], help="reference archs of the space")
    ap.add_argument("--arch", nargs="*", default=[], help="extra arch YAML files (e.g. an exported child)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_acla_vs_plain"))
    args = ap.parse_args()
    space = SearchSpace.from_yaml(args.space)
    refs = space.reference_archs()
    archs = {v: refs[v] for v in args.variants}
    for f in args.arch:
        archs[Path(f).parent.name or Path(f).stem] = load_arch_file(f)[0]
    recipe = {
        "steps": args.steps,
        "batch": args.batch,
        "patch": args.patch,
        "lr": 5e-4,
        "val_every": 0,
        "ckpt_every": 500,
        "progress": False,
    }
    rows = []
    for seed in args.seeds:
        for name, arch in archs.items():
            d = Path(args.out) / f"{name}_seed{seed}"
            d.mkdir(parents=True, exist_ok=True)
            doc = arch.to_dict()
            doc["data"] = dict(space.spec.data)
            doc["train"] = {**recipe, "seed": seed}
            (d / "arch.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            result, _, _ = train_arch(d / "arch.yaml", d, {}, progress=False)
            test = result["test"]
            rows.append(
                {
                    "variant": name,
                    "seed": seed,
                    "modules": arch.n_modules(),
                    "psnr": test["psnr"],
                    "ssim": test["ssim"],
                    "floor_psnr": test["floor_psnr"],
                    "floor_ssim": test["floor_ssim"],
                    "steps_per_s": args.steps / result["seconds"],
                }
            )
            print(
                f"{name} seed {seed}: test PSNR {test['psnr']:.3f} dB, SSIM {test['ssim']:.4f}, {args.steps / result['seconds']:.2f} steps/s"
            )
    df = pd.DataFrame(rows)
    df.to_csv(Path(args.out) / "results.csv", index=False)
    print()
    print(
        f"{Path(args.space).name}: {args.steps} steps, batch {args.batch}, HR patch {args.patch}, seeds {args.seeds}; test split "
        f"({space.spec.data.get('kind', 'embedded')}), floor = naive input: PSNR {df.floor_psnr.iloc[0]:.3f} dB / SSIM {df.floor_ssim.iloc[0]:.4f}"
    )
    print(
        f"{'variant':<12} {'modules':>7} {'PSNR mean':>10} {'± std':>7} {'SSIM mean':>10} {'± std':>8} {'steps/s':>8} {'gain vs plain (per seed)':>30}"
    )
    base = df[df.variant == args.variants[0]].set_index("seed")
    for name in archs:
        sub = df[df.variant == name]
        gains = [r.psnr - base.loc[r.seed, "psnr"] for r in sub.itertuples()]
        sd = statistics.stdev(sub.psnr) if len(sub) > 1 else float("nan")
        ssd = statistics.stdev(sub.ssim) if len(sub) > 1 else float("nan")
        print(
            f"{name:<12} {int(sub.modules.iloc[0]):>7} {sub.psnr.mean():>10.3f} {sd:>7.3f} {sub.ssim.mean():>10.4f} {ssd:>8.4f} "
            f"{sub.steps_per_s.mean():>8.2f} {', '.join(f'{g:+.3f}' for g in gains):>30}"
        )


if __name__ == "__main__":
    main()
