"""Band-limited Hilbert envelopes: a planted amplitude modulation is the oracle."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import scipy.signal

from mfrs.meg.config import EpochsConfig
from mfrs.meg.epochs import analytic_epochs, band_epochs, hilbert_envelope


def test_hilbert_envelope_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 500))
    z = scipy.signal.hilbert(x, axis=-1)
    np.testing.assert_allclose(hilbert_envelope(z), np.abs(scipy.signal.hilbert(x)), rtol=1e-12)
    # vector norm over an orientation axis
    zz = np.stack([z, 2 * z], axis=1)
    np.testing.assert_allclose(hilbert_envelope(zz, axis=1), np.sqrt(5) * np.abs(z), rtol=1e-12)


def test_alpha_envelope_recovers_planted_modulation():
    sfreq = 500.0
    t = np.arange(int(60 * sfreq)) / sfreq
    modulation = 1.0 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    carrier = np.cos(2 * np.pi * 10.0 * t)
    theta = 0.8 * np.cos(2 * np.pi * 5.0 * t)  # out-of-band power that must not leak in
    data = np.vstack([modulation * carrier + theta, 2 * modulation * carrier]) * 1e-12
    info = mne.create_info(["MEG 0111", "MEG 0121"], sfreq, ["mag", "mag"])
    raw = mne.io.RawArray(data, info, verbose="error")
    samples = np.arange(5, 55, 2) * int(sfreq)
    events = pd.DataFrame({"sample": samples, "stimulus": [f"f{i:03d}" for i in range(len(samples))]})
    ep = analytic_epochs(raw, events, np.arange(len(samples)), "alpha", EpochsConfig())
    env = hilbert_envelope(ep.get_data())
    expected = modulation[samples[:, None] + np.round(ep.times * sfreq).astype(int)[None]] * 1e-12
    np.testing.assert_allclose(env[:, 0], expected, rtol=0.05)
    np.testing.assert_allclose(env[:, 1], 2 * expected, rtol=0.05)


def test_band_epochs_a_few_channels_at_a_time_equal_mne_on_all_channels():
    """Filtering and Hilbert-transforming channel groups == MNE on the whole raw (channel order, bads kept)."""
    sfreq = 500.0
    rng = np.random.default_rng(0)
    info = mne.create_info([f"MEG {i:04d}" for i in range(7)] + ["STI101"], sfreq, ["mag"] * 7 + ["stim"])
    info["bads"] = ["MEG 0003"]
    raw = mne.io.RawArray(rng.standard_normal((8, int(20 * sfreq))) * 1e-12, info, first_samp=250,
                          verbose="error")
    samples = raw.first_samp + np.arange(2, 18, 2) * int(sfreq)
    events = pd.DataFrame({"sample": samples, "stimulus": [f"f{i:03d}" for i in range(len(samples))]})
    selection = np.array([0, 2, 3, 5, 7])
    cfg = EpochsConfig()
    got = band_epochs(raw, events, selection, "alpha", cfg, analytic=True, channels=3)
    filt = raw.copy().pick("meg").filter(8.0, 12.0, fir_design="firwin", fir_window="hamming", phase="zero",
                                         verbose="error").apply_hilbert(envelope=False, verbose="error")
    ev = np.column_stack([samples, np.zeros(len(samples), int), np.arange(1, len(samples) + 1)])[selection]
    ref = mne.Epochs(filt, ev, event_id=None, tmin=cfg.tmin, tmax=cfg.tmax, baseline=None, picks="meg",
                     preload=True, reject_by_annotation=False, verbose="error")
    assert got.ch_names == ref.ch_names
    np.testing.assert_allclose(got.get_data(), ref.get_data(), rtol=1e-10, atol=1e-25)
    assert got.metadata["stimulus"].tolist() == events["stimulus"].iloc[selection].tolist()
