"""export: a finished search turned into a fixed child: arch.yaml, weights, model card,
TorchScript and ONNX. May import: every package below it (``core`` ... ``search``).
"""

from __future__ import annotations
