"""Tabulate a small search space: train every architecture stand-alone, one CSV row per run.

A fully tabulated space gives exact regret and lets any strategy be benchmarked in seconds
(``evaluator: table`` answers from the CSV, :mod:`acla_nas.search.table.lookup`). Every run uses one short
recipe (:data:`RECIPE`); seed 0 for every architecture, plus seed 1 on ``--second-seed``
architectures stratified by MACs (the extremes included) to measure the seed noise. Runs with
the same seed are paired: same initial backbone weights, same batches.

Resumable: a row is appended (and flushed) as each run ends, finished rows are skipped on the next
start, and an interrupted run resumes from its checkpoint in ``--work``.

``--seeds 0 1 2`` trains every selected architecture with each of these seeds instead (a pilot:
``--subset 16`` takes 16 architectures stratified by MACs, ``--archs FILE`` the architecture keys
listed one per line). ``--warm-start STEPS`` trains the plain child once per seed for STEPS steps
(``<out folder>/warm/<out stem>/plain_seed{S}.pt``, resumable, reused when present) and starts
every architecture of that seed from it (modules at identity): the runs of a seed then differ
only by what their modules add, not by how fast they learn from scratch.

    python -m acla_nas.search.table.build search_spaces/synthetic_table.yaml [--out results/table/synthetic_table.csv]
        [--jobs 2] [--second-seed 32] [--work runs/table] [--device cuda]
        [--seeds 0 1 2 --subset 16 | --archs FILE] [--warm-start 600]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml

from acla_nas.core.errors import UserError
from acla_nas.core.yaml_io import read_yaml
from acla_nas.nn.arch import Arch
from acla_nas.space import SearchSpace
from acla_nas.train.config import TrainConfig

#: the stand-alone recipe of a table (short: the whole table in about 90 min on 2 cores)
RECIPE: dict[str, Any] = {"steps": 200, "batch": 8, "patch": 48, "lr": 2e-3, "val_every": 0, "ckpt_every": 50}
# backbone and modules clipped apart, so no architecture changes the backbone's updates through
# the clipping (tables built before this option keep global clipping: their stored recipe lacks it)
RECIPE["clip_groups"] = True
COLUMNS = ("arch", "seed", "psnr", "ssim", "val_psnr", "macs", "params", "seconds", "steps", "warm_start", "device")


def arch_key(space: SearchSpace, arch: Arch) -> str:
    """A compact, canonical name of ``arch`` in ``space``: the key budget of each site in the
    space's site order, joined by '-' (with '@scope' where a site has several scopes)."""
    flat = space.encode(arch)
    parts = []
    for name, s in space.sites.items():
        k = flat[f"{name}.keys"]
        parts.append(f"{k}@{flat[f'{name}.scope']}" if k and len(s.labels()) > 1 else str(k))
    return "-".join(parts)


def stratified(space: SearchSpace, archs: list[Arch], n: int) -> list[Arch]:
    """``n`` architectures evenly spread over the MACs order (first and last included)."""
    if n <= 0:
        return []
    ordered = sorted(archs, key=lambda a: (space.cost(a)["macs"], arch_key(space, a)))
    if n >= len(ordered):
        return ordered
    idx = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [ordered[i] for i in idx]


def plan(space: SearchSpace, second_seed: int, order_seed: int = 0) -> list[tuple[Arch, int]]:
    """Every (arch, seed) run of the table, in build order: seed-0 runs shuffled (a partial table
    is a uniform sample of the space), then the second-seed runs (the noise)."""
    archs = space.enumerate()
    first = list(archs)
    random.Random(order_seed).shuffle(first)
    second = stratified(space, archs, second_seed)
    random.Random(order_seed + 1).shuffle(second)
    return [(a, 0) for a in first] + [(a, 1) for a in second]


