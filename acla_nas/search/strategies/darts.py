"""DARTS-style differentiable relaxation of where modules go and how many keys they use.

Two decisions per site, relaxed separately so that "no module" cannot win by being parameter-free
(the collapse of a softmax that includes the empty choice):

* **a module here?** ``p_on = sigmoid(beta)``, pushed towards 0 or 1 by a zero-one regulariser
  (as Fair DARTS);
* **which key budget K?** ``q = softmax(alpha / tau)`` over the site's non-zero budgets
  (Gumbel-softmax optional), tau annealed.

The supernet evaluates each site once at K_max and blends the budgets by prefix slicing with
weights ``(1 - p_on, p_on * q)`` (:meth:`acla_nas.nn.network.Supernet.use_mix`). A two-sided resource
term ``resource * |E[MACs] / target - 1|``, scaled by the current reconstruction loss (so its
weight means "a 10% miss costs resource x 10% of the loss"), steers the expected cost to the
target (the space's MACs limit, or ``options.target``) from either side, instead of a one-sided
hinge that pushes every site to "off" alike. Weights train on training patches through the shared
:class:`~acla_nas.train.trainer.Trainer` (its checkpoints, resume, DDP and ``--device``); the
architecture parameters train on validation patches (first order) in its ``after_step`` hook,
after a warm-up of uniform path sampling that trains every budget. The architecture is derived by
probability and fills the budget: sites with ``p_on >= 0.5`` in order of ``p_on`` with their most
likely K that fits, then the other sites in the same order while the cost stays within the
target (and the space's constraints).

The reference scope is not relaxed: it is fixed to each site's widest scope choice. Blending
scopes would take one attention pass per scope and site (the keys' softmax runs over a different
set of reference layers for each), multiplying the supernet's cost by the number of scopes.

Every ``log_every`` steps a trajectory row records each budget's probability (``p:<site>:0`` =
``1 - p_on``, ``p:<site>:<K>`` = ``p_on * q_K``), the temperature and the derived architecture
with its one-shot validation PSNR. The supernet's checkpoint (``RUN_DIR/supernet``, the same
format as the one-shot evaluator's) carries the architecture parameters, their optimiser and the
rows, so a killed run resumes.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.data.patches import PatchSampler
from acla_nas.nn.arch import Arch, ModuleChoice
from acla_nas.runs.run_dir import RunDir
from acla_nas.runs.trajectory import make_row, write_trajectory
from acla_nas.runtime import distributed
from acla_nas.search.evaluators import score_on_patches
from acla_nas.search.strategies.base import SearchContext, Strategy, Training, register_strategy
from acla_nas.search.strategies.options import FLAG, STEPS_OR_FRACTION, integer, number
from acla_nas.train.checkpoint import load_checkpoint, seed_everything
from acla_nas.train.config import MAX_LR, TrainConfig
from acla_nas.train.trainer import Trainer


class ArchParameters(nn.Module):
    """Per site: ``beta`` (module on, a sigmoid logit) and ``alpha`` (one logit per non-zero budget)."""

    def __init__(self, budgets: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.budgets = dict(budgets)
        self.names = list(budgets)
        self.beta = nn.Parameter(torch.zeros(len(self.names)))
        self.alpha = nn.ParameterList([nn.Parameter(torch.zeros(len([k for k in b if k]))) for b in budgets.values()])

    def p_on(self) -> dict[str, torch.Tensor]:
        """P(a module at the site); sites without a 0 budget always carry one."""
        out = {}
        for i, n in enumerate(self.names):
            out[n] = torch.sigmoid(self.beta[i]) if 0 in self.budgets[n] else self.beta.new_ones(())
        return out

    def q(self, temperature: float, gumbel: bool = False) -> dict[str, torch.Tensor]:
        """P(K | a module) over each site's non-zero budgets."""
        out = {}
        for n, a in zip(self.names, self.alpha):
            out[n] = F.gumbel_softmax(a, tau=temperature, hard=False) if gumbel else torch.softmax(a / temperature, 0)
        return out

    def probs(self, temperature: float, gumbel: bool = False) -> dict[str, torch.Tensor]:
        """Weights over every budget of each site (in the site's budget order): 0 -> 1 - p_on,
        K -> p_on * q_K."""
        on, q = self.p_on(), self.q(temperature, gumbel)
        out = {}
        for n in self.names:
            parts, j = [], 0
            for k in self.budgets[n]:
                if k == 0:
                    parts.append(1 - on[n])
                else:
                    parts.append(on[n] * q[n][j])
                    j += 1
            out[n] = torch.stack(parts)
        return out


