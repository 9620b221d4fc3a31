"""The demo_data stage on a real catalog, a real stimuli store and a real dask cluster."""

from __future__ import annotations

import json
import logging

import pytest

from mfrs.errors import ConfigError
from mfrs.pipeline import run_stage
from mfrs.stages import demo_data as stage

TINY = {"n_subjects": 1, "n_runs": 1, "max_stimuli_per_category": 3, "grid": "ico4", "region_size": 12,
            "noise": {"n_brain_sources": 20}}


@pytest.fixture
def with_stimuli(catalog, local_client, subjects_dir):
    import shutil

    from mfrs.stages import stimuli

    # start from the session's template (surfaces and BEM solution built once); the stage
    # still rewrites the parcellation, built there with another seed
    shutil.copytree(subjects_dir, catalog.path("anatomy"))
    run_stage(stimuli, config=stimuli.Config(size=32, n_per_category=4, exec={"chunk_size": 12}), catalog=catalog,
                client=local_client)
    return catalog


def test_protocol(tmp_path) -> None:
    from mfrs.catalog import Catalog

    catalog = Catalog({}, source=None, root=tmp_path)
    cfg = stage.Config(**TINY)
    assert stage.NAME == "demo_data"
    assert stage.inputs(cfg, catalog) == ["stimuli", "weights_mobilenet_v2_imagenet"]  # the drivers of the effects
    assert stage.outputs(cfg, catalog) == ["ds000117", "anatomy"]
    assert stage.__doc__.splitlines()[0].startswith("Demo data:")
    with pytest.raises(ValueError, match="n_subject"):
        stage.Config(n_subject=3)  # typo: unknown keys are refused


def test_run_writes_both_entries_then_skips(with_stimuli, local_client, caplog) -> None:
    from mne_bids import get_entity_vals

    from mfrs.demo.simulate import read_truth

    catalog = with_stimuli
    cfg = stage.Config(**TINY, seed=3)
    p = stage.plan(config=cfg, catalog=catalog)
    assert p.n_tasks == 1 and p.writes["ds000117"] > 0 and p.reads["stimuli"] == 12 * 32 * 32
    assert "9 stimuli shown twice" in p.notes[0]

    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    bids = catalog.path("ds000117")
    anatomy = catalog.path("anatomy")
    assert get_entity_vals(bids, "subject") == ["01"]
    assert (anatomy / "fsaverage" / "label" / "rh.aparc_sub.annot").exists()
    truth = read_truth(bids)
    assert truth["config"]["seed"] == 3 and len(truth["stimuli"]) == 9
    prov = json.loads((bids / stage.PROVENANCE_FILE).read_text())
    assert prov["stage"] == "demo_data" and prov["seed"] == 3 and prov["inputs"]["stimuli"]

    fif = next(bids.glob("sub-01/ses-meg/meg/*_meg.fif"))
    before = fif.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mfrs"):
        run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    assert fif.stat().st_mtime_ns == before
    assert any("complete" in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)


def test_anatomy_entry_for_real_data_refused(with_stimuli, local_client) -> None:
    catalog = with_stimuli
    entry = catalog._entries["anatomy"]
    catalog._entries["anatomy"] = entry.model_copy(update={"params": {"subject": "sub-01"}})
    with pytest.raises(ConfigError, match=r"catalog entry 'anatomy' has params subject='sub-01'"):
        run_stage(stage, config=stage.Config(**TINY), catalog=catalog, client=local_client)
