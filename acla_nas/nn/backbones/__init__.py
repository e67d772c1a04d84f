"""Restoration backbones with declared ACLA insertion sites."""

from __future__ import annotations

from acla_nas.nn.backbones.base import Backbone, Site
from acla_nas.nn.backbones.registry import (
    BACKBONES,
    create_backbone,
    list_backbones,
    register_backbone,
    resolve_factory,
)

__all__ = ["BACKBONES", "Backbone", "Site", "create_backbone", "list_backbones", "register_backbone", "resolve_factory"]
