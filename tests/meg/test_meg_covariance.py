"""Noise covariance: the study's setting (shrunk, 3-fold cross-validation) runs and is MNE's."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from mfrs.meg.config import CovarianceConfig
from mfrs.meg.sources import noise_covariance


@pytest.fixture(scope="module")
def epochs() -> mne.EpochsArray:
    """Epochs on the VectorView magnetometers with correlated, unequal-variance noise."""
    info = mne.channels.read_meg_canonical_info("neuromag")
    info = mne.pick_info(info, mne.pick_types(info, meg="mag")[:24])  # small: shrunk's CV grid is slow
    with info._unlock():
        info["sfreq"] = 100.0
    rng = np.random.default_rng(0)
    n_ch = len(info["ch_names"])
    mixing = rng.standard_normal((n_ch, 3)) * 2e-14  # a few shared sources ...
    data = np.einsum("cs,est->ect", mixing, rng.standard_normal((8, 3, 40)))
    data += 1e-14 * rng.standard_normal((8, n_ch, 40))  # ... plus sensor noise
    return mne.EpochsArray(data, info, tmin=-0.3, verbose="error")


def test_shrunk_is_the_default_and_matches_mne_cv3(epochs):
    cfg = CovarianceConfig()
    assert (cfg.method, cfg.cv, cfg.tmax) == ("shrunk", 3, 0.0)
    got = noise_covariance(epochs, cfg, seed=0)
    ref = mne.compute_covariance(epochs, tmax=0.0, method="shrunk", cv=3, rank=None, verbose="error")
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-12, atol=0)
    assert got["method"] == "shrunk" and got.nfree == ref.nfree
    # it is regularised: off-diagonal terms shrink towards 0 relative to the empirical covariance
    emp = mne.compute_covariance(epochs, tmax=0.0, method="empirical", verbose="error")
    off = ~np.eye(len(emp.ch_names), dtype=bool)
    ratio = np.abs(got.data[off]).sum() / np.abs(emp.data[off]).sum()
    assert ratio < 0.999


def test_cv_folds_reach_mne(epochs):
    got = noise_covariance(epochs, CovarianceConfig(cv=5), seed=0)
    ref = mne.compute_covariance(epochs, tmax=0.0, method="shrunk", cv=5, rank=None, verbose="error")
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-12, atol=0)
