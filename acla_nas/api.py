"""The Python API: the verbs of the command line as functions for notebooks and scripts.

``import acla_nas`` re-exports :func:`run_search`, :func:`export_run`, :func:`train_arch` and
:func:`evaluate` (docs/api.md). They take what a notebook holds -- a dict, a
:class:`~acla_nas.space.SearchSpace` or an :class:`~acla_nas.nn.arch.Arch` as well as a file path,
and backbone factories defined in the notebook -- and return dataclasses (the Optuna study, the
best :class:`~acla_nas.nn.arch.Arch`, paths, metrics as pandas DataFrames).

Why these names and not ``acla_nas.search`` / ``export`` / ``train``: those are sub-packages, and
importing one of their modules rebinds the package attribute to the module, so a function of that
name would silently disappear. Everything heavy is imported inside the functions: importing
``acla_nas`` stays light and changes no logging (Optuna's INFO lines are quieted during a call
only, :func:`acla_nas.core.quiet.quiet_logger`).

Trust rules are unchanged: files still name user code only under ``--allow-import`` /
:func:`acla_nas.core.trust.allow_imports`; a factory passed in ``backbones`` is code the caller
already runs, registered under its name for the call and forgotten after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acla_nas.core.errors import UserError

Backbones = Mapping[str, Callable[..., Any]] | None


@dataclass
class SearchRun:
    """What :func:`run_search` returns."""

    run_dir: Path
    best_arch: Any  # acla_nas.nn.arch.Arch
    scores: dict  # psnr, flops, params of the best architecture (validation)
    seconds: float  # search time of all sessions of this run (a resumed run: cumulative)
    session_seconds: float  # this call's wall time
    trajectory: Any  # pandas.DataFrame: one row per trial (trajectory.csv)
    study: Any = None  # optuna.Study of multi-trial Optuna strategies (None for DARTS / NNI)
    paths: dict[str, Path] = field(default_factory=dict)  # config, trajectory, best_arch, log, ...


@dataclass
class TrainRun:
    """What :func:`train_arch` returns."""

    run_dir: Path
    model_path: Path  # model.pt: what evaluate and restore read
    metrics: dict  # metrics.json (validation, test, steps)
    history: Any  # pandas.DataFrame: the validation points (step, loss, psnr, ...)


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: one row per image and one per data set."""

    per_image: Any  # pandas.DataFrame: dataset, image, psnr, ssim, floor_psnr, floor_ssim
    summary: Any  # pandas.DataFrame: dataset, n, psnr, ssim, floor_psnr, floor_ssim
    task: str  # e.g. "SR x2 (Y channel, border 2)"


def registered_backbones(backbones: Backbones) -> Any:
    """The caller's factories known by name for a ``with`` block
    (:func:`acla_nas.nn.backbones.registry.caller_backbones`)."""
    from acla_nas.nn.backbones.registry import caller_backbones

    return caller_backbones(backbones)


def _yaml_input(value: Any, out: Path, name: str, what: str) -> str:
    """A path as given; a dict (or an object with ``to_dict``) written to ``out/name`` so the
    run directory holds the file its config.yaml names (a different one there is refused)."""
    import yaml

    from acla_nas.core.atomic import write_text_atomic

    if isinstance(value, str | Path):
        return str(value)
    data = value.to_dict() if hasattr(value, "to_dict") else value
    if not isinstance(data, dict):
        raise UserError(f"expected a file path, a dict or a {what} object, got {type(value).__name__}", field=what)
    text = yaml.safe_dump(data, sort_keys=False)
    path = out / name
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise UserError(f"holds another {what}; use another output directory", file=str(path))
    out.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        write_text_atomic(path, text)
    return str(path)


def _strategy_input(strategy: Any, out: Path) -> str:
    """A preset path, a dict, or the name of a shipped preset (``random``, ``tpe``, ...)."""
    if isinstance(strategy, str) and "/" not in strategy and not strategy.endswith((".yaml", ".yml")):
        shipped = Path(__file__).resolve().parents[1] / "strategies" / f"{strategy}.yaml"
        if shipped.is_file():
            return str(shipped)
    return _yaml_input(strategy, out, "strategy.yaml", "strategy preset")


def run_search(
    space: str | Path | Mapping | Any,
    strategy: str | Path | Mapping,
    out: str | Path,
    *,
    backbones: Backbones = None,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    progress: bool = False,
    tensorboard: bool = False,
) -> SearchRun:
    """``acla-nas search``: start or resume the search of ``space`` with ``strategy`` in ``out``.

    ``space``: a space file, a dict in its format, or a SearchSpace; ``strategy``: a preset file,
    a dict, or a shipped preset's name (``random``, ``tpe``, ``evolution``, ``darts``);
    ``overrides``: ``["keys=[0, 4]", "supernet.steps=200"]`` as ``--set``; ``backbones``:
    ``{"mynet": factory}`` for a space whose ``backbone.name`` is ``mynet``."""
    import time

    from acla_nas.core.quiet import quiet_logger
    from acla_nas.runs.run_dir import RunDir
    from acla_nas.runs.trajectory import load_trajectory
    from acla_nas.search.run import run_search as _run

    if backbones and workers != 1:
        raise UserError("backbones defined in the notebook live in this process; use workers=1", field="workers")
    out = Path(out)
    t0 = time.time()
    with quiet_logger("optuna"), registered_backbones(backbones):
        space_file = _yaml_input(space, out, "space.yaml", "search space")
        strategy_file = _strategy_input(strategy, out)
        res = _run(
            space_file,
            strategy_file,
            out,
            trials=trials,
            steps=steps,
            seed=seed,
            device=device,
            storage=storage,
            workers=workers,
            progress=progress,
            overrides=tuple(overrides),
            tensorboard=tensorboard,
        )
        assert res is not None  # one process: this is rank 0
        run = RunDir(out)
        study = _study(run)
    paths = {
        "config": run.config,
        "trajectory": run.trajectory,
        "best_arch": run.best_arch,
        "log": out / "search.log",
    }
    if run.journal.is_file():
        paths["study"] = run.journal
    if (out / "tensorboard").is_dir():
        paths["tensorboard"] = out / "tensorboard"
    return SearchRun(
        out, res.best_arch, dict(res.best_scores), res.seconds, time.time() - t0, load_trajectory(run), study, paths
    )


