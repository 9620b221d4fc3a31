"""Reads inside a unit's task run in the task itself, not as more tasks on the cluster."""

from __future__ import annotations

from mfrs.runner import run_units


def _read_block(n_chunks: int) -> tuple[float, bool]:
    import dask
    import dask.array as da
    import dask.local
    import numpy as np

    # output chunks keep their names (nothing fuses them away), so the scheduler would see them
    arr = da.ones((n_chunks * 10,), chunks=10).map_blocks(np.negative, name="mfrs-probe-read", dtype=float)
    return -float(arr.compute().sum()), dask.base.get_scheduler() is dask.local.get_sync


def _probe_keys(dask_scheduler) -> list[str]:  # runs on the scheduler
    return [str(rec[0]) for rec in dask_scheduler.transition_log if "mfrs-probe-read" in str(rec[0])]


def test_dask_reads_inside_a_task_never_reach_the_scheduler(local_client):
    results = run_units(local_client, _read_block, [4, 6], key=str, description="probe")
    assert results == {"4": (40.0, True), "6": (60.0, True)}
    assert local_client.run_on_scheduler(_probe_keys) == []


def test_without_the_runner_the_same_read_would_go_through_the_cluster(local_client):
    # the oracle for the test above: a plain submit does send the inner graph to the scheduler
    fut = local_client.submit(_read_block, 3, pure=False)
    total, synchronous = fut.result()
    assert total == 30.0 and not synchronous
    assert local_client.run_on_scheduler(_probe_keys) != []
