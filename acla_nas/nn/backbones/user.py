"""User backbones: any ``nn.Module`` from ``package.module:factory`` plus a site pattern.

The pattern is a glob over dotted module names in which ``*`` matches within one name component
and ``**`` across components (``layers.*`` matches ``layers.3`` but not ``layers.3.conv``); several
patterns may be given as a list or comma-separated. Sites are ordered, and their channels and
strides found, by one probing forward pass with hooks; the backbone's code is never edited.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.nn.backbones.base import Site, call_factory

PROBE_SIZE = 48  # divisible by 2, 3, 4, 6, 8, 12, 16


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _closest(pattern: str, names: list[str]) -> str:
    """``' (closest: a, b, c)'``: the module names nearest to a pattern that matched nothing."""
    close = difflib.get_close_matches(pattern[:200], names, n=3, cutoff=0.4)
    if not close:  # compare the pattern's literal head (before a wildcard) with the names' heads
        head = pattern.split("*")[0].split("?")[0].rstrip(".")
        close = [n for n in names if head and n.startswith(head[: max(1, len(head) - 1)])][:3]
    if not close:
        close = [n for n in names if "." not in n][:3]
    return f" (closest module names: {', '.join(close)})" if close else ""


def site_pattern_regex(patterns: list[str]) -> re.Pattern[str]:
    parts = []
    for pat in patterns:
        rx = re.escape(pat).replace(r"\*\*", ".+").replace(r"\*", "[^.]+").replace(r"\?", "[^.]")
        parts.append(f"(?:{rx})")
    return re.compile("^(?:" + "|".join(parts) + ")$")


def probe_sites(model: nn.Module, names: list[str], field: str = "backbone.sites") -> tuple[list[Site], int]:
    """Run one forward pass to order the sites by execution and read channels/strides/scale."""
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, torch.Size]] = {}
    twice: list[str] = []
    handles = []
    for name in names:

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise UserError(f"site {name!r} does not output a (B,C,H,W) tensor", field=field)
            if name in seen:
                twice.append(name)
            else:
                seen[name] = (len(seen), out.shape)

        handles.append(modules[name].register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            y = model(torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"the backbone failed on a (1,3,{PROBE_SIZE},{PROBE_SIZE}) image: {type(exc).__name__}: {exc}",
            field="backbone.name",
        ) from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if twice:
        raise UserError(
            f"site {twice[0]!r} runs more than once per forward pass; ACLA needs one output per site", field=field
        )
    unused = [n for n in names if n not in seen]
    if unused:
        raise UserError(f"site {unused[0]!r} matches the pattern but never runs in forward", field=field)
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != 3:
        raise UserError("the backbone must map a (B,3,h,w) image to a (B,3,H,W) image", field="backbone.name")
    if y.shape[-1] % PROBE_SIZE or y.shape[-2] % PROBE_SIZE or y.shape[-1] != y.shape[-2]:
        raise UserError(
            f"the backbone output size {tuple(y.shape[-2:])} is not an integer multiple of its input size",
            field="backbone.name",
        )
    scale = y.shape[-1] // PROBE_SIZE
    ordered = sorted(seen, key=lambda n: seen[n][0])
    sites = []
    for n in ordered:
        shape = seen[n][1]
        stride = max(1, round(PROBE_SIZE / shape[-1]))
        sites.append(Site(n, int(shape[1]), stride))
    return sites, scale


def user_backbone(
    factory: Callable[..., nn.Module],
    spec: str,
    sites: str | list[str] | None,
    scale: int = 1,
    kwargs: dict | None = None,
) -> nn.Module:
    """Build a user backbone from its resolved ``factory`` (named ``spec`` in the file) and attach
    its probed site list as ``acla_sites``."""
    if not sites:
        raise UserError(
            "a user backbone needs a site pattern over module names (e.g. 'body.*')", field="backbone.sites"
        )
    raw = sites.split(",") if isinstance(sites, str) else sites
    if not isinstance(raw, (list, tuple)) or not all(isinstance(p, str) for p in raw):
        raise UserError("expected a pattern string or a list of pattern strings", field="backbone.sites")
    patterns = [p.strip() for p in raw if p.strip()]
    if not patterns:
        raise UserError("expected a pattern string or a list of pattern strings", field="backbone.sites")
    kwargs = dict(kwargs or {})
    model = call_factory(factory, kwargs, f"factory {spec!r}", any_error=True)
    if not isinstance(model, nn.Module):
        raise UserError(
            f"factory {spec!r} returned {type(model).__name__}, expected a torch.nn.Module", field="backbone.name"
        )
    all_names = [n for n, _ in model.named_modules() if n]
    for pat in patterns:  # every part must match: a typo is not silently dropped
        if not any(site_pattern_regex([pat]).match(n) for n in all_names):
            raise UserError(
                f"site pattern part {_shorten(pat)!r} matches no module of {spec!r}{_closest(pat, all_names)}",
                field="backbone.sites",
            )
    rx = site_pattern_regex(patterns)
    names = [n for n in all_names if rx.match(n)]
    site_list, found_scale = probe_sites(model, names)
    if found_scale != scale:
        raise UserError(
            f"backbone {spec!r} upscales by {found_scale} but the task needs scale {scale}", field="task.scale"
        )
    model.acla_sites = site_list
    model.scale = found_scale
    return model
