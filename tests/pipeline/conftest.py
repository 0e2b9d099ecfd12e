"""Pipeline tests run torch on one thread: tiny models gain nothing from more, and on shared cores
two spinning threads per process make each test many times slower."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
