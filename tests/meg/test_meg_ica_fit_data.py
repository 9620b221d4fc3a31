"""ICA's copy gathered run by run holds exactly the samples ``ICA.fit(decim=...)`` takes from the runs concatenated.

Oracle: MNE itself on the concatenation (``concatenate_raws``, pick, crop to ``fit_duration``, the
high-pass, then every ``decim``-th sample, as ``ICA._fit_raw`` slices it).
"""

from __future__ import annotations

import mne
import numpy as np
import pytest

from mfrs.meg.config import IcaConfig
from mfrs.meg.preprocess import ica_fit_data


@pytest.mark.parametrize("fit_duration", [None, 50.0])
def test_run_by_run_copy_is_the_decimated_concatenation(meg_inputs, fit_duration):
    from mfrs.meg.bids import find_layout, read_run

    layout = find_layout(meg_inputs.path("ds000117"), subjects=["01"])
    runs = [read_run(layout.root, run).crop(0, 30) for run in layout.runs["01"][:2]]
    for raw in runs:  # the same channels in both, as after the stage marks the union bad
        raw.info["bads"] = []
    cfg = IcaConfig(decim=3, fit_duration=fit_duration)
    parts, offset = [], 0
    for raw in runs:
        part = ica_fit_data(raw, cfg, offset=offset, drop_bads=False)
        if part is not None:
            parts.append(part)
        offset += raw.n_times
    ours = np.concatenate([p.get_data() for p in parts], axis=1)

    whole = mne.concatenate_raws([r.copy() for r in runs], verbose="error")
    oracle = whole.pick(["meg", "ecg", "eog"])
    if fit_duration is not None:
        oracle.crop(0.0, fit_duration)
    oracle.filter(cfg.fit_l_freq, None, picks="meg", fir_design="firwin", verbose="error")
    expected = oracle.get_data()[:, ::cfg.decim]
    assert parts[0].ch_names == oracle.ch_names
    assert parts[0].info["sfreq"] == pytest.approx(runs[0].info["sfreq"] / cfg.decim)
    assert ours.shape == expected.shape
    scale = np.abs(expected).max(axis=1, keepdims=True)  # T, T/m and V: each channel on its own scale
    np.testing.assert_allclose(ours / scale, expected / scale, rtol=0, atol=1e-9)
