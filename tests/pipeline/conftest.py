"""Pipeline tests run torch on one thread (tests/conftest.py: one_thread)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here."""
