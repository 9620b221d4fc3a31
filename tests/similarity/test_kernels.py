"""Layer 1: the Numba kernels against scipy and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
from scipy.spatial.distance import squareform

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import rank_block

from .reference import REFERENCE, rank_rows_f32, upper_pairs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_rows_matches_scipy_with_ties_and_signed_zero(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2000)).astype(dtype)
    x[0, :300] = x[0, 300:600]  # many ties
    x[1] = np.round(x[1], 1)  # heavy ties
    x[2, :5] = -0.0
    x[2, 5:10] = 0.0
    x[3, ::7] = -np.inf
    out = np.empty_like(x)
    K.rank_rows_sorted(x, out)
    engine = rank_block(x)  # float32: packed words sorted by numpy, then swept by K.ranks_from_sorted
    radix = np.empty_like(x)
    if dtype == np.float32:
        rank_rows_f32(x, radix)  # the benchmark's radix alternative (tests/similarity/reference.py)
    for r in range(4):
        np.testing.assert_array_equal(out[r], REFERENCE["rank"](x[r]))
        np.testing.assert_array_equal(engine[r], REFERENCE["rank"](x[r]))
        if dtype == np.float32:
            np.testing.assert_array_equal(radix[r], REFERENCE["rank"](x[r]))


def test_rank_rows_nan_row_is_nan():
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    x[1, 3] = np.nan
    out = np.empty_like(x)
    rank_rows_f32(x, out)
    for ranks in (out, rank_block(x)):
        np.testing.assert_array_equal(ranks[0], np.arange(1, 7))
        assert np.isnan(ranks[1]).all()


def test_kendall_tau_a_matches_definition_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (3, 60)).astype(float)
    b = rng.integers(0, 6, (2, 60)).astype(float)
    out = np.empty((3, 2))
    K.kendall_tau_a(a, b, out)
    for i in range(3):
        for j in range(2):
            assert out[i, j] == pytest.approx(REFERENCE["compare:kendall_tau_a"](a[i], b[j]), abs=1e-12)
    c = rng.standard_normal((1, 300))
    d = rng.standard_normal((1, 300))
    K.kendall_tau_a(c, d, out[:1, :1])
    assert out[0, 0] == pytest.approx(ss.kendalltau(c[0], d[0])[0], abs=1e-12)  # no ties: tau-a == tau-b


def test_permuted_pair_index_matches_square_permutation():
    rng = np.random.default_rng(2)
    n = 9
    d = rng.random(n * (n - 1) // 2)
    perm = rng.permutation(n).astype(np.int64)
    idx = np.empty(d.size, np.int64)
    K.permuted_pair_index(perm, idx)
    sq = squareform(d)
    np.testing.assert_array_equal(d[idx], squareform(sq[np.ix_(perm, perm)], checks=False))


def test_upper_pairs_and_sqdist_and_cross():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2, 5, 5))
    out = np.empty((2, 10))
    upper_pairs(g, 1.0, -1.0, True, out)
    iu = np.triu_indices(5, 1)
    np.testing.assert_allclose(out, 1 - np.abs(g[:, iu[0], iu[1]]))
    x = rng.standard_normal((1, 5, 3))
    K.upper_sqdist(x @ x.transpose(0, 2, 1), (x**2).sum(-1), out[:1])
    np.testing.assert_allclose(out[0], REFERENCE["rdm:sqeuclidean"](x[0]))
    acc = np.zeros((1, 10))
    K.add_cross_distances(g[:1], 0.5, acc)
    expect = [0.5 * (g[0, i, i] + g[0, j, j] - g[0, i, j] - g[0, j, i]) for i, j in zip(*iu, strict=True)]
    np.testing.assert_allclose(acc[0], expect)


def test_gather_relabelled_matches_pair_index_gather():
    rng = np.random.default_rng(4)
    n = 11
    v = rng.random((3, n * (n - 1) // 2)).astype(np.float32)
    perms = np.stack([rng.permutation(n) for _ in range(4)]).astype(np.int64)
    out = np.empty((4 * 3, v.shape[1]), np.float32)
    K.gather_relabelled(v, perms, np.empty((n, n), np.float32), out)
    for k in range(4):
        for b in range(3):
            sq = squareform(v[b])
            np.testing.assert_array_equal(out[k * 3 + b], squareform(sq[np.ix_(perms[k], perms[k])], checks=False))


def test_mean_first_axis_matches_float64_mean():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7, 3, 1001)) * 1e3 + 1e4).astype(np.float32)
    out = np.empty((3, 1001), np.float32)
    K.mean_first_axis(x, out)
    np.testing.assert_allclose(out, REFERENCE["mean:first_axis"](x), rtol=1e-7)
