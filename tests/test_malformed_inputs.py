"""Malformed inputs per verb, table-driven: every one exits 2 with exactly one stderr line naming
the file and/or the field, no traceback, nothing written and nothing overwritten. Add a row for
every bug found. Runs the CLI in-process (a few cases through a subprocess, for the exit code)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from acla_nas.cli.main import main
from acla_nas.data.images import IMAGE_CACHE, embedded_dir
from acla_nas.nn.arch import Arch
from acla_nas.nn.network import build
from acla_nas.train.model_file import save_model_file

ROOT = Path(__file__).resolve().parent.parent
TINY_ARCH = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 1}},
    "task": {"name": "sr", "scale": 2},
    "modules": {"body.0": {"keys": 2}},
}
TINY_SPACE = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 2}},
    "task": {"name": "sr", "scale": 2},
    "eval": {"input_size": [16, 16]},
    "keys": [0, 2],
    "scopes": ["all"],
}
SUPERNET = {"supernet": {"steps": 2, "batch": 2, "patch": 24}, "val": {"patches": 2, "patch": 24}}
DARTS = {"strategy": "darts", "options": {"steps": 400, "batch": 2, "patch": 24}, "val": {"patches": 2, "patch": 24}}
EVOLUTION = {"strategy": "evolution", "trials": 2, "options": {"population": 10, "sample_size": 4}, **SUPERNET}
TPE = {"strategy": "tpe", "trials": 2, "options": {"n_startup_trials": 1}, **SUPERNET}
RANDOM = {"strategy": "random", "trials": 2, **SUPERNET}


def _with(base: dict, **changes) -> dict:
    """``base`` with dotted keys replaced (``options__w_lr=...`` sets options.w_lr)."""
    out = yaml.safe_load(yaml.safe_dump(base))
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _space(**c) -> dict:
    return _with(TINY_SPACE, **c)


def _arch(**c) -> dict:
    return _with({**TINY_ARCH, "train": {"steps": 2, "batch": 2, "patch": 24, "val_patches": 2}}, **c)


# YAML files the cases name as {Y}/<name>.yaml (written once by the fixture)
YAML_FILES: dict[str, dict | str] = {
    "space_ok": TINY_SPACE,
    "space_evil": _space(backbone={"name": "os:system", "kwargs": {"command": "touch {marker}"}, "sites": "x"}),
    "space_eval": _space(backbone={"name": "builtins:eval", "sites": "x"}),
    "space_user": _space(backbone={"name": "user_backbones:tiny_net", "sites": "layers.*"}),
    "space_deep": _space(backbone__kwargs__n_resblocks=10**9),
    "space_wide": _space(backbone__kwargs__n_feats=10**12),
    "space_res_scale": _space(backbone__kwargs__res_scale=float("nan")),
    "space_tau": _space(acla={"tau": float("nan")}),
    "space_kernel": _space(acla={"offset_kernel": float("inf")}),
    "space_kind": _space(data={"kind": {"": "embedded"}}),
    "space_input": _space(eval={"input_size": [10**9, 10**9]}),
    "space_memory": _space(backbone__kwargs__n_feats=60000),
    "space_nodata": _space(data={"kind": "folder", "path": "{tmp}/no_such_folder"}),
    "space_tiny_img": _space(data={"kind": "folder", "path": "{tmp}/mixed", "val_fraction": 0.3, "test_fraction": 0.2}),
    "space_tag": "backbone: !!python/object/apply:os.system ['touch {marker}']\ntask: {name: sr, scale: 2}\nkeys: [0, 2]\n",
    "darts_w_lr_nan": _with(DARTS, options__w_lr=float("nan")),
    "darts_w_lr_neg": _with(DARTS, options__w_lr=-1.0),
    "darts_w_lr_str": _with(DARTS, options__w_lr="fast"),
    "darts_tau_start": _with(DARTS, options__tau_start=-1),
    "darts_tau_end": _with(DARTS, options__tau_end=0),
    "darts_warmup_frac": _with(DARTS, options__warmup=2.5),
    "darts_warmup_neg": _with(DARTS, options__warmup=-1),
    "darts_warmup_one": _with(DARTS, options__warmup=1.0),
    "darts_warmup_all": _with(DARTS, options__warmup=400),
    "darts_gumbel": _with(DARTS, options__gumbel="yes"),
    "darts_penalty": _with(DARTS, options__penalty=-1),
    "darts_log_every": _with(DARTS, options__log_every=0),
    "darts_batch": _with(DARTS, options__batch=0),
    "darts_patch_odd": _with(DARTS, options__patch=25),
    "darts_grad_clip": _with(DARTS, options__grad_clip=float("inf")),
    "darts_steps": _with(DARTS, options__steps=0),
    "darts_unknown": _with(DARTS, options__heads=4),
    "evo_population": _with(EVOLUTION, options__population=0),
    "evo_sample_size": _with(EVOLUTION, options__sample_size=0),
    "evo_tournament": _with(EVOLUTION, options__sample_size=11),
    "evo_population_float": _with(EVOLUTION, options__population=2.5),
    "evo_population_bool": _with(EVOLUTION, options__population=True),
    "tpe_startup": _with(TPE, options__n_startup_trials=-5),
    "tpe_multivariate": _with(TPE, options__multivariate="yes"),
    "tpe_candidates": _with(TPE, options__n_ei_candidates=0),
    "sn_batch": _with(RANDOM, supernet__batch=0),
    "sn_lr": _with(RANDOM, supernet__lr=float("inf")),
    "sn_lr_huge": _with(RANDOM, supernet__lr=1e38),
    "sn_steps": _with(RANDOM, supernet__steps=-1),
    "sn_unknown": _with(RANDOM, supernet__epochs=3),
    "sn_seed": _with(RANDOM, supernet__seed=3),
    "sn_big_batch": _with(RANDOM, supernet__batch=10**9),  # refused on any machine: never starts
    "sn_patch_odd": _with(RANDOM, supernet__patch=25),
    "proxy_lr": _with(RANDOM, proxy__lr=-1),
    "trials_neg": _with(RANDOM, trials=-1),
    "trials_zero": _with(RANDOM, trials=0),
    "seed_neg": _with(RANDOM, seed=-1),
    "seed_huge": _with(RANDOM, seed=2**40),
    "strat_evil": _with(RANDOM, strategy="os:system"),
    "strat_unregistered": _with(RANDOM, strategy="acla_nas.cli.main:main"),
    "strat_unknown": _with(RANDOM, strategy="annealing"),
    "val_patches": _with(RANDOM, val__patches=10**9),
    "objectives": _with(RANDOM, objectives=["psnr", "ssim"]),
    "evaluator": _with(RANDOM, evaluator="magic"),
    "strat_tag": "strategy: !!python/name:os.system\n",
    "random_ok": RANDOM,
    "arch_ok": _arch(data={"kind": "folder", "path": "{tmp}/photos", "val_fraction": 0.2, "test_fraction": 0.2}),
    "arch_lr": _arch(train__lr=float("inf")),
    "arch_batch": _arch(train__batch=0),
    "arch_device": _arch(train__device="mps"),
    "arch_unknown": _arch(train__epochs=3),
    "arch_evil": _arch(backbone={"name": "os:system", "kwargs": {"command": "touch {marker}"}, "sites": "x"}),
    "arch_memory": _arch(backbone__kwargs__n_feats=60000),
    "arch_nodata": _arch(data={"kind": "folder", "path": "{tmp}/no_such_folder"}),
    "arch_tiny_img": _arch(data={"kind": "folder", "path": "{tmp}/mixed", "val_fraction": 0.3, "test_fraction": 0.2}),
    "arch_site": _arch(modules={"body.7": {"keys": 2}}),
    "arch_tag": "backbone: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    # issue 23: hostile numbers, keys and nesting (raw text: PyYAML's dumper cannot write some of them)
    "space_flops_exp": _space(constraints={"max_flops": "1e999999999"}),
    "space_flops_bigint": yaml.safe_dump(TINY_SPACE) + "constraints: {max_flops: " + "9" * 400 + "}\n",
    "space_int_5000": yaml.safe_dump(TINY_SPACE).replace("n_resblocks: 2", "n_resblocks: " + "7" * 5000),
    "space_tau_bigint": yaml.safe_dump(TINY_SPACE) + "acla: {tau: " + "1" * 31 + "}\n",
    "space_tau_1e400": yaml.safe_dump(TINY_SPACE) + "acla: {tau: 1.0e+400}\n",
    "space_dup_keys": yaml.safe_dump(TINY_SPACE) + "keys: [0, 4]\n",
    "space_nested": "backbone: " + "[" * 5000 + "]" * 5000 + "\n",
    "space_nested_map": "backbone: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "space_aliases": "a: &a [x, x]\nb: &b [*a, *a]\n" + "".join(f"c{i}: [*b, *b]\n" for i in range(200)),
    "space_scope_unicode": _space(scopes=["previous\u00b2"]),
    "space_long_site": _space(sites=["body." + "x" * 3000]),
    "space_mids": _space(backbone={"name": "mynets:net", "sites": "body.*, mids.*, tail"}),
    "arch_lr_bigint": yaml.safe_dump(_arch()).replace("steps: 2", "steps: " + "9" * 40),
    "arch_steps_huge": _arch(train__steps=10**15),
    "arch_scope_unicode": _arch(modules={"body.0": {"keys": 2, "scope": "previous\u00b9"}}),
    "darts_w_lr_bigint": yaml.safe_dump(DARTS).replace("steps: 400", "steps: 400, w_lr: " + "3" * 29),
}
MYNETS = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.tail = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        return x + self.tail(self.body(self.head(x)))

def net():
    return Net()
"""