def select(space: SearchSpace, subset: int | None = None, archs_file: str | Path | None = None) -> list[Arch]:
    """The architectures of a pilot: those listed in ``archs_file`` (one key per line, as in the
    table's ``arch`` column), else ``subset`` stratified by MACs, else all."""
    archs = space.enumerate()
    if archs_file is not None:
        by_key = {arch_key(space, a): a for a in archs}
        p = Path(archs_file)
        if not p.is_file():
            raise UserError("no such file", file=str(p), field="--archs")
        out = []
        for i, line in enumerate(p.read_text().splitlines(), start=1):
            key = line.split("#")[0].strip()
            if not key:
                continue
            if key not in by_key:
                raise UserError(f"line {i}: {key!r} is not an architecture key of the space", file=str(p))
            if by_key[key] not in out:
                out.append(by_key[key])
        if not out:
            raise UserError("lists no architecture key", file=str(p))
        return out
    return stratified(space, archs, subset) if subset is not None else archs


def plan_seeds(archs: list[Arch], seeds: list[int], order_seed: int = 0) -> list[tuple[Arch, int]]:
    """Every architecture with every seed, seed by seed (each seed's runs shuffled)."""
    out = []
    for s in seeds:
        batch = list(archs)
        random.Random(order_seed + s).shuffle(batch)
        out += [(a, s) for a in batch]
    return out


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The table's rows so far (an absent file is an empty table)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_spec(
    space: SearchSpace,
    arch: Arch,
    seed: int,
    recipe: dict,
    work: Path,
    threads: int = 1,
    weights: str | None = None,
    device: str | None = None,
    warm_start: int = 0,
) -> dict:
    """What :func:`run_one` needs to train (or resume) one (arch, seed) run of a table in ``work``
    (from ``weights``: a warm start's plain model)."""
    key = arch_key(space, arch)
    doc = arch.to_dict()
    if weights is not None:
        doc["backbone"]["weights"] = str(Path(weights).resolve())
        doc["backbone"].pop("weights_sha256", None)  # the space's own weights' digest, if any
    doc["data"] = dict(space.spec.data)
    doc["train"] = {**recipe, "progress": False, "seed": seed}
    cost = space.cost(arch)
    return {
        "arch": key,
        "seed": seed,
        "doc": doc,
        "dir": str(Path(work) / f"{key}_s{seed}"),
        "threads": threads,
        "macs": cost["macs"],
        "params": cost["params"],
        "device": device,
        "warm_start": warm_start,
    }


