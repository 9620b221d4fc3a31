"""Source estimation pieces against MNE itself, on the subject the stage processed."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.minimum_norm import apply_inverse_epochs

from mfrs.meg.sources import InverseModel, apply_inverse_analytic, apply_inverse_real
from mfrs.meg.subject import epochs_path, inverse_model


@pytest.fixture(scope="module")
def model_and_epochs(meg_run):
    from mfrs.stages.meg import subject_jobs

    jobs, _ = subject_jobs(meg_run["config"], meg_run["catalog"])
    job = next(j for j in jobs if j.subject == "01")
    epochs = mne.read_epochs(epochs_path(job), preload=True, verbose="error")
    model, _, _ = inverse_model(job, epochs.info, epochs)
    return model, epochs[:5], meg_run["catalog"]


def _per_epoch(epochs, model: InverseModel, pick_ori):
    stcs = apply_inverse_epochs(epochs.copy().pick(model.ch_names), model.inv, model.lambda2,
                                method=model.method, pick_ori=pick_ori, verbose="error")
    return [s.data for s in stcs]


@pytest.mark.parametrize("orientation", ["norm", "normal"])
def test_batched_inverse_equals_mne_per_epoch(model_and_epochs, orientation):
    model, epochs, _ = model_and_epochs
    model = InverseModel(model.inv, model.morph, model.method, model.lambda2, orientation)
    got = apply_inverse_real(epochs, model, max_bytes=2 ** 22)  # several batches
    ref = np.stack([(model.morph @ d).T for d in
                    _per_epoch(epochs, model, None if orientation == "norm" else "normal")])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_source_envelope_is_modulus_of_complex_inverse(model_and_epochs):
    model, epochs, _ = model_and_epochs
    rng = np.random.default_rng(0)
    data = epochs.get_data()
    analytic = data + 1j * rng.standard_normal(data.shape) * data.std()
    complex_epochs = mne.EpochsArray(analytic, epochs.info, tmin=epochs.tmin, verbose="error")
    got = apply_inverse_analytic(complex_epochs, model, max_bytes=2 ** 22)
    re_ = _per_epoch(mne.EpochsArray(analytic.real, epochs.info, tmin=epochs.tmin, verbose="error"),
                     model, "vector")
    im_ = _per_epoch(mne.EpochsArray(analytic.imag, epochs.info, tmin=epochs.tmin, verbose="error"),
                     model, "vector")
    env = [np.sqrt((np.abs(r + 1j * i) ** 2).sum(axis=1)) for r, i in zip(re_, im_)]
    ref = np.stack([(model.morph @ e).T for e in env])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_morph_maps_planted_region_activity_onto_the_grid(model_and_epochs):
    # a constant source activity stays constant after the morph (rows sum to one)
    model, _, _ = model_and_epochs
    ones = model.morph @ np.ones(model.morph.shape[1])
    np.testing.assert_allclose(ones, 1.0, rtol=1e-6)


def test_store_holds_mne_source_estimates_of_each_stimulus(model_and_epochs):
    """End to end: the written broadband sources are MNE's per-epoch estimates, morphed, by region."""
    model, epochs, catalog = model_and_epochs
    src = catalog.open("sources")
    kept = set(src["stimulus"].values.tolist())
    epochs = epochs[np.isin(epochs.metadata["stimulus"], list(kept))]
    assert len(epochs) >= 3
    ref = np.stack([(model.morph @ d).T for d in _per_epoch(epochs, model, None)])
    # the store's vertex coord is the row of the lh-then-rh grid
    ref = ref[:, :, src["vertex"].values]
    got = src["activity"].sel(subject="sub-01", signal="broadband",
                              stimulus=epochs.metadata["stimulus"].tolist()).values
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
