"""Backbone registry and the one front door, :func:`create_backbone` (like timm's create_model)."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from ..errors import UserError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


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


def create_backbone(name: str, scale: int = 1, kwargs: dict | None = None, sites: str | list[str] | None = None) -> nn.Module:
    """Build a backbone by registered name, or a user backbone given as ``package.module:factory``.

    The result has ``acla_sites`` (ordered :class:`~acla_nas.backbones.base.Site` list) and ``scale``.
    """
    kwargs = dict(kwargs or {})
    if ":" in name:
        from .user import user_backbone

        return user_backbone(name, sites, scale=scale, kwargs=kwargs)
    if name not in _REGISTRY:
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
