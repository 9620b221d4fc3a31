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


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the finished demo's data root, made of hard links (cheap; the shared root is untouched:
    deleting or atomically replacing a file in the copy never changes the original)."""
    import os
    import shutil

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system
            shutil.copy2(src, dst)

    root = tmp_path / "data"
    shutil.copytree(demo_run[0], root, copy_function=link)
    return root


@pytest.fixture(scope="session")
def rsa(demo_catalog):
    """The demo's ``rsa`` store, labelled, loaded into memory (it is small)."""
    from mfrs.results import open_rsa

    return open_rsa(demo_catalog).load()

