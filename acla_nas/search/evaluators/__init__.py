"""Evaluators score an :class:`~acla_nas.nn.arch.Arch` by validation PSNR (plus its cost).

* ``oneshot``: trains one weight-sharing supernet with uniform path sampling (once per run,
  checkpointed in ``RUN_DIR/supernet`` and resumed), then scores a candidate in milliseconds by
  running the supernet along the candidate's path on fixed validation patches.
* ``proxy``: trains each candidate briefly from scratch with the same recipe, then scores it.
* ``table`` (:mod:`.table`): answers from a fully tabulated space (no training).

All cache results by architecture; a non-finite loss fails that candidate only.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.data.patches import PatchSampler, fixed_patches
from acla_nas.nn.arch import Arch
from acla_nas.nn.network import build
from acla_nas.tasks import Task
from acla_nas.tasks.metrics import psnr, quantize, ssim
from acla_nas.train.config import TrainConfig
from acla_nas.train.trainer import NonFiniteLossError, Trainer

TRAIN_KEYS = ("steps", "patch", "batch", "lr", "schedule", "grad_clip", "ckpt_every")


@dataclass
class EvalResult:
    psnr: float
    macs: int
    params: int
    seconds: float
    state: str = "COMPLETE"  # or FAIL
    error: str = ""
    cached: bool = False  # a repeat of an architecture scored before (seconds is then 0)
    ssim: float = math.nan  # on the same validation patches and protocol as psnr


@dataclass
class SearchData:
    """What every evaluator and strategy of one search shares: task, images, validation patches."""

    task: Task
    train_items: Any
    val_items: Any
    val: tuple[torch.Tensor, torch.Tensor]
    device: str = "auto"
    seed: int = 0
    progress: bool = False


SECTION_FIXED = ("seed", "device", "progress", "val_every")  # set by the search, not by a preset section


def check_train_section(
    name: str, section: dict | None, defaults: dict, file: str | None = None, fixed: dict | None = None
) -> TrainConfig:
    """A strategy preset's ``supernet:`` / ``proxy:`` section over ``defaults`` (and under what the
    search sets, ``fixed``), checked; errors name the preset file and ``<name>.<key>`` (not the
    ``train.`` section of an arch file)."""
    section = dict(section or {})
    for key in section:
        if key in SECTION_FIXED:
            raise UserError(
                f"set by the search itself (the preset's seed, --seed, --device), not in {name}",
                file=file,
                field=f"{name}.{key}",
            )
    return TrainConfig.from_recipe(section, defaults=defaults, fixed=fixed, section=name, file=file)


def train_config(
    section: dict | None,
    defaults: dict,
    seed: int,
    device: str,
    progress: bool,
    name: str = "supernet",
    file: str | None = None,
) -> TrainConfig:
    """A TrainConfig from a strategy YAML section over defaults, plus what the search sets."""
    fixed = {"seed": seed, "device": device, "progress": progress, "val_every": 0}
    return check_train_section(name, section, defaults, file, fixed)


@torch.no_grad()
def _patch_outputs(model: torch.nn.Module, data: SearchData, batch: int) -> torch.Tensor | None:
    """The 8-bit-quantised outputs on the fixed validation patches (None when not finite)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    lq, _ = data.val
    try:
        outs = [model(lq[i : i + batch].to(device)).float().cpu() for i in range(0, len(lq), batch)]
    finally:
        model.train(was)
    out = quantize(torch.cat(outs))
    return out if torch.isfinite(out).all() else None


def score_on_patches(model: torch.nn.Module, data: SearchData, batch: int = 16) -> float:
    """Validation PSNR (dB) on the fixed patches with the task's protocol (8-bit outputs)."""
    out = _patch_outputs(model, data, batch)
    return math.nan if out is None else psnr(out, data.val[1], data.task.crop_border, data.task.test_y_channel)


def scores_on_patches(model: torch.nn.Module, data: SearchData, batch: int = 16) -> tuple[float, float]:
    """(PSNR, SSIM) on the fixed patches, same protocol: what a trial records."""
    out = _patch_outputs(model, data, batch)
    if out is None:
        return math.nan, math.nan
    cb, y = data.task.crop_border, data.task.test_y_channel
    return psnr(out, data.val[1], cb, y), ssim(out, data.val[1], cb, y)


