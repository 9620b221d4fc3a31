"""Model RDMs from chunked moments equal scipy's pdist."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from mfrs.nets.rdm_moments import Moments, rdm_from_moments
from mfrs.stages.model_rdms import layer_rdm

SCIPY = {"correlation": lambda x: pdist(x, "correlation"),
         "abs_correlation": lambda x: 1 - np.abs(1 - pdist(x, "correlation")),
         "cosine": lambda x: pdist(x, "cosine"),
         "euclidean": lambda x: pdist(x, "euclidean"),
         "sqeuclidean": lambda x: pdist(x, "sqeuclidean")}


@pytest.mark.parametrize("metric", list(SCIPY))
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_matches_scipy(metric: str, chunk: int) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(9, 300)) + rng.normal(size=(9, 1))).astype(np.float32)
    np.testing.assert_allclose(layer_rdm(x, metric=metric, unit_chunk=chunk),
                               SCIPY[metric](x.astype(np.float64)), rtol=1e-9, atol=1e-9)


def test_correlation_is_stable_with_large_offsets() -> None:
    """ReLU-like layers with a large mean: the centred accumulation keeps float64 accuracy."""
    rng = np.random.default_rng(2)
    x = 1e4 + rng.normal(size=(6, 5000))
    np.testing.assert_allclose(layer_rdm(x, metric="correlation", unit_chunk=512),
                               pdist(x, "correlation"), rtol=1e-7, atol=1e-9)


def test_constant_pattern_gives_nan_like_scipy() -> None:
    x = np.vstack([np.ones(10), np.arange(10.0), np.arange(10.0) ** 2])
    m = Moments(3, center=True)
    m.add(x)
    ours = rdm_from_moments(m, "correlation")
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = pdist(x, "correlation")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours[~np.isnan(ours)], ref[~np.isnan(ref)])
