"""DARTS-style differentiable relaxation of the key budgets (first-order, bi-level).

Architecture parameters (``nn.Parameter``, one logit per key-budget choice of each site, 0 = no
module) weight the budgets; the supernet evaluates each site once at K_max and blends the budgets
by prefix slicing (:meth:`acla_nas.network.Supernet.use_mix`). Network weights train on training
patches, architecture parameters on validation patches (first-order approximation), after a
warm-up of uniform path sampling that trains every budget. Optional Gumbel-softmax sampling with
an annealed temperature; a differentiable resource penalty (expected MACs and expected module
count from the probabilities) keeps the derived architecture within the space's budget. The
architecture is derived by argmax with a budget-aware repair (the least likely module is shrunk
until the constraints hold). The reference scope of each site is not relaxed: it is fixed to the
site's widest scope choice (softmax sets differ between scopes, so blending them would need one
attention pass per scope).

Every ``log_every`` steps a trajectory row records each budget's probability, the temperature and
the derived architecture with its one-shot validation PSNR. Checkpoints (atomic) hold the
supernet, the architecture parameters, both optimisers and the rows, so a killed run resumes.

Data-parallel (torchrun or ``--nproc``, :mod:`acla_nas.distributed`): the supernet is wrapped in
DDP for the weight step and each rank takes its slice of the global training and validation
batches; the architecture gradients (outside the DDP module) are averaged explicitly, so every
rank keeps the same architecture parameters. Rank 0 alone logs, scores and writes; a resume reads
the checkpoint on rank 0 and broadcasts it.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..arch import Arch, ModuleChoice
from ..data import PatchSampler, _mix_seed
from ..device import resolve_device
from ..errors import UserError
from ..evaluators import score_on_patches
from ..trainer import MAX_LR, NonFiniteLossError, _atomic_torch_save, model_param_groups, seed_everything
from ..trajectory import make_row, write_trajectory
from .base import SearchContext, Strategy, Training, register_strategy
from .options import FLAG, STEPS_OR_FRACTION, integer, number

CKPT = "darts.pt"


def load_darts_checkpoint(path: str | Path) -> dict[str, Any]:
    """A DARTS checkpoint (tensors and plain data only: ``weights_only=True``)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise UserError(f"cannot read the DARTS checkpoint: {type(exc).__name__}: {exc}", file=str(path)) from None
    if not isinstance(ck, dict) or "alpha" not in ck or "supernet" not in ck:
        raise UserError("not an acla-nas DARTS checkpoint", file=str(path))
    return ck


