"""Networks with ACLA modules attached at backbone sites, without editing the backbone's code.

Forward hooks on the site modules record each site's output (after its own ACLA module, if any)
on a per-forward feature bus, and replace the output of sites that carry a module. The hooks are
small objects (not closures), so ``copy.deepcopy`` of a network stays self-consistent.

* :func:`build` -> a plain child: exactly the modules of an :class:`~acla_nas.nn.arch.Arch`.
* :func:`build_supernet` -> one module of ``K_max`` keys per candidate site attending to every
  earlier site any scope choice may use; the budget and scope of each site are chosen per forward
  call (prefix slicing and layer subsets), and DARTS can mix budgets in one pass. The supernet
  therefore costs one module per site, not the sum of all choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.nn.acla import ACLA, check_acla_options
from acla_nas.nn.arch import Arch, ModuleChoice, resolve_modules, task_scale
from acla_nas.nn.attention_native import shared_rows
from acla_nas.nn.backbones import Site, create_backbone
from acla_nas.nn.backbones.weights import load_into as load_backbone_weights
from acla_nas.nn.scope import Scope, resolve_refs
from acla_nas.runtime.memory import on_meta


def _key(site: str) -> str:
    return site.replace(".", "__")


@dataclass
class SiteRun:
    """Per-forward configuration of one supernet site."""

    k: int = 0  # 0 = module off
    active: list[int] | None = None
    mix: tuple[Sequence[int], torch.Tensor] | None = None


class FeatureBus:
    """Per-forward storage shared by the hooks of one network."""

    def __init__(self) -> None:
        self.feats: dict[str, torch.Tensor] = {}
        self.runs: dict[str, SiteRun] | None = None


class _SiteHook:
    """Forward hook of one site: apply its ACLA module (if any) and record the output."""

    def __init__(self, net: ACLANetwork, site: str) -> None:
        self.bus = net.bus
        self.site = site
        self.module: ACLA | None = net.acla[_key(site)] if _key(site) in net.acla else None
        self.refs = list(net.refs.get(site, []))
        self.keep = site in net.needed

    def __call__(self, _mod: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor | None:
        bus = self.bus
        new = None
        if self.module is not None:
            run = bus.runs.get(self.site) if bus.runs is not None else None
            if run is None:
                new = self.module(out, [bus.feats[r] for r in self.refs])
            elif run.k > 0 or run.mix is not None:
                active = run.active if run.active is not None else range(len(self.refs))
                refs = [bus.feats[r] if i in active else None for i, r in enumerate(self.refs)]
                new = self.module(out, refs, k=run.k or None, active=run.active, mix=run.mix)
        if self.keep:
            bus.feats[self.site] = out if new is None else new
        return new


class ACLANetwork(nn.Module):
    """A backbone plus ACLA modules at some of its sites (a plain ``nn.Module``)."""

    def __init__(
        self, backbone: nn.Module, sites: list[Site], modules: dict[str, ACLA], refs: dict[str, list[str]]
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.sites = list(sites)
        self.scale = int(getattr(backbone, "scale", 1))
        self.acla = nn.ModuleDict({_key(s): m for s, m in modules.items()})
        self.refs = {s: list(r) for s, r in refs.items()}
        self.needed = set(modules) | {r for rs in refs.values() for r in rs}
        self.bus = FeatureBus()
        named = dict(backbone.named_modules())
        self._handles = []
        for site in [s.name for s in sites]:
            if site in self.needed:
                self._handles.append(named[site].register_forward_hook(_SiteHook(self, site)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bus.feats = {}
        for m in self.acla.values():  # a module skipped in this pass must not leave a stale penalty
            m.key_cost = None
        try:
            with shared_rows():  # the native core's copies of an earlier layer, made once per pass
                return self.backbone(x)
        finally:
            self.bus.feats = {}

    def acla_modules(self) -> dict[str, ACLA]:
        return {k.replace("__", "."): m for k, m in self.acla.items()}

    def auxiliary_loss(self) -> torch.Tensor | None:
        """The modules' key-usage penalties of the last training forward (None when there are none)."""
        costs = [m.key_cost for m in self.acla.values() if m.key_cost is not None]
        return torch.stack(costs).sum() if costs else None

    def param_lr_multipliers(self) -> list[tuple[float, list[nn.Parameter]]]:
        """(multiplier, parameters) whose learning rate is not the base one: the ACLA offset and
        gate predictors under ``offset_lr_mult`` (their zero-initialised weights otherwise move
        a fraction of a pixel in a short training)."""
        groups: dict[float, list[nn.Parameter]] = {}
        for m in self.acla.values():
            if m.offset_lr_mult != 1.0:
                groups.setdefault(m.offset_lr_mult, []).extend(m.predictor_parameters())
        return [(k, v) for k, v in groups.items() if v]

    def keys_used(self) -> dict[str, float]:
        """Mean keys kept per query at each module in the last forward pass."""
        return {s: float(m.last_keys_used) for s, m in self.acla_modules().items() if m.last_keys_used is not None}


def _backbone_for(arch: Arch, file: str | None = None) -> tuple[nn.Module, list[Site]]:
    scale = task_scale(arch.task, file)
    bb = create_backbone(arch.backbone, scale=scale, kwargs=arch.backbone_kwargs, sites=arch.sites, file=file)
    if arch.weights is not None and not on_meta():  # shapes only on meta: nothing to load
        load_backbone_weights(bb, arch.weights, file)
    return bb, list(bb.acla_sites)


