"""Events from STI101 matched to events.tsv: an independent synthetic recording is the oracle."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from mfrs.errors import InputDataError
from mfrs.meg.config import EventsConfig
from mfrs.meg.events import find_trigger_events, match_events

SFREQ = 1100.0
FIRST_SAMP = 500


def _raw_with_triggers(samples, codes, *, button_at=None):
    n = 20_000
    sti = np.zeros(n)
    for s, c in zip(samples, codes):
        sti[s - FIRST_SAMP:s - FIRST_SAMP + 20] = c  # 18 ms pulses
    if button_at is not None:  # a button press (4096) overlapping a stimulus code
        sti[button_at - FIRST_SAMP:button_at - FIRST_SAMP + 200] += 4096
    info = mne.create_info(["STI101"], SFREQ, ["stim"])
    return mne.io.RawArray(sti[None], info, first_samp=FIRST_SAMP, verbose="error")


def test_triggers_match_tsv_and_delay_is_added():
    samples = np.array([1000, 3000, 5000, 7000, 9000, 11000])
    codes = np.array([5, 6, 13, 17, 7, 19])
    files = ["meg/f001.bmp", "meg/f001.bmp", "meg/u001.bmp", "meg/s001.bmp", "meg/f001.bmp", "meg/s001.bmp"]
    raw = _raw_with_triggers(samples, codes, button_at=3005)
    # events.tsv onsets are seconds from the file start, jittered by a sample
    table = pd.DataFrame({"onset": (samples - FIRST_SAMP + np.array([0, 1, -1, 0, 1, 0])) / SFREQ,
                          "trigger": codes, "stim_file": files})
    cfg = EventsConfig(presentations=["first", "immediate", "delayed"], delay=0.0345)
    events = find_trigger_events(raw, cfg)
    np.testing.assert_array_equal(events[:, 0], samples)
    np.testing.assert_array_equal(events[:, 2], codes)  # the button bit is masked out
    out = match_events(events, table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                       file_to_stimulus={"meg/f001.bmp": "f001", "meg/u001.bmp": "u001",
                                         "meg/s001.bmp": "s001"}, source="x_events.tsv")
    np.testing.assert_array_equal(out["trigger_sample"], samples)
    np.testing.assert_array_equal(out["sample"], samples + round(0.0345 * SFREQ))
    assert out["stimulus"].tolist() == ["f001", "f001", "u001", "s001", "f001", "s001"]
    assert out["category"].tolist() == ["famous", "famous", "unfamiliar", "scrambled", "famous", "scrambled"]
    assert out["presentation"].tolist() == ["first", "immediate", "first", "first", "delayed", "delayed"]


def test_first_presentations_by_default():
    samples, codes = np.array([1000, 3000, 5000]), np.array([5, 6, 17])
    raw = _raw_with_triggers(samples, codes)
    table = pd.DataFrame({"onset": (samples - FIRST_SAMP) / SFREQ, "trigger": codes,
                          "stim_file": ["meg/f001.bmp", "meg/f001.bmp", "meg/s001.bmp"]})
    cfg = EventsConfig()
    out = match_events(find_trigger_events(raw, cfg), table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                       file_to_stimulus={"meg/f001.bmp": "f001", "meg/s001.bmp": "s001"}, source="t.tsv")
    assert out["stimulus"].tolist() == ["f001", "s001"]


def test_tsv_row_without_trigger_names_the_file():
    samples, codes = np.array([1000, 3000]), np.array([5, 13])
    raw = _raw_with_triggers(samples, codes)
    table = pd.DataFrame({"onset": [(1000 - FIRST_SAMP) / SFREQ, 4.0], "trigger": [5, 13],
                          "stim_file": ["meg/f001.bmp", "meg/u001.bmp"]})
    cfg = EventsConfig()
    with pytest.raises(InputDataError, match=r"sub-09_run-02_events\.tsv: 1 events\.tsv rows have no STI101"):
        match_events(find_trigger_events(raw, cfg), table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                     file_to_stimulus={"meg/f001.bmp": "f001", "meg/u001.bmp": "u001"},
                     source="sub-09_run-02_events.tsv")


def test_unknown_stim_file_is_reported():
    samples, codes = np.array([1000]), np.array([5])
    raw = _raw_with_triggers(samples, codes)
    table = pd.DataFrame({"onset": [(1000 - FIRST_SAMP) / SFREQ], "trigger": [5], "stim_file": ["meg/x.bmp"]})
    cfg = EventsConfig()
    with pytest.raises(InputDataError, match=r"stim_file values \['meg/x.bmp'\] are not `file` coords"):
        match_events(find_trigger_events(raw, cfg), table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                     file_to_stimulus={}, source="t.tsv")


def test_events_of_excluded_stimuli_are_dropped_after_matching(caplog):
    # ds000117 shows all 450 images; the study's exclusions leave some out of the stimuli store
    samples, codes = np.array([1000, 3000, 5000]), np.array([5, 13, 17])
    raw = _raw_with_triggers(samples, codes)
    table = pd.DataFrame({"onset": (samples - FIRST_SAMP) / SFREQ, "trigger": codes,
                          "stim_file": ["meg/f004.bmp", "meg/u001.bmp", "meg/s002.bmp"]})
    cfg = EventsConfig()
    kept = {"meg/u001.bmp": "u001", "meg/s002.bmp": "s002"}
    caplog.set_level("INFO", logger="mfrs")
    out = match_events(find_trigger_events(raw, cfg), table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                       file_to_stimulus=kept, source="t.tsv", excluded={"f004"})
    assert out["stimulus"].tolist() == ["u001", "s002"]
    np.testing.assert_array_equal(out["trigger_sample"], samples[1:])
    assert "t.tsv: 1 events of excluded stimuli dropped (f004)" in caplog.text
    # a stim_file neither kept nor excluded still names the mismatch
    with pytest.raises(InputDataError, match=r"stim_file values \['meg/f004.bmp'\]"):
        match_events(find_trigger_events(raw, cfg), table, sfreq=SFREQ, first_samp=FIRST_SAMP, cfg=cfg,
                     file_to_stimulus=kept, source="t.tsv", excluded={"f005"})