class Evaluator:
    """Base: a cache by architecture key around :meth:`_score`. ``SECTION`` names the strategy
    preset's section that configures its training (with ``DEFAULTS``), if it trains."""

    name = "base"
    SECTION: str | None = None
    DEFAULTS: dict[str, Any] = {}
    EXAMPLE: dict[str, Any] | None = None  # the least its section must say, where defaults cannot (docs, tests)

    @classmethod
    def check_section(cls, section: dict, file: str | None = None) -> None:
        """Check this evaluator's preset section (``SECTION``) before anything runs; by default it
        is a training recipe over ``DEFAULTS``. Errors name the file and ``<section>.<key>``."""
        if cls.SECTION:
            check_train_section(cls.SECTION, section, cls.DEFAULTS, file)

    def __init__(self, space: Any, data: SearchData, options: dict | None = None, run_dir: Path | None = None) -> None:
        self.space = space
        self.data = data
        self.options = dict(options or {})
        self.run_dir = run_dir
        self.cache: dict[str, EvalResult] = {}

    def prepare(self) -> None:
        """One-time work before scoring (e.g. supernet training); resumable."""

    def evaluate(self, arch: Arch) -> EvalResult:
        key = arch.key()
        if key in self.cache:  # a repeat costs nothing: say so, so timings stay honest
            return replace(self.cache[key], seconds=0.0, cached=True)
        cost = self.space.cost(arch)
        t0 = time.perf_counter()
        similarity = math.nan
        try:
            value = self._score(arch)
            if isinstance(value, tuple):  # (psnr, ssim); a plain float is PSNR alone
                value, similarity = value
            state, error = ("COMPLETE", "") if math.isfinite(value) else ("FAIL", "non-finite output")
        except NonFiniteLossError as exc:
            value, state, error = math.nan, "FAIL", str(exc)
        result = EvalResult(
            value, int(cost["macs"]), int(cost["params"]), time.perf_counter() - t0, state, error, ssim=similarity
        )
        self.cache[key] = result
        return result

    def _score(self, arch: Arch) -> float | tuple[float, float]:
        """Validation PSNR, or (PSNR, SSIM)."""
        raise NotImplementedError


SAMPLING = ("uniform", "fair", "sandwich")

EVALUATORS: Registry[type[Evaluator]] = Registry(
    "evaluator",
    "acla_nas.evaluators",
    "evaluator",
    package="acla_nas.search.evaluators",
    check=lambda c: isinstance(c, type) and issubclass(c, Evaluator),
    expected="subclass of acla_nas.search.evaluators.Evaluator",
)
register_evaluator = EVALUATORS.register


