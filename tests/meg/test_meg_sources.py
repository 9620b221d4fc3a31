"""Source estimation pieces against MNE itself, on the subject the stage processed."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.minimum_norm import apply_inverse_epochs

from mfrs.meg.epochs import envelope_mean, stimulus_rows
from mfrs.meg.sources import InverseModel, _batches, apply_inverse_analytic, apply_inverse_real
from mfrs.meg.subject import epochs_path, inverse_model


@pytest.fixture(scope="module")
def model_and_epochs(meg_run):
    from mfrs.stages.meg import subject_jobs

    jobs, _ = subject_jobs(meg_run["config"], meg_run["catalog"])
    job = next(j for j in jobs if j.subject == "01")
    epochs = mne.read_epochs(epochs_path(job), preload=True, verbose="error")
    model, _, _ = inverse_model(job, epochs.info, epochs)
    return model, epochs[:5], meg_run["catalog"], job, epochs


def _per_epoch(epochs, model: InverseModel, pick_ori):
    stcs = apply_inverse_epochs(epochs.copy().pick(model.ch_names), model.inv, model.lambda2,
                                method=model.method, pick_ori=pick_ori, verbose="error")
    return [s.data for s in stcs]


@pytest.mark.parametrize("orientation", ["norm", "normal"])
def test_batched_inverse_equals_mne_per_epoch(model_and_epochs, orientation):
    model, epochs, *_ = model_and_epochs
    model = InverseModel(model.inv, model.morph, model.method, model.lambda2, orientation)
    got = apply_inverse_real(epochs, model, max_bytes=2 ** 22)  # several batches
    ref = np.stack([(model.morph @ d).T for d in
                    _per_epoch(epochs, model, None if orientation == "norm" else "normal")])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def _complex_epochs(epochs) -> "mne.EpochsArray":
    rng = np.random.default_rng(0)
    data = epochs.get_data()
    analytic = data + 1j * rng.standard_normal(data.shape) * data.std()
    return mne.EpochsArray(analytic, epochs.info, tmin=epochs.tmin, verbose="error")


def _mne_envelopes(complex_epochs, model: InverseModel) -> np.ndarray:
    """MNE's per-epoch source envelopes, morphed: ``(epoch, time, grid)``, from the real and imaginary parts."""
    analytic = complex_epochs.get_data()
    parts = [_per_epoch(mne.EpochsArray(part, complex_epochs.info, tmin=complex_epochs.tmin, verbose="error"),
                        model, "vector") for part in (analytic.real, analytic.imag)]
    env = [np.sqrt((np.abs(r + 1j * i) ** 2).sum(axis=1)) for r, i in zip(*parts)]
    return np.stack([(model.morph @ e).T for e in env])


