"""Shared test fixtures: where the official reference data lives.

The reference fixtures are read in place, never copied. Where they are absent the
parity tests skip with a reason, except under CI=true, where absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _reference_dir() -> Path | None:
    env = os.environ.get("SEESR_REFERENCE_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "fixtures" / "reference")
    for path in candidates:
        if (path / "meta.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    path = _reference_dir()
    if path is None:
        message = (
            "reference fixtures not found: set SEESR_REFERENCE_FIXTURES or place them at "
            "../shared/fixtures/reference"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
