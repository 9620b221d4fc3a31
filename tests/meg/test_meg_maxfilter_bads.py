"""Per-run static bad channels: MaxFilter logs read as the study did, plus channels.tsv's status."""

from __future__ import annotations

import logging

import mne
import numpy as np
import pytest

from mfrs.errors import InputDataError
from mfrs.meg.maxfilter import parse_static_bads, read_static_bads
from mfrs.meg.subject import static_bads


def _fif(tmp_path, name: str, bads: list[str]) -> mne.io.BaseRaw:
    """A 2 s VectorView recording named as ds000117's FIF files (``MEG0113``), written and read back."""
    info = mne.channels.read_meg_canonical_info("neuromag")
    mne.rename_channels(info, {n: n.replace(" ", "") for n in info["ch_names"]})
    with info._unlock():
        info["sfreq"] = 200.0
    raw = mne.io.RawArray(np.random.default_rng(0).standard_normal((306, 400)) * 1e-13, info,
                          verbose="error")
    raw.info["bads"] = bads
    raw.save(tmp_path / f"{name}_raw.fif", verbose="error")
    return mne.io.read_raw_fif(tmp_path / f"{name}_raw.fif", preload=True, verbose="error")


def test_log_lines_as_maxfilter_prints_them():
    text = ("Reading raw data...\nStatic bad channels (3): 0813 1143 2443\n"
            "static bad channels: MEG1143 313\nFlat channels: 0111\n")
    assert parse_static_bads(text) == ["0813", "1143", "2443", "0313"]


def test_each_run_gets_its_log_and_channels_tsv_bads(tmp_path, caplog):
    run1 = _fif(tmp_path, "run1", ["MEG0113"])  # channels.tsv status=bad, as mne-bids applies it
    run2 = _fif(tmp_path, "run2", [])
    log1 = tmp_path / "run_01_sss_log.txt"
    log1.write_text("Static bad channels (2): 0113 1143\n")
    caplog.set_level(logging.INFO, logger="mfrs")
    bads, sources = static_bads([run1, run2], [1, 2], {1: log1}, "07")
    assert bads == {1: ["MEG0113", "MEG1143"], 2: []}
    assert run1.info["bads"] == ["MEG0113", "MEG1143"] and run2.info["bads"] == []
    assert sources["1"] == f"channels.tsv status and MaxFilter log {log1}"
    assert sources["2"].startswith("channels.tsv status only: the data set gives no MaxFilter log")
    assert "sub-07 run 2 static bad channels: none (channels.tsv status only" in caplog.text
    # the marked channels are what MNE's Maxwell filter reconstructs (and then lists as good)
    sss = mne.preprocessing.maxwell_filter(run1, origin=(0.0, 0.0, 0.04), coord_frame="meg", verbose="error")
    assert sss.info["bads"] == []


def test_a_log_naming_unknown_channels_is_refused(tmp_path):
    raw = _fif(tmp_path, "run", [])
    log = tmp_path / "log.txt"
    log.write_text("Static bad channels (1): 9999\n")
    with pytest.raises(InputDataError, match=r"log\.txt: static bad channels \['9999'\] are not MEG"):
        read_static_bads(log, raw.ch_names)