def test_source_envelope_is_modulus_of_complex_inverse(model_and_epochs):
    model, epochs, *_ = model_and_epochs
    complex_epochs = _complex_epochs(epochs)
    got = apply_inverse_analytic(complex_epochs, model, max_bytes=2 ** 22)
    ref = _mne_envelopes(complex_epochs, model)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_source_envelopes_averaged_per_stimulus_as_batches_go(model_and_epochs):
    """Grouped inverse == MNE's per-epoch envelopes averaged per stimulus with numpy.

    Stimulus 0 has one epoch, stimulus 1 three spread over three batches of two epochs,
    stimulus 2 none (NaN); epoch 3 belongs to no stimulus (left out).
    """
    model, epochs, *_ = model_and_epochs
    complex_epochs = _complex_epochs(epochs)
    rows = np.array([1, 0, 1, -1, 1])
    n_rows = max(2 * 3 * model.inv["nsource"], model.morph.shape[0])  # rows of a batch: sources or grid
    per_epoch = len(epochs.times) * n_rows * 8  # bytes of one epoch's values
    assert [b.stop - b.start for b in _batches(len(rows), len(epochs.times), n_rows, 2 * per_epoch)] == [2, 2, 1]
    got = apply_inverse_analytic(complex_epochs, model, max_bytes=2 * per_epoch, rows=rows, n_rows=3)
    ref = _mne_envelopes(complex_epochs, model)
    expected = np.stack([ref[[1]].mean(axis=0), ref[[0, 2, 4]].mean(axis=0)])
    assert got.shape == (3,) + ref.shape[1:]
    np.testing.assert_allclose(got[:2], expected, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    assert np.isnan(got[2]).all()


def test_morph_maps_planted_region_activity_onto_the_grid(model_and_epochs):
    # a constant source activity stays constant after the morph (rows sum to one)
    model, *_ = model_and_epochs
    ones = model.morph @ np.ones(model.morph.shape[1])
    np.testing.assert_allclose(ones, 1.0, rtol=1e-6)


def test_store_holds_mne_source_estimates_of_each_stimulus(model_and_epochs):
    """End to end: the written broadband sources are MNE's per-epoch estimates, morphed, by region."""
    model, epochs, catalog, *_ = model_and_epochs
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


def test_store_alpha_is_the_mean_of_each_stimulus_epoch_envelopes(model_and_epochs):
    """End to end, the alpha signal: sensor envelopes ``|analytic|`` (numpy) and MNE's source envelopes of
    each epoch, averaged per stimulus with numpy, are what the stage wrote."""
    model, _, catalog, job, epochs = model_and_epochs
    analytic = np.load(job.folder / f"sub-{job.subject}-alpha-analytic.npy")  # rows: the epochs kept
    assert len(analytic) == len(epochs)
    ids = epochs.metadata["stimulus"].to_numpy(str)
    src, ep_store = catalog.open("sources"), catalog.open("epochs")
    kept = src["stimulus"].values.astype(str)
    chosen = [str(s) for s in kept[[0, len(kept) // 2, -1]]]  # the demo shows each stimulus once
    # sensors: the stored channels sub-01 has
    channels = [c for c in ep_store["channel"].values.astype(str) if c in epochs.ch_names]
    picks = [epochs.ch_names.index(c) for c in channels]
    got = ep_store["data"].sel(subject="sub-01", signal="alpha", stimulus=chosen, channel=channels).values
    ref = np.stack([np.abs(analytic[ids == s][:, picks]).mean(axis=0) for s in chosen])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * ref.max())
    # sources: MNE on each epoch's analytic data (real and imaginary parts), averaged per stimulus
    sel = np.flatnonzero(np.isin(ids, chosen))
    env = _mne_envelopes(mne.EpochsArray(analytic[sel].astype(np.complex128), epochs.info, tmin=epochs.tmin,
                                         verbose="error"), model)[:, :, src["vertex"].values]
    ref = np.stack([env[ids[sel] == s].mean(axis=0) for s in chosen])
    got = src["activity"].sel(subject="sub-01", signal="alpha", stimulus=chosen).values
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_sensor_envelope_mean_is_numpy_mean_of_abs_per_stimulus(tmp_path):
    """Epoch by epoch from the file == ``np.abs(analytic)`` averaged per stimulus with numpy:
    stimuli of one epoch, of several (not adjacent), of none (NaN), and an epoch left out."""
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((7, 4, 30)) + 1j * rng.standard_normal((7, 4, 30))).astype(np.complex64)
    ids = np.array(["b", "a", "b", "x", "c", "b", "a"])
    stimuli = ["a", "b", "c", "d"]
    np.save(tmp_path / "z.npy", z)
    got = envelope_mean(tmp_path / "z.npy", stimulus_rows(ids, stimuli), len(stimuli))
    for i, s in enumerate(stimuli[:3]):
        np.testing.assert_allclose(got[i], np.abs(z[ids == s]).mean(axis=0), rtol=1e-6)
    assert np.isnan(got[3]).all() and got.dtype == np.float32
