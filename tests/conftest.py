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


@pytest.fixture(scope="session")
def tiny_components(reference_dir, tmp_path_factory):
    """Tiny random-weight models in the official formats (see tests/fakehub.py)."""
    from fakehub import build_tiny_components

    return build_tiny_components(tmp_path_factory.mktemp("tiny"), reference_dir)


@pytest.fixture(scope="session")
def fake_hub(tiny_components, tmp_path_factory):
    """A Hugging Face cache holding the tiny models, laid out as huggingface_hub writes it."""
    from fakehub import build_fake_hub_cache

    return build_fake_hub_cache(tmp_path_factory.mktemp("fakehub") / "hub", tiny_components)


@pytest.fixture(scope="session")
def tiny_weight_paths(fake_hub, tmp_path_factory):
    """WeightPaths resolved offline from the fake cache by the real download/verify/convert code."""
    from seesr_cli.weights import resolve_weights

    with pytest.MonkeyPatch.context() as patch:
        fake_hub.apply(patch, tmp_path_factory.mktemp("hf_home"))
        return resolve_weights(turbo=True)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models gain nothing from more, and on shared cores two
    spinning threads per process make each test many times slower. Autouse in the folders whose tests
    run tiny pipelines (their conftest.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
