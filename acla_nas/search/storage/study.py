"""One Optuna study per run: named after the run directory, pinned by its attributes.

The study name is the run directory's name, so another run pointed at the same database gets a
study of its own, while the machines of one multi-machine run (the same ``--out`` name and the
same files on each) share one. The study's user attributes record the space, strategy,
evaluator, seed, objectives and a hash of everything that defines the search (acla-nas version,
space, strategy preset without its trial budget, which may grow). Reopening it with anything else
is a one-line error, raised when the storage is opened: before any data is loaded or any
network trained. A run directory's own journal may hold a study of another name (a renamed
directory, or a run made before studies were named after runs); that one study is adopted.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from acla_nas.core.errors import UserError
from acla_nas.search.storage.backend import DEFAULT_JOURNAL, StorageSpec, open_storage, parse_storage

HASH_ATTR = "config_hash"
CHECKED = ("space", "strategy", "evaluator", "seed", "objectives", "acla_nas")


def study_name(run_dir: str | Path) -> str:
    """The study of a run: the run directory's name."""
    return Path(run_dir).resolve().name


def identity(config: dict) -> dict:
    """What defines the search (not where or how fast it runs, nor how many trials it gets)."""
    strategy = {k: v for k, v in config["strategy"].items() if k != "trials"}
    return {"acla_nas": config.get("acla_nas"), "space": config["space"], "strategy": strategy}


def config_hash(config: dict) -> str:
    text = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def study_attrs(config: dict) -> dict[str, Any]:
    s = config["strategy"]
    return {
        "space": config["space"],
        "strategy": s["strategy"],
        "evaluator": s.get("evaluator"),
        "seed": s.get("seed"),
        "objectives": list(s.get("objectives", ["psnr"])),
        "acla_nas": config.get("acla_nas"),
        HASH_ATTR: config_hash(config),
    }


def directions(objectives: Any) -> list[str]:
    return ["maximize"] + (["minimize"] if len(list(objectives)) > 1 else [])


def metric_names(objectives: Any) -> list[str]:
    """What the study's values are: PSNR in dB, then multiply-adds (what ``flops`` counts)."""
    return ["psnr"] + (["macs"] if len(list(objectives)) > 1 else [])


@dataclass
class RunStudy:
    """An opened and checked study: storage, name, and how it was given."""

    spec: StorageSpec
    name: str
    storage: optuna.storages.BaseStorage

    def load(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage, sampler=sampler)


def _describe(key: str, there: Any, here: Any) -> str:
    if key == "space":
        return "space"
    return f"{key}: {there!r} there, {here!r} here"


def _check(study: optuna.Study, attrs: dict, where: str) -> None:
    stored = study.user_attrs
    if stored.get(HASH_ATTR) == attrs[HASH_ATTR]:
        return
    diff = [_describe(k, stored.get(k), attrs[k]) for k in CHECKED if stored.get(k) != attrs[k]] or ["strategy options"]
    raise UserError(
        f"the study {study.study_name!r} belongs to another search (differs in: {'; '.join(diff)}); "
        "use the same settings to join it, or another --out name for a new study",
        file=where,
    )


def _stamp(study: optuna.Study, attrs: dict, objectives: Any) -> None:
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(objectives))


def open_run_study(
    run_dir: str | Path, config: dict, spec: StorageSpec | None = None, create: bool = True
) -> RunStudy | None:
    """Open (or create) the study of this run and check it is this search; one line otherwise.
    With ``create=False`` a study that does not exist yet is left uncreated (returns None): a
    search checks its storage before it claims the run directory, and creates its study after."""
    spec = spec or parse_storage(config.get("storage"), run_dir)
    storage = open_storage(spec)
    objectives = config["strategy"].get("objectives", ["psnr"])
    attrs = study_attrs(config)
    name = study_name(run_dir)
    names = optuna.get_all_study_names(storage)
    own_journal = (
        spec.kind == "journal" and Path(spec.location).resolve() == (Path(run_dir) / DEFAULT_JOURNAL).resolve()
    )
    if name not in names and own_journal and len(names) == 1:
        name = names[0]  # this run directory's journal, made before it was renamed or named
    if name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        if HASH_ATTR not in study.user_attrs:  # a study of an older acla-nas (config.yaml already matched)
            if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions(objectives)]:
                raise UserError(f"the study {name!r} has other objectives than {list(objectives)}", file=spec.shown)
            _stamp(study, attrs, objectives)
        _check(study, attrs, spec.shown)
    else:
        if not create:
            return None
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions(objectives), load_if_exists=True
        )
        if HASH_ATTR not in study.user_attrs:
            _stamp(study, attrs, objectives)
        _check(optuna.load_study(study_name=name, storage=storage), attrs, spec.shown)  # a concurrent creator
    budget = int(config["strategy"].get("trials", 0))
    if budget > int(study.user_attrs.get("trials", 0)):
        study.set_user_attr("trials", budget)
    return RunStudy(spec, name, storage)


def load_run_study(run_dir: str | Path, storage: str | None = None) -> optuna.Study:
    """The study of a finished or running search, for analysis (``storage``: as given to search)."""
    from acla_nas.nn.arch import read_yaml

    run_dir = Path(run_dir)
    config = read_yaml(run_dir / "config.yaml")
    if not isinstance(config, dict):
        raise UserError("not a search run directory", file=str(run_dir / "config.yaml"))
    spec = parse_storage(storage if storage is not None else config.get("storage"), run_dir)
    opened = open_run_study(run_dir, config, spec, create=False)
    if opened is None:
        raise UserError(
            f"no study of this run in {spec.shown} (give --storage as the search had it)", file=str(run_dir)
        )
    return opened.load()


__all__ = [
    "RunStudy",
    "config_hash",
    "directions",
    "load_run_study",
    "metric_names",
    "open_run_study",
    "study_attrs",
    "study_name",
]
