"""Keep freed tensor memory for reuse instead of handing it back to the system (glibc only).

A CPU training step allocates and frees the same few-megabyte tensors every step. glibc's
malloc serves such blocks with ``mmap`` above a threshold that it raises and lowers as it goes,
and returns freed memory at the top of the heap to the system past a trim threshold; the next
step then pays a page fault for every 4 KiB it touches again. Fixing the mmap threshold at 32 MiB
(glibc's largest; bigger blocks, such as whole-image buffers, are still mapped and returned) and
the trim threshold at 1 GiB keeps those pages. ``benchmarks/allocator.py`` measures the effect side
by side (about 5-10% less time per training step on 2 cores, see benchmarks/README.md); the price is
a resident size that stays near the process's peak, which a training process reaches anyway.

The command line applies it (:func:`tune_allocator`) to itself and, through the environment, to
the processes it starts (workers, ranks). ``ACLA_NAS_MALLOC=default``, or the user's own
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, leave glibc's settings alone. Elsewhere
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "ACLA_NAS_MALLOC"
MMAP_THRESHOLD = 32 << 20  # glibc accepts at most HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit systems
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
GLIBC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it (musl has no usable mallopt)
        return libc
    except (OSError, AttributeError):
        return None


def tune_allocator(environ: dict[str, str] | None = None) -> bool:
    """Fix glibc's mmap and trim thresholds in this process and in ``environ`` (default
    ``os.environ``, which child processes inherit). False, changing nothing, where the user opted
    out or set them, or where the C library is not glibc."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() == "default" or any(k in env for k in GLIBC_ENV):
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if ok:
        env.update(GLIBC_ENV)
    return ok
