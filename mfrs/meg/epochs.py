"""Epochs with baseline, autoreject's global threshold, per-stimulus averages, band envelopes."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from mfrs.meg.types import BANDS

if TYPE_CHECKING:
    import mne
    import pandas as pd

    from mfrs.meg.config import EpochsConfig

__all__ = ["make_epochs", "reject_global", "band_epochs", "analytic_epochs", "hilbert_envelope", "stimulus_rows",
           "StimulusMean", "stimulus_mean", "envelope_mean"]

log = logging.getLogger(__name__)


def make_epochs(raw: "mne.io.BaseRaw", events: "pd.DataFrame", cfg: "EpochsConfig") -> "mne.Epochs":
    """Cut MEG epochs at ``events.sample`` (delay already applied) with baseline.

    ``events`` becomes the epochs' metadata; the event id is the row number, so
    epochs built from a filtered copy of ``raw`` line up one to one.
    """
    import mne

    ev = np.column_stack([events["sample"].to_numpy(np.int64), np.zeros(len(events), np.int64),
                          np.arange(1, len(events) + 1)])
    epochs = mne.Epochs(raw, ev, event_id=None, tmin=cfg.tmin, tmax=cfg.tmax,
                        baseline=tuple(cfg.baseline), picks="meg", reject=None, preload=True,
                        metadata=events.reset_index(drop=True), reject_by_annotation=False,
                        event_repeated="error", verbose="error")
    if cfg.resample_sfreq is not None and cfg.resample_sfreq != epochs.info["sfreq"]:
        epochs.resample(cfg.resample_sfreq, verbose="error")
    return epochs


def reject_global(epochs: "mne.Epochs", *, seed: int) -> dict[str, float]:
    """Drop epochs above autoreject's global peak-to-peak threshold (in place).

    Returns
    -------
    dict
        Channel type -> threshold used.
    """
    from autoreject import get_rejection_threshold

    types = [t for t in ("grad", "mag") if t in epochs]
    thresh = get_rejection_threshold(epochs, ch_types=types, random_state=seed, verbose=False)
    epochs.drop_bad(reject=thresh, verbose="error")
    return {k: float(v) for k, v in thresh.items()}


#: MEG channels band-passed (and Hilbert-transformed) at once: a copy of the continuous run is held for
#: this many channels only, not for all 306 (three times the run's MEG data in complex, 4.4 GB at the
#: study's size, above an 8 GB worker with the rest of cleaning).
BAND_CHANNELS = 64


def band_epochs(raw: "mne.io.BaseRaw", events: "pd.DataFrame", selection: np.ndarray, band: str,
                cfg: "EpochsConfig", *, analytic: bool, channels: int = BAND_CHANNELS) -> "mne.Epochs":
    """Epochs of the continuous data band-passed to ``BANDS[band]`` (FIR, zero phase).

    Filtering the continuous data avoids the edge effects of filtering 1 s epochs.
    With ``analytic`` the continuous Hilbert transform (complex) is epoched; the
    envelope is its modulus, and linear maps (inverse operator, morph) commute
    with it, so source envelopes are ``|K @ analytic|``. The filter and the Hilbert
    transform act on each channel alone: they run on ``channels`` MEG channels at a
    time, whose epochs are then put side by side (all at once when the raw has SSP
    projectors, which mix channels).

    Parameters
    ----------
    selection : ndarray of int
        Rows of ``events`` kept after rejection (``epochs.selection``).
    channels : int
        MEG channels filtered at once.
    """
    import mne

    lo, hi = BANDS[band]
    ev = np.column_stack([events["sample"].to_numpy(np.int64), np.zeros(len(events), np.int64),
                          np.arange(1, len(events) + 1)])[selection]
    meg = mne.pick_types(raw.info, meg=True, exclude=[])
    if raw.info["projs"]:  # SSP projectors mix channels (the Maxwell filter removes the MEG ones): all at once
        channels = len(meg)
    parts = []
    for group in np.array_split(meg, max(1, -(-len(meg) // channels))):
        filt = mne.io.RawArray(raw.get_data(picks=group), mne.pick_info(raw.info, group),
                               first_samp=raw.first_samp, verbose="error")
        filt.filter(lo, hi, fir_design="firwin", fir_window="hamming", phase="zero", verbose="error")
        if analytic:
            filt.apply_hilbert(envelope=False, verbose="error")
        # no baseline: a band-passed signal has none, and the envelope must not be shifted
        parts.append(mne.Epochs(filt, ev, event_id=None, tmin=cfg.tmin, tmax=cfg.tmax, baseline=None,
                                picks="meg", reject=None, preload=True,
                                metadata=events.iloc[selection].reset_index(drop=True),
                                reject_by_annotation=False, verbose="error"))
        del filt
    epochs = parts[0].add_channels(parts[1:]) if len(parts) > 1 else parts[0]
    if cfg.resample_sfreq is not None and cfg.resample_sfreq != epochs.info["sfreq"]:
        if analytic:
            re_, im_ = (mne.EpochsArray(f(epochs.get_data()), epochs.info, epochs.events,
                                        tmin=epochs.tmin, metadata=epochs.metadata, verbose="error")
                        .resample(cfg.resample_sfreq, verbose="error").get_data()
                        for f in (np.real, np.imag))
            return mne.EpochsArray(re_ + 1j * im_, _resampled_info(epochs, cfg.resample_sfreq),
                                   epochs.events, tmin=epochs.tmin, metadata=epochs.metadata,
                                   verbose="error")
        epochs.resample(cfg.resample_sfreq, verbose="error")
    return epochs


def _resampled_info(epochs: "mne.Epochs", sfreq: float) -> "mne.Info":
    info = epochs.info.copy()
    with info._unlock():
        info["sfreq"] = float(sfreq)
    return info


def analytic_epochs(raw: "mne.io.BaseRaw", events: "pd.DataFrame", selection: np.ndarray,
                    band: str, cfg: "EpochsConfig") -> "mne.Epochs":
    """Complex analytic epochs of one band (see :func:`band_epochs`)."""
    return band_epochs(raw, events, selection, band, cfg, analytic=True)


def hilbert_envelope(analytic: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Envelope of complex analytic data: ``|z|``, or the vector norm over ``axis``.

    ``(..., time) -> (..., time)``; with ``axis`` that axis (orientations) is reduced.
    """
    power = analytic.real ** 2 + analytic.imag ** 2
    if axis is not None:
        power = power.sum(axis=axis)
    return np.sqrt(power)


