"""Import paths that moved when the package was cut into sub-packages, and where they went.

Files written before the move name components by their old paths (``backbone: {name:
"acla_nas.backbones.edsr:edsr"}``); :func:`modern_path` rewrites such a ``module:attr`` to the
module's new home before the registry or the trust model looks at it, so those files keep
working unchanged. Only the package's own old paths are rewritten; nothing else is touched.
"""

from __future__ import annotations

#: old module -> new module (every old module, package submodules listed one by one)
MOVED = {
    "acla_nas.errors": "acla_nas.core.errors",
    "acla_nas.checks": "acla_nas.core.checks",
    "acla_nas.registry": "acla_nas.core.registry",
    "acla_nas.trust": "acla_nas.core.trust",
    "acla_nas.atomic": "acla_nas.core.atomic",
    "acla_nas.device": "acla_nas.runtime.device",
    "acla_nas.machine": "acla_nas.runtime.machine",
    "acla_nas.memory": "acla_nas.runtime.memory",
    "acla_nas.distributed": "acla_nas.runtime.distributed",
    "acla_nas.progress": "acla_nas.runtime.progress",
    "acla_nas.metrics": "acla_nas.tasks.metrics",
    "acla_nas.data": "acla_nas.data.sources",
    "acla_nas.synthetic": "acla_nas.data.synthetic",
    "acla_nas.acla": "acla_nas.nn.acla",
    "acla_nas.acla_cuda": "acla_nas.nn.attention_core",
    "acla_nas.acla_triton": "acla_nas.nn.acla_triton",
    "acla_nas.backbones": "acla_nas.nn.backbones",
    "acla_nas.backbones.base": "acla_nas.nn.backbones.base",
    "acla_nas.backbones.edsr": "acla_nas.nn.backbones.edsr",
    "acla_nas.backbones.rcan": "acla_nas.nn.backbones.rcan",
    "acla_nas.backbones.registry": "acla_nas.nn.backbones.registry",
    "acla_nas.backbones.unet": "acla_nas.nn.backbones.unet",
    "acla_nas.backbones.user": "acla_nas.nn.backbones.user",
    "acla_nas.arch": "acla_nas.nn.arch",
    "acla_nas.network": "acla_nas.nn.network",
    "acla_nas.cost": "acla_nas.nn.cost",
    "acla_nas.run_dir": "acla_nas.runs.run_dir",
    "acla_nas.trajectory": "acla_nas.runs.trajectory",
    "acla_nas.pareto": "acla_nas.runs.pareto",
    "acla_nas.trainer": "acla_nas.train.trainer",
    "acla_nas.retrain": "acla_nas.train.retrain",
    "acla_nas.restore": "acla_nas.train.inference",
    "acla_nas.search": "acla_nas.search.run",
    "acla_nas.run_config": "acla_nas.search.config",
    "acla_nas.strategies": "acla_nas.search.strategies",
    "acla_nas.strategies.base": "acla_nas.search.strategies.base",
    "acla_nas.strategies.darts": "acla_nas.search.strategies.darts",
    "acla_nas.strategies.evolution": "acla_nas.search.strategies.evolution",
    "acla_nas.strategies.nni_tuner": "acla_nas.search.strategies.nni_tuner",
    "acla_nas.strategies.options": "acla_nas.search.strategies.options",
    "acla_nas.strategies.optuna_loop": "acla_nas.search.strategies.optuna_loop",
    "acla_nas.strategies.random_search": "acla_nas.search.strategies.random_search",
    "acla_nas.strategies.tpe": "acla_nas.search.strategies.tpe",
    "acla_nas.evaluators": "acla_nas.search.evaluators",
    "acla_nas.evaluators.table": "acla_nas.search.evaluators.table",
    "acla_nas.table": "acla_nas.search.table.lookup",
    "acla_nas.tabulate": "acla_nas.search.table.build",
    "acla_nas.storage": "acla_nas.search.storage.backend",
    "acla_nas.study": "acla_nas.search.storage.study",
    "acla_nas.liveness": "acla_nas.search.storage.liveness",
    "acla_nas.owner": "acla_nas.search.storage.owner",
    "acla_nas.journal_lock": "acla_nas.search.storage.journal_lock",
    "acla_nas.export": "acla_nas.export.exporter",
    "acla_nas.report": "acla_nas.plots.report",
}


def modern_module(module: str) -> str:
    """The current name of ``module`` (itself when it did not move). Exact names only: an old
    module such as ``acla_nas.data`` is now also the name of a package with other submodules."""
    return MOVED.get(module, module)


def modern_path(spec: str) -> str:
    """``old.module:attr`` -> ``new.module:attr``; anything else unchanged."""
    module, sep, attr = spec.partition(":")
    if not sep or not module.startswith("acla_nas."):
        return spec
    return f"{modern_module(module)}:{attr}"


__all__ = ["MOVED", "modern_module", "modern_path"]
