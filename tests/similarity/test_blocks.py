"""Layer 2: numpy block functions against scipy / rsatoolbox."""

from __future__ import annotations

import numpy as np
import pytest

from mfrs.errors import InputDataError
from mfrs.similarity import blocks as B
from mfrs.similarity.inference import cluster_masses
from mfrs.similarity.nulls import draw_pair_permutations, null_block

from .reference import REFERENCE, max_run_mass_brute, rsatoolbox_compare


@pytest.mark.parametrize("metric", ["correlation", "abs_correlation", "euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rdm_block_matches_pdist(metric, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 30, 8)).astype(dtype)
    out = B.rdm_block(x, metric)
    assert out.shape == (2, 3, 435) and out.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for i, j in [(0, 0), (1, 2)]:
        np.testing.assert_allclose(out[i, j], REFERENCE[f"rdm:{metric}"](x[i, j].astype(np.float64)), atol=tol, rtol=tol)


def test_rdm_block_matches_rsatoolbox_and_constant_pattern_is_nan():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((25, 6))
    np.testing.assert_allclose(B.rdm_block(x, "correlation"), REFERENCE["rdm:correlation:rsatoolbox"](x), atol=1e-10)
    x[3] = 2.0
    d = B.rdm_block(x, "correlation")
    i, j = np.triu_indices(25, 1)
    assert np.isnan(d[(i == 3) | (j == 3)]).all()
    assert not np.isnan(d[(i != 3) & (j != 3)]).any()


@pytest.mark.parametrize("with_noise", [False, True])
def test_crossnobis_matches_rsatoolbox(with_noise):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 12, 5))
    a = rng.standard_normal((5, 5))
    w = a @ a.T + 5 * np.eye(5) if with_noise else None
    np.testing.assert_allclose(B.crossnobis_block(x, w), REFERENCE["rdm:crossnobis"](x, w), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a", "rho_a", "cosine"])
def test_compare_block_matches_scipy_with_ties(method):
    rng = np.random.default_rng(3)
    a = np.round(rng.random((3, 105)), 1)  # many ties
    b = rng.random((4, 105))
    b[1] = np.round(b[1] * 5)
    out = B.compare_block(a, b, method)
    for i in range(3):
        for j in range(4):
            assert out[i, j] == pytest.approx(REFERENCE[f"compare:{method}"](a[i], b[j]), abs=1e-10)
    out32 = B.compare_block(a.astype(np.float32), b.astype(np.float32), method)
    np.testing.assert_allclose(out32, out, atol=2e-6)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a", "rho_a", "cosine"])
def test_compare_block_matches_rsatoolbox(method):
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 66)), rng.random((3, 66))
    expect = REFERENCE["compare:rsatoolbox"][method]
    np.testing.assert_allclose(B.compare_block(a, b, method), rsatoolbox_compare(a, b, expect), atol=1e-10)


def test_constant_or_nan_vector_gives_nan():
    a = np.vstack([np.ones(10), np.arange(10.0)])
    a_nan = np.arange(10.0)[None].copy()
    a_nan[0, 2] = np.nan
    b = 2.0 * np.arange(10.0)[None] + 1.0
    for method in ["spearman", "pearson", "kendall_tau_a", "rho_a"]:
        out = B.compare_block(np.vstack([a, a_nan]), b, method)
        assert np.isnan(out[2, 0]) and out[1, 0] == pytest.approx(1.0)
        # a constant vector has no correlation; tau-a and rho-a have data-free denominators: 0
        assert np.isnan(out[0, 0]) if method in ("spearman", "pearson") else out[0, 0] == 0.0


