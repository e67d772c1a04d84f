"""Which attention core the ACLA module runs, per device.

=======  ===================================================================================
native   ``attention_native.NativeAttention``: a fused C kernel compiled on first use, no sample
         buffers (the CPU default where a C compiler works; 1.5-2x faster per training step of a
         network with scope-all modules, benchmarks/README.md)
node     ``attention_node.AttentionNode``: one autograd node, samples kept once (the CPU fallback)
triton   ``acla_triton.TritonAttentionCore``: fused kernels, no sample buffers (the CUDA default
         when Triton is installed; on CPU tensors it runs in Triton's interpreter, for tests)
plain    the broadcasting formulation in ``ACLA.forward`` (every other device, and CUDA without
         Triton; always under tracing, scripting, compiling and export)
=======  ===================================================================================

All three compute the same function. ``ACLA_NAS_CORE=node|triton|plain`` (environment) or
:func:`use_core` (code) overrides the choice, e.g. to compare them or to step around a GPU where
Triton cannot compile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

CORES = ("native", "node", "triton", "plain")
ENV = "ACLA_NAS_CORE"
_forced: str | None = None


def _check(name: str, where: str) -> str:
    if name not in ("auto", *CORES):
        raise ValueError(f"{where}: unknown ACLA core {name!r} (expected auto, {', '.join(CORES)})")
    return name


#: Measured on an H200 (benchmarks/README.md, ``gpu.py``): the fused Triton kernel is correct on
#: the GPU and as fast as the plain formulation on the module alone with 3.8x less memory, but an
#: EDSR with 4 modules trains 25% slower with it; so CUDA defaults to the plain formulation and the
#: kernel is opt-in where memory is the limit (``ACLA_NAS_CORE=triton``).
TRITON_DEFAULT_ON_CUDA = False


def select_core(device: torch.device) -> str:
    """The core for tensors on ``device``: the forced one, else native on CPU (node where the C
    kernel cannot be built), plain elsewhere (triton on CUDA where Triton is importable once
    ``TRITON_DEFAULT_ON_CUDA`` is set)."""
    name = _forced or _check(os.environ.get(ENV, "auto") or "auto", ENV)
    if name != "auto":
        return name
    if device.type == "cpu":
        return "native" if native_available() else "node"
    if device.type == "cuda" and TRITON_DEFAULT_ON_CUDA and triton_available():
        return "triton"
    return "plain"


def native_available() -> bool:
    """The fused C kernel compiled and loaded here (``python -m acla_nas.nn.attention_native``
    says why not where it did not)."""
    from acla_nas.nn import attention_native

    return attention_native.available()


def triton_available() -> bool:
    """Triton can be imported (the ``gpu`` extra; CUDA builds of torch usually bring it)."""
    from acla_nas.nn import acla_triton

    return acla_triton.available()


@contextmanager
def use_core(name: str) -> Iterator[None]:
    """Force the core ``name`` (or ``auto``) inside the block, whatever the device."""
    global _forced
    saved = _forced
    _forced = None if _check(name, "use_core") == "auto" else name
    try:
        yield
    finally:
        _forced = saved


def core_function(name: str) -> type[torch.autograd.Function]:
    """The autograd function behind a core name (not for ``plain``)."""
    if name == "native":
        from acla_nas.nn.attention_native import NativeAttention

        return NativeAttention
    if name == "node":
        from acla_nas.nn.attention_node import AttentionNode

        return AttentionNode
    if name == "triton":
        from acla_nas.nn.acla_triton import TritonAttentionCore, available

        if not available():
            raise RuntimeError(
                "the triton ACLA core needs Triton: pip install 'acla-nas[gpu]' (or set ACLA_NAS_CORE=plain)"
            )
        return TritonAttentionCore
    raise ValueError(f"no autograd function for the {name!r} core")