def run_one(job: dict) -> dict:
    """Train one (arch, seed) in a worker process; returns its CSV row."""
    import torch

    from acla_nas.runtime.device import resolve_device
    from acla_nas.train.retrain import train_arch

    torch.set_num_threads(job["threads"])
    d = Path(job["dir"])
    d.mkdir(parents=True, exist_ok=True)
    arch_file = d / "arch.yaml"
    if not arch_file.is_file():
        arch_file.write_text(yaml.safe_dump(job["doc"], sort_keys=False))
    result, model_path, _task = train_arch(arch_file, d, {"device": job.get("device")}, progress=False)
    if job.get("copy_to"):  # a warm start's plain model, where the table's runs name it
        dest = Path(job["copy_to"])
        if not dest.is_file():
            shutil.copyfile(model_path, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
    test = result.get("test") or {}
    return {
        "arch": job["arch"],
        "seed": job["seed"],
        "psnr": test.get("psnr"),
        "ssim": test.get("ssim"),
        "val_psnr": result.get("val_psnr"),
        "macs": job["macs"],
        "params": job["params"],
        "seconds": round(float(result.get("seconds", 0.0)), 2),
        "steps": result.get("steps"),
        "warm_start": job.get("warm_start", 0),
        "device": str(resolve_device(job.get("device") or "auto")),
    }


def warm_path(out: Path, seed: int) -> Path:
    """Where a warm-started table keeps the plain model of ``seed``."""
    return out.parent / "warm" / out.stem / f"plain_seed{seed}.pt"


def build_table(
    space_file: str | Path,
    out: str | Path,
    work: str | Path,
    jobs: int = 2,
    second_seed: int = 32,
    limit: int | None = None,
    recipe: dict | None = None,
    first: str | Path | None = None,
    *,
    seeds: list[int] | None = None,
    subset: int | None = None,
    archs_file: str | Path | None = None,
    warm_start: int = 0,
    device: str | None = None,
) -> Path:
    """Train the missing runs of the table of ``space_file`` into ``out`` (CSV); returns ``out``.
    ``first``: a sub-space file whose architectures' seed-0 runs are trained before the others
    (so that sub-space is complete, and searchable with ``evaluator: table``, early).
    ``seeds``/``subset``/``archs_file``: every selected architecture with each seed (a pilot);
    ``warm_start``: steps of the per-seed plain model every run starts from (0 = from scratch)."""
    space = SearchSpace.from_yaml(space_file)
    given = dict(recipe or {})
    # checked once, before any worker starts (each run builds its TrainConfig from its arch file)
    TrainConfig.from_recipe(
        defaults=RECIPE, overrides=given, flag=lambda key: "--steps" if key == "steps" else "recipe"
    )
    recipe = {**RECIPE, **given}
    out, work = Path(out), Path(work)
    meta = out.with_suffix(".meta.yaml")
    if "clip_groups" not in given and meta.is_file():  # an older table: built with global clipping
        if "clip_groups" not in ((read_yaml(meta, allow_empty=True) or {}).get("recipe") or {"clip_groups": 1}):
            recipe.pop("clip_groups")
    if isinstance(warm_start, bool) or not isinstance(warm_start, int) or warm_start < 0:
        raise UserError(f"expected an integer >= 0, got {warm_start!r}", field="--warm-start")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise UserError(f"expected distinct seeds >= 0, got {seeds!r}", field="--seeds")
    if seeds is not None or subset is not None or archs_file is not None:
        full = plan_seeds(select(space, subset, archs_file), seeds or [0])
    else:
        full = plan(space, second_seed)
    done = {(r["arch"], int(r["seed"])) for r in read_rows(out)}
    todo = [(a, s) for a, s in full if (arch_key(space, a), s) not in done]
    if first is not None:
        sub = {a.key() for a in SearchSpace.from_yaml(first).enumerate()}
        todo.sort(key=lambda job: not (job[1] == 0 and job[0].key() in sub))  # stable: the plan's order otherwise
    if limit is not None:
        todo = todo[:limit]
    total = len(full)
    print(f"table {out}: {len(done)} of {total} runs done, {len(todo)} to train with {jobs} process(es)", flush=True)
    if not todo:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if meta.is_file():
        stored_meta = read_yaml(meta, allow_empty=True) or {}
        stored = stored_meta.get("recipe")
        if stored != recipe:
            raise UserError(
                f"the table was built with recipe {stored}, not {recipe}; use another --out",
                file=str(meta),
                field="recipe",
            )
        if int(stored_meta.get("warm_start") or 0) != warm_start:
            raise UserError(
                f"the table was built with warm start {stored_meta.get('warm_start') or 0}, not {warm_start}; "
                "use another --out",
                file=str(meta),
                field="warm_start",
            )
    else:
        meta.write_text(
            yaml.safe_dump(
                {
                    "space": str(space_file),
                    "sites": list(space.sites),
                    "recipe": recipe,
                    "warm_start": warm_start,
                    "command": f"python -m acla_nas.search.table.build {space_file} --out {out}"
                    + (f" --warm-start {warm_start}" if warm_start else ""),
                    "arch": "key budget per site, in the order of `sites`, joined by '-'",
                    "psnr": "test split PSNR (dB) after the recipe; val_psnr on the validation patches",
                },
                sort_keys=False,
            )
        )
    threads = max(1, (os.cpu_count() or 1) // jobs)
    weights: dict[int, str] = {}
    if warm_start:
        weights = warm_models(space, out, work, sorted({s for _, s in todo}), recipe, warm_start, jobs, threads, device)
    specs = [
        run_spec(space, arch, seed, recipe, work / out.stem, threads, weights.get(seed), device, warm_start)
        for arch, seed in todo
    ]
    new_file = not out.is_file() or out.stat().st_size == 0
    columns = COLUMNS
    if not new_file:  # an older table keeps its own columns
        with out.open(newline="") as f:
            columns = tuple(next(csv.reader(f), None) or COLUMNS)
    t0, n = time.perf_counter(), 0
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new_file:
            writer.writeheader()

        def record(row: dict) -> None:
            nonlocal n
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
            n += 1
            el = time.perf_counter() - t0
            print(
                f"[{len(done) + n}/{total}] {row['arch']} seed {row['seed']}: {row['psnr']:.3f} dB "
                f"({row['seconds']:.0f} s; ETA {el / n * (len(specs) - n) / 60:.0f} min)",
                flush=True,
            )

        if jobs == 1:  # in this process (tests, debugging)
            for spec in specs:
                record(run_one(spec))
            return out
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            pending = {pool.submit(run_one, s) for s in specs}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    record(fut.result())
    return out


def warm_models(
    space: SearchSpace,
    out: Path,
    work: Path,
    seeds: list[int],
    recipe: dict,
    steps: int,
    jobs: int,
    threads: int,
    device: str | None,
) -> dict[int, str]:
    """The plain model of each seed, trained for ``steps`` (resumed, or reused when present)."""
    plain = space.template()
    specs = []
    for s in seeds:
        dest = warm_path(out, s)
        if dest.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        spec = run_spec(space, plain, s, {**recipe, "steps": steps}, dest.parent, threads, None, device, 0)
        spec["dir"] = str(dest.with_suffix(""))  # the plain run's directory (checkpoints: resumable)
        spec["copy_to"] = str(dest)
        specs.append(spec)
    if specs:
        print(f"warm start: training the plain model of seed(s) {[j['seed'] for j in specs]} for {steps} steps")
        if jobs == 1 or len(specs) == 1:
            rows = [run_one(j) for j in specs]
        else:
            with ProcessPoolExecutor(min(jobs, len(specs)), mp_context=mp.get_context("spawn")) as pool:
                rows = list(pool.map(run_one, specs))
        for r in rows:
            print(f"warm start seed {r['seed']}: test PSNR {r['psnr']} dB after {steps} steps ({r['seconds']:.0f} s)")
    return {s: str(warm_path(out, s).resolve()) for s in seeds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m acla_nas.search.table.build", description=__doc__.splitlines()[0])
    ap.add_argument("space", help="search-space YAML (small: every architecture is trained)")
    ap.add_argument("--out", help="CSV (default results/table/<space>.csv)")
    ap.add_argument("--work", default="runs/table", help="run directories (checkpoints; resumable)")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    ap.add_argument("--second-seed", type=int, default=32, help="architectures also trained with seed 1")
    ap.add_argument("--limit", type=int, help="train at most this many runs now")
    ap.add_argument("--first", help="a sub-space YAML whose architectures are trained first")
    ap.add_argument("--steps", type=int, help=f"recipe steps (default {RECIPE['steps']})")
    ap.add_argument("--seeds", type=int, nargs="+", help="train every selected architecture with each seed")
    ap.add_argument("--subset", type=int, help="select this many architectures, stratified by MACs")
    ap.add_argument("--archs", help="select the architecture keys listed in FILE (one per line)")
    ap.add_argument("--warm-start", type=int, default=0, help="steps of the per-seed plain model runs start from")
    ap.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    args = ap.parse_args(argv)
    out = args.out or f"results/table/{Path(args.space).stem}.csv"
    try:
        build_table(
            args.space,
            out,
            args.work,
            args.jobs,
            args.second_seed,
            args.limit,
            {"steps": args.steps} if args.steps else None,
            args.first,
            seeds=args.seeds,
            subset=args.subset,
            archs_file=args.archs,
            warm_start=args.warm_start,
            device=args.device,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
