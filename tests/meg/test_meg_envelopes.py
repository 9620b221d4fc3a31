"""Band-limited Hilbert envelopes: a planted amplitude modulation is the oracle."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import scipy.signal

from mfrs.meg.config import EpochsConfig
from mfrs.meg.epochs import analytic_epochs, hilbert_envelope


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
