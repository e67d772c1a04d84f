"""The machine a run was made on, recorded with its results.

Why: CPU kernels differ between processor families (vector widths, reduction orders) and between
thread counts, so the same command with the same seed gives the same numbers bit for bit only on
the same machine type, with the same torch build and the same number of threads. Recording these
next to the results says which comparison is exact and which is only statistical.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    if m:
        return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, logical cores, torch version and threads, and the GPU when one is in use."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": str(torch.__version__),  # a TorchVersion, which YAML cannot represent
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.machine()}",
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def describe(info: dict[str, Any]) -> str:
    """One line: ``AMD EPYC, 2 cores, torch 2.13.0 (2 threads)``."""
    text = f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores, torch {info.get('torch', '?')} ({info.get('threads', '?')} threads)"
    if info.get("gpu"):
        text += f", GPU {info['gpu']}"
    return text


def keep_first_machine(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Config entries for a resumed run: the machine that started it stays ``machine``; another
    machine that resumes it is ``resumed_on`` (so a result made on two machines says so)."""
    first = stored.get("machine")
    if not isinstance(first, dict):
        return {"machine": current}
    return {"machine": first} if first == current else {"machine": first, "resumed_on": current}


__all__ = ["cpu_model", "describe", "keep_first_machine", "machine_info"]
