"""Forward, inverse (MNE/dSPM/sLORETA) applied per epoch, morph to the fsaverage ico grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mfrs.meg.types import GRID_VERTICES

if TYPE_CHECKING:
    import mne
    from scipy import sparse

    from mfrs.meg.config import CovarianceConfig, SourceConfig

__all__ = ["noise_covariance", "make_forward", "make_inverse", "make_morph", "InverseModel",
           "apply_inverse_real", "apply_inverse_analytic"]


def noise_covariance(epochs: "mne.Epochs", cfg: "CovarianceConfig", *, seed: int) -> "mne.Covariance":
    """Noise covariance of the pre-stimulus baseline (``tmax=cfg.tmax``).

    ``shrunk`` and ``factor_analysis`` choose their regularisation by ``cfg.cv``-fold
    cross-validation (the study: shrunk, 3 folds); MNE's folds are contiguous and
    unshuffled, so the result does not depend on ``seed``.
    """
    import mne

    return mne.compute_covariance(epochs, tmax=cfg.tmax, method=cfg.method, cv=cfg.cv, rank=None,
                                  verbose="error")


def make_forward(info: "mne.Info", *, trans, src: "mne.SourceSpaces", bem, mindist: float) -> "mne.Forward":
    """MEG-only forward solution for one head position."""
    import mne

    return mne.make_forward_solution(info, trans=str(trans), src=src, bem=bem, meg=True, eeg=False,
                                     mindist=mindist, n_jobs=1, verbose="error")


def make_inverse(info: "mne.Info", fwd: "mne.Forward", cov: "mne.Covariance",
                 cfg: "SourceConfig") -> "mne.minimum_norm.InverseOperator":
    """Inverse operator on ``cfg.sensors`` (loose, depth)."""
    import mne
    from mne.minimum_norm import make_inverse_operator

    picks = mne.pick_types(info, meg=True if cfg.sensors == "meg" else cfg.sensors, exclude="bads")
    sub_info = mne.pick_info(info, picks)
    fwd = mne.pick_channels_forward(fwd, sub_info.ch_names, ordered=True, verbose="error")
    cov = mne.pick_channels_cov(cov, sub_info.ch_names, ordered=True, verbose="error")
    return make_inverse_operator(sub_info, fwd, cov, loose=cfg.loose, depth=cfg.depth,
                                 verbose="error")


def make_morph(src: "mne.SourceSpaces", *, subject_from: str, subjects_dir,
               cfg: "SourceConfig") -> "sparse.csr_array":
    """Sparse morph ``(grid vertex, source) ``: lh grid vertices then rh, fsaverage numbering."""
    import mne

    n = GRID_VERTICES[cfg.grid]
    morph = mne.compute_source_morph(src, subject_from=subject_from, subject_to="fsaverage",
                                     subjects_dir=subjects_dir, spacing=[np.arange(n), np.arange(n)],
                                     smooth=cfg.morph_smooth, warn=False, verbose="error")
    return morph.morph_mat.tocsr()


@dataclass
class InverseModel:
    """An inverse operator, its settings and the morph to the grid."""

    inv: "mne.minimum_norm.InverseOperator"
    morph: "sparse.csr_array"
    method: str
    lambda2: float
    orientation: str

    @property
    def ch_names(self) -> list[str]:
        return list(self.inv["info"]["ch_names"])


def _batches(n_epochs: int, n_times: int, n_rows: int, max_bytes: float) -> list[slice]:
    per_epoch = n_times * n_rows * 8
    size = max(1, int(max_bytes // per_epoch))
    return [slice(i, min(i + size, n_epochs)) for i in range(0, n_epochs, size)]


def _apply(data: np.ndarray, info: "mne.Info", model: InverseModel, pick_ori) -> np.ndarray:
    """Inverse of ``(epoch, channel, time)`` data as one long epoch (one GEMM per batch).

    The inverse (noise normalisation included) acts on each time sample alone, so
    epochs laid end to end give the same source values as one call per epoch.
    Returns ``(source[, ori], epoch * time)``.
    """
    import mne
    from mne.minimum_norm import apply_inverse_epochs

    n_ep, n_ch, n_t = data.shape
    long = data.transpose(1, 0, 2).reshape(n_ch, n_ep * n_t)[None]
    arr = mne.EpochsArray(long, info, verbose="error")
    (stc,) = apply_inverse_epochs(arr, model.inv, model.lambda2, method=model.method,
                                  pick_ori=pick_ori, verbose="error")
    return stc.data


def _picked(epochs: "mne.BaseEpochs", model: InverseModel) -> tuple[np.ndarray, "mne.Info"]:
    """The epochs' data on the inverse's channels, in its order: one copy (not a copy of the epochs too)."""
    import mne

    picks = [epochs.ch_names.index(c) for c in model.ch_names]
    return epochs.get_data(copy=False)[:, picks], mne.pick_info(epochs.info, picks)


def apply_inverse_real(epochs: "mne.BaseEpochs", model: InverseModel, *,
                       max_bytes: float = 2 ** 27) -> np.ndarray:
    """Source time courses on the grid, ``(epoch, channel, time) -> (epoch, time, grid_vertex)``.

    ``norm``: length of each source's current vector (loose orientation), then morphed;
    ``normal``: the signed component normal to the cortex, morphed. Epochs go
    through the inverse in batches of about ``max_bytes`` of source values.
    """
    pick_ori = None if model.orientation == "norm" else "normal"
    data, info = _picked(epochs, model)
    n_ep, _, n_t = data.shape
    out = np.empty((n_ep, n_t, model.morph.shape[0]), np.float32)
    n_src = model.inv["nsource"] * (3 if pick_ori is None else 1)
    # a batch bounds the sources and their morph (the grid has more rows than the sources at ico5 and oct5)
    for sl in _batches(n_ep, n_t, max(n_src, model.morph.shape[0]), max_bytes):
        grid = model.morph @ _apply(data[sl], info, model, pick_ori)  # (grid, epoch * time)
        out[sl] = grid.reshape(grid.shape[0], -1, n_t).transpose(1, 2, 0)
        del grid  # not held while the next batch's is made
    return out


def apply_inverse_analytic(epochs: "mne.BaseEpochs", model: InverseModel, *, max_bytes: float = 2 ** 27,
                           rows: np.ndarray | None = None, n_rows: int | None = None) -> np.ndarray:
    """Source envelopes on the grid from complex analytic epochs, averaged per stimulus as they go.

    The inverse is linear, so the source analytic signal is ``K @ real + i K @ imag``;
    the envelope is its modulus (``norm``: over the three orientations). ``(epoch,
    channel, time) complex -> (stimulus, time, grid_vertex)``: each batch's envelopes are added
    to their stimulus' sum (:class:`~mfrs.meg.epochs.StimulusMean`), so no array of every epoch's
    sources is held.

    Parameters
    ----------
    rows : numpy.ndarray, optional
        ``(epoch,)`` output row (stimulus) of each epoch, -1 to leave it out
        (:func:`~mfrs.meg.epochs.stimulus_rows`); default: one row per epoch, its own envelope.
    n_rows : int, optional
        Number of output rows (stimuli; a stimulus without epochs is NaN); default ``rows.max() + 1``.
    """
    from mfrs.meg.epochs import StimulusMean

    pick_ori = "vector" if model.orientation == "norm" else "normal"
    data, info = _picked(epochs, model)
    n_ep, _, n_t = data.shape
    rows = np.arange(n_ep) if rows is None else np.asarray(rows)
    n_rows = int(rows.max()) + 1 if n_rows is None else n_rows
    acc = StimulusMean(rows, n_rows, (n_t, model.morph.shape[0]), np.float32)
    n_src = model.inv["nsource"] * (3 if pick_ori == "vector" else 1)
    for sl in _batches(n_ep, n_t, max(2 * n_src, model.morph.shape[0]), max_bytes):
        power = _apply(data[sl].real, info, model, pick_ori) ** 2
        power += _apply(data[sl].imag, info, model, pick_ori) ** 2
        if pick_ori == "vector":
            power = power.sum(axis=1)  # (source, ori, samples) -> (source, samples)
        grid = model.morph @ np.sqrt(power)
        del power
        acc.add(sl.start, grid.reshape(grid.shape[0], -1, n_t).transpose(1, 2, 0))
        del grid  # not held while the next batch's is made
    return acc.mean()
