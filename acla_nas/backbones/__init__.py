"""Restoration backbones with declared ACLA insertion sites."""

from __future__ import annotations

from .base import Backbone, Site
from .registry import BACKBONES, create_backbone, list_backbones, register_backbone, resolve_factory

__all__ = ["BACKBONES", "Backbone", "Site", "create_backbone", "list_backbones", "register_backbone", "resolve_factory"]