class _ArchState:
    """What the Trainer checkpoints for DARTS besides the supernet: the architecture parameters,
    their optimiser, the trajectory rows and the options (a resume with other options is refused)."""

    def __init__(self, strategy: DartsStrategy) -> None:
        self.s = strategy

    def state_dict(self) -> dict[str, Any]:
        s = self.s
        return {
            "alpha": s.arch.state_dict(),
            "a_opt": s.a_opt.state_dict(),
            "rows": s.rows,
            "options": s.stored_options(),
            "seconds": s.ctx.elapsed(),
        }

    def load_state_dict(self, state: dict[str, Any], file: Path | None = None) -> None:
        s = self.s
        if state.get("options") != s.stored_options():
            raise UserError(
                "the DARTS checkpoint was made with other options; use another --out directory", file=str(file)
            )
        s.arch.load_state_dict(state["alpha"])
        s.a_opt.load_state_dict(state["a_opt"])
        s.rows = list(state["rows"])
        s.ctx.elapsed_offset, s.ctx.started = float(state.get("seconds", 0.0)), time.time()  # the search clock goes on


def widest_scopes(space: Any) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """(scope, reference layers) DARTS uses at each site that can carry a module: the widest."""
    out = {}
    for n, s in space.sites.items():
        if s.nonzero:
            j = max(range(len(s.scopes)), key=lambda j: (len(s.refs[j]), -j))
            out[n] = (s.scopes[j], s.refs[j])
    return out


def macs_target(space: Any, options: dict) -> float:
    """The MACs DARTS's derived child aims at: ``options.target`` (a factor of the plain cost below
    1000, else a count), else the space's MACs limit, else halfway between the plain backbone and
    every site at its largest budget."""
    table = space.costs()
    plain = float(table.plain_macs)
    t = {**DartsStrategy.DEFAULTS, **options}.get("target")
    if t is not None:
        return float(t) * plain if t < 1000 else float(t)
    limits = space.limits()
    if "macs" in limits:
        return float(limits["macs"])
    largest = sum(
        max(float(table.module(n, k, refs)[0]) for k in space.sites[n].nonzero)
        for n, (_scope, refs) in widest_scopes(space).items()
    )
    return plain + 0.5 * largest


