"""The ACLA module against a per-key loop reference written here, plus its contracts."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from acla_nas.core.errors import UserError
from acla_nas.nn.acla import ACLA, check_acla_options, initial_offsets


def randomize(m: ACLA, seed: int = 0, gate_std: float = 1.0) -> ACLA:
    """Non-trivial weights (the defaults make the module an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        if m.gate is not None:
            m.gate.weight.mul_(gate_std)
    return m


def reference(m: ACLA, x: torch.Tensor, refs: list[torch.Tensor], k: int) -> torch.Tensor:
    """Plain loop: one grid_sample per (layer, key), then softmax over all kept keys."""
    b, c, h, w = x.shape
    pad = m.offset.padding
    q = F.conv2d(x, m.query.weight)
    feat = x if m.context is None else torch.cat([x, m.context(x)], 1)  # what the predictors see
    off = F.conv2d(feat, m.offset.weight, m.offset.bias, padding=pad)
    logits, samples = [], []
    start = 0
    for li, ref in enumerate(refs):
        cl = ref.shape[1]
        ql = q[:, start : start + cl]
        start += cl
        for j in range(k):
            ox = off[:, (li * m.k_max + j) * 2]
            oy = off[:, (li * m.k_max + j) * 2 + 1]
            grid = torch.empty(b, h, w, 2, dtype=x.dtype, device=x.device)
            for i in range(h):
                for jj in range(w):
                    grid[:, i, jj, 0] = (2 * jj + 1) / w - 1 + ox[:, i, jj] * 2 / w
                    grid[:, i, jj, 1] = (2 * i + 1) / h - 1 + oy[:, i, jj] * 2 / h
            s = F.grid_sample(ref, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            samples.append((li, s))
            logits.append((s * ql).sum(1) / math.sqrt(cl))
    logit = torch.stack(logits, 1)  # (B, L*k, H, W), layer-major
    if m.gate is not None:
        g = F.conv2d(feat, m.gate.weight, m.gate.bias, padding=m.gate.padding)[:, :k]
        keep = (g > 0).to(x.dtype)
        none = keep.sum(1, keepdim=True) == 0
        best = F.one_hot(g.argmax(1), k).permute(0, 3, 1, 2).to(x.dtype)
        keep = torch.where(none, best, keep)
        keep = keep.repeat(1, len(refs), 1, 1)
    else:
        keep = torch.ones_like(logit)
    e = torch.where(keep > 0, torch.exp(logit - logit.amax(1, keepdim=True)), torch.zeros_like(logit))
    a = e / e.sum(1, keepdim=True)
    aggs = []
    for li, ref in enumerate(refs):
        acc = torch.zeros(b, ref.shape[1], h, w, dtype=x.dtype, device=x.device)
        for j in range(k):
            idx = li * k + j
            acc = acc + samples[idx][1] * a[:, idx : idx + 1]
        aggs.append(acc)
    return x + F.conv2d(torch.cat(aggs, 1), m.out.weight, m.out.bias)


def make_inputs(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 7, 9, generator=g, dtype=dtype)
    refs = [torch.randn(2, 6, 7, 9, generator=g, dtype=dtype), torch.randn(2, 3, 4, 5, generator=g, dtype=dtype)]
    return x, refs


def outputs_and_grads(
    fn: Callable, m: ACLA, x: torch.Tensor, refs: list[torch.Tensor], gy: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``fn(x, refs)`` and the gradients of ``<fn(x, refs), gy>`` for x, refs and every parameter."""
    leaves = [x.detach().clone().requires_grad_(), *[r.detach().clone().requires_grad_() for r in refs]]
    m.zero_grad(set_to_none=True)
    y = fn(leaves[0], leaves[1:])
    y.backward(gy)
    return y.detach(), [t.grad if t.grad is not None else torch.zeros_like(t) for t in [*leaves, *m.parameters()]]


def worst_relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest |a - b| of each pair relative to the largest |a| of that pair, over all pairs."""
    return max(((u - v).abs().max() / u.abs().max().clamp_min(1e-30)).item() for u, v in zip(a, b))


@pytest.mark.parametrize("adaptive", [True, False])
def test_matches_per_key_loop_reference(adaptive: bool) -> None:
    m = randomize(ACLA(6, [6, 3], 5, adaptive=adaptive)).eval()
    x, refs = make_inputs()
    out = m(x, refs)
    ref = reference(m, x, refs, 5)
    assert (out - ref).abs().max().item() < 1e-5


def test_reference_is_not_trivially_equal() -> None:
    """Guard against a reference that could never disagree: perturbing the module must show."""
    m = randomize(ACLA(6, [6, 3], 4)).eval()
    x, refs = make_inputs()
    ref = reference(m, x, refs, 4)
    with torch.no_grad():
        m.offset.bias.add_(0.7)
    assert (m(x, refs) - ref).abs().max().item() > 1e-3


def test_gradcheck_float64() -> None:
    gradcheck_module("cpu")


def gradcheck_module(device: str) -> None:
    """gradcheck of the module in float64 on ``device``, inputs and then every parameter."""
    m = randomize(ACLA(3, [3, 2], 3, adaptive=True, offset_kernel=1), seed=1).double().eval().to(device)
    g = torch.Generator().manual_seed(3)
    x, r1, r2 = (
        torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
        for shape in ((1, 3, 4, 4), (1, 3, 4, 4), (1, 2, 2, 3))
    )
    # on CUDA, grid_sample's backward accumulates with atomics: float64 sums in another order differ
    # in the last bits between two backward passes (gradcheck's reentrancy check), by design
    nondet = 1e-12 if torch.device(device).type == "cuda" else 0.0
    assert torch.autograd.gradcheck(lambda a, b, c: m(a, [b, c]), (x, r1, r2), eps=1e-6, atol=1e-5, nondet_tol=nondet)
    params = [p for p in m.parameters()]
    names = [n for n, _ in m.named_parameters()]

    def f(*ps):
        with torch.nn.utils.stateless._reparametrize_module(m, dict(zip(names, ps))):
            return m(x.detach(), [r1.detach(), r2.detach()])

    leaves = tuple(p.detach().clone().requires_grad_(True) for p in params if p.requires_grad)
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-5, nondet_tol=nondet)


def test_zero_init_is_identity_in_train_and_eval() -> None:
    m = ACLA(6, [6, 3], 8)
    x, refs = make_inputs()
    assert torch.equal(m(x, refs), x)
    m.eval()
    assert torch.equal(m(x, refs), x)


def test_channel_and_spatial_mismatch_is_sampled_at_the_same_position() -> None:
    """A half-resolution reference, upsampled, gives the same result when sampled at zero offset."""
    m = randomize(ACLA(4, [2], 1, adaptive=False, offset_kernel=1)).eval()
    with torch.no_grad():
        m.offset.weight.zero_()
        m.offset.bias.zero_()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    low = torch.randn(1, 2, 4, 4, generator=g)
    up = F.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    # one key at offset 0: the sample is the bilinear interpolation of the reference at the query
    y_low = m(x, [low])
    expected = x + F.conv2d(up, m.out.weight, m.out.bias)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zeros padding vs edge clamp
    assert (y_low - expected)[inner].abs().max().item() < 1e-5
    assert y_low.shape == x.shape


def test_k_slicing_equals_smaller_module_with_copied_weights() -> None:
    big = randomize(ACLA(6, [6, 3], 8), seed=2, gate_std=3.0).eval()
    small = ACLA(6, [6, 3], 3).eval()
    with torch.no_grad():
        small.query.weight.copy_(big.query.weight)
        small.out.weight.copy_(big.out.weight)
        small.out.bias.copy_(big.out.bias)
        small.offset.weight.copy_(big.offset.weight.view(2, 8, 2, 6, 3, 3)[:, :3].reshape(-1, 6, 3, 3))
        small.offset.bias.copy_(big.offset.bias.view(2, 8, 2)[:, :3].reshape(-1))
        small.gate.weight.copy_(big.gate.weight[:3])
        small.gate.bias.copy_(big.gate.bias[:3])
    x, refs = make_inputs(4)
    assert (big(x, refs, k=3) - small(x, refs)).abs().max().item() < 1e-5
    assert (big(x, refs, k=3) - big(x, refs)).abs().max().item() > 1e-4


def test_active_layers_equal_module_built_on_that_subset() -> None:
    big = randomize(ACLA(6, [6, 3], 4, adaptive=False), seed=5).eval()
    sub = ACLA(6, [3], 4, adaptive=False).eval()
    with torch.no_grad():
        sub.query.weight.copy_(big.query.weight[6:])
        sub.out.weight.copy_(big.out.weight[:, 6:])
        sub.out.bias.copy_(big.out.bias)
        sub.offset.weight.copy_(big.offset.weight[8:])
        sub.offset.bias.copy_(big.offset.bias[8:])
    x, refs = make_inputs(6)
    assert (big(x, [None, refs[1]], active=[1]) - sub(x, [refs[1]])).abs().max().item() < 1e-5


def test_gate_drops_keys_at_inference_with_exactly_zero_weight() -> None:
    m = randomize(ACLA(6, [6, 3], 6), seed=7, gate_std=4.0).eval()
    m.record = True
    x, refs = make_inputs(8)
    y = m(x, refs)
    used = m.last_keys_used.item()
    assert 1.0 <= used < 6.0  # some keys really dropped, at least one kept
    assert m.last_key_map.min().item() >= 1.0
    # A dropped key changes nothing: moving its sampling location leaves the output unchanged.
    g = F.conv2d(x, m.gate.weight, m.gate.bias, padding=1)
    dropped = (g <= 0).all(dim=(0, 2, 3)).nonzero().flatten()
    if len(dropped) == 0:  # pick the key dropped most often and drop it everywhere via its bias
        j = int((g <= 0).float().mean(dim=(0, 2, 3)).argmax())
        with torch.no_grad():
            m.gate.bias[j] = -1e4
        y = m(x, refs)
        dropped = torch.tensor([j])
    j = int(dropped[0])
    with torch.no_grad():
        for li in range(2):
            m.offset.bias[(li * 6 + j) * 2] += 1.5
    assert (m(x, refs) - y).abs().max().item() == 0.0


def test_training_gate_is_stochastic_hard_and_differentiable() -> None:
    m = randomize(ACLA(6, [6, 3], 6), seed=9, gate_std=0.5).train()
    x, refs = make_inputs(10)
    torch.manual_seed(0)
    y1 = m(x, refs)
    k1 = m.last_keys_used.item()
    y1.sum().backward()
    assert m.gate.weight.grad is not None and m.gate.weight.grad.abs().sum() > 0
    counts = set()
    for seed in range(1, 6):
        torch.manual_seed(seed)
        m(x, refs)
        counts.add(round(m.last_keys_used.item(), 6))
    assert len(counts | {round(k1, 6)}) > 1  # Gumbel noise makes the selection stochastic
    mask = m._gate_mask(torch.randn(2, 6, 3, 3), 6)
    assert set(torch.unique(mask.detach()).tolist()) <= {0.0, 1.0}


def test_mix_of_one_budget_equals_that_budget() -> None:
    m = randomize(ACLA(6, [6, 3], 8), seed=11).eval()
    x, refs = make_inputs(12)
    y4 = m(x, refs, k=4)
    ym = m(x, refs, mix=([0, 4, 8], torch.tensor([0.0, 1.0, 0.0])))
    assert (y4 - ym).abs().max().item() < 1e-5
    # a blend is the weighted blend of outputs (the 0 budget contributes the identity)
    w = torch.tensor([0.2, 0.3, 0.5])
    blend = w[0] * x + w[1] * y4 + w[2] * m(x, refs, k=8)
    assert (m(x, refs, mix=([0, 4, 8], w)) - blend).abs().max().item() < 1e-5


def test_initial_offsets_spread_and_prefix_covers_neighbourhood() -> None:
    off = initial_offsets(9, 1.0)
    assert torch.equal(off[0], torch.zeros(2))
    assert torch.allclose(off[1:].norm(dim=1), torch.ones(8), atol=1e-6)
    assert len({tuple(v) for v in off.round(decimals=4).tolist()}) == 9


def test_options_validation() -> None:
    assert check_acla_options({"adaptive": False})["adaptive"] is False
    with pytest.raises(UserError, match="acla.tau"):
        check_acla_options({"tau": "hot"})
    with pytest.raises(UserError, match="acla.nope"):
        check_acla_options({"nope": 1})
    with pytest.raises(ValueError):
        ACLA(4, [4], 2)(torch.zeros(1, 4, 3, 3), [torch.zeros(1, 4, 3, 3)], k=3)
