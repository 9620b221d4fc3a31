"""The activations task on the local SLURM: it runs on the GPU-spec job's worker."""

from __future__ import annotations

import pytest
from nets_helpers import STIMULUS_SIZE, make_catalog, write_stimuli

from mfrs.pipeline import run_stage
from mfrs.stages import activations


@pytest.mark.slurm
def test_activation_task_runs_on_the_gpu_job(slurm_client, tmp_path) -> None:
    from mfrs.cluster import gpu_workers

    catalog = make_catalog(tmp_path)
    write_stimuli(catalog)
    cfg = activations.Config(networks=[{"network": "mobilenet_v2", "weights": "untrained-seed1",
                                        "input_size": STIMULUS_SIZE}], layer_kinds=["linear", "avgpool"],
                             batch_size=6)
    gpus = gpu_workers(slurm_client)
    assert len(gpus) == 1
    result = run_stage(activations, config=cfg, catalog=catalog, client=slurm_client)
    record = result["activations/mobilenet_v2/untrained-seed1"]
    assert record["worker"] == gpus[0]
    assert record["written"] == ["stimulus=0:6"]
    ds = catalog.open("activations/mobilenet_v2/untrained-seed1")
    assert ds["classifier.1"].shape == (6, 1000)
    assert ds.attrs["provenance"]["cluster"]["gpu_workers"] == 1