@pytest.mark.parametrize("method", ["spearman", "pearson", "cosine"])
@pytest.mark.parametrize("pooling", ["normalized", "mean"])
def test_noise_ceiling_block(method, pooling):
    rng = np.random.default_rng(5)
    truth = rng.random(120)
    v = truth + 0.5 * rng.random((6, 120))
    lower, upper = B.noise_ceiling_block(v, method, pooling)
    if pooling == "normalized":
        lo, up = REFERENCE["noise_ceiling:rsatoolbox"](v, REFERENCE["compare:rsatoolbox"][method])
        assert lower.mean() == pytest.approx(lo, abs=1e-10) and upper.mean() == pytest.approx(up, abs=1e-10)
    else:  # brute force: the reference study's raw means
        cmp = REFERENCE[f"compare:{method}"]
        lo = np.mean([cmp(v[s], np.delete(v, s, 0).mean(0)) for s in range(6)])
        up = np.mean([cmp(v[s], v.mean(0)) for s in range(6)])
        assert lower.mean() == pytest.approx(lo, abs=1e-10) and upper.mean() == pytest.approx(up, abs=1e-10)
    assert (lower <= upper + 1e-12).all()


def test_noise_ceiling_needs_two_subjects():
    with pytest.raises(InputDataError, match="at least 2 subjects"):
        B.noise_ceiling_block(np.ones((1, 10)), "spearman", "mean")


def test_pair_count_checks():
    assert B.n_stimuli_of_pairs(91378) == 428
    with pytest.raises(InputDataError, match="not the upper triangle"):
        B.n_stimuli_of_pairs(91377)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a"])
@pytest.mark.parametrize("n_brain", [1, 5])
def test_null_block_equals_brute_force_relabelling(method, n_brain):
    """Null r equals comparing the RDM of relabelled stimuli (rows+cols permuted) by scipy."""
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(6)
    n = 12
    brain = rng.random((n_brain, B.n_pairs(n)))
    model = rng.random((3, B.n_pairs(n)))
    perms_rng = np.random.default_rng(7)
    idx = draw_pair_permutations(perms_rng, n, 4, "labels")
    null = null_block(B.prepare_block(brain, method), B.prepare_block(model, method), idx, method)
    perms_rng = np.random.default_rng(7)
    cmp = REFERENCE[f"compare:{method}"]
    for k in range(4):
        perm = perms_rng.permutation(n)
        for i in range(n_brain):
            relabelled = squareform(squareform(brain[i])[np.ix_(perm, perm)], checks=False)
            for m in range(3):
                assert null[k, i, m] == pytest.approx(cmp(relabelled, model[m]), abs=1e-10)


def test_cluster_masses_match_loop():
    rng = np.random.default_rng(8)
    v = rng.random((5, 30))
    s = v > 0.6
    mass_at, max_mass = cluster_masses(v, s)
    for r in range(5):
        runs, cur = [], []
        for t in range(30):
            if s[r, t]:
                cur.append(t)
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        expect = np.zeros(30)
        for run in runs:
            expect[run] = v[r, run].sum()
        np.testing.assert_allclose(mass_at[r], expect)
        assert max_mass[r] == pytest.approx(max([v[r, run].sum() for run in runs], default=0.0))


def test_rank_block_float32_fast_path_matches_scipy():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 3000)).astype(np.float32)
    x[0, :500] = x[0, 500:1000]
    x[1] = np.round(x[1], 1)
    x[2, :4], x[2, 4:8] = -0.0, 0.0
    x[3, ::5] = -np.inf
    x[4, 7] = np.nan
    out = B.rank_block(x)
    for r in range(4):
        np.testing.assert_array_equal(out[r], REFERENCE["rank"](x[r]))
    assert np.isnan(out[4]).all()
    prepared, norm = B.spearman_prepare(x[:4])
    for r in range(4):
        rk = REFERENCE["rank"](x[r])
        c = rk - rk.mean()
        np.testing.assert_allclose(prepared[r], c / np.linalg.norm(c), atol=1e-7)
        assert norm[r] == pytest.approx(np.linalg.norm(c), rel=1e-9)


