"""Fixtures of the command-line tests: weights from a fake Hub cache or an official-layout folder."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fakehub import build_official_layout


@pytest.fixture(scope="session")
def weights_env(tiny_components, fake_hub, tmp_path_factory):
    """The session's fake Hub cache (conftest), an official-layout folder and one HF_HOME, so the
    compact DAPE file is converted once."""
    root = tmp_path_factory.mktemp("cli-weights")
    official = build_official_layout(root / "official", tiny_components)
    return SimpleNamespace(hub=fake_hub, official=official, home=root / "home", root=root)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Torch on one thread for every test here (tests/conftest.py)."""


@pytest.fixture
def offline(weights_env, monkeypatch, tmp_path):
    """This process offline against the fake cache; cwd is the test's own folder."""
    weights_env.hub.apply(monkeypatch, weights_env.home)
    monkeypatch.chdir(tmp_path)
    return weights_env
