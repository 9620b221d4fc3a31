"""Image properties behind the planted effects, against independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mfrs.demo.features import (
    face_code,
    local_contrast,
    normalised_images,
    stimulus_features,
)
from mfrs.errors import InputDataError


def test_local_contrast_matches_per_cell_loop() -> None:
    rng = np.random.default_rng(1)
    images = rng.uniform(0.2, 0.8, (5, 32, 32))
    images[2, :8, :8] = np.indices((8, 8)).sum(0) % 2  # a checkerboard in cell (0, 0) of image 2
    got = local_contrast(images, grid=4)
    ref = np.empty((5, 16))
    for i in range(5):
        for r in range(4):
            for c in range(4):
                cell = images[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8]
                ref[i, 4 * r + c] = np.std(cell) / images[i].mean()
    ref = (ref - ref.mean(0)) / ref.std(0)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert got[:, 0].argmax() == 2


def test_face_code_matches_sklearn_pca() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (12, 16, 16))
    is_face = np.arange(12) < 8
    got = face_code(images, is_face, n_components=3)
    flat = images.reshape(12, -1)
    flat = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    pca = PCA(3).fit(flat[is_face])
    ref = pca.transform(flat)
    ref /= ref[is_face].std(0)
    for k in range(3):  # components are defined up to sign
        r = np.corrcoef(got[:, k], ref[:, k])[0, 1]
        assert abs(r) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(np.abs(got[:, k]), np.abs(ref[:, k]), atol=1e-8)


def test_face_code_groups_images_of_one_face() -> None:
    """Two noisy copies of each face lie closer together in the code than different faces."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:10]
    rng = np.random.default_rng(3)
    images = np.concatenate([faces, faces + 0.05 * rng.standard_normal(faces.shape)])
    code = face_code(images, np.ones(20, bool), n_components=8)
    d = np.linalg.norm(code[:, None] - code[None], axis=2)
    same = np.array([d[i, i + 10] for i in range(10)])
    other = d[:10, 10:][~np.eye(10, dtype=bool)]
    assert same.max() < np.median(other)


def test_stimulus_features_labelled(stimuli: xr.Dataset) -> None:
    feats = stimulus_features(stimuli, contrast_grid=3, n_face_components=4)
    assert feats["contrast"].dims == ("stimulus", "feature")
    assert feats["contrast"].shape == (stimuli.sizes["stimulus"], 9)
    assert feats["face"].shape == (stimuli.sizes["stimulus"], 4)
    assert list(feats["face"]["stimulus"].values) == list(stimuli["stimulus"].values)
    faces = np.isin(stimuli["category"].values, ["famous", "unfamiliar"])
    np.testing.assert_allclose(feats["face"].values[faces].std(0), 1.0, rtol=1e-9)
    # the low-level drive has the same mean in every category (no built-in "face effect")
    for cat in ("famous", "unfamiliar", "scrambled"):
        rows = stimuli["category"].values == cat
        np.testing.assert_allclose(feats["contrast"].values[rows].mean(0), 0.0, atol=1e-12)


def test_bad_image_shape_and_too_few_faces() -> None:
    with pytest.raises(InputDataError, match=r"dims \(stimulus, y, x\); got an array of shape \(4, 4\)"):
        normalised_images(np.zeros((4, 4)))
    with pytest.raises(InputDataError, match="at least 2 face images, the stimuli have 1"):
        face_code(np.zeros((3, 4, 4)), np.array([True, False, False]))
