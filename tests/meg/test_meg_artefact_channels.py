"""ECG/EOG found by channel type (ds000117: EEG061/EEG062 EOG, EEG063 ECG), never by name."""

from __future__ import annotations

import logging

import pytest

from mfrs.meg.config import IcaConfig
from mfrs.meg.preprocess import artefact_channels, fit_ica

ICA = IcaConfig(method="picard", n_components=12, decim=3, max_iter=200)


@pytest.fixture(scope="module")
def run01(meg_inputs):
    from mfrs.meg.bids import find_layout, read_run

    layout = find_layout(meg_inputs.path("ds000117"), subjects=["01"])
    return read_run(layout.root, layout.runs["01"][0]).crop(0, 40)


def test_types_come_from_channels_tsv(run01):
    # the FIF says EEG; mne-bids applied the BIDS types (HEOG, VEOG, ECG, MISC)
    assert artefact_channels(run01.info) == (["EEG063"], ["EEG061", "EEG062"])
    renamed = run01.copy().pick(["meg", "ecg", "eog"]).rename_channels(
        {"EEG061": "EOG061", "EEG062": "EOG062", "EEG063": "ECG063"})  # the study's renaming
    assert artefact_channels(renamed.info) == (["ECG063"], ["EOG061", "EOG062"])


def test_names_alone_do_not_make_a_channel_ecg_or_eog(run01):
    # the same channels typed as plain EEG (a FIF read without its channels.tsv): none found
    raw = run01.copy()
    raw.set_channel_types({c: "eeg" for c in ("EEG061", "EEG062", "EEG063")}, verbose="error")
    raw.rename_channels({"EEG063": "ECG063", "EEG061": "EOG061"})
    assert artefact_channels(raw.info) == ([], [])


def test_missing_channels_are_said_in_the_log_and_summary(run01, caplog):
    raw = run01.copy().drop_channels(["EEG061", "EEG062", "EEG063", "EEG064"])
    caplog.set_level(logging.INFO, logger="mfrs")
    res = fit_ica(raw.filter(1.0, 40.0, verbose="error"), ICA, seed=0, subject="01")
    assert res.ecg == [] and res.eog == [] and res.ica.exclude == []
    summary = res.summary()
    assert summary["ecg_channels"] == [] and summary["eog_channels"] == [] and summary["n_removed"] == 0
    for kind in ("ECG", "EOG"):
        assert f"sub-01 no {kind} channel (no channel typed {kind}" in caplog.text
        assert any(f"no {kind} channel" in n for n in summary["notes"])


def test_present_channels_remove_components(run01):
    res = fit_ica(run01.copy().filter(1.0, 40.0, verbose="error"), ICA, seed=0, subject="01")
    summary = res.summary()
    assert summary["ecg_channels"] == ["EEG063"] and summary["eog_channels"] == ["EEG061", "EEG062"]
    assert res.ecg and res.eog and summary["n_removed"] == len(res.ica.exclude)
    assert summary["notes"] == []
