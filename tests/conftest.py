"""Shared fixtures: a catalog rooted in a temporary folder, a real local dask cluster, a real SLURM one."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def catalog(tmp_path: Path):
    """The repository's catalog with its data root in a fresh temporary folder."""
    from mfrs.catalog import load_catalog

    return load_catalog(REPO / "data_catalog.yaml", root=tmp_path / "data")


@pytest.fixture(scope="session")
def local_client() -> Iterator[object]:
    """A real distributed cluster: one CPU worker and one worker with resource GPU=1, one thread each."""
    from mfrs.cluster import LocalProfile, get_client

    profile = LocalProfile(n_workers=1, gpu_workers=1, memory_limit="4GB")
    with get_client(profile) as client:
        yield client


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="session")
def slurm_profile(tmp_path_factory: pytest.TempPathFactory):
    """The slurm profile for the local single-node SLURM (started here if the test command did not)."""
    from mfrs.cluster import GpuJobSpec, SlurmProfile

    if not _slurm_up():
        start = REPO / "cluster" / "slurm-local-start.sh"
        if os.geteuid() != 0:
            pytest.fail("the SLURM tests need the local SLURM; start it as root with "
                        f"`bash {start}` (the README's `make test` does).")
        proc = subprocess.run(["bash", str(start)], capture_output=True, text=True)
        if proc.returncode != 0 or not _slurm_up():
            pytest.fail(f"could not start the local SLURM:\n{proc.stdout}\n{proc.stderr}")
    logs = tmp_path_factory.mktemp("slurm-logs")
    return SlurmProfile(queue="debug", cores=1, memory="2GB", interface="lo", log_directory=str(logs),
                        walltime="00:20:00", jobs=1, gpu=GpuJobSpec(jobs=1, memory="2GB"),
                        wait_for_workers_s=90)


@pytest.fixture(scope="session")
def slurm_client(slurm_profile) -> Iterator[object]:
    """A dask client whose workers are SLURM jobs: one CPU job and one GPU-spec job."""
    from mfrs.cluster import get_client

    with get_client(slurm_profile) as client:
        yield client


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """One finished ``mfrs demo`` for the whole session: ``(data_root, completed_process)``.

    Shared read-only: a test that changes or damages stores copies the root first
    (``shutil.copytree(root, tmp_path / "data")``).
    """
    from tests_support import run_mfrs

    root = tmp_path_factory.mktemp("demo")
    # the demo (and its report) takes ~15 min on 2 busy cores; the limit only catches a hang
    return root, run_mfrs("demo", root=root, timeout=2400)


@pytest.fixture(autouse=True)
def _mfrs_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mfrs")
