"""Maxwell filter: skipped with its reason without calibration files, tSSS to one head position otherwise."""

from __future__ import annotations

import logging

import mne
import numpy as np

from mfrs.demo.simulate import HEAD_POS_PATTERN
from mfrs.meg.config import MaxwellConfig
from mfrs.meg.preprocess import maxwell_filter_runs


def _runs(meg_inputs):
    from mfrs.meg.bids import find_layout, read_run

    layout = find_layout(meg_inputs.path("ds000117"), subjects=["01"])
    raws = [read_run(layout.root, r).crop(0, 8) for r in layout.runs["01"]]
    # give run 2 another head position, 4 mm higher, as if the subject moved between runs
    t = raws[1].info["dev_head_t"]["trans"].copy()
    t[2, 3] += 0.004
    with raws[1].info._unlock():
        raws[1].info["dev_head_t"] = mne.transforms.Transform("meg", "head", t)
    return raws


def test_skipped_with_reason_without_calibration(meg_inputs, caplog):
    raws = _runs(meg_inputs)
    caplog.set_level(logging.INFO, logger="mfrs")
    out = maxwell_filter_runs(raws, [1, 2], MaxwellConfig(), calibration=None, crosstalk=None, subject="01")
    assert out is raws
    assert "sub-01 Maxwell filter skipped: the catalog entry 'ds000117' gives no params.calibration" in caplog.text


def test_tsss_moves_every_run_to_the_destination_run(meg_inputs):
    raws = _runs(meg_inputs)
    cfg = MaxwellConfig(require_files=False, st_duration=4.0, destination_run=2)
    out = maxwell_filter_runs(raws, [1, 2], cfg, calibration=None, crosstalk=None, subject="01")
    dest = raws[1].info["dev_head_t"]["trans"]
    for raw in out:
        np.testing.assert_allclose(raw.info["dev_head_t"]["trans"], dest, atol=1e-9)
        max_info = raw.info["proc_history"][0]["max_info"]
        assert max_info["max_st"]["subspcorr"] > 0  # the temporal extension (tSSS) ran
    # SSS keeps the brain signal: the filtered data still correlates with the input
    a, b = raws[0].get_data(picks="mag"), out[0].get_data(picks="mag")
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5


def test_movement_compensation_from_each_runs_head_positions(meg_inputs, caplog):
    raws = _runs(meg_inputs)
    root = meg_inputs.path("ds000117")
    head_pos = {1: root / HEAD_POS_PATTERN.format(subject="01", run=1)}  # run 2: none given
    caplog.set_level(logging.INFO, logger="mfrs")
    cfg = MaxwellConfig(require_files=False, st_duration=None, destination_run=2)
    bads = [list(r.info["bads"]) for r in raws]
    record: dict = {}
    out = maxwell_filter_runs(raws, [1, 2], cfg, calibration=None, crosstalk=None, subject="01",
                              head_pos=head_pos, record=record)
    # what the stage's provenance gets: the .pos file used, or why there was none
    assert record["1"] == {"tsss": False, "bads_reconstructed": bads[0],
                           "movement_compensation": str(head_pos[1]), "reason": None}
    assert record["2"]["movement_compensation"] is None
    assert record["2"]["reason"].startswith("the data set gives no head positions for this run")
    # run 1 is what MNE's movement compensation makes of that file (the oracle), run 2 is not
    dest = mne.transforms.Transform("meg", "head", raws[1].info["dev_head_t"]["trans"])
    pos = mne.chpi.read_head_pos(str(head_pos[1]))
    for raw, moved, same in ((raws[0], out[0], True), (raws[1], out[1], False)):
        expected = mne.preprocessing.maxwell_filter(raw, head_pos=pos, destination=dest, verbose="error")
        names = [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=True, exclude=())]
        assert np.allclose(moved.get_data(picks=names), expected.get_data(picks=names),
                           rtol=0, atol=1e-15) is same
    assert f"sub-01 run 1 tSSS done: bad channels {bads[0]} reconstructed, movement compensated from" \
        in caplog.text
    assert "sub-01 run 2 movement compensation skipped: the data set gives no head positions" in caplog.text
    assert all(r.info["bads"] == [] for r in out)  # the static bad channels were reconstructed


def test_catalog_patterns_give_each_run_its_head_positions_and_maxfilter_log(meg_inputs, tmp_path):
    from mfrs.catalog import load_catalog
    from mfrs.demo.simulate import BAD_LOG_PATTERN
    from mfrs.stages import meg

    root = meg_inputs.path("ds000117")
    jobs, _ = meg.subject_jobs(meg.Config(), meg_inputs)
    for job in jobs:
        runs = [r.run for r in job.runs]
        assert job.head_pos == {r: root / HEAD_POS_PATTERN.format(subject=job.subject, run=r) for r in runs}
        assert job.bad_logs == {r: root / BAD_LOG_PATTERN.format(subject=job.subject, run=r) for r in runs}
    # patterns that name no file (a data set without MaxFilter derivatives): nothing, per run
    text = meg_inputs.source.read_text().replace("_headpos.pos", "_nothere.pos").replace("_sss_log.txt", "_x.txt")
    (tmp_path / "cat.yaml").write_text(text)
    jobs, _ = meg.subject_jobs(meg.Config(), load_catalog(tmp_path / "cat.yaml"))
    assert all(job.head_pos == {} and job.bad_logs == {} for job in jobs)