def build(arch: Arch, file: str | None = None) -> ACLANetwork:
    """The child network of ``arch`` (named in ``file``): its backbone with exactly its ACLA modules."""
    backbone, sites = _backbone_for(arch, file)
    order = [s.name for s in sites]
    channels = {s.name: s.channels for s in sites}
    opts = check_acla_options(arch.acla, file=file)
    refs = resolve_modules(arch, order, file)
    modules = {
        site: ACLA(channels[site], [channels[r] for r in refs[site]], arch.modules[site].keys, **opts) for site in refs
    }
    net = ACLANetwork(backbone, sites, modules, refs)
    net.arch = arch  # provenance for export; not part of the state dict
    return net


@dataclass(frozen=True)
class SiteChoices:
    """What a supernet site may take: key budgets (0 = no module) and reference scopes."""

    budgets: tuple[int, ...]
    scopes: tuple[Scope, ...] = ("all",)


class Supernet(ACLANetwork):
    """Weight-sharing supernet; :meth:`use` picks the child (budgets and scopes) per forward call."""

    def __init__(
        self, backbone: nn.Module, sites: list[Site], choices: dict[str, SiteChoices], acla: dict | None = None
    ) -> None:
        order = [s.name for s in sites]
        channels = {s.name: s.channels for s in sites}
        opts = check_acla_options(acla)
        modules: dict[str, ACLA] = {}
        refs: dict[str, list[str]] = {}
        self_scope_refs: dict[str, dict[Scope, list[int]]] = {}
        for site, ch in choices.items():
            if site not in order:
                raise UserError(f"unknown site (the backbone's sites: {', '.join(order)})", field=f"sites.{site}")
            k_max = max(ch.budgets)
            if k_max == 0:
                continue
            per_scope = {sc: resolve_refs(order, site, sc, field_name=f"sites.{site}.scopes") for sc in ch.scopes}
            union = sorted({r for rs in per_scope.values() for r in rs}, key=order.index)
            modules[site] = ACLA(channels[site], [channels[r] for r in union], k_max, **opts)
            refs[site] = union
            self_scope_refs[site] = {sc: [union.index(r) for r in rs] for sc, rs in per_scope.items()}
        super().__init__(backbone, sites, modules, refs)
        self.choices = dict(choices)
        self.scope_index = self_scope_refs
        self.use({})

    def use(self, modules: dict[str, ModuleChoice]) -> Supernet:
        """Run the child with these per-site choices (sites not named: no module)."""
        runs: dict[str, SiteRun] = {}
        for site in self.acla_modules():
            choice = modules.get(site)
            if choice is None or choice.keys == 0:
                runs[site] = SiteRun(0)
                continue
            if choice.keys > self.acla[_key(site)].k_max:
                raise UserError(
                    f"key budget {choice.keys} above the supernet's K_max {self.acla[_key(site)].k_max}",
                    field=f"modules.{site}.keys",
                )
            runs[site] = SiteRun(choice.keys, self._active(site, choice.scope))
        for site, choice in modules.items():
            if choice.keys > 0 and site not in runs:
                raise UserError("this site carries no module in the supernet", field=f"modules.{site}")
        self.bus.runs = runs
        return self

    def use_mix(
        self, mixes: dict[str, tuple[Sequence[int], torch.Tensor]], scopes: dict[str, Scope] | None = None
    ) -> Supernet:
        """DARTS: at each site, blend the given budgets with the given weights in one pass."""
        runs: dict[str, SiteRun] = {}
        for site in self.acla_modules():
            if site in mixes:
                scope = (scopes or {}).get(site, self.choices[site].scopes[0])
                runs[site] = SiteRun(0, self._active(site, scope), mixes[site])
            else:
                runs[site] = SiteRun(0)
        self.bus.runs = runs
        return self

    def _active(self, site: str, scope: Scope) -> list[int]:
        table = self.scope_index[site]
        if scope not in table:
            raise UserError(
                f"scope {scope!r} is not among this site's choices {list(table)}", field=f"modules.{site}.scope"
            )
        return table[scope]


def build_supernet(template: Arch, choices: dict[str, SiteChoices], file: str | None = None) -> Supernet:
    """Supernet over ``choices`` on the template's backbone and task (its modules are ignored)."""
    backbone, sites = _backbone_for(template, file)
    return Supernet(backbone, sites, choices, template.acla)


def copy_child_weights(supernet: Supernet, child: ACLANetwork) -> None:
    """Give a child the supernet's weights for its choices (prefix keys, active reference layers)."""
    child.backbone.load_state_dict(supernet.backbone.state_dict())
    for site, mod in child.acla_modules().items():
        src = supernet.acla[_key(site)]
        arch_choice = child.arch.modules[site]
        active = supernet._active(site, arch_choice.scope)
        k = mod.k_max
        n_src = len(src.ref_channels)
        ch_idx = torch.cat([torch.arange(sum(src.ref_channels[:i]), sum(src.ref_channels[: i + 1])) for i in active])
        with torch.no_grad():
            mod.query.weight.copy_(src.query.weight[ch_idx])
            mod.out.weight.copy_(src.out.weight[:, ch_idx])
            mod.out.bias.copy_(src.out.bias)
            w = src.offset.weight.view(n_src, src.k_max, 2, *src.offset.weight.shape[1:])[active, :k]
            mod.offset.weight.copy_(w.reshape(mod.offset.weight.shape))
            bvec = src.offset.bias.view(n_src, src.k_max, 2)[active, :k]
            mod.offset.bias.copy_(bvec.reshape(-1))
            if mod.gate is not None and src.gate is not None:
                mod.gate.weight.copy_(src.gate.weight[:k])
                mod.gate.bias.copy_(src.gate.bias[:k])
            if mod.context is not None and src.context is not None:
                mod.context.load_state_dict(src.context.state_dict())
