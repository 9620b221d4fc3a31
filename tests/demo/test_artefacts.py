"""Artefact waveforms and sensor patterns, against textbook values and scipy spectra."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from mfrs.demo import artefacts as art

SFREQ = 275.0


def test_dipole_pattern_on_axis_and_gradient() -> None:
    # one magnetometer 10 cm above a dipole pointing up: B = mu0/4pi * 2m / r^3
    loc = np.zeros(12)
    loc[:3] = [0.0, 0.0, 0.1]
    loc[3:6], loc[6:9], loc[9:12] = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    mag = {"loc": loc, "coil_type": 3024}
    grad = {"loc": loc.copy(), "coil_type": 3012}
    out = art.dipole_pattern([mag, grad], np.zeros(3), np.array([0.0, 0.0, 1e-6]))
    assert out[0] == pytest.approx(1e-7 * 2e-6 / 0.1**3, rel=1e-12)
    assert out[1] == pytest.approx(0.0, abs=1e-18)  # on axis, the field is symmetric along x
    # off axis: the planar gradient is the x-derivative of Bz (finite difference oracle)
    loc[:3] = [0.03, 0.0, 0.1]
    grad["loc"] = loc
    got = art.dipole_pattern([grad], np.zeros(3), np.array([0.0, 0.0, 1e-6]))[0]

    def bz(x: float) -> float:
        r = np.array([x, 0.0, 0.1])
        d = np.linalg.norm(r)
        return 1e-7 * (3 * r[2] * (r[2] * 1e-6) / d**5 - 1e-6 / d**3)

    # a VectorView planar gradiometer: two coils 16.8 mm apart, close to the derivative
    b = 0.0168
    assert got == pytest.approx((bz(0.03 + b / 2) - bz(0.03 - b / 2)) / b, rel=1e-9)
    h = 1e-6
    assert got == pytest.approx((bz(0.03 + h) - bz(0.03 - h)) / (2 * h), rel=0.05)


def test_heartbeat_rate() -> None:
    beats = art.heartbeat_times(600.0, 72.0, 0.05, np.random.default_rng(0))
    assert 60.0 / np.diff(beats).mean() == pytest.approx(72.0, rel=0.02)
    times = np.arange(int(10 * SFREQ)) / SFREQ
    wave = art.ecg_waveform(times, beats[beats < 10])
    peaks = times[np.flatnonzero((wave[1:-1] > wave[:-2]) & (wave[1:-1] > wave[2:]) & (wave[1:-1] > 0.8)) + 1]
    np.testing.assert_allclose(peaks, beats[(beats < 10) & (beats > 0.05)], atol=1.5 / SFREQ)


def test_line_noise_spectrum() -> None:
    times = np.arange(int(20 * SFREQ)) / SFREQ
    x = art.line_noise(times, 50.0, SFREQ, np.random.default_rng(0))
    f, p = welch(x, SFREQ, nperseg=1024)
    peak = p[np.argmin(abs(f - 50))]
    assert peak > 1e3 * np.median(p)
    assert p[np.argmin(abs(f - 100))] > 1e2 * np.median(p)  # first harmonic, below Nyquist


def test_pink_noise_slope() -> None:
    x = art.pink_noise(4, 2**15, SFREQ, np.random.default_rng(0))
    np.testing.assert_allclose(x.std(1), 1.0, rtol=1e-9)
    f, p = welch(x, SFREQ, nperseg=2048)
    sel = (f > 2) & (f < 100)
    slope = np.polyfit(np.log(f[sel]), np.log(p.mean(0)[sel]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.15)


def test_blinks_and_saccades() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(int(120 * SFREQ)) / SFREQ
    blinks = art.event_times(120.0, 15.0, 1.0, rng)
    assert 15 <= blinks.size <= 45 and np.diff(blinks).min() >= 1.0
    wave = art.blink_waveform(times, blinks, rng)
    assert 0.6 < wave.max() < 1.6
    gaze = art.saccade_waveform(times, art.event_times(120.0, 8.0, 0.5, rng), rng)
    assert np.abs(gaze).max() <= 1.0 + 1e-9 and np.ptp(gaze) > 0.3


def test_band_noise_and_suppression() -> None:
    x = art.band_noise(2**14, SFREQ, (8.0, 12.0), np.random.default_rng(0))
    f, p = welch(x, SFREQ, nperseg=1024)
    assert p[(f >= 8) & (f <= 12)].sum() > 0.75 * p.sum()
    assert p[(f >= 6.5) & (f <= 13.5)].sum() > 0.99 * p.sum()  # 1 Hz tapered edges, no leaks
    times = np.arange(int(5 * SFREQ)) / SFREQ
    env = art.suppression_envelope(times, np.array([1.0, 3.0]), (0.2, 0.6), 0.6)
    assert env[np.argmin(abs(times - 1.4))] == pytest.approx(0.4, abs=1e-3)  # deepest mid-window
    assert env[np.argmin(abs(times - 0.9))] == 1.0 and env[np.argmin(abs(times - 2.0))] == 1.0
