"""Test-session set-up and fixtures shared by all test modules."""

from __future__ import annotations

import os

import pytest
import torch

from acla_nas.core.trust import ENV_VAR

# Without CUDA, Triton's kernels can only run in its interpreter, which must be chosen before
# triton is first imported (it wraps Triton's own library then): tests/test_acla_triton.py checks
# the fused ACLA kernel this way. With CUDA, Triton compiles and tests/test_cuda.py checks it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: the tests' own user code, imported only after opting in (as a user would for theirs)
TEST_MODULES = "user_backbones,test_strategies,test_backbones"


@pytest.fixture()
def allow_test_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to importing the test modules named in YAML (``ACLA_NAS_ALLOW_IMPORT``)."""
    monkeypatch.setenv(ENV_VAR, TEST_MODULES)
