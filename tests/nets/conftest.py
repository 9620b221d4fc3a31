"""Fixtures of the CNN tests: a small catalog with real weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from nets_helpers import make_catalog


@pytest.fixture
def nets_catalog(tmp_path: Path):
    """A catalog in ``tmp_path`` with the real MobileNetV2 ImageNet weights entry."""
    return make_catalog(tmp_path)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread in the test process: the test machine's 2 cores are shared with the
    cluster workers (one thread each), and oversubscribed torch threads spin instead of working."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
