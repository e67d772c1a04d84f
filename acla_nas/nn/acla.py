"""Adaptive Cross-Layer Attention (ACLA, arXiv 2203.03619).

A query pixel of the current feature map attends to K keys per earlier layer, sampled bilinearly
at offsets predicted from the query. Softmax runs over all L*K sampled keys of a query; a
per-query gate keeps a flexible number of the K keys (Gumbel-relaxed with a straight-through hard
mask in training, hard at inference).

Efficiency: bilinear sampling commutes with 1x1 (pointwise linear) projections, so instead of
projecting every earlier layer into keys and values and sampling both, the module samples each
earlier layer's raw features once (one ``grid_sample`` call for all K keys of a layer) and folds

* the key projection into the query side: ``q_l = A_l x`` lives in layer l's channel space, and
  the logit of a sampled feature ``f`` is ``<q_l, f> / sqrt(C_l)`` (= ``<W_q x, W_k f>``);
* the value projection into the output: ``out = x + sum_l B_l (sum_k a_lk f_lk)`` with the
  ``B_l`` (one 1x1 conv over the concatenated layers) zero-initialised.

This is the same function class as separate key/value projections without biases, at half the
sampled channels. On CPU the sampling and attention arithmetic run in a fused C kernel that
stores no samples (``attention_native``; where no C compiler works, one autograd node arranged
for memory traffic, ``attention_node``); on CUDA, opt-in, a fused Triton kernel (``acla_triton``);
under tracing, compilation or on other devices the plain formulation in ``ACLA.forward`` (the
choice: ``attention_core.select_core``). All compute the same function.
Sampling coordinates are normalised (``align_corners=False``), so an earlier layer with another
spatial size is sampled at the corresponding position; other channel counts are handled by the
per-layer ``A_l`` / ``B_l``. The native core takes the offsets themselves (the key positions
and their gradient are computed in the kernel, equal to the grid below up to rounding) and works
on channels-last rows, so on that path the 1x1 projections run as matrix products over rows.

Key-budget slicing: a module built with ``k_max`` keys runs with any ``k <= k_max`` using the
first ``k`` keys' offset and gate parameters (weight sharing for the supernet). ``active`` picks a
subset of the reference layers (reference-scope sharing), and ``mix`` blends several key budgets
in one pass (DARTS): the expensive sampling is done once at the largest budget and only the
softmax is recomputed per budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from acla_nas.core.checks import real_number, shown
from acla_nas.core.errors import UserError
from acla_nas.nn.attention_core import core_function, select_core

ACLA_OPTIONS = {
    "adaptive": bool,  # per-query gate over the K keys
    "tau": float,  # Gumbel-sigmoid temperature of the gate in training
    "gate_init": float,  # initial gate logit (positive: keys start kept)
    "offset_kernel": int,  # kernel size of the offset/gate predictors (1 or 3)
    "init_radius": float,  # rings: spacing of the initial key rings; spiral/random: their largest radius (query px)
    "key_penalty": float,  # training loss weight on the fraction of keys kept (0: no pressure to drop keys)
    "key_layout": str,  # initial key positions: rings | spiral | lattice (neighbours of a square lattice of period init_radius)
    "offsets": str,  # learned | fixed (frozen at the initial layout) | random (frozen at random positions)
    "offset_lr_mult": float,  # learning-rate multiplier of the offset and gate predictors
    "offset_context": str,  # what the predictors see: local (their kernel) | dilated (+ a 29 px dilated context) | pooled (+ 4/8/16 px pooled means)
}
ACLA_CHOICES: dict[str, tuple[str, ...]] = {
    "key_layout": ("rings", "spiral", "lattice"),
    "offset_context": ("local", "dilated", "pooled"),
    "offsets": ("learned", "fixed", "random"),
}
ACLA_DEFAULTS: dict[str, object] = {
    "adaptive": True,
    "tau": 1.0,
    "gate_init": 2.0,
    "offset_kernel": 3,
    "init_radius": 1.0,
    "key_penalty": 0.0,
    "key_layout": "rings",
    "offset_context": "local",
    "offsets": "learned",
    "offset_lr_mult": 1.0,
}


def check_acla_options(options: dict | None, *, file: str | None = None) -> dict:
    """Merge ``options`` over the defaults, checking names and types (UserError otherwise)."""
    merged = dict(ACLA_DEFAULTS)
    for key, value in (options or {}).items():
        if key not in ACLA_OPTIONS:
            raise UserError(
                f"unknown option (expected one of {', '.join(ACLA_OPTIONS)})", file=file, field=f"acla.{key}"
            )
        typ = ACLA_OPTIONS[key]
        if typ is bool and not isinstance(value, bool):
            raise UserError(f"expected true or false, got {value!r}", file=file, field=f"acla.{key}")
        if typ in (int, float) and (not isinstance(value, (int, float)) or real_number(value) is None):
            raise UserError(f"expected a finite number, got {shown(value)}", file=file, field=f"acla.{key}")
        if typ is int and value != int(value):
            raise UserError(f"expected an integer, got {value!r}", file=file, field=f"acla.{key}")
        if typ is str and value not in ACLA_CHOICES[key]:
            raise UserError(
                f"expected one of {', '.join(ACLA_CHOICES[key])}, got {value!r}", file=file, field=f"acla.{key}"
            )
        merged[key] = typ(value)
    if merged["offset_kernel"] not in (1, 3, 5):
        raise UserError("expected 1, 3 or 5", file=file, field="acla.offset_kernel")
    if merged["tau"] <= 0:
        raise UserError("expected a positive temperature", file=file, field="acla.tau")
    if not merged["key_penalty"] >= 0:
        raise UserError("expected a non-negative weight", file=file, field="acla.key_penalty")
    if not merged["init_radius"] > 0:
        raise UserError("expected a positive radius (query pixels)", file=file, field="acla.init_radius")
    if not merged["offset_lr_mult"] > 0:
        raise UserError("expected a positive multiplier", file=file, field="acla.offset_lr_mult")
    return merged


def _van_der_corput(n: int) -> list[float]:
    """The first ``n`` points of the base-2 van der Corput sequence (0, 1/2, 1/4, 3/4, ...)."""
    out = []
    for i in range(n):
        x, f, j = 0.0, 0.5, i
        while j:
            x += f * (j & 1)
            j >>= 1
            f /= 2
        out.append(x)
    return out


#: lattice neighbours in key order: every prefix spans both axes before the diagonals
_LATTICE_ORDER = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def initial_offsets(
    k_max: int, radius: float, layout: str = "rings", generator: torch.Generator | None = None
) -> torch.Tensor:
    """(k_max, 2) pixel offsets (x, y) of the keys before training; key 0 sits at the query.

    * ``rings``: rings of 8 keys at radii ``radius``, ``2 * radius``, ...
    * ``spiral``: radii log-spaced from 1 px to ``radius`` at golden-angle steps; key 1 is the
      farthest, the others follow in van der Corput order, so every prefix of keys (a smaller
      budget) spans far and near;
    * ``random``: uniform over the disc of ``radius`` (drawn from ``generator`` or torch's RNG):
      the random-position control of the benchmarks;
    * ``lattice``: the neighbours of a square, axis-aligned lattice of period ``radius``: the four
      axis neighbours first (right, left, down, up), then the four diagonals, then the same at
      twice the period, ...: where an exact repeat of the query's content lies on such a lattice.

    Ordered so that every prefix of keys (a smaller budget) covers the neighbourhood evenly.
    """
    out = torch.zeros(k_max, 2)
    n = k_max - 1
    if layout == "random":
        if n:
            u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
            r = radius * u[:, 0].sqrt()
            a = 2 * math.pi * u[:, 1]
            out[1:, 0], out[1:, 1] = (r * a.cos()).float(), (r * a.sin()).float()
        return out
    if layout == "spiral":
        lo = min(1.0, radius)
        vdc = _van_der_corput(n)
        rank = sorted(range(n), key=vdc.__getitem__)  # rank[i]: the key taking the i-th radius from the far end
        for i, key in enumerate(rank):
            r = lo * (radius / lo) ** ((n - 1 - i) / (n - 1)) if n > 1 else radius
            angle = (key + 1) * math.pi * (3 - math.sqrt(5))
            out[key + 1, 0], out[key + 1, 1] = r * math.cos(angle), r * math.sin(angle)
        return out
    if layout == "lattice":
        for j in range(1, k_max):
            ring, pos = divmod(j - 1, 8)
            dx, dy = _LATTICE_ORDER[pos]
            out[j, 0], out[j, 1] = radius * (ring + 1) * dx, radius * (ring + 1) * dy
        return out
    for j in range(1, k_max):
        ring, pos = divmod(j - 1, 8)
        angle = 2 * math.pi * pos / 8 + (math.pi / 8) * (ring % 2)
        r = radius * (ring + 1)
        out[j, 0] = r * math.cos(angle)
        out[j, 1] = r * math.sin(angle)
    return out


# -- attention core, CPU fast path ------------------------------------------------------------
# The same function as the plain formulation in ``ACLA.forward`` (equal up to float rounding),
# arranged for CPU memory traffic: the plain one makes a temporary as large as the samples for
# every product with the query or the weights, and autograd several more for their gradients.
# (Measured in benchmarks/acla_module.py: about 1.4x faster and 35% less peak memory.)
#
# * Samples are taken in rows ordered (query row, key): the grid is (B, H*k, W, 2) and the samples
#   (B, C, H, k, W). ``grid_sample`` then sweeps each reference map once, all keys of a query row
#   together, rather than once per key, so the taps it reads and the gradient it scatters stay in
#   cache (its backward pass alone: 1.3x faster at 128^2, 1.5x at 256^2).
# * Every contraction accumulates over its short axis (the C channels or the k keys) with
#   ``addcmul_`` into its small output: no temporary the size of the samples.
# * One autograd node covers sampling, logits, attention weights and the weighted sum: the
#   weights (softmax, gate, budget mix) come from a function run on detached inputs and
#   differentiated with ``torch.autograd.grad`` in the backward pass, so the samples' gradient
#   ``g (x) attn + q (x) dlogit`` is written over the samples themselves (no longer needed by then)
#   and handed to ``grid_sampler_2d_backward``: no gradient buffer the size of the samples either.
#: one convolution for the offset and gate predictors (see ``ACLA._predictors``); False: two
FUSE_PREDICTORS = True


def _dispatch_mode_active() -> bool:
    """A ``TorchDispatchMode`` (FlopCounterMode, fake tensors, ...) is intercepting operators."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return _get_current_dispatch_mode() is not None


def _plain_core() -> bool:
    """Use the plain broadcasting formulation (tracing, scripting, compiling, exporting)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class PooledContext(nn.Module):
    """A multi-scale pooled context for the offset and gate predictors (``offset_context: pooled``).

    The paper's predictors see a 3x3 window, too little to tell a 16 px period from a 32 px one.
    This branch averages the query map over 4, 8 and 16 px blocks, mixes each scale with a 3x3
    conv (so a block sees its neighbours: 12-48 px of context), upsamples bilinearly back and sums
    the scales: a wide view for a few MACs per pixel, on any input size. (The search's cost model
    probes a module on a 1x1 query and scales by the pixels, so it counts these convs as if at full
    resolution, like the dilated stack's: an upper bound, about 12x the true figure.)
    """

    SCALES = (4, 8, 16)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in self.SCALES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = torch.zeros_like(x)
        for s, conv in zip(self.SCALES, self.mix, strict=True):
            pooled = F.avg_pool2d(x, s, s, ceil_mode=True, count_include_pad=False)
            out = out + F.interpolate(torch.relu(conv(pooled)), size=size, mode="bilinear", align_corners=False)
        return out


class ACLA(nn.Module):
    """Cross-layer deformable attention with adaptive key selection.

    Args:
        channels: channels of the query (current) feature map; the output has the same.
        ref_channels: channels of each earlier (reference) layer, earliest first.
        k_max: keys sampled per reference layer at the full budget.
        adaptive, tau, gate_init, offset_kernel, init_radius, key_penalty, key_layout, offsets,
        offset_lr_mult: see ``ACLA_OPTIONS``.

    After each forward, ``last_keys_used`` holds the mean number of the K keys that a query kept
    (per reference layer; a query attends to ``L * last_keys_used`` keys in all). With
    ``record = True`` it also keeps ``last_key_map`` (B,H,W), ``last_key_mask`` (B,k,H,W: which
    keys each query kept) and ``last_locations`` (per layer,
    (B,K,H,W,2) normalised x,y sampling coordinates) for visualisation.

    Without pressure the gate has no reason to drop a key (more keys never hurt the loss), so
    ``key_penalty`` > 0 makes each training forward leave ``key_cost`` = key_penalty x the
    fraction of keys kept (differentiable through the straight-through gate); the network sums
    it in ``auxiliary_loss()`` and the trainer adds that to the reconstruction loss.
    """

    def __init__(
        self,
        channels: int,
        ref_channels: Sequence[int],
        k_max: int,
        *,
        adaptive: bool = True,
        tau: float = 1.0,
        gate_init: float = 2.0,
        offset_kernel: int = 3,
        init_radius: float = 1.0,
        key_penalty: float = 0.0,
        key_layout: str = "rings",
        offsets: str = "learned",
        offset_lr_mult: float = 1.0,
        offset_context: str = "local",
    ) -> None:
        super().__init__()
        if k_max < 1:
            raise ValueError("k_max must be >= 1")
        if not ref_channels:
            raise ValueError("an ACLA module needs at least one earlier layer")
        self.channels = int(channels)
        self.ref_channels = [int(c) for c in ref_channels]
        self.k_max = int(k_max)
        self.adaptive = bool(adaptive)
        self.tau = float(tau)
        self.key_penalty = float(key_penalty)
        self.offset_mode = offsets
        self.offset_lr_mult = float(offset_lr_mult)
        n_layers = len(self.ref_channels)
        total = sum(self.ref_channels)
        # Query projected into each reference layer's channel space (folded key projection).
        self.query = nn.Conv2d(channels, total, 1, bias=False)
        # What the offset and gate predictors see: the query's kernel alone (the paper: 3x3), or
        # also a dilated context (dilations 2, 4, 8: 29 px) wide enough to span a period.
        # ``pooled``: block means over 4, 8 and 16 px (PooledContext), cheaper than the dilated stack.
        self.context: nn.Module | None = None
        if offset_context == "dilated":
            self.context = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=4, dilation=4),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=8, dilation=8),
            )
        elif offset_context == "pooled":
            self.context = PooledContext(channels)
        pred_in = channels * (2 if self.context is not None else 1)
        # Offsets (x, y) in query pixels per layer and key: zero weights, ring-pattern bias.
        pad = offset_kernel // 2
        self.offset = nn.Conv2d(pred_in, n_layers * self.k_max * 2, offset_kernel, padding=pad)
        nn.init.zeros_(self.offset.weight)
        with torch.no_grad():
            if offsets == "random":  # each layer its own random pattern
                start = torch.cat([initial_offsets(self.k_max, init_radius, "random") for _ in range(n_layers)])
            else:
                start = initial_offsets(self.k_max, init_radius, key_layout).repeat(n_layers, 1)
            self.offset.bias.copy_(start.reshape(-1))
        if offsets != "learned":  # controls: key positions relative to the query stay where they start
            self.offset.requires_grad_(False)
            if self.context is not None:
                self.context.requires_grad_(False)
        # Per-query gate over the K keys (shared by the layers: key j of every layer).
        self.gate = nn.Conv2d(pred_in, self.k_max, offset_kernel, padding=pad) if self.adaptive else None
        if self.gate is not None:
            nn.init.normal_(self.gate.weight, std=1e-3)
            nn.init.constant_(self.gate.bias, gate_init)
        # Output (folded value) projection, zero-initialised: inserting a module is the identity.
        self.out = nn.Conv2d(total, channels, 1, bias=True)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self._offsets_in = [sum(self.ref_channels[:i]) for i in range(n_layers)]
        self.record = False
        self.last_keys_used: torch.Tensor | None = None
        self.key_cost: torch.Tensor | None = None
        self.last_key_map: torch.Tensor | None = None
        self.last_locations: list[torch.Tensor] | None = None
        self.last_key_mask: torch.Tensor | None = None

    # -- helpers -------------------------------------------------------------------------------
    def predictor_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the offset and gate predictors (``offset_lr_mult`` applies)."""
        mods = [self.offset] + [m for m in (self.gate, self.context) if m is not None]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def _channel_index(self, layers: Sequence[int]) -> torch.Tensor | None:
        if len(layers) == len(self.ref_channels):
            return None
        idx = [torch.arange(self._offsets_in[i], self._offsets_in[i] + self.ref_channels[i]) for i in layers]
        return torch.cat(idx)

    def _gate_mask(self, logits: torch.Tensor, k: int) -> torch.Tensor:
        """(B,k,H,W) mask with values exactly 0 or 1 (straight-through gradients in training)."""
        if self.training:
            u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.tau)
            hard = (soft > 0.5).to(logits.dtype)
            return hard + (soft - soft.detach())  # exactly 0 or 1 in value
        return (logits > 0).to(logits.dtype)

    @staticmethod
    def _keep_one(mask: torch.Tensor, gate_logits: torch.Tensor | None, k: int) -> torch.Tensor:
        """Within the first k keys, keep the highest-gate key of queries that dropped all k."""
        sub = mask[:, :k]
        empty = sub.detach().sum(1, keepdim=True) == 0
        ref = gate_logits[:, :k] if gate_logits is not None else torch.zeros_like(sub)
        best = (
            F.one_hot(ref.max(1).indices, k).permute(0, 3, 1, 2).to(sub.dtype)
        )  # = argmax(1), first max; faster on CPU
        return torch.where(empty, best, sub)

    def _predictors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The offset and gate predictors' outputs over ``x`` (the query map, with its context if
        any), as one convolution when both use the same kernel: one pass over the input and its
        gradient instead of two; the parameters stay two convolutions (state dicts unchanged)."""
        off, gate = self.offset, self.gate
        if gate is None or FUSE_PREDICTORS is False or off.kernel_size != gate.kernel_size:
            return off(x), (gate(x) if gate is not None else None)
        weight = torch.cat([off.weight, gate.weight])
        bias = torch.cat([off.bias, gate.bias])
        both = F.conv2d(x, weight, bias, padding=off.padding)
        return both.split([off.out_channels, gate.out_channels], 1)

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        refs: Sequence[torch.Tensor | None],
        k: int | None = None,
        active: Sequence[int] | None = None,
        mix: tuple[Sequence[int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` (B,C,H,W) to the earlier feature maps ``refs``.

        Args:
            refs: one tensor per reference layer of the module (entries not in ``active`` may be None).
            k: key budget (default ``k_max``); the first ``k`` keys' parameters are used.
            active: indices of the reference layers to attend (default: all).
            mix: ``(budgets, weights)`` — blend the outputs of several key budgets (0 = no module)
                with the given weights, sampling once at the largest budget (DARTS relaxation).
        """
        n_layers = len(self.ref_channels)
        if len(refs) != n_layers:
            raise ValueError(f"expected {n_layers} reference tensors, got {len(refs)}")
        layers = list(range(n_layers)) if active is None else list(active)
        if mix is not None:
            budgets = [int(b) for b in mix[0]]
            k = max(budgets)
            if k == 0:
                return x
        k = self.k_max if k is None else int(k)
        if not 1 <= k <= self.k_max:
            raise ValueError(f"key budget {k} outside 1..{self.k_max}")
        b, _, h, w = x.shape
        dtype = x.dtype

        chan_idx = self._channel_index(layers)
        q_weight = self.query.weight if chan_idx is None else self.query.weight[chan_idx.to(x.device)]
        feat = x if self.context is None else torch.cat([x, self.context(x)], 1)
        off_raw, gate_raw = self._predictors(feat)
        offsets = off_raw.view(b, n_layers, self.k_max, 2, h, w)[:, :, :k]
        if len(layers) != n_layers:
            offsets = offsets[:, layers]  # the active layers only
        gate_logits = gate_raw[:, :k] if gate_raw is not None else None

        core = "plain" if _plain_core() else select_core(x.device)  # see attention_core
        if core in ("native", "triton") and _dispatch_mode_active():
            core = "node"  # raw pointers and kernel launches do not pass through dispatch modes (the FLOP counter, fake tensors)
        # Normalised sampling coordinates (align_corners=False) of query pixel + offset, computed
        # from the sizes with tensor ops so an exported graph stays valid at other input sizes (the
        # native core computes them itself, from the offsets).
        # Layer-major, rows ordered (query row, key): one contiguous (B, H*k, W, 2) grid per layer
        # without a copy, and one gradient for all of them (per-layer indexing of a (B,L,...)
        # tensor would zero-fill a full-size gradient per layer).
        grids = None
        if core != "native" or self.record:
            off = offsets.permute(1, 0, 4, 2, 5, 3)  # (L,B,H,k,W,2) offsets in query pixels, (x, y)
            px = torch.arange(w, device=x.device, dtype=dtype).view(1, 1, 1, 1, w) + off[..., 0]
            py = torch.arange(h, device=x.device, dtype=dtype).view(1, 1, h, 1, 1) + off[..., 1]
            grids = torch.stack(((px * 2 + 1) / w - 1, (py * 2 + 1) / h - 1), dim=-1)  # (L,B,H,k,W,2)
        locations = [g.detach().transpose(1, 2) for g in grids] if self.record else []  # (B,k,H,W,2)
        for li in layers:
            if refs[li] is None:
                raise ValueError(f"reference layer {li} is active but no tensor was given")
        sizes = [self.ref_channels[li] for li in layers]
        scales = [1.0 / math.sqrt(c) for c in sizes]
        gate = self._gate_mask(gate_logits, k) if gate_logits is not None else None
        choice = gate_logits.detach() if gate_logits is not None else None  # only picks keys (no gradient)
        self.key_cost = None
        if self.training and self.key_penalty > 0 and gate is not None and mix is None:
            self.key_cost = self.key_penalty * self._keep_one(gate, gate_logits, k).mean()

        def weights(logit: torch.Tensor, gate: torch.Tensor | None, mix_weights: torch.Tensor | None) -> torch.Tensor:
            """Attention weights (B,L,k,H,W) from the logits: masked softmax, or the budget mix."""
            if mix_weights is None:
                return self._masked_softmax(logit, gate, choice, k)
            attn = torch.zeros_like(logit)
            for budget, weight in zip(budgets, mix_weights):
                if budget > 0:
                    a = self._masked_softmax(logit[:, :, :budget], gate, choice, budget)
                    attn = attn + weight * F.pad(a, (0, 0, 0, 0, 0, k - budget))
            return attn

        mix_weights = None if mix is None else mix[1]
        ref_list = [refs[li] for li in layers]
        out_weight = self.out.weight if chan_idx is None else self.out.weight[:, chan_idx.to(x.device)]
        if core != "native":
            q_all = F.conv2d(x, q_weight)
        if core == "plain":
            logits, samples = [], []
            for i, (li, q_l, sc) in enumerate(zip(layers, q_all.split(sizes, 1), scales)):
                s = F.grid_sample(
                    refs[li],
                    grids[i].transpose(1, 2).reshape(b, k * h, w, 2),
                    mode="bilinear",
                    padding_mode="zeros",
                    align_corners=False,
                )
                s = s.view(b, -1, k, h, w)
                samples.append(s)
                logits.append((s * q_l.unsqueeze(2)).sum(1) * sc)
            attn = weights(torch.stack(logits, 1), gate, mix_weights)  # (B,L,k,H,W)
            agg = torch.cat([(s * attn[:, i].unsqueeze(1)).sum(2) for i, s in enumerate(samples)], 1)
        elif core == "native":
            # Channels-last throughout: the 1x1 projections as matrix products over (B,H,W,C) rows,
            # which is the layout the kernel reads and writes (no copies of the sum C_l channels),
            # and the key positions computed in the kernel from the offsets.
            spec = (scales, len(layers), [2 * self.k_max * li for li in layers], k)
            q_rows = F.linear(x.permute(0, 2, 3, 1), q_weight.flatten(1))  # (B,H,W,sum C_l)
            agg_rows = core_function(core).apply(weights, spec, q_rows, *ref_list, off_raw, gate, mix_weights)
            proj = F.linear(agg_rows, out_weight.flatten(1)).permute(0, 3, 1, 2)
        else:
            rows = grids.view(len(layers), b, h * k, w, 2).unbind(0)  # rows (query row, key)
            agg = core_function(core).apply(
                weights, scales, len(layers), *q_all.split(sizes, 1), *ref_list, *rows, gate, mix_weights
            )

        if mix is None:
            kept = self._kept(gate, gate_logits, k, x)
        else:
            kept = torch.zeros(b, h, w, device=x.device, dtype=dtype)
            for budget, weight in zip(budgets, mix[1]):
                if budget > 0:
                    kept = kept + weight.detach() * self._kept(gate, gate_logits, budget, x)
        y = proj if core == "native" else F.conv2d(agg, out_weight)
        if mix is None:
            y = y + self.out.bias.view(1, -1, 1, 1)
        else:  # the blend of outputs: the bias counts once per non-zero budget's weight
            on = sum(wt for bgt, wt in zip(budgets, mix[1]) if bgt > 0)
            y = y + on * self.out.bias.view(1, -1, 1, 1)
        y = x + y

        self.last_keys_used = kept.detach().mean()
        if self.record:
            self.last_key_map = kept.detach()
            self.last_locations = locations
            if gate is not None and mix is None:
                self.last_key_mask = self._keep_one(gate, gate_logits, k).detach()
            else:
                self.last_key_mask = torch.ones(b, k, h, w, device=x.device, dtype=dtype)
        return y

    def key_distances(self, kept_only: bool = True) -> torch.Tensor | None:
        """Distances, in query pixels, from each query to its sampled keys in the last recorded
        forward (flat over layers, keys and queries; the keys a query dropped left out unless
        ``kept_only`` is false), or None when nothing was recorded. How far attention reaches."""
        if not self.last_locations:
            return None
        out = []
        for loc in self.last_locations:  # (B,k,H,W,2) normalised (x, y)
            _, _, h, w, _ = loc.shape
            dx = ((loc[..., 0] + 1) * w - 1) / 2 - torch.arange(w, device=loc.device, dtype=loc.dtype).view(1, 1, 1, w)
            dy = ((loc[..., 1] + 1) * h - 1) / 2 - torch.arange(h, device=loc.device, dtype=loc.dtype).view(1, 1, h, 1)
            d = torch.sqrt(dx * dx + dy * dy)
            if kept_only and self.last_key_mask is not None and self.last_key_mask.shape == d.shape:
                d = d[self.last_key_mask > 0]
            out.append(d.flatten())
        return torch.cat(out)

    def _masked_softmax(
        self, logit: torch.Tensor, gate: torch.Tensor | None, gate_logits: torch.Tensor | None, k: int
    ) -> torch.Tensor:
        """Softmax over the L*k keys; a dropped key gets exactly zero weight."""
        if gate is None:
            flat = logit.flatten(1, 2)
            return torch.softmax(flat, 1).view_as(logit)
        mask = self._keep_one(gate, gate_logits, k).unsqueeze(1)  # (B,1,k,H,W)
        masked = logit.masked_fill(mask.detach() == 0, float("-inf"))
        peak = masked.flatten(1, 2).amax(1, keepdim=True).unsqueeze(1).detach()
        e = torch.exp(logit - peak) * mask
        return e / e.flatten(1, 2).sum(1, keepdim=True).unsqueeze(1)

    def _kept(
        self, gate: torch.Tensor | None, gate_logits: torch.Tensor | None, k: int, like: torch.Tensor
    ) -> torch.Tensor:
        """Number of the first k keys that each query keeps (B,H,W); ``like`` is (B,...,H,W)."""
        if gate is None:
            return torch.full((like.shape[0], *like.shape[-2:]), float(k), device=like.device, dtype=like.dtype)
        return self._keep_one(gate, gate_logits, k).detach().sum(1)

    def uncounted_macs(
        self, query_hw: tuple[int, int], batch: int = 1, k: int | None = None, n_active: Sequence[int] | None = None
    ) -> int:
        """Multiply-adds of the attention arithmetic that FlopCounterMode does not see.

        Per query and sampled key of layer l: C_l for the logit (dot product) and C_l for the
        weighted sum of values. (Convolutions are counted by FlopCounterMode, grid_sample by the
        cost model's own formula.)
        """
        k = self.k_max if k is None else k
        layers = range(len(self.ref_channels)) if n_active is None else n_active
        per_query = sum(2 * self.ref_channels[i] * k for i in layers)
        return int(batch * query_hw[0] * query_hw[1] * per_query)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, ref_channels={self.ref_channels}, k_max={self.k_max}, adaptive={self.adaptive}"
        )