def test_full_size_float32_rdm_and_spearman_within_1e5_of_scipy():
    """428 stimuli x 45 features, the study's size: float32 fast paths against float64 scipy."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 428, 45)).astype(np.float32)
    model = rng.random((3, B.n_pairs(428)))
    d = B.rdm_block(x, "correlation")
    for i in range(2):
        np.testing.assert_allclose(d[i], REFERENCE["rdm:correlation"](x[i].astype(np.float64)), atol=1e-5)
    r = B.compare_block(d, model.astype(np.float32), "spearman")
    ref = REFERENCE["rdm:correlation"](x[0].astype(np.float64))
    for m in range(3):
        assert r[0, m] == pytest.approx(REFERENCE["compare:spearman"](ref, model[m]), abs=1e-5)


@pytest.mark.parametrize("n_brain", [2, 6])
def test_null_block_labels_equals_brute_force_relabelling(n_brain):
    from scipy.spatial.distance import squareform

    from mfrs.similarity.nulls import draw_stimulus_permutations, null_block_labels

    rng = np.random.default_rng(11)
    n = 12
    brain = rng.random((n_brain, B.n_pairs(n))).astype(np.float32)
    model = rng.random((4, B.n_pairs(n))).astype(np.float32)
    perms = draw_stimulus_permutations(np.random.default_rng(3), n, 5)
    null = null_block_labels(B.prepare_block(brain, "spearman"), B.prepare_block(model, "spearman"), perms,
                             "spearman", max_bytes=1)  # one permutation per stack
    for k in range(5):
        for i in range(n_brain):
            relabelled = squareform(squareform(brain[i])[np.ix_(perms[k], perms[k])], checks=False)
            for m in range(4):
                assert null[k, i, m] == pytest.approx(REFERENCE["compare:spearman"](relabelled, model[m]), abs=2e-6)


@pytest.mark.parametrize("per_series", [False, True])
def test_permutation_p_matches_loops(per_series):
    """p, p_fwe over (time, layer), and clusters over time whose null max spans every layer (or one series)."""
    from mfrs.similarity.inference import permutation_p

    rng = np.random.default_rng(12)
    obs = rng.normal(0, 1, (2, 6, 3))
    obs[1, 2:4, 0] = 4.0  # a planted run
    null = rng.normal(0, 1, (40, 2, 6, 3))
    res = permutation_p(obs, null, fwe_axes=(1, 2), cluster_axis=1, cluster_alpha=0.1, cluster_per_series=per_series)
    for idx in np.ndindex(obs.shape):
        g = idx[0]
        assert res["p"][idx] == pytest.approx((np.sum(null[(slice(None), *idx)] >= obs[idx]) + 1) / 41)
        mx = null[:, g].reshape(40, -1).max(axis=1)
        assert res["p_fwe"][idx] == pytest.approx((np.sum(mx >= obs[idx]) + 1) / 41)
    thr = np.quantile(null, 0.9, axis=0)

    def runs(series, t):
        out, cur = [], []
        for i, on in enumerate(series > t):
            if on:
                cur.append(i)
            elif cur:
                out.append(cur)
                cur = []
        return out + ([cur] if cur else [])

    series_max = np.array([[[max([null[k, g, run, layer].sum() for run in runs(null[k, g, :, layer],
                                                                               thr[g, :, layer])], default=0.0)
                             for layer in range(3)] for g in range(2)] for k in range(40)])  # (perm, region, layer)
    checked = 0
    for g in range(2):
        for layer in range(3):
            # the family of p_fwe is time x layer: the largest null cluster mass is over every layer of region g
            null_max = series_max[:, g, layer] if per_series else series_max[:, g].max(axis=1)
            for run in runs(obs[g, :, layer], thr[g, :, layer]):
                checked += 1
                mass = obs[g, run, layer].sum()
                assert res["cluster_mass"][g, run[0], layer] == pytest.approx(mass)
                assert res["p_cluster"][g, run[0], layer] == pytest.approx((np.sum(np.array(null_max) >= mass) + 1) / 41)
    assert res["p_cluster"][1, 2, 0] == pytest.approx(1 / 41)
    assert checked >= 2  # the planted run and at least one chance run were checked
    if not per_series:  # the family-wide null max is larger: p_cluster only grows
        alone = permutation_p(obs, null, fwe_axes=(1, 2), cluster_axis=1, cluster_alpha=0.1, cluster_per_series=True)
        assert (res["p_cluster"] >= alone["p_cluster"]).all() and (res["p_cluster"] > alone["p_cluster"]).any()


def test_spearman_prepare_in_place_and_rdm_into_match_scipy():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 12, 5)).astype(np.float32)
    out = np.empty((2, 3, B.n_pairs(12)), np.float32)
    B.rdm_into(x, "correlation", out)
    for i in range(2):
        for t in range(3):
            np.testing.assert_allclose(out[i, t], REFERENCE["rdm:correlation"](x[i, t].astype(np.float64)), atol=2e-6)
    v = np.round(out, 2)  # ties
    expected = [REFERENCE["rank"](row) for row in v.reshape(-1, v.shape[-1])]
    prepared, norm = B.spearman_prepare(v, out=v)  # ranked in place
    assert np.shares_memory(prepared, v)
    for row, norm_r, ranks in zip(prepared.reshape(-1, v.shape[-1]), norm.ravel(), expected, strict=True):
        c = ranks - ranks.mean()
        assert norm_r == pytest.approx(np.linalg.norm(c), rel=1e-9)
        np.testing.assert_allclose(row, c / np.linalg.norm(c), atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.6, -0.5])
def test_run_summaries_merged_across_blocks_match_a_brute_force_scan(threshold):
    from mfrs.similarity.inference import merge_run_summaries, run_summary

    rng = np.random.default_rng(3)
    values = rng.standard_normal((40, 23))  # negative masses too when the threshold is negative
    supra = values > threshold
    supra[:5] = True  # whole series supra-threshold
    supra[5:8] = False
    expect = np.array([max_run_mass_brute(v, s) for v, s in zip(values, supra)])
    for edges in ([0, 23], [0, 1, 2, 3, 23], [0, 7, 8, 16, 23], list(range(24))):
        parts = [run_summary(values[:, a:b], supra[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
        got = merge_run_summaries(*(np.stack([p[k] for p in parts]) for k in ("inner", "left", "right", "full")),
                                  axis=0)
        np.testing.assert_allclose(got, expect, atol=1e-12, err_msg=f"blocks {edges}")


def test_group_draws_and_peaks_of_blocks_match_direct_computation():
    from mfrs.similarity.group import draw_bootstrap_weights, draw_sign_flips, merge_peaks, peak_summary

    rng = np.random.default_rng(13)
    w = draw_bootstrap_weights(np.random.default_rng(1), 6, 50)
    draws = np.random.default_rng(1).integers(0, 6, size=(50, 3))  # half of 6 subjects, with replacement
    np.testing.assert_allclose(w, np.stack([np.bincount(d, minlength=6) / 3 for d in draws]))
    every = draw_sign_flips(rng, 4, 15)
    assert len({tuple(f) for f in every}) == 15 and (1, 1, 1, 1) not in {tuple(f) for f in every}
    assert draw_sign_flips(rng, 10, 30).shape == (30, 10)
    r = np.round(rng.standard_normal((5, 13, 3)), 1)  # ties: the first maximum wins, as argmax
    r[0, :, 1] = np.nan
    parts = [peak_summary(r[:, a:b], a) for a, b in [(0, 4), (4, 5), (5, 13)]]
    value, index = merge_peaks(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]))
    v = np.where(np.isnan(r), -np.inf, r)
    np.testing.assert_array_equal(value, v.max(axis=1))
    np.testing.assert_array_equal(index[~np.isinf(value)], v.argmax(axis=1)[~np.isinf(value)])
    assert index[0, 1] == -1


def test_fdr_bh_equals_scipy_with_nan_and_families():
    import scipy.stats as ss

    from mfrs.similarity.inference import fdr_bh

    rng = np.random.default_rng(14)
    p = rng.random((3, 7, 4)) ** 3
    p[0, 2, 1] = np.nan
    q = fdr_bh(p, axes=(1, 2))
    for g in range(3):
        ok = ~np.isnan(p[g])
        np.testing.assert_allclose(q[g][ok], ss.false_discovery_control(p[g][ok], method="bh"), atol=1e-12)
    assert np.isnan(q[0, 2, 1])
    np.testing.assert_allclose(fdr_bh(p[1:]).ravel(), ss.false_discovery_control(p[1:].ravel()), atol=1e-12)


@pytest.mark.parametrize(("fwe_dims", "per_layer"), [(("region", "time", "layer"), False), (("layer",), False),
                                                     (("time", "layer"), True), (("region", "time"), False)])
def test_block_statistics_cluster_family_matches_brute_force(fwe_dims, per_layer):
    """The stage's block path: the largest null cluster mass over the family's (region, layer) time courses."""
    from types import SimpleNamespace

    from mfrs.similarity.families import block_statistics, families

    rng = np.random.default_rng(15)
    stat = rng.normal(0, 1, (3, 9, 2))  # (region, time, layer)
    stat[1, 3:6, 0] = 3.0
    null = rng.normal(0, 1, (30, 3, 9, 2))
    cfg = SimpleNamespace(n_permutations=30, fwe_dims=list(fwe_dims), region_block=3, time_block=9, cluster=True,
                          cluster_alpha=0.1, alternative="greater",
                          cluster_family="per_layer" if per_layer else "fwe_dims")
    fam = families(cfg, 3, 9)
    assert not fam.cluster_split and fam.cluster_dims == (() if per_layer else tuple(d for d in fwe_dims
                                                                                      if d != "time"))
    out, deferred = block_statistics(stat, null, fam)
    assert not deferred
    thr = np.quantile(null, 0.9, axis=0)
    series = np.array([[[max_run_mass_brute(null[k, g, :, m], null[k, g, :, m] > thr[g, :, m]) for m in range(2)]
                        for g in range(3)] for k in range(30)])  # (perm, region, layer)
    for g in range(3):
        for m in range(2):
            family = series[:, g, m]
            if "region" in fam.cluster_dims and "layer" in fam.cluster_dims:
                family = series.max(axis=(1, 2))
            elif "region" in fam.cluster_dims:
                family = series[:, :, m].max(axis=1)
            elif "layer" in fam.cluster_dims:
                family = series[:, g].max(axis=1)
            mass = out["cluster_mass"][g, :, m]
            for t in np.flatnonzero(mass > 0):
                assert out["p_cluster"][g, t, m] == pytest.approx((np.sum(family >= mass[t]) + 1) / 31)
    assert out["p_cluster"][1, 4, 0] == pytest.approx(1 / 31)


@pytest.mark.parametrize("fwe_dims", [("region", "time", "layer"), ("time",), ("region", "layer"), ("time", "layer")])
def test_p_fwe_of_a_family_cut_into_blocks_matches_brute_force(fwe_dims):
    """Blocks of 2 regions x 3 times each store their part of the family maximum (block_statistics); the final
    task's p_fwe (final_fwe_p) is (k + 1) / (n + 1) against the maximum over the whole family, by loops."""
    from types import SimpleNamespace

    import xarray as xr

    from mfrs.similarity.families import block_statistics, families, final_fwe_p

    rng = np.random.default_rng(17)
    n_perm, n_reg, n_time, n_layer = 25, 4, 9, 2
    stat = rng.normal(0, 1, (n_reg, n_time, n_layer))
    null = rng.normal(0, 1, (n_perm, n_reg, n_time, n_layer))
    cfg = SimpleNamespace(n_permutations=n_perm, fwe_dims=list(fwe_dims), region_block=2, time_block=3, cluster=False,
                          cluster_alpha=0.05, alternative="greater")
    fam = families(cfg, n_reg, n_time)
    assert fam.fwe_split
    dims = fam.fwe_summary_dims  # (signal, category, perm, region | region_block, time | time_block[, layer])
    size = {"region": n_reg, "time": n_time, "region_block": 2, "time_block": 3, "layer": n_layer}
    summary = np.full((1, 1, n_perm, *(size[d] for d in dims[3:])), np.nan)
    blocks = [(slice(r, r + 2), slice(t, t + 3)) for r in range(0, n_reg, 2) for t in range(0, n_time, 3)]
    for reg, tim in blocks:
        _, deferred = block_statistics(stat[reg, tim], null[:, reg, tim], fam)
        at = (reg if dims[3] == "region" else slice(reg.start // 2, reg.start // 2 + 1),
              tim if dims[4] == "time" else slice(tim.start // 3, tim.start // 3 + 1))
        summary[(0, 0, slice(None), *at)] = deferred["fwe_null_max"]
    fwe = xr.DataArray(summary, dims=dims)
    for reg, tim in blocks:
        block = xr.DataArray(stat[None, None, reg, tim], dims=("signal", "category", "region", "time", "layer"))
        got = final_fwe_p(block, fwe, reg, tim)[0, 0]
        for g in range(reg.start, reg.stop):
            for t in range(tim.start, tim.stop):
                for m in range(n_layer):
                    point = {"region": [g], "time": [t], "layer": [m]}
                    axes = [range(size[d]) if d in fwe_dims else point[d] for d in ("region", "time", "layer")]
                    family = null[np.ix_(range(n_perm), *axes)]
                    want = (np.sum(family.reshape(n_perm, -1).max(axis=1) >= stat[g, t, m]) + 1) / (n_perm + 1)
                    assert got[g - reg.start, t - tim.start, m] == pytest.approx(want)


@pytest.mark.parametrize("two_sided", [False, True])
def test_signflip_test_in_chunks_equals_enumeration(two_sided):
    """Every sign vector of 5 subjects (31 + the identity), one flip per chunk or all at once: the same p."""
    import itertools

    from mfrs.similarity.group import draw_sign_flips, signflip_test

    rng = np.random.default_rng(16)
    values = rng.normal(0.05, 0.1, (5, 4, 3))
    values[:, 1, 2] = [0.3, 0.25, 0.2, 0.35, 0.3]  # every subject positive: the smallest p
    flips = draw_sign_flips(rng, 5, 1000)
    assert len(flips) == 31
    signs = np.array(list(itertools.product([1, -1], repeat=5)))
    null = np.einsum("fs,s...->f...", signs, values) / 5
    obs = values.mean(axis=0)
    null, obs = (np.abs(null), np.abs(obs)) if two_sided else (null, obs)
    p = (null >= obs - 1e-12).sum(axis=0) / 32
    p_fwe = (null.max(axis=(1, 2))[:, None, None] >= obs - 1e-12).sum(axis=0) / 32
    for max_bytes in (1, 64 << 20):
        res = signflip_test(values, flips, axes=(0, 1), two_sided=two_sided, max_bytes=max_bytes)
        np.testing.assert_array_equal(res["p"], p)  # exact: ties (the negated identity) count without tolerance
        np.testing.assert_array_equal(res["p_fwe"], p_fwe)
    assert res["p"][1, 2] == (2 / 32 if two_sided else 1 / 32)


@pytest.mark.parametrize(("method", "n_brain"), [("spearman", 2), ("spearman", 6), ("pearson", 3)])
def test_torch_null_equals_numpy_and_brute_force(method, n_brain):
    """The torch null (CPU torch here; the same code on a GPU worker) against the numpy path and scipy.

    Tolerance: 1e-5 absolute (both sum float32 products over the pairs, in different orders).
    """
    from scipy.spatial.distance import squareform

    from mfrs.similarity.nulls import draw_stimulus_permutations, null_block_labels, null_block_labels_torch

    rng = np.random.default_rng(13)
    n = 40
    brain = rng.random((n_brain, B.n_pairs(n))).astype(np.float32)
    model = rng.random((5, B.n_pairs(n))).astype(np.float32)
    perms = draw_stimulus_permutations(np.random.default_rng(4), n, 9)
    pb, pm = B.prepare_block(brain, method), B.prepare_block(model, method)
    cpu = null_block_labels(pb, pm, perms, method)
    torch_null = null_block_labels_torch(pb, pm, perms, method, device="cpu", max_bytes=1)  # 1 permutation per GEMM
    assert torch_null.shape == cpu.shape == (9, n_brain, 5)
    np.testing.assert_allclose(torch_null, cpu, atol=1e-5, rtol=0)
    ref = REFERENCE[f"compare:{method}"]
    for k in (0, 8):
        relabelled = squareform(squareform(brain[-1])[np.ix_(perms[k], perms[k])], checks=False)
        assert torch_null[k, -1, 2] == pytest.approx(ref(relabelled, model[2]), abs=1e-5)
