"""Backbone registry and the one front door, :func:`create_backbone` (like timm's create_model).

Registered backbones (``@register_backbone``) and installed plug-ins (entry-point group
``acla_nas.nn.backbones``) load by name; see :mod:`acla_nas.core.trust` for ``package.module:factory``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.core.registry import Registry
from acla_nas.nn.backbones.base import call_factory
from acla_nas.nn.backbones.user import user_backbone
from acla_nas.runtime.memory import BYTES, on_meta, require

ENTRY_POINT_GROUP = "acla_nas.backbones"
BACKBONES: Registry[Callable[..., nn.Module]] = Registry(
    "backbone",
    ENTRY_POINT_GROUP,
    "backbone.name",
    package="acla_nas.nn.backbones",
    check=callable,
    expected="backbone factory",
    import_form="package.module:factory",
)


#: factories a Python caller passed for one call (:func:`caller_backbones`): built like user
#: backbones (``backbone.sites`` patterns, probed), named by a plain name in the space or arch.
_CALLER: dict[str, Callable[..., nn.Module]] = {}


@contextlib.contextmanager
def caller_backbones(factories: Mapping[str, Callable[..., nn.Module]] | None) -> Iterator[None]:
    """Make the caller's factories (a notebook's ``nn.Module`` factories) known by name for the
    block, and forget them after. A name of a registered backbone is refused: the file would
    silently build something else. Trust is not involved: this is code the caller already runs."""
    added = []
    try:
        for name, factory in (factories or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise UserError(f"expected a backbone name like 'mynet', got {name!r}", field="backbones")
            if not callable(factory):
                raise UserError(
                    f"expected a factory (**kwargs) -> nn.Module, got {factory!r}", field=f"backbones.{name}"
                )
            if name in BACKBONES.items():
                raise UserError(f"{name!r} is a registered backbone; pick another name", field="backbones")
            if _CALLER.get(name, factory) is not factory:
                raise UserError(f"{name!r} is already another factory of this process", field="backbones")
            if name not in _CALLER:
                _CALLER[name] = factory
                added.append(name)
        yield
    finally:
        for name in added:
            _CALLER.pop(name, None)


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a factory ``(scale=..., **kwargs) -> nn.Module`` with ``sites`` known as ``name``."""
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Registered names, installed plug-ins included."""
    return BACKBONES.names()


def trusted_factories() -> dict[str, Callable[..., nn.Module]]:
    """``module:qualname`` of every registered factory: a file may name these freely."""
    return BACKBONES.trusted()


def resolve_factory(spec: str, file: str | None = None) -> Callable[..., nn.Module]:
    """The factory named ``package.module:factory``, imported only under the trust model."""
    return BACKBONES.get(spec, file)


def create_backbone(
    name: str, scale: int = 1, kwargs: dict | None = None, sites: str | list[str] | None = None, file: str | None = None
) -> nn.Module:
    """Build a backbone by registered name, or a user backbone given as ``package.module:factory``.

    ``file`` is the file that names the backbone: errors name it, and a user module may sit in
    its folder. The result has ``acla_sites`` (ordered :class:`~acla_nas.nn.backbones.base.Site`
    list) and ``scale``.
    """
    try:
        if not on_meta():
            _check_parameter_memory(name, scale, dict(kwargs or {}), sites, file)
        return _create(name, scale, dict(kwargs or {}), sites, file)
    except UserError as exc:
        raise (exc.at(file=file) if file and not exc.file else exc) from None


def _check_parameter_memory(
    name: str, scale: int, kwargs: dict, sites: str | list[str] | None, file: str | None
) -> None:
    """Count the parameters on the meta device first: kwargs such as ``n_feats: 100000000``
    are one line naming the kwargs instead of an allocation failure (or a machine swapping)."""
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in _create(name, scale, kwargs, sites, file).parameters())
    except Exception:  # noqa: BLE001 - bad kwargs, or user code that needs real tensors: the real build decides
        return
    require(
        BYTES * params,
        "cpu",
        f"backbone {name!r} with {params:,} parameters",
        "lower its size in backbone.kwargs",
        field="backbone.kwargs",
    )


def _create(name: str, scale: int, kwargs: dict, sites: str | list[str] | None, file: str | None) -> nn.Module:
    if name in _CALLER:
        return user_backbone(_CALLER[name], name, sites, scale=scale, kwargs=kwargs)
    if ":" in name:
        return user_backbone(resolve_factory(name, file), name, sites, scale=scale, kwargs=kwargs)
    factory = BACKBONES.get(name, file)
    if sites is not None:
        raise UserError(
            "a site pattern is only for user backbones (package.module:factory); registered backbones declare their sites",
            field="backbone.sites",
        )
    if "scale" in kwargs:
        raise UserError(
            "set the scale in the task (task.scale), not in the backbone kwargs", field="backbone.kwargs.scale"
        )
    model = call_factory(factory, {**kwargs, "scale": scale}, f"backbone {name!r}")
    model.acla_sites = list(model.sites)
    return model
