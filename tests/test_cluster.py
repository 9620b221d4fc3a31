"""Cluster profiles: job scripts rendered without SLURM, GPU routing on a real local cluster."""

from __future__ import annotations

import os

import pytest

from mfrs.cluster import GpuJobSpec, SlurmProfile, gpu_workers, load_profile, render_job_scripts


def test_repository_profiles_validate():
    local, slurm = load_profile("local"), load_profile("slurm")
    assert local.kind == "local" and local.threads_per_worker == 1
    assert slurm.kind == "slurm" and slurm.gpu is not None and "--gres=gpu:1" in slurm.gpu.job_extra_directives


def test_address_profile_from_a_url():
    prof = load_profile("tcp://10.0.0.1:8786")
    assert prof.kind == "address" and prof.address == "tcp://10.0.0.1:8786"


def test_job_scripts_carry_directives_and_gpu_spec():
    prof = SlurmProfile(queue="gpuq", account="lab", walltime="02:00:00", cores=4, memory="16GB",
                        job_extra_directives=["--qos=high"], gpu=GpuJobSpec(memory="32GB"))
    scripts = render_job_scripts(prof, scheduler_address="tcp://1.2.3.4:8786")
    cpu, gpu = scripts["cpu"], scripts["gpu"]
    assert "#SBATCH -p gpuq" in cpu and "#SBATCH -A lab" in cpu and "#SBATCH -t 02:00:00" in cpu
    assert "#SBATCH --qos=high" in cpu and "--gres=gpu:1" not in cpu
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources GPU=1" in gpu and "#SBATCH --mem=30G" in gpu
    assert "export OPENBLAS_NUM_THREADS=1" in cpu and "tcp://1.2.3.4:8786" in cpu


def test_no_gpu_script_without_a_gpu_spec():
    assert set(render_job_scripts(SlurmProfile(gpu=None))) == {"cpu"}


def test_gpu_tasks_land_on_the_gpu_worker(local_client):
    from distributed import get_worker

    gpus = gpu_workers(local_client)
    assert len(gpus) == 1 and len(local_client.scheduler_info()["workers"]) == 2
    futures = [local_client.submit(lambda i: get_worker().address, i, resources={"GPU": 1}, pure=False)
               for i in range(4)]
    assert {f.result() for f in futures} == set(gpus)


def test_workers_run_one_blas_and_numba_thread(local_client):
    env = local_client.run(lambda: {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})
    assert all(v == {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"} for v in env.values())


def test_similarity_kernels_recognise_a_dask_task_thread(local_client):
    """The cluster layer tells the similarity engine (which never imports distributed) which threads run tasks."""
    from mfrs.similarity.threads import in_dask_worker

    assert tuple(local_client.submit(in_dask_worker, pure=False).result()) == (True, 1)
    assert in_dask_worker() == (False, 0)  # this thread runs no task


def test_unreachable_scheduler_is_a_cluster_error():
    from mfrs.cluster import get_client
    from mfrs.errors import ClusterError

    with pytest.raises(ClusterError, match=r"cannot reach the scheduler at tcp://127\.0\.0\.1:9"):
        with get_client("tcp://127.0.0.1:9"):
            pass