def _study(run: Any) -> Any:
    """The run's Optuna study (None when the strategy keeps none)."""
    from acla_nas.core.yaml_io import read_yaml

    config = read_yaml(run.config)
    try:
        from acla_nas.search.storage.study import open_run_study

        rs = open_run_study(run.path, config, create=False)
    except (UserError, ImportError, KeyError):
        return None
    return None if rs is None else rs.load()


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    top: int | None = None,
    pareto: bool = False,
    weights: bool = True,
    torchscript: bool = False,
    onnx: bool = False,
    input_size: tuple[int, int] | None = None,
    overwrite: bool = False,
    backbones: Backbones = None,
) -> list[Path]:
    """``acla-nas export``: the best (or ``top`` K, or the ``pareto`` front) architecture(s) of a
    search run as child networks; returns one directory per architecture (``arch.yaml``, ...)."""
    from acla_nas.export.exporter import export_run as _export

    with registered_backbones(backbones):
        return _export(
            run_dir,
            out,
            top=top,
            pareto=pareto,
            weights=weights,
            torchscript=torchscript,
            onnx=onnx,
            input_size=input_size,
            overwrite=overwrite,
        )


def train_arch(
    arch: str | Path | Mapping | Any,
    out: str | Path,
    *,
    backbones: Backbones = None,
    overrides: Sequence[str] = (),
    steps: int | None = None,
    patch: int | None = None,
    batch: int | None = None,
    seed: int | None = None,
    lr: float | None = None,
    val_every: int | None = None,
    device: str | None = None,
    progress: bool = False,
    tensorboard: bool = False,
) -> TrainRun:
    """``acla-nas train``: train the child network of ``arch`` (an arch file such as an export's
    ``arch.yaml``, a dict in its format, or an Arch) into ``out``; re-running resumes."""
    import json

    import pandas as pd

    from acla_nas.train.retrain import train_arch as _train

    out = Path(out)
    flags = {"steps": steps, "patch": patch, "batch": batch, "seed": seed, "lr": lr, "val_every": val_every}
    flags |= {"device": device, "tensorboard": tensorboard or None}
    with registered_backbones(backbones):
        arch_file = _yaml_input(arch, out, "arch.yaml", "arch")
        result, model_path, _task = _train(arch_file, out, flags, progress=progress, sets=overrides)
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else dict(result)
    history = pd.DataFrame(metrics.get("history") or [])
    first = [c for c in ("step", "loss", "val_psnr", "lr", "seconds") if c in history.columns]
    history = history[first + [c for c in history.columns if c not in first]]  # metrics.json sorts its keys
    return TrainRun(out, Path(model_path), metrics, history)


def evaluate(
    model: str | Path,
    data: str | Path | Sequence[str | Path] | None = None,
    *,
    device: str | None = None,
    tile: int = 0,
    seed: int = 0,
    backbones: Backbones = None,
) -> Evaluation:
    """``acla-nas evaluate``: PSNR/SSIM of a trained ``model.pt`` (or its run directory) on the
    embedded test photographs, or on each folder in ``data``, next to the input's floor."""
    import pandas as pd

    from acla_nas.core.checks import check_seed
    from acla_nas.data.sources import check_min_side, embedded_source, source_for_dir
    from acla_nas.runtime.device import resolve_device
    from acla_nas.tasks import make_task
    from acla_nas.train.evaluate import evaluate_model
    from acla_nas.train.model_file import load_model

    check_seed(seed)
    if tile < 0 or 0 < tile < 8:
        raise UserError(f"got {tile}, expected 0 (off) or a tile size >= 8", field="tile")
    dev = resolve_device(device)
    with registered_backbones(backbones):
        net, _arch, payload = load_model(model, dev)
    task = make_task(payload["task"])
    folders = [data] if isinstance(data, str | Path) else list(data or [])
    sets = []
    for d in folders:
        src = source_for_dir(str(d), task.scale)
        items = src.all()
        check_min_side(items, task.min_side, f"the {task.name} protocol scores", "data")
        sets.append((src.name, items))
    if not sets:
        sets.append(("embedded-test", embedded_source().split("test")))
    rows, summary = [], []
    for name, items in sets:
        res = evaluate_model(net, items, task, dev, tile=tile or None, seed=seed, require_finite=True)
        rows += [{"dataset": name, **r} for r in res["per_image"]]
        summary.append({"dataset": name, **{k: res[k] for k in ("n", "psnr", "ssim", "floor_psnr", "floor_ssim")}})
    return Evaluation(pd.DataFrame(rows), pd.DataFrame(summary), task.describe())


__all__ = [
    "Evaluation",
    "SearchRun",
    "TrainRun",
    "evaluate",
    "export_run",
    "registered_backbones",
    "run_search",
    "train_arch",
]
