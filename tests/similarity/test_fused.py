"""The fused block kernel against the composition of independent pieces (scipy, rsatoolbox)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import squareform

from mfrs.similarity.blocks import n_pairs, prepare_block
from mfrs.similarity.fused import rsa_block
from mfrs.similarity.nulls import draw_pair_permutations

from .reference import REFERENCE


def test_rsa_block_matches_scipy_composition():
    rng = np.random.default_rng(0)
    n_sub, n_time, n, f, n_layer = 3, 5, 16, 6, 4
    x = rng.standard_normal((n_sub, n_time, n, f)).astype(np.float32)
    model = rng.random((n_layer, n_pairs(n)))
    out = rsa_block(x, prepare_block(model.astype(np.float32), "spearman"), time_batch=2)
    pdist = REFERENCE["rdm:correlation"]
    rho = REFERENCE["compare:spearman"]
    for t in [0, 3, 4]:
        rdms = np.stack([pdist(x[s, t].astype(np.float64)) for s in range(n_sub)])
        for layer in range(n_layer):
            for s in range(n_sub):
                assert out["r"][s, t, layer] == pytest.approx(rho(rdms[s], model[layer]), abs=2e-5)
            assert out["r"][n_sub, t, layer] == pytest.approx(rho(rdms.mean(0), model[layer]), abs=2e-5)
        lo, up = REFERENCE["noise_ceiling:rsatoolbox"](rdms, "spearman")
        assert out["noise_ceiling_lower"][t] == pytest.approx(lo, abs=2e-5)
        assert out["noise_ceiling_upper"][t] == pytest.approx(up, abs=2e-5)


def test_rsa_block_permutation_p_matches_brute_force():
    rng = np.random.default_rng(1)
    n = 10
    x = rng.standard_normal((2, 2, n, 4)).astype(np.float32)
    model = rng.random((3, n_pairs(n)))
    perms = draw_pair_permutations(np.random.default_rng(5), n, 50, "labels")
    out = rsa_block(x, prepare_block(model.astype(np.float32), "spearman"), pair_perms=perms)
    pdist, rho = REFERENCE["rdm:correlation"], REFERENCE["compare:spearman"]
    prng = np.random.default_rng(5)
    orders = [prng.permutation(n) for _ in range(50)]
    for t in range(2):
        group = np.mean([pdist(x[s, t].astype(np.float64)) for s in range(2)], axis=0)
        sq = squareform(group)
        null = np.array([[rho(squareform(sq[np.ix_(o, o)], checks=False), m) for m in model] for o in orders])
        obs = np.array([rho(group, m) for m in model])
        np.testing.assert_allclose(out["p"][t], ((null >= obs - 1e-6).sum(0) + 1) / 51, atol=1e-6)
        np.testing.assert_allclose(out["p_fwe_layer"][t], ((null.max(1)[:, None] >= obs - 1e-6).sum(0) + 1) / 51,
                                   atol=1e-6)


def test_rsa_block_scratch_reuse_across_shapes_and_threads():
    """Reused per-thread buffers: calls of different sizes, also from two threads at once, stay exact."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    pdist, rho = REFERENCE["rdm:correlation"], REFERENCE["compare:spearman"]
    cases = []
    for n_sub, n_time, n in [(3, 5, 14), (2, 3, 9), (4, 2, 14)]:
        x = rng.standard_normal((n_sub, n_time, n, 4)).astype(np.float32)
        model = rng.random((2, n_pairs(n)))
        cases.append((x, model))

    def run(case):
        x, model = case
        return rsa_block(x, prepare_block(model.astype(np.float32), "spearman"), time_batch=2)["r"]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, cases * 2))
    for (x, model), r in zip(cases * 2, results, strict=True):
        for t in range(x.shape[1]):
            rdms = np.stack([pdist(x[s, t].astype(np.float64)) for s in range(x.shape[0])])
            for layer in range(model.shape[0]):
                for s in range(x.shape[0]):
                    assert r[s, t, layer] == pytest.approx(rho(rdms[s], model[layer]), abs=2e-5)
                assert r[-1, t, layer] == pytest.approx(rho(rdms.mean(0), model[layer]), abs=2e-5)


@pytest.mark.parametrize(("method", "rsatoolbox_method"), [("pearson", "corr"), ("cosine", "cosine")])
def test_rsa_block_noise_ceiling_of_other_comparators_matches_rsatoolbox(method, rsatoolbox_method):
    rng = np.random.default_rng(4)
    n_sub, n_time, n, f = 4, 3, 14, 5
    x = rng.standard_normal((n_sub, n_time, n, f)).astype(np.float32)
    model = prepare_block(rng.random((2, n_pairs(n))).astype(np.float32), method)
    out = rsa_block(x, model, method=method, time_batch=2)
    for t in range(n_time):
        rdms = np.stack([REFERENCE["rdm:correlation"](x[s, t].astype(np.float64)) for s in range(n_sub)])
        lo, up = REFERENCE["noise_ceiling:rsatoolbox"](rdms, rsatoolbox_method)
        assert out["noise_ceiling_lower"][t] == pytest.approx(lo, abs=2e-5)
        assert out["noise_ceiling_upper"][t] == pytest.approx(up, abs=2e-5)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_rsa_block_noise_ceiling_with_mean_pooling_matches_scipy(method):
    """pooling='mean': each subject against the plain mean of the others' (or all) raw RDMs."""
    import scipy.stats as ss

    rng = np.random.default_rng(6)
    n_sub, n, f = 5, 12, 4
    x = rng.standard_normal((n_sub, 2, n, f)).astype(np.float32)
    model = prepare_block(rng.random((1, n_pairs(n))).astype(np.float32), method)
    out = rsa_block(x, model, method=method, pooling="mean")
    corr = (lambda a, b: ss.spearmanr(a, b)[0]) if method == "spearman" else (lambda a, b: ss.pearsonr(a, b)[0])
    for t in range(2):
        rdms = np.stack([REFERENCE["rdm:correlation"](x[s, t].astype(np.float64)) for s in range(n_sub)])
        lower = np.mean([corr(rdms[s], np.delete(rdms, s, axis=0).mean(0)) for s in range(n_sub)])
        upper = np.mean([corr(rdms[s], rdms.mean(0)) for s in range(n_sub)])
        assert out["noise_ceiling_lower"][t] == pytest.approx(lower, abs=2e-5)
        assert out["noise_ceiling_upper"][t] == pytest.approx(upper, abs=2e-5)