# (id, argv with {placeholders}, substrings of the one stderr line)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # -- spaces
    ("spaces folder", "spaces {tmp}/photos", ("photos", "folder without .yaml")),
    ("spaces missing", "spaces {tmp}/nothing.yaml", ("nothing.yaml", "no such file")),
    ("spaces python tag", "spaces {Y}/space_tag.yaml", ("space_tag.yaml", "invalid YAML")),
    ("spaces os:system", "spaces {Y}/space_evil.yaml", ("space_evil.yaml", "backbone.name", "standard library")),
    ("spaces builtins:eval", "spaces {Y}/space_eval.yaml", ("space_eval.yaml", "backbone.name", "standard library")),
    (
        "spaces user module",
        "spaces {Y}/space_user.yaml",
        ("space_user.yaml", "backbone.name", "--allow-import user_backbones"),
    ),
    ("spaces 1e9 blocks", "spaces {Y}/space_deep.yaml", ("space_deep.yaml", "backbone.kwargs.n_resblocks", "1..1000")),
    ("spaces 1e12 features", "spaces {Y}/space_wide.yaml", ("space_wide.yaml", "backbone.kwargs.n_feats")),
    ("spaces res_scale nan", "spaces {Y}/space_res_scale.yaml", ("space_res_scale.yaml", "backbone.kwargs.res_scale")),
    ("spaces acla tau nan", "spaces {Y}/space_tau.yaml", ("space_tau.yaml", "acla.tau")),
    ("spaces acla kernel inf", "spaces {Y}/space_kernel.yaml", ("space_kernel.yaml", "acla.offset_kernel")),
    ("spaces data kind mapping", "spaces {Y}/space_kind.yaml", ("space_kind.yaml", "data.kind")),
    ("spaces input size 1e9", "spaces {Y}/space_input.yaml", ("space_input.yaml", "eval.input_size")),
    ("spaces bad allow-list", "spaces --allow-import a;b {Y}/space_ok.yaml", ("--allow-import",)),
    # -- strategy presets (search)
    *[
        (f"search {n}", f"search {{Y}}/space_ok.yaml --strategy {{Y}}/{n}.yaml --out {{fresh}}", (f"{n}.yaml", fld))
        for n, fld in [
            ("darts_w_lr_nan", "options.w_lr"),
            ("darts_w_lr_neg", "options.w_lr"),
            ("darts_w_lr_str", "options.w_lr"),
            ("darts_tau_start", "options.tau_start"),
            ("darts_tau_end", "options.tau_end"),
            ("darts_warmup_frac", "options.warmup"),
            ("darts_warmup_neg", "options.warmup"),
            ("darts_warmup_one", "options.warmup"),
            ("darts_warmup_all", "options.warmup"),
            ("darts_gumbel", "options.gumbel"),
            ("darts_penalty", "options.penalty"),
            ("darts_log_every", "options.log_every"),
            ("darts_batch", "options.batch"),
            ("darts_patch_odd", "options.patch"),
            ("darts_grad_clip", "options.grad_clip"),
            ("darts_steps", "options.steps"),
            ("darts_unknown", "options.heads"),
            ("evo_population", "options.population"),
            ("evo_sample_size", "options.sample_size"),
            ("evo_tournament", "options.sample_size"),
            ("evo_population_float", "options.population"),
            ("evo_population_bool", "options.population"),
            ("tpe_startup", "options.n_startup_trials"),
            ("tpe_multivariate", "options.multivariate"),
            ("tpe_candidates", "options.n_ei_candidates"),
            ("sn_batch", "supernet.batch"),
            ("sn_lr", "supernet.lr"),
            ("sn_lr_huge", "supernet.lr"),
            ("sn_steps", "supernet.steps"),
            ("sn_unknown", "supernet.epochs"),
            ("sn_seed", "supernet.seed"),
            ("sn_big_batch", "supernet.batch"),
            ("sn_patch_odd", "supernet.patch"),
            ("proxy_lr", "proxy.lr"),
            ("trials_neg", "trials"),
            ("trials_zero", "trials"),
            ("seed_neg", "seed"),
            ("seed_huge", "seed"),
            ("strat_evil", "strategy"),
            ("strat_unregistered", "strategy"),
            ("strat_unknown", "strategy"),
            ("val_patches", "val.patches"),
            ("objectives", "objectives"),
            ("evaluator", "evaluator"),
            ("strat_tag", "invalid YAML"),
        ]
    ],
    # -- flags and spaces at search time
    *[
        (
            f"search {flag}",
            f"search {{Y}}/space_ok.yaml --strategy {{Y}}/random_ok.yaml --out {{fresh}} {flag}",
            (flag.split()[0],),
        )
        for flag in (
            "--trials -1",
            "--trials 0",
            "--seed 99999999999999999999",
            "--seed -1",
            "--device mps",
            "--device cuda:7",
            "--device tpu",
            "--steps 0",
            "--workers 0",
        )
    ],
    (
        "search memory",
        "search {Y}/space_memory.yaml --strategy {Y}/random_ok.yaml --out {fresh}",
        ("space_memory.yaml", "backbone.kwargs", "GiB"),
    ),
    (
        "search missing data folder",
        "search {Y}/space_nodata.yaml --strategy {Y}/random_ok.yaml --out {fresh}",
        ("space_nodata.yaml", "data.path"),
    ),
    (
        "search 1x1 training image",
        "search {Y}/space_tiny_img.yaml --strategy {Y}/random_ok.yaml --out {fresh}",
        ("a_tiny.png", "supernet.patch"),
    ),
    (
        "pipeline --retrain-steps 0",
        "pipeline {Y}/space_ok.yaml --strategy {Y}/random_ok.yaml --out {fresh} --retrain-steps 0",
        ("--retrain-steps",),
    ),
    (
        "pipeline --device mps",
        "pipeline {Y}/space_ok.yaml --strategy {Y}/random_ok.yaml --out {fresh} --device mps",
        ("--device",),
    ),
    # -- arch files and flags (train)
    *[
        (f"train {flag}", f"train {{Y}}/arch_ok.yaml --out {{fresh}} {flag}", (flag.split()[0],))
        for flag in (
            "--batch 1000000000",
            "--patch 0",
            "--patch 25",
            "--steps 0",
            "--seed -1",
            "--seed 1099511627776",
            "--device mps",
            "--lr nan",
            "--lr 1e38",
            "--val-every -1",
        )
    ],
    *[
        (f"train {n}", f"train {{Y}}/{n}.yaml --out {{fresh}}", (f"{n}.yaml", fld))
        for n, fld in [
            ("arch_lr", "train.lr"),
            ("arch_batch", "train.batch"),
            ("arch_device", "train.device"),
            ("arch_unknown", "train.epochs"),
            ("arch_evil", "standard library"),
            ("arch_memory", "backbone.kwargs"),
            ("arch_nodata", "data.path"),
            ("arch_site", "modules.body.7"),
            ("arch_tag", "invalid YAML"),
            ("space_ok", "search space"),
        ]
    ],
    ("train 1x1 training image", "train {Y}/arch_tiny_img.yaml --out {fresh}", ("a_tiny.png", "train.patch")),
    ("train over a completed run", "train {Y}/arch_ok.yaml --out {done} --batch 3", ("config.yaml", "another config")),
    # -- model files (evaluate, restore, plot)
    *[
        (f"evaluate {n}", f"evaluate {{M}}/{n}.pt", (f"{n}.pt", fld))
        for n, fld in [
            ("no_state_dict", "state_dict"),
            ("version99", "version"),
            ("no_version", "version"),
            ("nan_weights", "state_dict"),
            ("inf_weights", "state_dict"),
            ("a_list", "not an acla-nas model file"),
            ("garbage", "cannot load"),
            ("task_mismatch", "task"),
            ("tensor_names", "state_dict"),
            ("metrics_list", "metrics"),
            ("evil", "standard library"),
            ("arch_list", "arch"),
            ("overflowing", "NaN or infinite values"),
        ]
    ],
    ("evaluate 1x1 image", "evaluate {M}/good.pt --data {tmp}/tiny", ("one.png", "--data", "16x16")),
    ("evaluate missing folder", "evaluate {M}/good.pt --data {tmp}/nowhere", ("--data", "does not exist")),
    ("evaluate float TIFF > 1", "evaluate {M}/good.pt --data {tmp}/tif_range", ("f.tif", "32-bit float", "[0, 1]")),
    ("evaluate float TIFF NaN", "evaluate {M}/good.pt --data {tmp}/tif_nan", ("f.tif", "NaN")),
    ("evaluate RGB float TIFF", "evaluate {M}/good.pt --data {tmp}/tif_rgb", ("rgb.tif", "float TIFF")),
    ("evaluate --tile 3", "evaluate {M}/good.pt --tile 3", ("--tile",)),
    ("evaluate --tile -1", "evaluate {M}/good.pt --tile -1", ("--tile",)),
    ("evaluate --seed -1", "evaluate {M}/good.pt --seed -1", ("--seed",)),
    ("evaluate --device mps", "evaluate {M}/good.pt --device mps", ("--device",)),
    ("evaluate --out txt", "evaluate {M}/good.pt --out {tmp}/x.txt", ("--out",)),
    ("evaluate folder without model", "evaluate {tmp}/photos", ("model.pt", "no such model file")),
    (
        "restore 1x1 --degrade",
        "restore {M}/good.pt {tmp}/one.png {tmp}/out.png --degrade",
        ("one.png", "IN", "too small"),
    ),
    (
        "restore missing out folder",
        "restore {M}/good.pt {tmp}/photo.png {tmp}/newdir/out.png",
        ("newdir", "OUT", "does not exist"),
    ),
    ("restore onto the input", "restore {M}/good.pt {tmp}/photo.png {tmp}/photo.png", ("photo.png", "input")),
    ("restore unknown suffix", "restore {M}/good.pt {tmp}/photo.png {tmp}/out.xyz", ("OUT", ".xyz")),
    ("restore --tile 4", "restore {M}/good.pt {tmp}/photo.png {tmp}/out.png --tile 4", ("--tile",)),
    ("restore --overlap 300", "restore {M}/good.pt {tmp}/photo.png {tmp}/out.png --overlap 300", ("--tile",)),
    ("restore --seed 2^40", "restore {M}/good.pt {tmp}/photo.png {tmp}/out.png --seed 1099511627776", ("--seed",)),
    (
        "restore NaN weights",
        "restore {M}/nan_weights.pt {tmp}/photo.png {tmp}/out.png",
        ("nan_weights.pt", "state_dict"),
    ),
    (
        "restore NaN output",
        "restore {M}/overflowing.pt {tmp}/photo.png {tmp}/out.png",
        ("overflowing.pt", "nothing was written"),
    ),
    ("restore version 99", "restore {M}/version99.pt {tmp}/photo.png {tmp}/out.png", ("version99.pt", "version")),
    ("restore missing input", "restore {M}/good.pt {tmp}/none.png {tmp}/out.png", ("none.png", "not found")),
    (
        "restore corrupt input",
        "restore {M}/good.pt {tmp}/corrupt.png {tmp}/out.png",
        ("corrupt.png", "cannot read image"),
    ),
    ("restore float TIFF > 1", "restore {M}/good.pt {tmp}/tif_range/f.tif {tmp}/out.png", ("f.tif", "32-bit float")),
    (
        "plot --checkpoint missing",
        "plot {search_done} --out {fresh} --checkpoint {tmp}/none.pt",
        ("none.pt", "--checkpoint"),
    ),
    (
        "plot --checkpoint version 99",
        "plot {search_done} --out {fresh} --checkpoint {M}/version99.pt",
        ("version99.pt", "version"),
    ),
    ("plot --format gif", "plot {search_done} --out {fresh} --format gif", ("--format",)),
    ("plot --top-k 0", "plot {search_done} --out {fresh} --top-k 0", ("--top-k",)),
    ("plot missing run", "plot {tmp}/none --out {fresh}", ("none", "not found")),
    ("report --top-k 0", "report {search_done} --out {fresh}/r.html --top-k 0", ("--top-k",)),
    # -- issue 23: hostile numbers, YAML structure, output paths, exotic tensors, never overwrite
    ("spaces max_flops 1e999999999", "spaces {Y}/space_flops_exp.yaml", ("space_flops_exp.yaml", "max_flops")),
    ("spaces max_flops 400 digits", "spaces {Y}/space_flops_bigint.yaml", ("space_flops_bigint.yaml", "digits")),
    ("spaces int of 5000 digits", "spaces {Y}/space_int_5000.yaml", ("space_int_5000.yaml", "digits")),
    ("spaces tau 31-digit int", "spaces {Y}/space_tau_bigint.yaml", ("space_tau_bigint.yaml", "digits")),
    ("spaces tau 1e400", "spaces {Y}/space_tau_1e400.yaml", ("space_tau_1e400.yaml", "acla.tau")),
    ("spaces duplicate key", "spaces {Y}/space_dup_keys.yaml", ("space_dup_keys.yaml", "duplicate key 'keys'")),
    ("spaces nested 5000 deep", "spaces {Y}/space_nested.yaml", ("space_nested.yaml", "nested")),
    ("spaces nested maps", "spaces {Y}/space_nested_map.yaml", ("space_nested_map.yaml", "nested")),
    ("spaces alias bomb", "spaces {Y}/space_aliases.yaml", ("space_aliases.yaml", "aliases")),
    ("spaces scope previous\u00b2", "spaces {Y}/space_scope_unicode.yaml", ("space_scope_unicode.yaml", "scopes")),
    ("spaces 3000-char site", "spaces {Y}/space_long_site.yaml", ("space_long_site.yaml", "sites")),
    (
        "spaces pattern part matches nothing",
        "spaces {Y}/space_mids.yaml --allow-import mynets",
        ("space_mids.yaml", "backbone.sites", "'mids.*'", "closest"),
    ),
    ("train steps 40 digits", "train {Y}/arch_lr_bigint.yaml --out {fresh}", ("arch_lr_bigint.yaml", "digits")),
    ("train steps 1e15", "train {Y}/arch_steps_huge.yaml --out {fresh}", ("arch_steps_huge.yaml", "train.steps")),
    ("train scope previous\u00b9", "train {Y}/arch_scope_unicode.yaml --out {fresh}", ("arch_scope_unicode.yaml",)),
    (
        "search w_lr 29-digit int",
        "search {Y}/space_ok.yaml --strategy {Y}/darts_w_lr_bigint.yaml --out {fresh}",
        ("darts_w_lr_bigint.yaml", "w_lr"),
    ),
    (
        "search --workers 100000",
        "search {Y}/space_ok.yaml --strategy {Y}/random_ok.yaml --out {fresh} --workers 100000",
        ("--workers", "at most"),
    ),
    (
        "search --out is a file",
        "search {Y}/space_ok.yaml --strategy {Y}/random_ok.yaml --out {tmp}/photo.png",
        ("photo.png", "cannot write"),
    ),
    ("train --out is a file", "train {Y}/arch_ok.yaml --out {tmp}/photo.png", ("photo.png", "is a file")),
    ("train --out below a file", "train {Y}/arch_ok.yaml --out {tmp}/photo.png/run", ("photo.png", "below the file")),
    (
        "train --out holds inherited weights",
        "train {Y}/arch_ok.yaml --out {tmp}/exported",
        ("exported", "model.pt", "--overwrite"),
    ),
    ("export over another export", "export {search_done} --out {tmp}/other_export", ("best", "--overwrite")),
    ("restore OUT exists", "restore {M}/good.pt {tmp}/photo.png {tmp}/existing.png", ("existing.png", "--overwrite")),
    ("restore OUT is a folder", "restore {M}/good.pt {tmp}/photo.png {tmp}/photos", ("photos", "folder")),
    ("plot over foreign figures", "plot {search_done} --out {tmp}/figs", ("figs", "fig.png", "--overwrite")),
    ("report --out exists", "report {search_done} --out {tmp}/existing.html", ("existing.html", "--overwrite")),
    ("report --out a folder", "report {search_done} --out {tmp}/photos", ("photos", "folder")),
    ("evaluate --out exists", "evaluate {M}/good.pt --out {tmp}/existing.csv", ("existing.csv", "--overwrite")),
    *[
        (f"evaluate {n}", f"evaluate {{M}}/{n}.pt", (f"{n}.pt", *need))
        for n, need in [
            ("meta_weights", ("state_dict", "meta")),
            ("sparse_weights", ("state_dict", "sparse")),
            ("complex_weights", ("state_dict", "complex")),
            ("quantized_weights", ()),
            ("legacy_pickle_nan", ("state_dict", "NaN")),
        ]
    ],
    ("restore meta weights", "restore {M}/meta_weights.pt {tmp}/photo.png {tmp}/out.png", ("meta",)),
    ("plot --checkpoint sparse", "plot {search_done} --out {fresh} --checkpoint {M}/sparse_weights.pt", ("sparse",)),
    # -- export
    ("export --input-size 0 0", "export {search_done} --out {fresh} --input-size 0 0", ("--input-size",)),
    ("export --input-size 5000 5000", "export {search_done} --out {fresh} --input-size 5000 5000", ("--input-size",)),
    ("export --top 0", "export {search_done} --out {fresh} --top 0", ("--top",)),
    ("export missing run", "export {tmp}/none --out {fresh}", ("none", "no such run directory")),
    ("export not a run", "export {tmp}/photos --out {fresh}", ("photos", "config.yaml")),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _models(folder: Path) -> None:
    """A good model file and malformed variants (all load with weights_only=True)."""
    arch = Arch.from_dict(TINY_ARCH)
    torch.manual_seed(0)
    model = build(arch)
    save_model_file(folder / "good.pt", model, arch.to_dict(), arch.task)
    good = torch.load(folder / "good.pt", weights_only=True)

    def variant(name: str, **changes) -> None:
        payload = {**good, **changes}
        for key in [k for k, v in changes.items() if v is None]:
            payload.pop(key)
        torch.save(payload, folder / f"{name}.pt")

    sd = good["state_dict"]
    variant("no_state_dict", state_dict=None)
    variant("version99", version=99)
    variant("no_version", version=None)
    variant("nan_weights", state_dict={k: v * float("nan") if v.is_floating_point() else v for k, v in sd.items()})
    variant(
        "inf_weights", state_dict={**sd, "backbone.head.bias": torch.full_like(sd["backbone.head.bias"], float("inf"))}
    )
    variant("task_mismatch", task={"name": "sr", "scale": 4})
    variant("tensor_names", state_dict={**sd, "backbone.head.weight": [1.0, 2.0]})
    variant("metrics_list", metrics=[1, 2])
    variant("arch_list", arch=["edsr"])
    variant(
        "evil",
        arch={**good["arch"], "backbone": {"name": "os:system", "kwargs": {"command": "touch MARKER"}, "sites": "x"}},
    )
    # finite weights whose activations overflow to inf/NaN on any image
    variant(
        "overflowing", state_dict={k: v * 1e30 if v.is_floating_point() and v.ndim > 1 else v for k, v in sd.items()}
    )
    # exotic tensors (issue 23): each loads with weights_only=True and must be refused in one line
    key = "backbone.head.weight"
    variant("meta_weights", state_dict={**sd, key: torch.empty_like(sd[key], device="meta")})
    variant("sparse_weights", state_dict={**sd, "backbone.head.bias": sd["backbone.head.bias"].to_sparse()})
    variant("complex_weights", state_dict={**sd, key: sd[key].to(torch.complex64)})
    variant("quantized_weights", state_dict={**sd, key: torch.quantize_per_tensor(sd[key], 0.1, 0, torch.qint8)})
    nan_sd = {k: v * float("nan") if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({**good, "state_dict": nan_sd}, folder / "legacy_pickle_nan.pt", _use_new_zipfile_serialization=False)
    torch.save(["not", "a", "model"], folder / "a_list.pt")
    (folder / "garbage.pt").write_bytes(b"\x00garbage" * 50)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("malformed")
    photos = root / "photos"
    photos.mkdir()
    for i, (name, box) in enumerate(
        [
            ("astronaut.png", (0, 0, 64, 64)),
            ("coffee.png", (100, 100, 164, 164)),
            ("chelsea.png", (150, 80, 214, 144)),
            ("rocket.jpg", (300, 200, 364, 264)),
            ("astronaut.png", (200, 150, 264, 214)),
        ]
    ):
        Image.open(embedded_dir() / name).convert("RGB").crop(box).save(photos / f"p{i}.png")
    shutil.copy(photos / "p0.png", root / "photo.png")
    shutil.copytree(photos, root / "mixed")
    for folder in (root / "mixed", root / "tiny"):  # a_tiny.png sorts first: in the training split
        folder.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "mixed" / "a_tiny.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "tiny" / "one.png")
    shutil.copy(root / "tiny" / "one.png", root / "one.png")
    for name, arr in (
        ("tif_range", np.full((32, 32), 7.5, np.float32)),
        ("tif_nan", np.full((32, 32), np.nan, np.float32)),
    ):
        (root / name).mkdir()
        Image.fromarray(arr).save(root / name / "f.tif")
    (root / "tif_rgb").mkdir()
    tifffile = pytest.importorskip("tifffile")  # ships with scikit-image
    tifffile.imwrite(root / "tif_rgb" / "rgb.tif", np.random.rand(32, 32, 3).astype(np.float32))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    models = root / "models"
    models.mkdir()
    _models(models)
    ydir = root / "yaml"
    ydir.mkdir()
    marker = root / "MARKER"
    for name, doc in YAML_FILES.items():
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        (ydir / f"{name}.yaml").write_text(text.replace("{marker}", str(marker)).replace("{tmp}", str(root)))
    done = root / "done"  # a completed training run: never to be touched by a failing command
    done.mkdir()
    (done / "config.yaml").write_text(yaml.safe_dump({"arch": TINY_ARCH, "train": {"batch": 2}}))
    (done / "metrics.json").write_text('{"completed": true}\n')
    shutil.copy(models / "good.pt", done / "model.pt")
    search_done = root / "search_done"  # a completed search run (the reference run's tables)
    search_done.mkdir()
    for name in ("config.yaml", "trajectory.csv", "best_arch.yaml", "sites.csv"):
        shutil.copy(ROOT / "results" / "edsr_x2_demo_evolution" / name, search_done / name)
    (ydir / "mynets.py").write_text(MYNETS)
    exported = root / "exported"  # an export folder: inherited weights, no config.yaml
    exported.mkdir()
    shutil.copy(models / "good.pt", exported / "model.pt")
    (exported / "arch.yaml").write_text(yaml.safe_dump(TINY_ARCH))
    other = root / "other_export" / "best"  # written by an export of another run
    other.mkdir(parents=True)
    (other / "arch.yaml").write_text(yaml.safe_dump({**TINY_ARCH, "provenance": {"run": "runs/another"}}))
    shutil.copy(models / "good.pt", other / "model.pt")
    (root / "figs").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "figs" / "fig.png")
    shutil.copy(root / "photo.png", root / "existing.png")
    (root / "existing.html").write_text("<html>someone's report</html>")
    (root / "existing.csv").write_text("dataset,psnr\nmine,30.0\n")
    return {
        "tmp": root,
        "Y": ydir,
        "M": models,
        "done": done,
        "search_done": search_done,
        "fresh": root / "fresh",
        "marker": marker,
    }


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line_exit_2(env: dict[str, Path], capsys, argv: str, expected: tuple[str, ...]) -> None:
    IMAGE_CACHE.clear()
    before = _snapshot(env["tmp"])
    code = main([a.format(**{k: str(v) for k, v in env.items()}) for a in argv.split()])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("acla-nas ")
    assert len(lines[0]) <= 700, f"a {len(lines[0])}-character line"
    for text in expected:
        assert text in lines[0], lines[0]
    assert _snapshot(env["tmp"]) == before  # nothing written, nothing overwritten
    assert not env["fresh"].exists() and not env["marker"].exists()


