"""Model comparison across subjects against rsatoolbox, brute-force sign flips, a bootstrap loop and scipy's FDR."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats as ss
import xarray as xr

import mfrs.similarity as sim
from mfrs.errors import ConfigError, InputDataError

from .reference import REFERENCE


def _per_subject_r(n_sub=8, n=12, seed=0):
    """Subject RDMs sharing a structure, three single-layer models, and the per-subject r (scipy spearman)."""
    rng = np.random.default_rng(seed)
    p = n * (n - 1) // 2
    truth = rng.random(p)
    rdms = truth + rng.random((n_sub, p)) * 1.5
    models = np.stack([truth + rng.random(p), truth + 2 * rng.random(p), rng.random(p)])
    r = np.array([[REFERENCE["compare:spearman"](rdms[s], m) for m in models] for s in range(n_sub)])
    da = xr.DataArray(r, dims=("subject", "layer"), coords={"subject": [f"s{i}" for i in range(n_sub)],
                                                              "layer": ["n1/a", "n2/a", "n3/a"],
                                                              "network": ("layer", ["n1", "n2", "n3"])})
    return rdms, models, da


def test_best_layer_pairwise_t_test_equals_rsatoolbox():
    import rsatoolbox

    rdms, models, r = _per_subject_r()
    res = sim.compare_best_layers(r, by="network", n_signflips=500, n_bootstrap=0)
    fixed = [rsatoolbox.model.ModelFixed(f"m{i}", rsatoolbox.rdm.RDMs(m[None])) for i, m in enumerate(models)]
    result = rsatoolbox.inference.eval_fixed(fixed, rsatoolbox.rdm.RDMs(rdms), method="spearman")
    np.testing.assert_allclose(result.evaluations[0].T, r.values, atol=1e-10)  # the same per-subject r
    expect = result.test_pairwise("t-test")
    for k, (a, b) in enumerate(zip(res.model_a.values, res.model_b.values, strict=True)):
        i, j = int(a[1]) - 1, int(b[1]) - 1
        assert res.p_ttest.values[k] == pytest.approx(expect[i, j], rel=1e-9)
        assert res.difference.values[k] == pytest.approx((r.values[:, i] - r.values[:, j]).mean())
    assert res.p_ttest.sel(contrast=1).item() < 0.01  # n1 (truth + noise) beats n3 (unrelated)
    np.testing.assert_allclose(res.p_fdr, ss.false_discovery_control(res.p_signflip.values), atol=1e-12)


def _two_sets(n_sub=6, n_time=5, seed=1):
    """r (subject, time, layer) of two 'weights' of one network, 3 layers each; trained better at layer 2."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.1, 0.01, (n_sub, n_time, 6))
    r[:, :, 1] += 0.2
    names = ["c1", "c2", "c3"]
    return xr.DataArray(r, dims=("subject", "time", "layer"),
                        coords={"subject": [f"s{i}" for i in range(n_sub)], "time": np.arange(n_time) * 0.01,
                                "layer": [f"net/{w}/{n}" for w in ("trained", "untrained") for n in names],
                                "weights": ("layer", ["trained"] * 3 + ["untrained"] * 3)})


def test_layer_sets_sign_flips_equal_enumeration_and_bootstrap_equals_loop():
    from mfrs.similarity.seeds import unit_rng

    r = _two_sets()
    res = sim.compare_layer_sets(r, {"weights": "trained"}, {"weights": "untrained"}, n_signflips=100,
                                 n_bootstrap=200, seed=3, fwe_dims=("time", "contrast"))
    assert res.p_signflip.dims == ("time", "contrast") and res.layer_b.values.tolist()[1] == "net/untrained/c2"
    assert res.weights_a.values.tolist() == ["trained"] * 3 and res.weights_b.values.tolist() == ["untrained"] * 3
    d = r.values[..., :3] - r.values[..., 3:]  # (subject, time, contrast)
    signs = np.array(list(itertools.product([1, -1], repeat=6)))  # all 64, identity included
    null = np.abs(np.einsum("fs,s...->f...", signs, d) / 6)
    obs = np.abs(d.mean(axis=0))
    np.testing.assert_allclose(res.p_signflip, (null >= obs - 1e-12).sum(axis=0) / 64)
    fmax = null.max(axis=(1, 2))
    np.testing.assert_allclose(res.p_signflip_fwe, (fmax[:, None, None] >= obs - 1e-12).sum(axis=0) / 64)
    # layer 2 is better trained in every subject: the two-sided exact minimum 2 / 64 (all signs + and all -)
    assert (res.p_signflip.isel(contrast=1) == 2 / 64).all() and (res.p_signflip_fwe.isel(contrast=0) > 0.05).all()
    draws = unit_rng(3, "bootstrap", "compare_layer_sets").integers(0, 6, size=(200, 6))
    boot = np.stack([d[idx].mean(axis=0) for idx in draws])
    np.testing.assert_allclose(res.difference_ci_low, np.quantile(boot, 0.025, axis=0))
    np.testing.assert_allclose(res.difference_ci_high, np.quantile(boot, 0.975, axis=0))
    np.testing.assert_allclose(res.p_ttest, ss.ttest_rel(r.values[..., :3], r.values[..., 3:], axis=0).pvalue)
    q = ss.false_discovery_control(res.p_signflip.values.ravel()).reshape(res.p_signflip.shape)
    np.testing.assert_allclose(res.p_fdr, q, atol=1e-12)
    assert res.p_signflip_fwe.attrs["family"] == "time x contrast"


def test_model_comparison_errors():
    r = _two_sets()
    with pytest.raises(ConfigError, match="a selects 3 layers and b 1"):
        sim.compare_layer_sets(r, {"weights": "trained"}, ["net/untrained/c1"])
    with pytest.raises(InputDataError, match="'kind' is not a coord along 'layer'"):
        sim.compare_layer_sets(r, {"kind": "relu"}, {"weights": "untrained"})
    with pytest.raises(InputDataError, match="drop_sel"):
        sim.compare_best_layers(r.assign_coords(subject=["group"] + list(r.subject.values[1:])), by="weights")
    with pytest.raises(ConfigError, match=r"fwe_dims \['region'\]"):
        sim.compare_best_layers(r, by="weights", fwe_dims=("region",))
