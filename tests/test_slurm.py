"""The same stage through a real single-node SLURM (slurmctld + slurmd + munge) as on a local cluster."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from mfrs.cluster import gpu_workers
from mfrs.pipeline import run_stage
from mfrs.stages import stimuli

pytestmark = pytest.mark.slurm


def _squeue() -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%j %T"], check=True, capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def test_worker_jobs_are_running_in_squeue(slurm_client):
    jobs = _squeue()
    assert ("mfrs-cpu", "RUNNING") in jobs
    assert ("mfrs-gpu", "RUNNING") in jobs


def test_gpu_task_runs_on_the_gres_job(slurm_client):
    from distributed import get_worker

    def where():
        return get_worker().address, os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("SLURM_JOB_ID")

    gpus = gpu_workers(slurm_client)
    assert len(gpus) == 1
    address, visible, job_id = slurm_client.submit(where, resources={"GPU": 1}, pure=False).result()
    assert address == gpus[0]
    assert visible == "0"  # SLURM allocated the gres to that job
    assert job_id is not None
    plain = slurm_client.submit(where, pure=False).result()
    assert plain[2] is not None


def test_stimuli_stage_on_slurm_equals_local(tmp_path, slurm_client, local_client):
    from tests_support import REPO

    from mfrs.catalog import load_catalog
    from mfrs.stages.stimuli import Config

    cfg = Config(size=24, n_per_category=8, exec={"chunk_size": 6})
    on_slurm = load_catalog(REPO / "data_catalog.yaml", root=tmp_path / "slurm")
    on_local = load_catalog(REPO / "data_catalog.yaml", root=tmp_path / "local")
    run_stage(stimuli, config=cfg, catalog=on_slurm, client=slurm_client)
    run_stage(stimuli, config=cfg, catalog=on_local, client=local_client)
    a, b = on_slurm.open("stimuli"), on_local.open("stimuli")
    np.testing.assert_array_equal(a.image.values, b.image.values)
    assert list(a.stimulus.values) == list(b.stimulus.values)
    assert a.attrs["provenance"]["fingerprint"] == b.attrs["provenance"]["fingerprint"]
    assert a.attrs["provenance"]["cluster"]["gpu_workers"] == 1