@register_evaluator
class OneShotEvaluator(Evaluator):
    """Scores candidates with weights inherited from a weight-sharing supernet.

    ``supernet.sampling`` picks the path(s) trained at each step:

    * ``uniform``: one architecture drawn uniformly among those meeting the constraints;
    * ``fair`` (strict fairness, as FairNAS): each site walks through its choices (off, and every
      budget x scope) in a fresh random order every ``n_choices`` steps, so over each such cycle
      every choice of every site is trained exactly once (a combination that breaks the space's
      constraints is replaced by a uniform draw, counted in ``fair_fallbacks``);
    * ``sandwich``: the smallest and the largest architecture plus one uniform draw every step,
      their losses averaged (three forward passes per step; one process only).

    Every path is a pure function of (seed, step), so a resumed run is identical.
    """

    name = "oneshot"
    SECTION = "supernet"
    DEFAULTS = {"steps": 1000, "patch": 48, "batch": 8, "lr": 5e-4, "ckpt_every": 100}
    EXTRA_KEYS = ("sampling",)  # supernet: keys read here, not by the TrainConfig

    @classmethod
    def train_section(cls, section: dict | None, file: str | None = None) -> dict:
        """The preset's ``supernet:`` section without this evaluator's own keys (checked)."""
        section = dict(section or {})
        sampling = section.pop("sampling", "uniform")
        if sampling not in SAMPLING:
            raise UserError(
                f"expected one of {', '.join(SAMPLING)}, got {sampling!r}", file=file, field="supernet.sampling"
            )
        return section

    @classmethod
    def check_section(cls, section: dict, file: str | None = None) -> None:
        check_train_section(cls.SECTION, cls.train_section(section, file), cls.DEFAULTS, file)

    def __init__(self, space: Any, data: SearchData, options: dict | None = None, run_dir: Path | None = None) -> None:
        super().__init__(space, data, options, run_dir)
        self.sampling = self.options.get("sampling", "uniform")
        self.train_options = self.train_section(self.options)
        torch.manual_seed(data.seed)  # reproducible supernet initialisation
        self.supernet = space.supernet()
        self.trained = False
        self.train_result: dict | None = None
        self.fair_fallbacks = 0
        self._choices = [[None] * s.off_ways + list(s.on_choices) for s in space.sites.values()]

    def uniform_path(self, step: int) -> Arch:
        return self.space.sample(random.Random(self.data.seed * 1_000_003 + step))

    def fair_path(self, step: int) -> Arch:
        """Site i takes choice ``perm_i[step % m_i]`` of a permutation drawn per cycle of ``m_i`` steps."""
        picks = []
        for i, choices in enumerate(self._choices):
            m = len(choices)
            order = list(range(m))
            random.Random(self.data.seed * 1_000_003 + 7919 * i + 104_729 * (step // m)).shuffle(order)
            picks.append(choices[order[step % m]])
        arch = self.space._arch_of(picks)
        if not self.space.satisfies(arch)[0]:
            self.fair_fallbacks += 1
            return self.uniform_path(step)
        return arch

    def extreme_paths(self) -> tuple[Arch, Arch]:
        """(smallest, largest) architecture by MACs among those meeting the constraints: each site
        at its cheapest / dearest choice, the largest shrunk site by site until it fits."""
        sp = self.space
        small, large = [], []
        for s in sp.sites.values():
            on = sorted(s.on_choices, key=lambda c: sp._option_cost(s, c[0], c[1]))
            small.append(None if s.off_ways else on[0])
            large.append(on[-1] if on else None)
        smallest, largest = sp._arch_of(small), sp._arch_of(large)
        order = sorted(
            range(len(large)), key=lambda i: sp._option_cost(list(sp.sites.values())[i], *large[i]) if large[i] else 0
        )
        for i in order:
            if sp.satisfies(largest)[0]:
                break
            large[i] = small[i]
            largest = sp._arch_of(large)
        return smallest, (largest if sp.satisfies(largest)[0] else smallest)

    def sample_path(self, step: int) -> None:
        """The path of this step (uniform or fair sampling)."""
        arch = self.fair_path(step) if self.sampling == "fair" else self.uniform_path(step)
        self.supernet.use(arch.modules)

    def sandwich_loss(self, forward_loss: Any, step: int) -> torch.Tensor:
        """Mean loss of the smallest, the largest and a uniformly drawn path."""
        smallest, largest = self.extreme_paths()
        losses = []
        for arch in (smallest, largest, self.uniform_path(step)):
            self.supernet.use(arch.modules)
            losses.append(forward_loss())
        return torch.stack(losses).mean()

    def prepare(self) -> None:
        if self.trained:
            return
        cfg = train_config(
            self.train_options, self.DEFAULTS, self.data.seed, self.data.device, self.data.progress, "supernet"
        )
        sampler = PatchSampler(self.data.train_items, self.data.task, cfg.patch, cfg.batch, seed=self.data.seed)
        out = None if self.run_dir is None else self.run_dir / "supernet"
        sandwich = self.sampling == "sandwich"
        # a path leaves other sites' modules unused: DDP must not wait for their gradients
        trainer = Trainer(
            self.supernet,
            self.data.task,
            sampler,
            cfg,
            out,
            before_step=None if sandwich else self.sample_path,
            section="supernet",
            ddp_find_unused=True,
            step_loss=self.sandwich_loss if sandwich else None,
        )
        self.train_result = trainer.fit()
        self.supernet = trainer.model
        self.trained = True

    def _score(self, arch: Arch) -> tuple[float, float]:
        if not self.trained:
            self.prepare()
        self.supernet.use(arch.modules)
        return scores_on_patches(self.supernet, self.data)


@register_evaluator
class ProxyEvaluator(Evaluator):
    """Trains each candidate briefly from scratch (same recipe and seed for all), then scores it."""

    name = "proxy"
    SECTION = "proxy"
    DEFAULTS = {"steps": 100, "patch": 48, "batch": 8, "lr": 5e-4, "ckpt_every": 10_000}

    def _score(self, arch: Arch) -> tuple[float, float]:
        cfg = train_config(self.options, self.DEFAULTS, self.data.seed, self.data.device, False, "proxy")
        torch.manual_seed(self.data.seed)
        model = build(arch)
        sampler = PatchSampler(self.data.train_items, self.data.task, cfg.patch, cfg.batch, seed=self.data.seed)
        trainer = Trainer(model, self.data.task, sampler, cfg, None, section="proxy")
        trainer.fit()
        return scores_on_patches(trainer.model, self.data)


def make_evaluator(
    name: str, space: Any, data: SearchData, options: dict | None, run_dir: Path | None, file: str | None = None
) -> Evaluator:
    try:
        return EVALUATORS.get(name, file)(space, data, options, run_dir)
    except UserError as exc:
        raise (exc if exc.file else exc.at(file=file)) from None


def validation_patches(task: Task, val_items: Any, n: int, patch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return fixed_patches(val_items, task, n, patch, seed)


__all__ = [
    "EVALUATORS",
    "EvalResult",
    "Evaluator",
    "OneShotEvaluator",
    "ProxyEvaluator",
    "SearchData",
    "check_train_section",
    "make_evaluator",
    "register_evaluator",
    "score_on_patches",
    "scores_on_patches",
    "train_config",
]
