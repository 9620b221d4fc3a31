"""Maxwell filter: skipped with its reason without calibration files, tSSS to one head position otherwise."""

from __future__ import annotations

import logging

import mne
import numpy as np

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
    from mfrs.demo.simulate import HEAD_POS_PATTERN

    raws = _runs(meg_inputs)
    root = meg_inputs.path("ds000117")
    head_pos = {1: root / HEAD_POS_PATTERN.format(subject="01", run=1)}  # run 2: none given
    caplog.set_level(logging.INFO, logger="mfrs")
    cfg = MaxwellConfig(require_files=False, st_duration=None, destination_run=2)
    bads = [list(r.info["bads"]) for r in raws]
    out = maxwell_filter_runs(raws, [1, 2], cfg, calibration=None, crosstalk=None, subject="01",
                              head_pos=head_pos)
    assert f"sub-01 run 1 tSSS done: bad channels {bads[0]} reconstructed, movement compensated from" \
        in caplog.text
    assert "sub-01 run 2 movement compensation skipped: the data set gives no head positions" in caplog.text
    assert all(r.info["bads"] == [] for r in out)  # the static bad channels were reconstructed
