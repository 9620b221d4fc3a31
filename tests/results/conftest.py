"""Fixtures of the results tests: the session's finished demo, opened through its catalog."""

from __future__ import annotations

import pytest
from tests_support import REPO


@pytest.fixture(scope="session")
def demo_catalog(demo_run):
    """The catalog of the session's finished demo (read-only: copy the root before changing anything)."""
    from mfrs.catalog import load_catalog

    root, _ = demo_run
    return load_catalog(REPO / "data_catalog.yaml", root=root)


@pytest.fixture(scope="session")
def rsa(demo_catalog):
    """The demo's ``rsa`` store, labelled, loaded into memory (it is small)."""
    from mfrs.results import open_rsa

    return open_rsa(demo_catalog).load()

