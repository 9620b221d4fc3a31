"""Artefact waveforms (ECG, blinks, saccades, line noise, 1/f noise) and their sensor patterns.

Array code only: time courses ``(time,)`` and sensor patterns ``(channel,)`` over numpy.
Sensor patterns are fields of magnetic dipoles at the heart, the eyes or far away,
computed at the real coil positions (magnetometers: normal component; planar
gradiometers: its finite difference along the gradiometer baseline), so that an
artefact has one fixed topography per head position, as ICA assumes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "band_noise",
    "blink_waveform",
    "dipole_pattern",
    "ecg_waveform",
    "event_times",
    "heartbeat_times",
    "line_noise",
    "pink_noise",
    "saccade_waveform",
    "suppression_envelope",
]

_MU0_4PI = 1e-7
_GRAD_BASELINE = 0.0168  # m, VectorView planar gradiometers
_COIL_MAG, _COIL_GRAD = 3024, 3012


def _field(r: np.ndarray, r0: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Field of a magnetic dipole ``m`` at ``r0`` at points ``r`` ``(n, 3) -> (n, 3)``."""
    d = r - r0
    dist = np.linalg.norm(d, axis=1, keepdims=True)
    u = d / dist
    return _MU0_4PI * (3 * u * (u @ m)[:, None] - m) / dist**3


def dipole_pattern(chs: list[dict], position: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """What each MEG channel measures of a magnetic dipole (device coordinates).

    Parameters
    ----------
    chs : list of dict
        ``info["chs"]`` of the MEG channels (``loc``: position, then ex, ey, ez axes).
    position, moment : ndarray, shape (3,)
        Dipole location (m) and moment (A m^2), in device coordinates.

    Returns
    -------
    ndarray, shape (channel,)
        T for magnetometers, T/m for planar gradiometers.
    """
    loc = np.array([c["loc"] for c in chs], dtype=np.float64)
    pos, ex, ez = loc[:, :3], loc[:, 3:6], loc[:, 9:12]
    kinds = np.array([c["coil_type"] for c in chs])
    out = np.einsum("ij,ij->i", _field(pos, position, moment), ez)
    grad = kinds == _COIL_GRAD
    half = 0.5 * _GRAD_BASELINE * ex[grad]
    plus = np.einsum("ij,ij->i", _field(pos[grad] + half, position, moment), ez[grad])
    minus = np.einsum("ij,ij->i", _field(pos[grad] - half, position, moment), ez[grad])
    out[grad] = (plus - minus) / _GRAD_BASELINE
    return out


def heartbeat_times(
    duration: float, rate_bpm: float, variability: float, rng: np.random.Generator
) -> np.ndarray:
    """R-peak times (s) over ``duration`` with jittered RR intervals."""
    rr = 60.0 / rate_bpm
    n = int(duration / rr) + 3
    intervals = np.clip(rr + variability * rng.standard_normal(n), 0.4 * rr, None)
    times = rng.uniform(0, rr) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    return times[times < duration]


def _gauss(t: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sd) ** 2)