@register_strategy
class DartsStrategy(Strategy):
    name = "darts"
    multi_trial = False
    STEPS_OPTION = "steps"
    OPTIONS = {
        "steps": integer(1),
        "warmup": STEPS_OR_FRACTION,  # steps (int) or fraction (float) of uniform path sampling first
        "batch": integer(1),
        "patch": integer(1),
        "w_lr": number(0.0, hi=MAX_LR),
        "a_lr": number(0.0, hi=MAX_LR),
        "gumbel": FLAG,
        "tau_start": number(0.0),
        "tau_end": number(0.0),
        "resource": number(0.0, lo_open=False),  # weight of |E[MACs] / target - 1| (x the loss)
        "target": number(0.0),  # MACs target: a factor of the plain backbone's (< 1000) or a count
        "zero_one": number(0.0, lo_open=False),  # weight of the zero-one regulariser on p_on
        "penalty": number(0.0, lo_open=False),  # weight of the hinge on max_modules / max_params
        "log_every": integer(1),
        "ckpt_every": integer(1),
        "grad_clip": number(0.0),
    }
    DEFAULTS: dict[str, Any] = {
        "steps": 400,
        "warmup": 0.3,
        "batch": 8,
        "patch": 48,
        "w_lr": 5e-4,
        "a_lr": 3e-3,
        "gumbel": False,
        "tau_start": 1.0,
        "tau_end": 0.2,
        "resource": 1.0,
        "target": None,
        "zero_one": 1.0,
        "penalty": 2.0,
        "log_every": 20,
        "ckpt_every": 50,
        "grad_clip": 1.0,
    }

    @classmethod
    def check_combination(cls, options: dict) -> None:
        o = {**cls.DEFAULTS, **options}
        if isinstance(o["warmup"], int) and o["warmup"] >= o["steps"]:
            raise UserError(
                f"a warm-up of {o['warmup']} steps leaves none of the {o['steps']} steps to train the architecture "
                "(expected warmup < steps, or a fraction in [0, 1))",
                field="options.warmup",
            )

    @classmethod
    def training(cls, options: dict) -> Training:
        o = {**cls.DEFAULTS, **options}
        return Training(o["batch"], o["patch"])

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx)
        o = {**self.DEFAULTS, **self.options}  # --steps is in the options already (RunConfig.from_files)
        self.check_combination(o)
        self.o = o
        scale = ctx.data.task.scale
        if o["patch"] % scale:
            raise UserError(
                f"expected a multiple of the task's scale ({scale}), got {o['patch']}", field="options.patch"
            )
        space = ctx.space
        self.sites = {n: s for n, s in space.sites.items() if s.nonzero}
        widest = widest_scopes(space)  # the widest scope choice of each site (most reference layers)
        self.scope = {n: widest[n][0] for n in self.sites}
        self.refs = {n: widest[n][1] for n in self.sites}
        table = space.costs()
        self.plain_macs = float(table.plain_macs)
        self.macs = {
            n: torch.tensor([0.0 if k == 0 else float(table.module(n, k, self.refs[n])[0]) for k in s.budgets])
            for n, s in self.sites.items()
        }
        self.params_cost = {
            n: torch.tensor([0.0 if k == 0 else float(table.module(n, k, self.refs[n])[1]) for k in s.budgets])
            for n, s in self.sites.items()
        }
        self.limits = {k: float(v) for k, v in space.limits().items()}
        self.target = self._target()
        self.rows: list[dict[str, Any]] = []
        self.final: tuple[Arch, dict] | None = None

    def _target(self) -> float:
        return macs_target(self.ctx.space, self.o)

    def stored_options(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in self.o.items()}

    # -- schedule ------------------------------------------------------------------------------
    def temperature(self, step: int) -> float:
        t0, t1, n = float(self.o["tau_start"]), float(self.o["tau_end"]), max(1, self.o["steps"] - 1)
        return t0 * (t1 / t0) ** (min(step, n) / n)

    def warmup_steps(self) -> int:
        w = self.o["warmup"]
        return int(w) if isinstance(w, int) else int(round(float(w) * self.o["steps"]))

    # -- regularisers and derivation -------------------------------------------------------------
    def expected_macs(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.plain_macs + sum((p * self.macs[n].to(p.device)).sum() for n, p in probs.items())

    def penalty(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hinges on the space's other limits (expected params, expected module count)."""
        dev = next(iter(probs.values())).device if probs else "cpu"
        pen = torch.zeros((), device=dev)
        if "params" in self.limits:
            plain_p = float(self.ctx.space.costs().plain_params)
            expected = plain_p + sum((p * self.params_cost[n].to(p.device)).sum() for n, p in probs.items())
            pen = pen + F.relu(expected - self.limits["params"]) / plain_p
        mm = self.ctx.space.max_modules
        if mm is not None:
            on = sum(
                (p * p.new_tensor([0.0 if k == 0 else 1.0 for k in self.sites[n].budgets])).sum()
                for n, p in probs.items()
            )
            pen = pen + F.relu(on - mm)
        return pen

    def arch_loss(
        self, recon: torch.Tensor, probs: dict[str, torch.Tensor], p_on: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Reconstruction + resource * |E[MACs]/target - 1| * loss + zero-one * loss + hinges."""
        scale = recon.detach()
        loss = recon + self.o["resource"] * scale * (self.expected_macs(probs) / self.target - 1).abs()
        free = [p for n, p in p_on.items() if 0 in self.sites[n].budgets]
        if free and self.o["zero_one"]:
            loss = loss + self.o["zero_one"] * scale * 4 * torch.stack([0.25 - (p - 0.5) ** 2 for p in free]).mean()
        return loss + self.o["penalty"] * self.penalty(probs)

    def derive(self, p_on: dict[str, torch.Tensor], q: dict[str, torch.Tensor]) -> Arch:
        """By probability, filling the budget: sites with p_on >= 0.5 first, then the others, each
        in order of p_on, each with its most likely budget that keeps the child within the target
        MACs and the space's constraints (a smaller one if the likeliest does not fit)."""
        space = self.ctx.space
        on = {n: float(p) for n, p in p_on.items()}
        order = sorted(self.sites, key=lambda n: (on[n] < 0.5, -on[n]))
        mods: dict[str, ModuleChoice] = {}
        for n in order:
            budgets = [k for k in self.sites[n].budgets if k]
            for j in sorted(range(len(budgets)), key=lambda j: -float(q[n][j])):
                trial = space.template().with_modules({**mods, n: ModuleChoice(budgets[j], self.scope[n])})
                if space.satisfies(trial)[0] and space.cost(trial)["macs"] <= self.target * (1 + 1e-9):
                    mods[n] = ModuleChoice(budgets[j], self.scope[n])
                    break
        forced = [n for n, s in self.sites.items() if 0 not in s.budgets and n not in mods]
        for n in forced:  # a site without a 0 budget carries a module whatever the target
            mods[n] = ModuleChoice(min(k for k in self.sites[n].budgets if k), self.scope[n])
        arch = space.template().with_modules(mods)
        return arch if space.satisfies(arch)[0] else space.template()

    # -- the loop ------------------------------------------------------------------------------
    def _weights_path(self, step: int) -> None:
        """before_step: a uniform path during the warm-up, else the current relaxation (no grad)."""
        ctx = self.ctx
        if step < self.warm:
            self.supernet.use(ctx.space.sample(random.Random(ctx.data.seed * 1_000_003 + step)).modules)
            return
        with torch.no_grad():
            probs = self.arch.probs(self.temperature(step), self.o["gumbel"])
        self.supernet.use_mix({n: (self.sites[n].budgets, probs[n]) for n in self.sites}, self.scope)

    def _arch_step(self, step: int, _loss: float) -> None:
        """after_step: one architecture update on validation patches (first order), then the log."""
        o, tau = self.o, self.temperature(step)
        if step >= self.warm:
            vlq, vhr = (t.to(self.device) for t in distributed.shard(self.val.batch_at(step)))
            probs = self.arch.probs(tau, o["gumbel"])
            self.supernet.use_mix({n: (self.sites[n].budgets, probs[n]) for n in self.sites}, self.scope)
            loss = self.arch_loss(F.l1_loss(self.supernet(vlq), vhr), probs, self.arch.p_on())
            self.a_opt.zero_grad(set_to_none=True)
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()  # through the plain module: DDP's hooks stay out of the architecture step
            distributed.average_gradients(list(self.arch.parameters()))
            self.a_opt.step()
            self.w_opt.zero_grad(set_to_none=True)
        if ((step + 1) % o["log_every"] == 0 or step + 1 == o["steps"]) and distributed.current().main:
            self.log(step + 1, tau)

    def run(self) -> None:
        ctx, o = self.ctx, self.o
        data = ctx.data
        seed_everything(data.seed)  # before building: initial weights are part of the run
        self.supernet = ctx.space.supernet()
        self.arch = ArchParameters({n: s.budgets for n, s in self.sites.items()})
        # the weights' recipe from the options (checked with them), the rest set by the search
        cfg = TrainConfig.from_recipe(
            {k: o[k] for k in ("steps", "patch", "batch", "grad_clip", "ckpt_every")} | {"lr": o["w_lr"]},
            fixed={
                "schedule": "constant",
                "seed": data.seed,
                "val_every": 0,
                "device": data.device,
                "progress": data.progress,
            },
            section="options",
        )
        train = PatchSampler(data.train_items, data.task, o["patch"], o["batch"], seed=data.seed)
        self.val = PatchSampler(data.val_items, data.task, o["patch"], o["batch"], seed=data.seed + 1)
        self.warm = self.warmup_steps()
        # the architecture parameters stay out of the weight optimiser (their own Adam below)
        self.trainer = trainer = Trainer(
            self.supernet,
            data.task,
            train,
            cfg,
            RunDir(ctx.run_dir).supernet,
            before_step=self._weights_path,
            after_step=self._arch_step,
            section="options",
            ddp_find_unused=True,
            extra_state=_ArchState(self),
            meta={"strategy": "darts"},
        )
        self.device = trainer.device
        self.supernet = trainer.model
        self.arch.to(self.device)
        self.w_opt = trainer.optimizer
        self.a_opt = torch.optim.Adam(self.arch.parameters(), lr=o["a_lr"], betas=(0.5, 0.999), weight_decay=1e-3)
        if ctx.elapsed_offset is None:
            ctx.elapsed_offset = 0.0
        trainer.fit()
        if distributed.current().main:
            write_trajectory(self.rows, ctx.run_dir / "trajectory.csv", ctx.sites)

    @torch.no_grad()
    def log(self, step: int, tau: float, state: str = "COMPLETE") -> None:
        ctx = self.ctx
        probs = self.arch.probs(tau)
        arch = self.derive(self.arch.p_on(), self.arch.q(tau))
        self.supernet.use(arch.modules)
        value = score_on_patches(self.supernet, ctx.data)
        cost = ctx.space.cost(arch)
        extra: dict[str, Any] = {"temperature": tau, "expected_macs": round(float(self.expected_macs(probs)))}
        for n in ctx.sites:
            if n in probs:
                for k, p in zip(self.sites[n].budgets, probs[n].tolist()):
                    extra[f"p:{n}:{k}"] = round(p, 6)
        self.rows.append(
            make_row(
                run=ctx.run_name,
                strategy=ctx.strategy_name,
                evaluator="oneshot",
                step=step,
                state=state if math.isfinite(value) else "FAIL",
                sites=ctx.sites,
                arch=arch,
                encoding=ctx.space.encode(arch),
                psnr=value,
                flops=cost["macs"],
                params=cost["params"],
                seconds=ctx.elapsed(),
                extra=extra,
            )
        )
        write_trajectory(self.rows, ctx.run_dir / "trajectory.csv", ctx.sites)

    def best(self) -> tuple[Arch, dict] | None:
        """The architecture derived at the last logged step (DARTS's answer), with its scores."""
        if not self.rows:
            path = RunDir(self.ctx.run_dir).supernet_checkpoint
            if not path.is_file():
                return None
            self.rows = list((load_checkpoint(path).get("extra") or {}).get("rows") or [])
            if not self.rows:
                return None
        last = self.rows[-1]
        arch = self.ctx.space.decode(json.loads(last["arch"]))
        return arch, {"psnr": last["psnr"], "flops": last["flops"], "params": last["params"], "step": last["step"]}
