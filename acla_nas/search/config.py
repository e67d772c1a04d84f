"""The typed run configuration, built once at the command-line edge.

:class:`RunConfig` holds the parsed space (parsed once per run), the checked strategy preset with
the command-line overrides applied, the strategy class (resolved once, under the trust model),
device, steps, seed, storage and workers, and the :class:`~acla_nas.runs.run_dir.RunDir` that owns
every path. :meth:`RunConfig.check_same_run` is the one "is this the same run?" check: a run
directory holding another configuration is refused rather than mixed in. ``config.yaml`` is
:meth:`RunConfig.to_dict`, unchanged in format.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acla_nas.core.checks import check_int, check_seed
from acla_nas.core.errors import UserError
from acla_nas.core.trust import import_dirs, importable_from
from acla_nas.core.version import __version__
from acla_nas.nn.arch import read_yaml
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.same_run import refuse_other_run
from acla_nas.search.flags import SearchFlags

HEAD_KEYS = ("strategy", "evaluator", "trials", "objectives", "options")  # then the evaluators' sections
TAIL_KEYS = ("val", "seed")
RUNTIME_KEYS = (
    "device",
    "storage",
    "workers",
    "machine",
    "resumed_on",
    "overrides",
)  # may change between sessions (overrides: their values are in space / strategy)
VAL_LIMITS = {"patches": 10_000, "patch": 4096}  # validation patches are held in memory at once


def evaluator_sections() -> tuple[str, ...]:
    """The preset sections that configure an evaluator's training (``supernet``, ``proxy``, ...)."""
    from acla_nas.search.evaluators import EVALUATORS

    return tuple(dict.fromkeys(c.SECTION for c in EVALUATORS.items().values() if getattr(c, "SECTION", None)))


def preset_keys() -> tuple[str, ...]:
    """Top-level keys of a strategy preset."""
    return (*HEAD_KEYS, *evaluator_sections(), *TAIL_KEYS)


def load_strategy_file(path: str | Path) -> dict:
    """Read and check a strategy preset (strategies/*.yaml)."""
    return parse_strategy(read_yaml(path), str(path))


def parse_strategy(data: Any, f: str | None = None) -> dict:
    """Check a strategy preset mapping read from file ``f``; returns it with defaults filled in."""
    return _parse_strategy(data, f)[0]


def _parse_strategy(data: Any, f: str | None) -> tuple[dict, type]:
    """The checked preset and its strategy class (resolved here, once)."""
    from acla_nas.search.evaluators import EVALUATORS
    from acla_nas.search.strategies.base import strategy_class

    keys = preset_keys()
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping at the top level, got {type(data).__name__}", file=f)
    for key in data:
        if key not in keys:
            raise UserError(f"unknown key (expected {', '.join(keys)})", file=f, field=str(key))
    if not isinstance(data.get("strategy"), str):
        raise UserError(
            "expected a strategy name (random, tpe, evolution, darts) or package.module:Class", file=f, field="strategy"
        )
    cls = strategy_class(data["strategy"], f)
    ev = data.setdefault("evaluator", "oneshot")
    if not isinstance(ev, str) or ev not in EVALUATORS.items():
        raise UserError(f"expected {' or '.join(EVALUATORS.items())}, got {ev!r}", file=f, field="evaluator")
    check_int(data.setdefault("trials", 20), "trials", 1, file=f)
    obj = data.setdefault("objectives", ["psnr"])
    if isinstance(obj, str):
        obj = data["objectives"] = [obj]
    if obj not in (["psnr"], ["psnr", "flops"]):
        raise UserError(f"expected [psnr] or [psnr, flops], got {obj!r}", file=f, field="objectives")
    trains = {c.SECTION for c in EVALUATORS.items().values() if c.SECTION and c.DEFAULTS}  # recipes with defaults
    chosen = EVALUATORS.items()[ev].SECTION
    for key in ("options", *evaluator_sections(), "val"):
        if key not in data and key not in trains and key != chosen and key not in ("options", "val"):
            continue  # e.g. no table: section unless evaluator: table (config.yaml stays as it was)
        if data.setdefault(key, {}) is None:
            data[key] = {}
        if not isinstance(data[key], dict):
            raise UserError("expected a mapping", file=f, field=key)
    if "seed" in data:
        check_seed(data["seed"], "seed", f)
    try:
        cls.check_options(data["options"])
    except UserError as exc:
        raise exc.at(file=f) from None
    for ev_cls in EVALUATORS.items().values():
        if ev_cls.SECTION and ev_cls.SECTION in data:
            ev_cls.check_section(data[ev_cls.SECTION], f)
    for key in data["val"]:
        if key not in ("patches", "patch"):
            raise UserError("unknown key (expected patches, patch)", file=f, field=f"val.{key}")
        check_int(data["val"][key], f"val.{key}", 1, VAL_LIMITS[key], f)
    return data, cls


