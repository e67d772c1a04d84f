"""Backbone registry and the one front door, :func:`create_backbone` (like timm's create_model).

Registered backbones (``@register_backbone``) and installed plug-ins (entry-point group
``acla_nas.backbones``) load by name; see :mod:`acla_nas.trust` for ``package.module:factory``.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError
from ..memory import BYTES, on_meta, require
from ..trust import entry_points, qualified_name

ENTRY_POINT_GROUP = "acla_nas.backbones"
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_backbones() -> list[str]:
    """Registered names, installed plug-ins included."""
    return sorted(set(_REGISTRY) | set(entry_points(ENTRY_POINT_GROUP)))


def _load_plugin(name: str, file: str | None) -> Callable[..., nn.Module] | None:
    """The factory of an installed plug-in named ``name`` (registered on first use), or None."""
    ep = entry_points(ENTRY_POINT_GROUP).get(name)
    if ep is None:
        return None
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken installed plug-in is reported in one line
        raise UserError(f"the installed backbone plug-in {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                        file=file, field="backbone.name") from None
    _REGISTRY[name] = factory
    return factory


def trusted_factories() -> dict[str, Callable[..., nn.Module]]:
    """``module:qualname`` of every registered factory: a file may name these freely."""
    return {qualified_name(f): f for f in _REGISTRY.values()}


def resolve_factory(spec: str, file: str | None = None) -> Callable[..., nn.Module]:
    """The factory named ``package.module:factory``, imported only under the trust model."""
    from ..trust import import_object

    trusted = trusted_factories()
    if spec not in trusted:
        for name, ep in entry_points(ENTRY_POINT_GROUP).items():
            if ep.value.replace(" ", "") == spec:  # an installed plug-in written by its import path
                factory = _load_plugin(name, file)
                assert factory is not None
                return factory
    return import_object(spec, kind="backbone factory", field="backbone.name", file=file, trusted=trusted)


def call_factory(factory: Callable[..., nn.Module], kwargs: dict, what: str, any_error: bool = False) -> nn.Module:
    """Call a factory with kwargs, turning unknown or ill-typed kwargs into a UserError.

    ``any_error``: user code (``module:factory``) may fail in any way; report it in one line too."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        accepted = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in accepted:
                raise UserError(f"{what} takes no argument {key!r} (accepted: {', '.join(accepted)})", field=f"backbone.kwargs.{key}")
    try:
        return factory(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what} rejected its arguments: {exc}", field="backbone.kwargs") from exc
    except Exception as exc:
        if not any_error:
            raise
        raise UserError(f"{what} failed: {type(exc).__name__}: {exc}", field="backbone.name") from exc


def create_backbone(name: str, scale: int = 1, kwargs: dict | None = None, sites: str | list[str] | None = None,
                    file: str | None = None) -> nn.Module:
    """Build a backbone by registered name, or a user backbone given as ``package.module:factory``.

    ``file`` is the file that names the backbone: errors name it, and a user module may sit in
    its folder. The result has ``acla_sites`` (ordered :class:`~acla_nas.backbones.base.Site`
    list) and ``scale``.
    """
    try:
        if not on_meta():
            _check_parameter_memory(name, scale, dict(kwargs or {}), sites, file)
        return _create(name, scale, dict(kwargs or {}), sites, file)
    except UserError as exc:
        raise (exc.at(file=file) if file and not exc.file else exc) from None


def _check_parameter_memory(name: str, scale: int, kwargs: dict, sites: str | list[str] | None, file: str | None) -> None:
    """Count the parameters on the meta device first: kwargs such as ``n_feats: 100000000``
    are one line naming the kwargs instead of an allocation failure (or a machine swapping)."""
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in _create(name, scale, kwargs, sites, file).parameters())
    except Exception:  # noqa: BLE001 - bad kwargs, or user code that needs real tensors: the real build decides
        return
    require(BYTES * params, "cpu", f"backbone {name!r} with {params:,} parameters",
            "lower its size in backbone.kwargs", field="backbone.kwargs")


def _create(name: str, scale: int, kwargs: dict, sites: str | list[str] | None, file: str | None) -> nn.Module:
    if ":" in name:
        from .user import user_backbone

        return user_backbone(name, sites, scale=scale, kwargs=kwargs, file=file)
    if name not in _REGISTRY and _load_plugin(name, file) is None:
        raise UserError(
            f"unknown backbone {name!r} (expected one of {', '.join(list_backbones())}, or package.module:factory)",
            field="backbone.name",
        )
    if sites is not None:
        raise UserError("a site pattern is only for user backbones (package.module:factory); registered backbones declare their sites", field="backbone.sites")
    if "scale" in kwargs:
        raise UserError("set the scale in the task (task.scale), not in the backbone kwargs", field="backbone.kwargs.scale")
    model = call_factory(_REGISTRY[name], {**kwargs, "scale": scale}, f"backbone {name!r}")
    model.acla_sites = list(model.sites)
    return model
