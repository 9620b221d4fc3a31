"""Layer 3: the xarray-facing functions (dims by name, labels kept, Dask-backed input)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import mfrs.similarity as sim
from mfrs.errors import ConfigError, InputDataError

from .reference import REFERENCE


def _patterns(seed=0, n=12, dtype=np.float64):
    rng = np.random.default_rng(seed)
    cats = ["famous"] * 4 + ["unfamiliar"] * 4 + ["scrambled"] * 4
    return xr.DataArray(
        rng.standard_normal((2, 3, n, 5)).astype(dtype), dims=("region", "time", "stimulus", "vertex"),
        coords={"stimulus": [f"s{i:02d}" for i in range(n)], "category": ("stimulus", cats),
                "time": [0.0, 0.1, 0.2], "region": ["r1", "r2"]},
    )


def test_compute_rdms_dask_labels_and_oracle():
    x = _patterns().transpose("vertex", "stimulus", "time", "region")  # dims by name, not position
    rdm = sim.compute_rdms(x.chunk({"time": 1}), feature_dims="vertex")
    assert rdm.chunks is not None and set(rdm.dims) == {"time", "region", "pair"}
    got = rdm.sel(region="r2", time=0.1).compute().values
    np.testing.assert_allclose(got, REFERENCE["rdm:correlation"](x.sel(region="r2", time=0.1).T.values), atol=1e-12)
    sq = sim.to_square(rdm.sel(region="r1", time=0.0).compute())
    assert sq.sel(stimulus_a="s03", stimulus_b="s07") == pytest.approx(float(rdm.sel(region="r1", time=0.0)[
        np.flatnonzero((rdm.stimulus_a == "s03").values & (rdm.stimulus_b == "s07").values)[0]]))
    back = sim.to_pairs(sq)
    np.testing.assert_array_equal(back.values, rdm.sel(region="r1", time=0.0).values)
    fam = sim.category_pairs(rdm, "famous")
    assert fam.sizes["pair"] == 6 and set(fam.stimulus_a.values) <= {"s00", "s01", "s02", "s03"}
    sub = sim.subset_pairs(rdm, ["s00", "s01", "s02", "s03"])
    np.testing.assert_array_equal(sub.values, fam.values)


def test_compute_rdms_crossnobis_with_fold_dim():
    rng = np.random.default_rng(1)
    x = xr.DataArray(rng.standard_normal((3, 8, 4)), dims=("fold", "stimulus", "channel"))
    rdm = sim.compute_rdms(x, feature_dims="channel", metric="crossnobis", fold_dim="fold")
    np.testing.assert_allclose(rdm.values, REFERENCE["rdm:crossnobis"](x.values, None), rtol=1e-9)


def test_compute_rdms_errors():
    x = _patterns()
    with pytest.raises(InputDataError, match=r"dims \['voxel'\] are not in the data"):
        sim.compute_rdms(x, feature_dims="voxel")
    with pytest.raises(ConfigError, match="needs fold_dim"):
        sim.compute_rdms(x, feature_dims="vertex", metric="crossnobis")
    with pytest.raises(ConfigError, match="is not one of"):
        sim.compute_rdms(x, feature_dims="vertex", metric="manhattan")


@pytest.mark.parametrize("method", ["spearman", "kendall_tau_a"])
def test_compare_rdms_outer_product(method):
    rdm = sim.compute_rdms(_patterns(dtype=np.float32).chunk({"region": 1}), feature_dims="vertex")
    rng = np.random.default_rng(2)
    model = xr.DataArray(rng.random((4, 66)), dims=("layer", "pair"),
                         coords={"layer": list("abcd"), "depth": ("layer", [0, 0.3, 0.6, 1.0])})
    r = sim.compare_rdms(rdm, model, method=method).compute()
    assert r.dims == ("region", "time", "layer") and "depth" in r.coords
    expect = REFERENCE[f"compare:{method}"](rdm.sel(region="r1", time=0.2).values.astype(float), model[2].values)
    assert float(r.sel(region="r1", time=0.2, layer="c")) == pytest.approx(expect, abs=1e-5)


def test_compare_rdms_errors():
    a = xr.DataArray(np.random.rand(2, 10), dims=("layer", "pair"))
    with pytest.raises(ConfigError, match="share the batch dims"):
        sim.compare_rdms(a, a)
    with pytest.raises(InputDataError, match="a has 10 pairs and b 6"):
        sim.compare_rdms(a, xr.DataArray(np.random.rand(6), dims="pair"))


def test_noise_ceiling_and_split_half_seeded():
    rng = np.random.default_rng(3)
    truth = rng.random(190)
    rdms = xr.DataArray(truth + rng.random((8, 2, 190)), dims=("subject", "time", "pair"))
    nc = sim.noise_ceiling(rdms.chunk({"time": 1}), n_bootstrap=20, seed=4).compute()
    lo, up = REFERENCE["noise_ceiling:rsatoolbox"](rdms.isel(time=1).values, "spearman")
    assert float(nc.lower[1]) == pytest.approx(lo, abs=1e-10) and float(nc.upper[1]) == pytest.approx(up, abs=1e-10)
    nc2 = sim.noise_ceiling(rdms.chunk({"time": 2}), n_bootstrap=20, seed=4).compute()  # other chunking
    xr.testing.assert_allclose(nc, nc2)
    assert (nc.split_half_low <= nc.split_half).all() and (nc.split_half <= nc.split_half_high).all()
    with pytest.raises(InputDataError, match="split halves need 4"):
        sim.noise_ceiling(rdms.isel(subject=slice(0, 3)), n_bootstrap=5)


def _planted(n=20, n_time=12, effect=range(4, 8), seed=5):
    """Brain RDMs that follow layer 'b' at the planted times, noise elsewhere."""
    rng = np.random.default_rng(seed)
    p = n * (n - 1) // 2
    model = xr.DataArray(rng.random((3, p)), dims=("layer", "pair"), coords={"layer": ["a", "b", "c"]})
    brain = rng.random((n_time, p))
    for t in effect:
        brain[t] = model.values[1] + 0.3 * rng.random(p)
    return xr.DataArray(brain, dims=("time", "pair"), coords={"time": np.arange(n_time) * 0.01}), model


def test_permutation_test_planted_effect_fwe_and_cluster():
    brain, model = _planted()
    ds = sim.permutation_test(brain, model, n_permutations=199, seed=1, fwe_dims=("time", "layer"),
                              cluster_dim="time")
    sig = ds.p_fwe.sel(layer="b") < 0.05
    assert sig.isel(time=slice(4, 8)).all() and not (ds.p_fwe.sel(layer=["a", "c"]) < 0.05).any()
    assert (ds.p_cluster.sel(layer="b").isel(time=slice(4, 8)) < 0.05).all()
    assert (ds.p >= 1 / 200).all() and (ds.p <= 1).all()
    assert (ds.p_fwe >= ds.p - 1e-12).all()
    again = sim.permutation_test(brain, model, n_permutations=199, seed=1)
    xr.testing.assert_equal(again.p, ds.p)
    legacy = sim.permutation_test(brain, model, n_permutations=50, seed=1, scheme="legacy_entries")
    assert legacy.attrs["scheme"] == "legacy_entries" and legacy.p.shape == ds.p.shape


def test_bootstrap_subjects_and_stimuli():
    brain, model = _planted()
    boot = sim.bootstrap(brain, model, over="stimuli", n_bootstrap=60, seed=2)
    assert float(boot.peak_latency.sel(layer="b")) in {0.04, 0.05, 0.06, 0.07}
    assert (boot.r_low <= boot.r + 1e-9).all() and (boot.r <= boot.r_high + 1e-9).all()
    assert (boot.best_layer.isel(time=slice(4, 8)) == 1).all()
    assert (boot.best_layer_frequency.isel(time=5).sel(layer="b") > 0.9)
    rng = np.random.default_rng(3)
    r_sub = xr.DataArray(rng.normal(0.2, 0.05, (10, 3)), dims=("subject", "layer"))
    bs = sim.bootstrap(r_sub, over="subjects", n_bootstrap=500, seed=0)
    se = r_sub.std("subject", ddof=1) / np.sqrt(10)
    np.testing.assert_allclose(bs.r_high - bs.r_low, 2 * 1.96 * se, rtol=0.25)  # normal-theory width


def test_bootstrap_subject_rdms_equals_a_slow_loop_with_the_same_seeds():
    """over='subject_rdms': RSA recomputed on the mean RDM of half the subjects, drawn with replacement."""
    from mfrs.similarity.seeds import unit_rng

    brain, model = _planted(n_time=6, effect=range(2, 4))
    rng = np.random.default_rng(7)
    subj = xr.concat([brain + 0.3 * rng.random(brain.shape) for _ in range(6)], dim="subject").transpose(
        "time", "subject", "pair")  # dims in any order
    boot = sim.bootstrap(subj, model, over="subject_rdms", n_bootstrap=40, seed=5)
    draws = unit_rng(5, "bootstrap", "subject_rdms").integers(0, 6, size=(40, 3))
    x = subj.transpose("subject", "time", "pair").values
    samples = np.array([[[REFERENCE["compare:spearman"](x[d].mean(axis=0)[t], m) for m in model.values]
                         for t in range(6)] for d in draws])  # (sample, time, layer)
    np.testing.assert_allclose(boot.r_low, np.quantile(samples, 0.025, axis=0), atol=1e-10)
    np.testing.assert_allclose(boot.r_high, np.quantile(samples, 0.975, axis=0), atol=1e-10)
    latency = subj.time.values[samples.argmax(axis=1)]
    np.testing.assert_allclose(boot.peak_latency_low, np.quantile(latency, 0.025, axis=0))
    expect = [[REFERENCE["compare:spearman"](x.mean(axis=0)[t], m) for m in model.values] for t in range(6)]
    np.testing.assert_allclose(boot.r.transpose("time", "layer"), expect, atol=1e-10)
    assert (boot.best_layer.isel(time=[2, 3]) == 1).all()
