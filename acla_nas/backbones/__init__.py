"""Restoration backbones with declared ACLA insertion sites."""
from __future__ import annotations

from . import edsr, rcan, unet  # noqa: F401  (register the built-in backbones)
from .base import Backbone, Site
from .registry import create_backbone, list_backbones, register_backbone, resolve_factory

__all__ = ["Backbone", "Site", "create_backbone", "list_backbones", "register_backbone", "resolve_factory"]
