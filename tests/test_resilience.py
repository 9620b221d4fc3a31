"""A worker process killed in the middle of a stage: the rerun completes the store, each unit once."""

from __future__ import annotations

import os
import signal

import dask
import numpy as np
import pytest
import xarray as xr

from mfrs.errors import StageFailures
from mfrs.pipeline import run_stage
from mfrs.runner import run_units
from mfrs.stages import stimuli
from mfrs.stages.stimuli import Config, load_stimulus_pixels
from mfrs.store import MARKER_DIR, ZarrStore


def _kill_while_writing(item):
    """Write garbage into the unit's region, then die by SIGKILL before the unit is marked."""
    store, unit = item.store, item.unit
    if unit.index == (1,):
        n = unit.region["stimulus"].stop - unit.region["stimulus"].start
        junk = xr.Dataset({"image": (("stimulus", "y", "x"), np.full((n, item.size, item.size), 255, np.uint8))})
        junk.to_zarr(store.path, region={"stimulus": unit.region["stimulus"], "y": slice(None), "x": slice(None)},
                     mode="r+")
        os.kill(os.getpid(), signal.SIGKILL)
    return stimuli.write_unit(item)


@pytest.fixture
def fragile_client():
    """A real local cluster whose scheduler gives up on a task after one killed worker."""
    import distributed  # noqa: F401 - its config defaults must exist before set(), or leaving set() deletes them

    from mfrs.cluster import LocalProfile, get_client

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with get_client(LocalProfile(n_workers=2, gpu_workers=0, memory_limit="2GB")) as client:
            yield client


def test_rerun_after_a_killed_worker_completes_every_unit_once(catalog, fragile_client):
    cfg = Config(size=20, n_per_category=6, exec={"chunk_size": 4})
    store, work = stimuli.prepare(config=cfg, catalog=catalog, client=fragile_client)
    with pytest.raises(StageFailures, match=r"stimulus=4:8: KilledWorker") as failed:
        run_units(fragile_client, _kill_while_writing, work, key=lambda w: w.unit.key,
                  description="stimuli", stage="stimuli")
    # Tasks queued on the killed worker fail with it; every other unit is complete.
    missing = [u.key for u in store.missing_units()]
    assert "stimulus=4:8" in missing and set(missing) == set(failed.value.failures)
    assert len(missing) < len(store.units())

    fragile_client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    run_stage(stimuli, config=cfg, catalog=catalog, client=fragile_client)

    store = ZarrStore.open(catalog.path("stimuli"))
    assert not store.missing_units()
    assert sorted(p.name for p in (store.path / MARKER_DIR).iterdir()) == sorted(u.marker_name for u in store.units())
    ds = catalog.open("stimuli")
    assert len(set(ds.stimulus.values)) == ds.sizes["stimulus"] == 18
    specs = {s.stimulus: s for s in stimuli.list_stimuli(catalog.entry("stimulus_images"), 6)}
    for sid in ds.stimulus.values:  # oracle: each stimulus computed alone, outside the cluster
        expected = load_stimulus_pixels(specs[sid], size=20, seed=cfg.seed)
        np.testing.assert_array_equal(ds.image.sel(stimulus=sid).values, expected)
