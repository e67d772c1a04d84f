"""Shared fixtures."""
from __future__ import annotations

import pytest

from acla_nas.trust import ENV_VAR

#: the tests' own user code, imported only after opting in (as a user would for theirs)
TEST_MODULES = "user_backbones,test_strategies,test_backbones"


@pytest.fixture()
def allow_test_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to importing the test modules named in YAML (``ACLA_NAS_ALLOW_IMPORT``)."""
    monkeypatch.setenv(ENV_VAR, TEST_MODULES)
