"""acla-nas: search where to insert Adaptive Cross-Layer Attention into restoration CNNs."""

from __future__ import annotations

__version__ = "0.1.0"
