"""runtime: where and how a process runs.

Device selection, machine facts recorded with every run, memory measurement and limits, the
torch.distributed process group (DDP under torchrun or the built-in launcher) and progress
lines. May import: ``core``.
"""

from __future__ import annotations
