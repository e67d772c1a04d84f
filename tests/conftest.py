"""Test-session set-up shared by all test modules."""
from __future__ import annotations

import os

import torch

# Without CUDA, Triton's kernels can only run in its interpreter, which must be chosen before
# triton is first imported (it wraps Triton's own library then): tests/test_acla_triton.py checks
# the fused ACLA kernel this way. With CUDA, Triton compiles and tests/test_cuda.py checks it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