class ArchParameters(nn.Module):
    """One logit per key-budget choice of each site (registered parameters, saved in state dicts)."""

    def __init__(self, budgets: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.budgets = dict(budgets)
        self.names = list(budgets)
        self.alpha = nn.ParameterList([nn.Parameter(torch.zeros(len(b))) for b in budgets.values()])

    def probs(self, temperature: float, gumbel: bool = False) -> dict[str, torch.Tensor]:
        out = {}
        for name, a in zip(self.names, self.alpha):
            out[name] = F.gumbel_softmax(a, tau=temperature, hard=False) if gumbel else torch.softmax(a / temperature, 0)
        return out


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
        "penalty": number(0.0, lo_open=False),
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
        "penalty": 2.0,
        "log_every": 20,
        "ckpt_every": 50,
        "grad_clip": 1.0,
    }

    @classmethod
    def check_combination(cls, options: dict) -> None:
        o = {**cls.DEFAULTS, **options}
        if isinstance(o["warmup"], int) and o["warmup"] >= o["steps"]:
            raise UserError(f"a warm-up of {o['warmup']} steps leaves none of the {o['steps']} steps to train the architecture "
                            "(expected warmup < steps, or a fraction in [0, 1))", field="options.warmup")

    @classmethod
    def training(cls, options: dict) -> Training:
        o = {**cls.DEFAULTS, **options}
        return Training(o["batch"], o["patch"])

    @classmethod
    def saved_weights(cls, run: Any) -> dict[str, Any] | None:
        path = run.checkpoints / CKPT
        return load_darts_checkpoint(path)["supernet"] if path.is_file() else None

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx)
        o = {**self.DEFAULTS, **self.options}
        if ctx.steps is not None:
            o["steps"] = ctx.steps
        self.check_combination(o)
        self.o = o
        scale = ctx.data.task.scale
        if o["patch"] % scale:
            raise UserError(f"expected a multiple of the task's scale ({scale}), got {o['patch']}", field="options.patch")
        space = ctx.space
        self.sites = {n: s for n, s in space.sites.items() if s.nonzero}
        # the widest scope choice of each site (most reference layers)
        self.scope = {n: s.scopes[max(range(len(s.scopes)), key=lambda j: (len(s.refs[j]), -j))] for n, s in self.sites.items()}
        self.refs = {n: s.refs[s.scopes.index(self.scope[n])] for n, s in self.sites.items()}
        table = space.costs()
        self.plain_macs = float(table.plain_macs)
        self.macs = {n: torch.tensor([0.0 if k == 0 else float(table.module(n, k, self.refs[n])[0]) for k in s.budgets]) for n, s in self.sites.items()}
        self.params_cost = {n: torch.tensor([0.0 if k == 0 else float(table.module(n, k, self.refs[n])[1]) for k in s.budgets]) for n, s in self.sites.items()}
        self.limits = {k: float(v) for k, v in space.limits().items()}
        self.rows: list[dict[str, Any]] = []
        self.final: tuple[Arch, dict] | None = None

    # -- schedule ------------------------------------------------------------------------------
    def temperature(self, step: int) -> float:
        t0, t1, n = float(self.o["tau_start"]), float(self.o["tau_end"]), max(1, self.o["steps"] - 1)
        return t0 * (t1 / t0) ** (min(step, n) / n)

    def warmup_steps(self) -> int:
        w = self.o["warmup"]
        return int(w) if isinstance(w, int) else int(round(float(w) * self.o["steps"]))

    # -- penalty and derivation ----------------------------------------------------------------
    def penalty(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable excess of expected MACs / params / modules over the space's limits."""
        pen = torch.zeros(())
        if "macs" in self.limits:
            expected = self.plain_macs + sum((p * self.macs[n].to(p.device)).sum() for n, p in probs.items())
            pen = pen + F.relu(expected - self.limits["macs"]) / self.plain_macs
        if "params" in self.limits:
            plain_p = float(self.ctx.space.costs().plain_params)
            expected = plain_p + sum((p * self.params_cost[n].to(p.device)).sum() for n, p in probs.items())
            pen = pen + F.relu(expected - self.limits["params"]) / plain_p
        mm = self.ctx.space.max_modules
        if mm is not None:
            on = sum((p * p.new_tensor([0.0 if k == 0 else 1.0 for k in self.sites[n].budgets])).sum() for n, p in probs.items())
            pen = pen + F.relu(on - mm)
        return pen

    def derive(self, probs: dict[str, torch.Tensor]) -> Arch:
        """Argmax per site, then shrink the least likely module until the constraints hold."""
        space = self.ctx.space
        pick = {n: int(p.argmax()) for n, p in probs.items()}

        def arch_of() -> Arch:
            mods = {n: ModuleChoice(self.sites[n].budgets[i], self.scope[n]) for n, i in pick.items() if self.sites[n].budgets[i] > 0}
            return space.template().with_modules(mods)

        arch = arch_of()
        for _ in range(sum(len(s.budgets) for s in self.sites.values()) + 1):
            if space.satisfies(arch)[0]:
                return arch
            candidates = []
            for n, i in pick.items():
                budgets = self.sites[n].budgets
                smaller = [j for j, k in enumerate(budgets) if k < budgets[i]]
                if budgets[i] > 0 and smaller:
                    j = max(smaller, key=lambda j: budgets[j])
                    candidates.append((float(probs[n][i]), n, j))
            if not candidates:
                break
            _, n, j = min(candidates)
            pick[n] = j
            arch = arch_of()
        if not space.satisfies(arch)[0]:
            arch = space.template()  # the plain backbone is the last resort
        return arch

    # -- checkpointing -------------------------------------------------------------------------
    def _save(self, step: int, supernet: nn.Module, alpha: ArchParameters, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer, seconds: float) -> None:
        """Checkpoint on rank 0 (every rank calls it: the RNG states of all ranks are kept)."""
        cuda = self.device.type == "cuda"
        rngs = distributed.gather((torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None))
        if not distributed.is_main():
            return
        _atomic_torch_save(
            {
                "step": step,
                "supernet": supernet.state_dict(),
                "alpha": alpha.state_dict(),
                "w_opt": w_opt.state_dict(),
                "a_opt": a_opt.state_dict(),
                "rows": self.rows,
                "seconds": seconds,
                "options": {k: (float(v) if isinstance(v, float) else v) for k, v in self.o.items()},
                "torch_rng": rngs[0][0],
                **({"cuda_rng": rngs[0][1]} if cuda else {}),
                **({"torch_rng_ranks": [r[0] for r in rngs]} if len(rngs) > 1 else {}),
                **({"cuda_rng_ranks": [r[1] for r in rngs]} if len(rngs) > 1 and cuda else {}),
            },
            self.ctx.run_dir / "checkpoints" / CKPT,
        )

    # -- the loop ------------------------------------------------------------------------------
    def _read_checkpoint(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint to resume from (checked against the options), or None for a fresh run."""
        if not path.is_file():
            return None
        ck = load_darts_checkpoint(path)
        stored = ck.get("options", {})
        if any(stored.get(k) != (float(v) if isinstance(v, float) else v) for k, v in self.o.items()):
            raise UserError("the DARTS checkpoint was made with other options; use another --out directory", file=str(path))
        return ck

    def run(self) -> None:
        ctx, o = self.ctx, self.o
        data = ctx.data
        rank = distributed.current()
        distributed.check_batch(o["batch"], "options.batch")
        seed_everything(data.seed)  # before building: initial weights are part of the run
        self.device = device = distributed.device_for(resolve_device(data.device))
        supernet = ctx.space.supernet().to(device)
        alpha = ArchParameters({n: s.budgets for n, s in self.sites.items()}).to(device)
        w_opt = torch.optim.Adam(model_param_groups(supernet, o["w_lr"]), lr=o["w_lr"])
        a_opt = torch.optim.Adam(alpha.parameters(), lr=o["a_lr"], betas=(0.5, 0.999), weight_decay=1e-3)
        train = PatchSampler(data.train_items, data.task, o["patch"], o["batch"], seed=data.seed)
        val = PatchSampler(data.val_items, data.task, o["patch"], o["batch"], seed=data.seed + 1)
        path = ctx.run_dir / "checkpoints" / CKPT
        start = 0
        ck = distributed.on_main(self._read_checkpoint, path)  # read on rank 0, sent to the others
        if ck is not None:
            supernet.load_state_dict(ck["supernet"])
            alpha.load_state_dict(ck["alpha"])
            w_opt.load_state_dict(ck["w_opt"])
            a_opt.load_state_dict(ck["a_opt"])
            self.rows = list(ck["rows"])
            own = len(ck.get("torch_rng_ranks") or [0]) == rank.world  # the same number of ranks: each its own state
            torch.set_rng_state(ck["torch_rng_ranks"][rank.rank] if own and rank.enabled else ck["torch_rng"])
            if "cuda_rng" in ck and device.type == "cuda":
                cuda_rng = ck["cuda_rng_ranks"][rank.rank] if own and rank.enabled and "cuda_rng_ranks" in ck else ck["cuda_rng"]
                torch.cuda.set_rng_state(cuda_rng, device)
            start = int(ck["step"])
            ctx.elapsed_offset = float(ck["seconds"])
            ctx.started = time.time()
        if rank.rank > 0 and (ck is None or len(ck.get("torch_rng_ranks") or [0]) != rank.world):
            torch.manual_seed(_mix_seed(data.seed * 7919 + rank.rank, start))  # each rank its own noise
        net = distributed.wrap(supernet, device, find_unused=True)  # DDP for the weight step
        steps, warm = o["steps"], self.warmup_steps()
        for step in range(start, steps):
            if step > start and step % o["ckpt_every"] == 0:
                self._save(step, supernet, alpha, w_opt, a_opt, ctx.elapsed())
            tau = self.temperature(step)
            supernet.train()
            # weights on training patches (this rank's slice of the global batch)
            lq, hr = (t.to(device) for t in distributed.shard(train.batch_at(step)))
            if step < warm:
                supernet.use(ctx.space.sample(random.Random(data.seed * 1_000_003 + step)).modules)
            else:
                with torch.no_grad():
                    probs = alpha.probs(tau, o["gumbel"])
                supernet.use_mix({n: (self.sites[n].budgets, probs[n]) for n in self.sites}, self.scope)
            loss = F.l1_loss(net(lq), hr)
            value = distributed.mean(loss.detach())  # the global-batch loss, the same on every rank
            if not math.isfinite(value):
                raise NonFiniteLossError(f"the supernet loss became {value} at DARTS step {step}; the last checkpoint "
                                         "is kept. Lower options.w_lr or options.grad_clip (in a new --out directory)",
                                         field="options.w_lr")
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(supernet.parameters(), o["grad_clip"])
            w_opt.step()
            # architecture on validation patches (first order)
            if step >= warm:
                vlq, vhr = (t.to(device) for t in distributed.shard(val.batch_at(step)))
                probs = alpha.probs(tau, o["gumbel"])
                supernet.use_mix({n: (self.sites[n].budgets, probs[n]) for n in self.sites}, self.scope)
                a_loss = F.l1_loss(supernet(vlq), vhr) + o["penalty"] * self.penalty(probs)
                a_opt.zero_grad(set_to_none=True)
                w_opt.zero_grad(set_to_none=True)
                a_loss.backward()  # through the plain module: DDP's hooks stay out of the architecture step
                distributed.average_gradients(list(alpha.parameters()))
                a_opt.step()
            if ((step + 1) % o["log_every"] == 0 or step + 1 == steps) and rank.main:
                self.log(step + 1, supernet, alpha, tau, state="COMPLETE")
        self._save(steps, supernet, alpha, w_opt, a_opt, ctx.elapsed())
        if rank.main:
            write_trajectory(self.rows, ctx.run_dir / "trajectory.csv", ctx.sites)

    @torch.no_grad()
    def log(self, step: int, supernet: Any, alpha: ArchParameters, tau: float, state: str) -> None:
        ctx = self.ctx
        probs = alpha.probs(tau)
        arch = self.derive(probs)
        supernet.use(arch.modules)
        value = score_on_patches(supernet, ctx.data)
        cost = ctx.space.cost(arch)
        extra: dict[str, Any] = {"temperature": tau}
        for n in ctx.sites:
            if n in probs:
                for k, p in zip(self.sites[n].budgets, probs[n].tolist()):
                    extra[f"p:{n}:{k}"] = round(p, 6)
        self.rows.append(
            make_row(
                run=ctx.run_name, strategy=ctx.strategy_name, evaluator="oneshot", step=step, state=state if math.isfinite(value) else "FAIL",
                sites=ctx.sites, arch=arch, encoding=ctx.space.encode(arch), psnr=value, flops=cost["macs"], params=cost["params"],
                seconds=ctx.elapsed(), extra=extra,
            )
        )
        write_trajectory(self.rows, ctx.run_dir / "trajectory.csv", ctx.sites)

    def best(self) -> tuple[Arch, dict] | None:
        """The architecture derived at the last logged step (DARTS's answer), with its scores."""
        if not self.rows:
            path = self.ctx.run_dir / "checkpoints" / CKPT
            if not path.is_file():
                return None
            self.rows = list(load_darts_checkpoint(path)["rows"])
        last = self.rows[-1]
        import json

        arch = self.ctx.space.decode(json.loads(last["arch"]))
        return arch, {"psnr": last["psnr"], "flops": last["flops"], "params": last["params"], "step": last["step"]}
