"""The package version (read by the CLI and recorded in every run's config)."""

from __future__ import annotations

__version__ = "0.1.0"