def test_table_covers_every_verb() -> None:
    verbs = {c[1].split()[0] for c in CASES}
    assert verbs == {"spaces", "search", "pipeline", "train", "evaluate", "restore", "plot", "report", "export"}
    assert len(CASES) >= 100


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["spaces", "{Y}/space_evil.yaml"], "standard library"),
        (
            ["search", "{Y}/space_ok.yaml", "--strategy", "{Y}/random_ok.yaml", "--out", "{fresh}", "--device", "mps"],
            "--device",
        ),
        (["restore", "{M}/good.pt", "{tmp}/photo.png", "{tmp}/newdir/out.png"], "OUT"),
    ],
)
def test_exit_code_end_to_end(env: dict[str, Path], argv: list[str], needle: str) -> None:
    """The real process: exit status 2 and one line, for the shell and for CI scripts."""
    args = [a.format(**{k: str(v) for k, v in env.items()}) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "acla_nas", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not env["marker"].exists()


def test_non_finite_loss_names_the_file(env: dict[str, Path], capsys, monkeypatch) -> None:
    """A loss that becomes NaN: the preset (search) or arch file (train) and its section, named.
    The L1 loss is made NaN so that the real training loops detect it at their first step."""
    monkeypatch.setattr("acla_nas.train.trainer.F.l1_loss", lambda out, hr: (out - hr).abs().mean() * float("nan"))
    strat = env["Y"] / "random_ok.yaml"
    assert (
        main(
            [
                "search",
                str(env["Y"] / "space_ok.yaml"),
                "--strategy",
                str(strat),
                "--out",
                str(env["tmp"] / "nan_search"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{strat}: supernet:" in err[0] and "Lower supernet.lr" in err[0], err
    arch = env["Y"] / "arch_ok.yaml"
    assert main(["train", str(arch), "--out", str(env["tmp"] / "nan_train")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{arch}: train:" in err[0] and "Lower train.lr" in err[0], err
    assert not (env["tmp"] / "nan_train" / "model.pt").exists()