def ecg_waveform(times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """A PQRST complex at every beat, R peak = 1: ``(time,) -> (time,)``."""
    out = np.zeros_like(times)
    # (amplitude, offset from R in s, width in s): P, Q, R, S, T waves
    waves = ((0.12, -0.18, 0.025), (-0.12, -0.03, 0.008), (1.0, 0.0, 0.010),
             (-0.25, 0.03, 0.010), (0.30, 0.25, 0.045))
    for b in beats:
        lo, hi = np.searchsorted(times, [b - 0.35, b + 0.5])
        t = times[lo:hi] - b
        for amp, mu, sd in waves:
            out[lo:hi] += amp * _gauss(t, mu, sd)
    return out


def event_times(duration: float, rate_per_min: float, refractory: float,
                rng: np.random.Generator) -> np.ndarray:
    """Poisson event times (s) at ``rate_per_min`` with a refractory period."""
    if rate_per_min <= 0:
        return np.zeros(0)
    mean_gap = 60.0 / rate_per_min
    gaps = refractory + rng.exponential(max(mean_gap - refractory, 1e-3),
                                        int(duration / mean_gap * 2) + 5)
    times = np.cumsum(gaps)
    return times[times < duration]


def blink_waveform(times: np.ndarray, blinks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blinks of about 300 ms, peak 1 (+-15 % per blink): ``(time,) -> (time,)``."""
    out = np.zeros_like(times)
    for b in blinks:
        lo, hi = np.searchsorted(times, [b - 0.3, b + 0.4])
        t = times[lo:hi] - b
        # faster closing than opening
        shape = np.where(t < 0, _gauss(t, 0.0, 0.045), _gauss(t, 0.0, 0.075))
        out[lo:hi] += (1.0 + 0.15 * rng.standard_normal()) * shape
    return out


def saccade_waveform(times: np.ndarray, saccades: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Horizontal gaze position: steps of random size at saccades, +-1 range: ``(time,) -> (time,)``."""
    gaze = np.zeros_like(times)
    level = 0.0
    for s in saccades:
        target = float(np.clip(level + rng.normal(0, 0.7), -1.0, 1.0))
        gaze[np.searchsorted(times, s):] += target - level
        level = target
    # 30 ms ramp: the step response of the eye
    width = max(1, round(0.03 / (times[1] - times[0])))
    kernel = np.ones(width) / width
    return np.convolve(gaze, kernel, mode="same")


def pink_noise(n_signals: int, n_times: int, sfreq: float, rng: np.random.Generator,
               f_min: float = 0.5) -> np.ndarray:
    """Unit-variance 1/f noise: ``-> (signal, time)``."""
    from scipy import fft

    n_fft = fft.next_fast_len(n_times, real=True)  # a length with small prime factors only
    white = rng.standard_normal((n_signals, n_fft))
    spec = fft.rfft(white, axis=1)
    spec *= 1.0 / np.sqrt(np.maximum(fft.rfftfreq(n_fft, 1.0 / sfreq), f_min))
    out = fft.irfft(spec, n=n_fft, axis=1)[:, :n_times]
    out -= out.mean(axis=1, keepdims=True)
    return out / out.std(axis=1, keepdims=True)


def line_noise(times: np.ndarray, line_freq: float, sfreq: float,
               rng: np.random.Generator) -> np.ndarray:
    """Mains hum and its harmonics below Nyquist: ``(time,) -> (time,)``.

    Harmonic k has amplitude 1/k when odd and 0.2/k when even (mains distortion is mostly odd).
    """
    out = np.zeros_like(times)
    k = 1
    while k * line_freq < sfreq / 2:
        amp = (1.0 if k % 2 else 0.2) / k
        out += amp * np.sin(2 * np.pi * k * line_freq * times + rng.uniform(0, 2 * np.pi))
        k += 1
    return out


def band_noise(n_times: int, sfreq: float, band: tuple[float, float],
               rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise limited to ``band`` (Hz), a rhythm like alpha: ``-> (time,)``."""
    from scipy import fft

    n_fft = fft.next_fast_len(n_times, real=True)
    spec = fft.rfft(rng.standard_normal(n_fft))
    freqs = fft.rfftfreq(n_fft, 1.0 / sfreq)
    # raised-cosine edges (1 Hz) so the rhythm has no ringing sidelobes
    lo, hi = band
    gain = np.clip(np.minimum(freqs - (lo - 1.0), (hi + 1.0) - freqs), 0.0, 1.0)
    out = fft.irfft(spec * np.sin(0.5 * np.pi * gain) ** 2, n=n_fft)[:n_times]
    out -= out.mean()
    return out / out.std()


def suppression_envelope(times: np.ndarray, onsets: np.ndarray, window: tuple[float, float],
                         depth: float) -> np.ndarray:
    """Amplitude factor 1 - depth * (smooth bump over ``window`` after each onset): ``(time,)``."""
    start, end = window
    dip = np.zeros_like(times)
    for t0 in onsets:
        lo, hi = np.searchsorted(times, [t0 + start, t0 + end])
        u = (times[lo:hi] - (t0 + start)) / (end - start)
        dip[lo:hi] = np.maximum(dip[lo:hi], np.sin(np.pi * u) ** 2)
    return 1.0 - depth * dip