def stimulus_rows(ids: np.ndarray, stimuli: list[str]) -> np.ndarray:
    """Row of each epoch's stimulus in ``stimuli`` (-1: a stimulus not listed), ``(epoch,)`` int.

    >>> stimulus_rows(np.array(["b", "a", "c", "b"]), ["a", "b"]).tolist()
    [1, 0, -1, 1]
    """
    index = {s: i for i, s in enumerate(stimuli)}
    return np.array([index.get(str(s), -1) for s in ids], dtype=np.int64)


class StimulusMean:
    """Mean of the epochs of each stimulus, accumulated a batch of epochs at a time.

    The one home of the averaging convention: a stimulus' value is the mean of its epochs, NaN
    for a stimulus without any. Only ``(stimulus, ...)`` sums are held, never every epoch.

    Parameters
    ----------
    rows : numpy.ndarray
        ``(epoch,)`` row of each epoch in the output (:func:`stimulus_rows`); -1 leaves it out.
    n_rows : int
        Number of stimuli (output rows).
    shape : tuple of int
        Shape of one epoch's value.
    dtype
        Of the sums and the means.

    Examples
    --------
    >>> acc = StimulusMean(np.array([0, 2, 0, -1]), 3, (2,))
    >>> acc.add(0, np.array([[1.0, 2.0], [5.0, 5.0]]))
    >>> acc.add(2, np.array([[3.0, 4.0], [9.0, 9.0]]))
    >>> acc.mean().tolist()
    [[2.0, 3.0], [nan, nan], [5.0, 5.0]]
    """

    def __init__(self, rows: np.ndarray, n_rows: int, shape: tuple[int, ...], dtype: type = np.float32):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.counts = np.bincount(self.rows[self.rows >= 0], minlength=n_rows)
        self.sums: np.ndarray = np.zeros((n_rows, *shape), dtype)
        self._added = 0

    def add(self, start: int, data: np.ndarray) -> None:
        """Add the values of epochs ``start:start + len(data)``."""
        for row, value in zip(self.rows[start:start + len(data)], data):
            if row >= 0:
                self.sums[row] += value
        self._added += len(data)

    def mean(self) -> np.ndarray:
        """The means, ``(stimulus, ...)``, computed in place of the sums (call it once)."""
        if self._added != len(self.rows):
            raise ValueError(f"StimulusMean: {self._added} epochs added, {len(self.rows)} expected")
        divisor = np.where(self.counts > 0, self.counts, np.nan).astype(self.sums.dtype)
        self.sums /= divisor.reshape((-1,) + (1,) * (self.sums.ndim - 1))
        return self.sums


def stimulus_mean(data: np.ndarray, ids: np.ndarray, stimuli: list[str], dtype: type = np.float32) -> np.ndarray:
    """``(epoch, ...) -> (stimulus, ...)``: mean of each stimulus' epochs (NaN when none); :class:`StimulusMean`.

    >>> stimulus_mean(np.array([1.0, 3.0, 7.0]), np.array(["a", "a", "b"]), ["b", "c", "a"]).tolist()
    [7.0, nan, 2.0]
    """
    acc = StimulusMean(stimulus_rows(ids, stimuli), len(stimuli), data.shape[1:], dtype)
    acc.add(0, data)
    return acc.mean()


def envelope_mean(analytic: "str | os.PathLike[str]", rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Mean envelope ``|z|`` of each stimulus' epochs, one epoch read at a time.

    ``analytic``: a ``.npy`` file of ``(epoch, channel, time)`` complex analytic epochs, read epoch by
    epoch (:func:`mfrs.meg.npyfile.rows`), never whole; ``rows`` as in :class:`StimulusMean`. Returns
    ``(stimulus, channel, time)`` float32, NaN for a stimulus without epochs.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "z.npy")
    >>> np.save(path, np.array([[[3 + 4j]], [[1 + 0j]], [[0 + 2j]]], np.complex64))
    >>> envelope_mean(path, np.array([1, 1, 0]), 2).ravel().tolist()
    [2.0, 3.0]
    """
    from mfrs.meg import npyfile

    acc: StimulusMean | None = None
    for i, epoch in enumerate(npyfile.rows(analytic)):
        if acc is None:
            acc = StimulusMean(rows, n_rows, epoch.shape, np.float32)
        acc.add(i, hilbert_envelope(epoch)[None])
    if acc is None:
        raise ValueError(f"{analytic}: no epoch")
    return acc.mean()
