"""acla-nas: search where to insert Adaptive Cross-Layer Attention into restoration CNNs."""

from __future__ import annotations

from acla_nas.core.version import __version__

__all__ = ["__version__"]
