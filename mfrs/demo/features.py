"""Image properties that drive the planted effects, computed without any CNN.

- local contrast: RMS contrast of each cell of a coarse grid (a low-level, V1-like property),
  standardised within each stimulus category;
- face code: the projection of each image on the principal components of the face images
  (an "eigenface" space: images of one identity lie close together).

Both return ``(stimulus, feature)`` arrays, z-scored per feature, so that the planted
representational geometry is known exactly and can be compared with the RSA results.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError

__all__ = ["face_code", "local_contrast", "normalised_images", "stimulus_features"]

_WORK_SIZE = 64


def normalised_images(images: np.ndarray, size: int = _WORK_SIZE) -> np.ndarray:
    """Resize to ``size`` x ``size`` and scale to [0, 1]: ``(stimulus, y, x) -> (stimulus, size, size)``."""
    from skimage.transform import resize

    if images.ndim != 3:
        raise InputDataError(
            f"stimulus images must have dims (stimulus, y, x); got an array of shape {images.shape}")
    out = np.empty((images.shape[0], size, size), dtype=np.float64)
    for i, img in enumerate(images):
        img = np.asarray(img, dtype=np.float64)
        if img.max() > 1.0:
            img = img / 255.0
        out[i] = resize(img, (size, size), anti_aliasing=True, preserve_range=True)
    return out


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def local_contrast(images: np.ndarray, grid: int = 4) -> np.ndarray:
    """RMS contrast in each cell of a ``grid`` x ``grid`` partition of each image.

    Parameters
    ----------
    images : ndarray, shape (stimulus, y, x)
        Grey images scaled to [0, 1] (see :func:`normalised_images`).
    grid : int
        Cells per side.

    Returns
    -------
    ndarray, shape (stimulus, grid * grid)
        Standard deviation of the pixel values in each cell divided by the image mean,
        z-scored across stimuli.
    """
    n, h, w = images.shape
    cells = images[:, : h - h % grid, : w - w % grid].reshape(n, grid, h // grid, grid, w // grid)
    sd = cells.std(axis=(2, 4)).reshape(n, -1)
    mean = images.reshape(n, -1).mean(axis=1, keepdims=True)
    return _zscore(sd / np.maximum(mean, 1e-6))


def face_code(images: np.ndarray, is_face: np.ndarray, n_components: int = 8) -> np.ndarray:
    """Projection of every image on the leading principal components of the face images.

    Parameters
    ----------
    images : ndarray, shape (stimulus, y, x)
        Grey images scaled to [0, 1].
    is_face : ndarray of bool, shape (stimulus,)
        Which images are (unscrambled) faces; the components are fitted on those only.
    n_components : int
        Number of components kept.

    Returns
    -------
    ndarray, shape (stimulus, n_components)
        Component scores divided by the face images' score sd: faces have unit variance
        per component; non-faces project with whatever variance they have.
    """
    n = images.shape[0]
    flat = images.reshape(n, -1)
    # each image standardised: the code follows shape, not overall luminance or contrast
    flat = (flat - flat.mean(axis=1, keepdims=True)) / np.maximum(flat.std(axis=1, keepdims=True), 1e-6)
    faces = flat[is_face]
    if faces.shape[0] < 2:
        raise InputDataError(
            f"the face code needs at least 2 face images, the stimuli have {faces.shape[0]}; "
            "use a stimuli set with famous or unfamiliar faces")
    k = min(n_components, faces.shape[0] - 1)
    mean = faces.mean(axis=0)
    centred = faces - mean
    # principal axes from the small (face x face) Gram matrix: pixels outnumber faces
    evals, evecs = np.linalg.eigh(centred @ centred.T)
    top = np.argsort(evals)[::-1][:k]
    axes = centred.T @ evecs[:, top] / np.sqrt(np.maximum(evals[top], 1e-12))
    scores = (flat - mean) @ axes
    sd = scores[is_face].std(axis=0)
    return scores / np.where(sd > 0, sd, 1.0)


def stimulus_features(
    stimuli: xr.Dataset, *, contrast_grid: int = 4, n_face_components: int = 8
) -> dict[str, xr.DataArray]:
    """The features of every stimulus of a ``stimuli`` store.

    Parameters
    ----------
    stimuli : xr.Dataset
        ``image (stimulus, y, x)`` with coord ``category`` on ``stimulus``.

    Returns
    -------
    dict
        ``"contrast"`` (z-scored within each category) and ``"face"``, each a DataArray
        ``(stimulus, feature)``.
    """
    images = normalised_images(np.asarray(stimuli["image"].values))
    is_face = np.isin(np.asarray(stimuli["category"].values), ["famous", "unfamiliar"])
    coords = {"stimulus": stimuli["stimulus"].values}
    contrast = local_contrast(images, contrast_grid)
    # standardised within each category: the planted low-level geometry then gives every
    # category the same mean drive (scrambled images differ from faces in local contrast,
    # which would otherwise show up as a "face effect" in early visual cortex)
    cats = np.asarray(stimuli["category"].values).astype(str)
    for cat in np.unique(cats):
        rows = cats == cat
        if rows.sum() > 1:
            contrast[rows] = _zscore(contrast[rows])
    face = face_code(images, is_face, n_face_components)
    return {
        "contrast": xr.DataArray(contrast, dims=("stimulus", "feature"), coords=coords),
        "face": xr.DataArray(face, dims=("stimulus", "feature"), coords=coords),
    }