def _comparable(config: dict) -> dict:
    """The parts of a config that define the run (the trial budget may grow: more trials extend it)."""
    out = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    if isinstance(out.get("strategy"), dict):
        out["strategy"] = {k: v for k, v in out["strategy"].items() if k != "trials"}
    return out


@dataclass
class RunConfig:
    """One search run, checked: what every stage below the command line receives, and what crosses
    whole (pickled) to ``--workers`` processes and ``--nproc`` / torchrun ranks, so no other
    process reads the space file or the preset again."""

    space_file: str
    space: Any  # acla_nas.space.SearchSpace, parsed once
    strategy_file: str
    preset: dict  # the checked preset with the overrides applied: config.yaml's ``strategy``
    strategy: type  # the Strategy subclass, resolved once
    run: RunDir
    flags: SearchFlags = field(default_factory=SearchFlags)  # the command-line overrides, checked
    machine: dict = field(
        default_factory=dict
    )  # machine / resumed_on entries of config.yaml (acla_nas.runtime.machine)

    @property
    def seed(self) -> int:
        return int(self.preset["seed"])

    @property
    def trials(self) -> int:
        return int(self.preset["trials"])

    @property
    def device(self) -> str:
        """``--device`` as given (config.yaml's ``device``); :attr:`SearchFlags.target` is it resolved."""
        return self.flags.device or "auto"

    @property
    def storage(self) -> str | None:
        return self.flags.storage  # the storage URL as given (None: the run's own journal)

    @property
    def workers(self) -> int:
        return self.flags.workers

    @property
    def steps(self) -> int | None:
        return self.flags.steps  # already applied to the preset (the one place: from_files)

    @property
    def overrides(self) -> list[str]:
        return list(self.flags.overrides)  # --set KEY=VALUE, as given (config.yaml; applied by from_files)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """The run configuration of a command line declared by :func:`~acla_nas.search.flags.add_search_flags`."""
        return cls.from_files(args.space, args.strategy, args.out, SearchFlags.from_args(args))

    @classmethod
    def from_files(
        cls,
        space_file: str | Path,
        strategy_file: str | Path,
        out: str | Path | RunDir,
        flags: SearchFlags | None = None,
        **overrides: Any,
    ) -> RunConfig:
        """Flags first, then the space and the preset (with the ``--set`` overrides, routed by
        their top-level key), then the run directory's stored config.
        ``overrides`` (library use) are the :class:`SearchFlags` fields as keywords."""
        from acla_nas.core.overrides import apply_overrides, naming_overrides, parse_overrides, route_overrides
        from acla_nas.space import SearchSpace
        from acla_nas.space.schema import TOP_KEYS

        if flags is None:
            flags = SearchFlags(**overrides)
        elif overrides:
            raise TypeError("pass the SearchFlags or their fields as keywords, not both")
        sets = parse_overrides(flags.overrides)  # --set, routed to the space or the preset by top-level key
        routed = route_overrides(sets, {"space": TOP_KEYS, "strategy preset": preset_keys()})
        with naming_overrides(sets):
            space_data = apply_overrides(read_yaml(space_file), routed["space"], str(space_file))
            space = SearchSpace.from_dict(space_data, file=str(space_file))
            preset_data = apply_overrides(read_yaml(strategy_file), routed["strategy preset"], str(strategy_file))
            preset, strategy = _parse_strategy(preset_data, str(strategy_file))
        if flags.trials is not None:
            preset["trials"] = flags.trials
        if flags.steps is not None:  # one knob for quick runs: the training length of whatever the strategy trains
            try:
                preset["options"] = strategy.with_steps(preset["options"], flags.steps)
            except UserError as exc:  # e.g. an integer warm-up no longer shorter than --steps
                raise exc.at(file=str(strategy_file)) from None
            from acla_nas.search.evaluators import EVALUATORS

            for ev_cls in EVALUATORS.items().values():  # the training recipes (not e.g. a table: section)
                if ev_cls.SECTION in preset and "steps" in ev_cls.DEFAULTS:
                    preset[ev_cls.SECTION]["steps"] = flags.steps
        if flags.seed is not None:
            preset["seed"] = flags.seed
        preset.setdefault("seed", 0)
        config = cls(str(space_file), space, str(strategy_file), preset, strategy, RunDir(out), flags)
        from acla_nas.runtime.machine import keep_first_machine, machine_info

        config.machine = {"machine": machine_info(str(flags.target))}
        config.check_same_run()
        stored = read_yaml(config.run.config) if config.run.config.is_file() else None
        if isinstance(stored, dict):
            config.machine = keep_first_machine(stored, config.machine["machine"])
        return config

    def __reduce__(self) -> tuple:
        """Pickled with the folders its user modules (a backbone or strategy class next to the
        space file or preset) were imported from, which another process puts on ``sys.path``
        while it unpickles; the space and the strategy are not parsed or resolved again there."""
        state = pickle.dumps(self.__dict__)
        return (_unpickle, (type(self), import_dirs([self.space_file, self.strategy_file]), state))

    def to_dict(self) -> dict:
        """``config.yaml``: everything needed to reproduce the run (no storage password)."""
        from acla_nas.search.storage.backend import parse_storage

        return {
            "acla_nas": __version__,
            "space_file": self.space_file,
            "space": self.space.to_dict(),
            "strategy_file": self.strategy_file,
            "strategy": self.preset,
            "device": self.device,
            "storage": None if self.storage is None else parse_storage(self.storage, self.run.path).shown,
            "workers": self.workers,
            **({"overrides": list(self.overrides)} if self.overrides else {}),  # already in space / strategy
            **self.machine,  # what reproduces bit for bit: results/README.md
        }

    def check_same_run(self) -> None:
        """Refuse a run directory that holds a search with another configuration."""
        path = self.run.config
        if path.is_file():
            stored = read_yaml(path)
            if isinstance(stored, dict):
                refuse_other_run(
                    _comparable(stored),
                    _comparable(self.to_dict()),
                    path,
                    "this run directory holds a search with another configuration",
                )


def _unpickle(cls: type, dirs: list[str], state: bytes) -> Any:
    """A :class:`RunConfig` in another process (see :meth:`RunConfig.__reduce__`)."""
    obj = cls.__new__(cls)
    with importable_from(dirs):
        obj.__dict__.update(pickle.loads(state))
    return obj


def load_run_config(run: str | Path | RunDir) -> tuple[dict, Any]:
    """A finished or running search's ``config.yaml`` and its space (rebuilt from the stored
    copy, not from the space file, which may have changed since)."""
    from acla_nas.space import SearchSpace

    run = RunDir(run)
    if not run.path.is_dir():
        raise UserError("no such run directory", file=str(run))
    if not run.config.is_file():
        raise UserError("not a search run directory (no config.yaml); run `acla-nas search` first", file=str(run))
    config = read_yaml(run.config)
    if not isinstance(config, dict) or "space" not in config:
        raise UserError("config.yaml has no space section", file=str(run.config), field="space")
    return config, SearchSpace.from_dict(config["space"], file=str(run.config))


__all__ = ["RunConfig", "SearchFlags", "load_run_config", "load_strategy_file", "parse_strategy"]
