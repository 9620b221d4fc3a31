"""SLURM under faults, on the real local SLURM (issue 10): a controller that is down, jobs cancelled
under a running client, TLS between client, scheduler and workers."""

from __future__ import annotations

import re
import subprocess
import time

import dask
import pytest
import yaml
from tests_support import run_mfrs

from mfrs.cluster import SecuritySpec, get_client
from mfrs.errors import ClusterError
from mfrs.runner import run_units


def _squeue(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "--me", "-n", name, "-o", "%i %T"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] in (["RUNNING"], ["PENDING"])]


@pytest.fixture
def cpu_profile(slurm_profile, tmp_path):
    """One CPU job, no GPU job, one resubmission allowed."""
    return slurm_profile.model_copy(update={"gpu": None, "jobs": 1, "max_resubmits": 1,
                                            "log_directory": str(tmp_path / "logs")})


def _wait(cond, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_controller_down_is_exit_3_in_one_line(cpu_profile, tmp_path):
    conf = open("/etc/slurm/slurm.conf").read()
    dead = re.sub(r"(?m)^SlurmctldPort=.*$", "", conf) + "\nSlurmctldPort=6899\n"  # nothing listens there
    (tmp_path / "slurm.conf").write_text(dead)
    (tmp_path / "slurm.yaml").write_text(yaml.safe_dump({**cpu_profile.model_dump(mode="json"), "security": None}))
    proc = run_mfrs("run", "demo", "--stages", "stimuli", "--cluster", str(tmp_path / "slurm.yaml"),
                    root=tmp_path / "data", check=False, env={"SLURM_CONF": str(tmp_path / "slurm.conf")},
                    timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: SLURM refused the worker jobs: sbatch: error: Batch job submission "
                                  "failed: Unable to contact slurm controller")


def test_cancelled_jobs_are_replaced_then_the_run_ends_with_exit_3(cpu_profile):
    others = set(_squeue("mfrs-cpu"))  # jobs of other clients of this session (the shared SLURM fixture's)

    def ours() -> list[str]:
        return [j for j in _squeue("mfrs-cpu") if j not in others]

    with get_client(cpu_profile) as client:
        first = ours()
        assert len(first) == 1
        subprocess.run(["scancel", first[0]], check=True)
        _wait(lambda: any(j != first[0] for j in ours()), what="the job submitted again")
        client.wait_for_workers(1, timeout=120)
        assert client.submit(lambda x: x + 1, 41, pure=False).result(timeout=120) == 42

        second = ours()
        subprocess.run(["scancel", *second], check=True)  # the one resubmission is spent
        _wait(lambda: not client.scheduler_info()["workers"], what="the worker to leave")
        with dask.config.set({"mfrs.no-worker-timeout": "5s"}):
            with pytest.raises(ClusterError, match=r"no worker for 5 s with 2 unit\(s\) waiting"):
                run_units(client, lambda x: x, [1, 2], key=str, description="probe")
        assert ours() == []


def test_tls_between_client_scheduler_and_slurm_workers(cpu_profile, tmp_path):
    profile = cpu_profile.model_copy(update={"security": SecuritySpec(shared_temp_directory=str(tmp_path))})
    with get_client(profile) as client:
        assert client.scheduler.address.startswith("tls://")
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert workers and all(addr.startswith("tls://") for addr in workers)
        assert client.submit(lambda x: x * 2, 21, pure=False).result(timeout=120) == 42


def test_the_demo_similarity_stage_on_slurm_with_tls_equals_the_local_run(demo_run, slurm_profile, tmp_path):
    import shutil

    import numpy as np
    import xarray as xr

    root = tmp_path / "data"
    shutil.copytree(demo_run[0], root, ignore=shutil.ignore_patterns(".mfrs-lock"))
    profile = slurm_profile.model_copy(update={
        "gpu": None, "jobs": 1, "memory": "3GB", "log_directory": str(tmp_path / "logs"),
        "security": SecuritySpec(temporary=True, shared_temp_directory=str(tmp_path / "certs"))})
    (tmp_path / "tls.yaml").write_text(yaml.safe_dump(profile.model_dump(mode="json")))
    run_mfrs("run", "demo", "--stages", "similarity", "--overwrite", "--cluster", str(tmp_path / "tls.yaml"),
             root=root, timeout=900)
    clean, tls = xr.open_zarr(demo_run[0] / "rsa.zarr"), xr.open_zarr(root / "rsa.zarr")
    assert tls.attrs["provenance"]["cluster"]["scheduler"].startswith("tls://")
    for name in clean.data_vars:
        np.testing.assert_array_equal(tls[name].values, clean[name].values, err_msg=name)
    shutil.rmtree(root, ignore_errors=True)
