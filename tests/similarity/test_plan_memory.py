"""The similarity plan's memory per task against the peak RSS of the worker that ran the tasks.

Memory, not time: measured in the worker (``VmHWM``) after a raw-mode run at the demo's size
(150 stimuli, 4 subjects, 45-vertex regions, 96 samples, 70 layers, two categories). The
plan must be within +-30 %, the issue's target (``bench_study_scale.py`` checks the same at
larger sizes, and the CPU seconds).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from tests_support import peak_rss, write_complete_store

from mfrs.pipeline import run_stage
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
from mfrs.stages import similarity as stage

from .test_stage import _Catalog

TOLERANCE = 0.30


def _inputs(root, n_sub=4, n_stim=150, n_time=96, n_layer=70, n_vert=45):
    rng = np.random.default_rng(1)
    region = np.repeat(["a-lh", "b-lh"], n_vert)
    sources = xr.Dataset(
        {"activity": (("subject", "signal", "stimulus", "time", "vertex"),
                      rng.standard_normal((n_sub, 1, n_stim, n_time, region.size)).astype(np.float32))},
        coords={"subject": [f"sub-{i + 1:02d}" for i in range(n_sub)], "signal": ["broadband"],
                "stimulus": [f"s{i:03d}" for i in range(n_stim)],
                "category": ("stimulus", np.repeat(["famous", "unfamiliar", "scrambled"], n_stim // 3)),
                "time": np.arange(n_time) / 100.0, "vertex": np.arange(region.size),
                "region": ("vertex", region), "hemi": ("vertex", ["lh"] * region.size)})
    write_complete_store(sources, root / "sources.zarr", "subject")
    models = xr.Dataset({"rdm": (("layer", "pair"), rng.random((n_layer, n_pairs(n_stim))).astype(np.float32))},
                        coords={"layer": [f"l{i}" for i in range(n_layer)], "network": ("layer", ["net"] * n_layer),
                                "depth": ("layer", np.linspace(0, 1, n_layer))})
    models = models.assign_coords(pair_coords(sources["stimulus"], with_coords=STORED_PAIR_COORDS))
    write_complete_store(models, root / "model_rdms.zarr", "layer")


def test_plan_memory_holds_for_the_worker_that_ran_the_blocks(tmp_path):
    from mfrs.cluster import LocalProfile, get_client

    _inputs(tmp_path)
    cfg = stage.Config(mode="raw", categories=["all", "famous"], region_block=2, time_block=48)
    plan = stage.plan(config=cfg, catalog=_Catalog(tmp_path), calibrated=False)
    with get_client(LocalProfile(n_workers=1, gpu_workers=0, memory_limit="4GB")) as client:
        run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=client)
        (measured,) = client.run(peak_rss).values()
    assert xr.open_zarr(tmp_path / "rsa.zarr")["r"].notnull().any()
    ratio = plan.memory_per_task / measured
    assert abs(ratio - 1) <= TOLERANCE, (f"plan {plan.memory_per_task / 2**20:.0f} MiB, measured peak "
                                         f"{measured / 2**20:.0f} MiB (ratio {ratio:.2f})")
