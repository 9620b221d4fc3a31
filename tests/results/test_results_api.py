"""The results API on the demo's stores, against brute force over the stored numbers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

import mfrs.results as res
from mfrs.errors import InputDataError
from mfrs.similarity import to_square


def _stored(demo_catalog) -> xr.Dataset:
    """The rsa store as written (no relabelling), read with plain xarray."""
    return xr.open_zarr(demo_catalog.path("rsa")).load()


def test_open_labels_coords_eager_and_attrs(demo_catalog):
    import dask.array

    ds = res.open_rsa(demo_catalog)
    for name in ("network", "weights", "name", "depth", "layer_id", "kind", "units", "hemi", "area", "category",
                 "region", "time"):
        assert not isinstance(ds[name].data, dask.array.Array), name  # in memory when opened
    assert isinstance(ds["r"].data, dask.array.Array)  # the data stay lazy
    assert isinstance(xr.open_zarr(demo_catalog.path("rsa"))["depth"].data, dask.array.Array)  # what it fixes
    plain = demo_catalog.open("model_rdms")  # mfrs.open: small coords in memory too, data lazy
    assert not isinstance(plain["depth"].data, dask.array.Array) and isinstance(plain["rdm"].data, dask.array.Array)
    # layer labels select naturally, and boolean where on them works
    last = str(ds["name"].values[-1])
    one = ds.sel(weights="imagenet", name=last)  # the level left (network) becomes the dim, as in xarray
    assert one["layer_id"].values.tolist() == [f"mobilenet_v2/imagenet/{last}"]
    assert res.flat_layers(one)["r"].dims[-1] == "layer"
    assert one.rsa.peaks()["best_layer"].values.flat[0] == f"mobilenet_v2/imagenet/{last}"
    n_trained = int((ds["weights"] == "imagenet").sum())
    assert ds.sel(weights="imagenet").sizes["layer"] == n_trained > 0
    assert set(ds["hemi"].values) == {"lh", "rh"}
    prov = ds.attrs["provenance"]["parameters"]
    for name, var in ds.data_vars.items():
        assert var.attrs.get("description") and var.attrs.get("units"), name
    assert set(prov["fwe_dims"]) <= set(ds["p_fwe"].attrs["family"].split("within")[0].replace(",", " ").split())
    for d in prov["fwe_dims"]:
        assert d in ds["p_fwe"].attrs["family"]


def test_best_layer_and_peaks_equal_brute_force(demo_catalog, rsa):
    raw = _stored(demo_catalog)
    r = raw["r"].sel(subject="group").values  # (signal, category, region, time, layer)
    best = rsa.rsa.best_layer()
    ids = raw["layer"].values.astype(str)
    want = ids[np.nanargmax(r, axis=-1)]
    got = best["best_layer"].transpose("signal", "category", "region", "time").values
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(best["r"].transpose("signal", "category", "region", "time").values,
                               np.nanmax(r, axis=-1))
    pk = rsa.rsa.peaks()
    times = raw["time"].values
    for s in range(r.shape[0]):
        for c in range(r.shape[1]):
            for g in range(r.shape[2]):
                flat = r[s, c, g]
                t, k = np.unravel_index(np.nanargmax(flat), flat.shape)
                at = pk.isel(signal=s, category=c, region=g)
                assert float(at["peak_time"]) == pytest.approx(times[t])
                assert float(at["peak_r"]) == pytest.approx(flat[t, k])
                assert str(at["best_layer"].values) == ids[k]
                for v in ("noise_ceiling_lower", "noise_ceiling_upper"):
                    assert float(at[v]) == pytest.approx(float(raw[v][s, c, g, t]), nan_ok=True)
                for v in ("p", "p_fwe", "p_cluster"):
                    assert float(at[v]) == pytest.approx(float(raw[v][s, c, g, t, k]), nan_ok=True)


def test_peaks_of_a_selected_network(rsa, demo_catalog):
    raw = _stored(demo_catalog)
    keep = raw["weights"].values == "untrained-seed0"
    r = raw["r"].sel(subject="group", signal=raw["signal"].values[0], category="all").values[..., keep]
    pk = rsa.sel(weights="untrained-seed0").rsa.peaks().isel(signal=0).sel(category="all")
    for g in range(r.shape[0]):
        t, k = np.unravel_index(np.nanargmax(r[g]), r[g].shape)
        assert str(pk["best_layer"].values[g]) == raw["layer"].values[keep][k]
        assert float(pk["peak_r"].values[g]) == pytest.approx(r[g, t, k])


def test_bilateral_pooling(rsa, demo_catalog):
    raw = _stored(demo_catalog)
    pooled = rsa.rsa.bilateral()
    areas = list(dict.fromkeys(str(r).rsplit("-", 1)[0] for r in raw["region"].values))
    assert [str(r) for r in pooled["region"].values] == areas and sorted(areas) == ["FFA", "OFA", "STS", "V1"]
    assert pooled.sel(weights="imagenet").sizes["layer"] == int((raw["weights"] == "imagenet").sum())
    lh = raw["r"].sel(region="FFA-lh").values
    rh = raw["r"].sel(region="FFA-rh").values
    np.testing.assert_allclose(pooled["r"].sel(region="FFA").transpose(*raw["r"].sel(region="FFA-lh").dims).values,
                               (lh + rh) / 2, rtol=1e-6)
    p = np.minimum(2 * np.minimum(raw["p_fwe"].sel(region="V1-lh").values, raw["p_fwe"].sel(region="V1-rh").values), 1)
    np.testing.assert_allclose(pooled["p_fwe"].sel(region="V1").transpose(*raw["p_fwe"].sel(region="V1-lh").dims),
                               p, rtol=1e-6)
    assert "Bonferroni" in pooled["p_fwe"].attrs["pooling"]


def test_significance_mask(rsa, demo_catalog):
    raw = _stored(demo_catalog)
    for p in ("p_fwe", "p_cluster"):
        mask = rsa.rsa.significant(alpha=0.05, p=p)
        want = raw[p].values <= 0.05
        np.testing.assert_array_equal(mask.transpose(*raw[p].dims).values, want)
        assert mask.attrs["family"] == rsa[p].attrs["family"]
    with pytest.raises(InputDataError, match="no p-value variable 'p_nope'"):
        rsa.rsa.significant(p="p_nope")


def test_trained_vs_untrained(rsa, demo_catalog):
    raw = _stored(demo_catalog)
    tvu = rsa.rsa.trained_vs_untrained()
    name = str(raw["name"].values[3])
    trained_id, untrained_id = f"mobilenet_v2/imagenet/{name}", f"mobilenet_v2/untrained-seed0/{name}"
    g = raw["r"].sel(subject="group")
    np.testing.assert_allclose(tvu["difference"].sel(layer=trained_id).transpose(*g.sel(layer=trained_id).dims),
                               g.sel(layer=trained_id).values - g.sel(layer=untrained_id).values, rtol=1e-6)
    assert str(tvu["untrained_layer"].sel(layer=trained_id).values) == untrained_id


def test_to_square_model_rdms_matches_scipy(demo_catalog):
    models = res.open_model_rdms(demo_catalog)
    raw = xr.open_zarr(demo_catalog.path("model_rdms"))
    layer = str(raw["layer"].values[5])
    vec = raw["rdm"].sel(layer=layer).values
    want = squareform(vec)
    # as stored and as opened by mfrs.results: the one pair convention (stimulus_a/stimulus_b)
    sq_stored = to_square(raw["rdm"].sel(layer=layer))
    sq_labelled = to_square(res.flat_layers(models)["rdm"].sel(layer=layer))
    for sq in (sq_stored, sq_labelled):
        np.testing.assert_array_equal(sq.values, want)
        assert sq["stimulus_a"].values.tolist() == raw["stimulus"].values.tolist()


def test_model_rdms_written_before_pair_labels_reads_with_them():
    """A model_rdms store of before pair labels (positions pair_i/pair_j) opens with the labels of every store."""
    stim, cat = ["f1", "f2", "u1", "s1"], ["famous", "famous", "unfamiliar", "scrambled"]
    i, j = np.triu_indices(4, 1)
    old = xr.Dataset({"rdm": (("layer", "pair"), np.arange(12.0).reshape(2, 6))},
                     coords={"stimulus": stim, "category": ("stimulus", cat), "layer": ["m/w/a", "m/w/b"],
                             "pair_i": ("pair", i.astype("int32")), "pair_j": ("pair", j.astype("int32"))})
    got = res.labelled(old)
    assert "pair_i" not in got.coords
    assert got["stimulus_a"].values.tolist() == [stim[k] for k in i]
    assert got["category_b"].values.tolist() == [cat[k] for k in j]
    assert float(to_square(got["rdm"].isel(layer=1)).sel(stimulus_a="s1", stimulus_b="f2")) == squareform(
        np.arange(6.0, 12.0))[3, 1]
    with pytest.raises(InputDataError, match="pair_i/pair_j are not the row-major upper triangle"):
        res.labelled(old.assign_coords(pair_i=("pair", j), pair_j=("pair", i)))


def test_brain_rdm_equals_scipy_on_sources(demo_catalog, rsa):
    src = xr.open_zarr(demo_catalog.path("sources"))
    region, time = "FFA-lh", float(rsa["time"].values[20])
    verts = np.flatnonzero(src["region"].values == region)
    t = int(np.argmin(np.abs(src["time"].values - time)))
    x = src["activity"].isel(signal=0, time=t, vertex=verts).values.astype(np.float32)  # (subject, stimulus, vertex)
    subject_rdms = np.stack([pdist(x[s].astype(np.float64), "correlation") for s in range(x.shape[0])])
    got = res.brain_rdm(region=region, time=time, subject=None, catalog=demo_catalog)
    np.testing.assert_allclose(got.sel(subject="group").values, subject_rdms.mean(axis=0), atol=2e-5)
    np.testing.assert_allclose(got.sel(subject="sub-02").values, subject_rdms[1], atol=2e-5)
    assert got["stimulus_a"].values[0] == src["stimulus"].values[0]
    fam = res.brain_rdm(region=region, time=time, category="famous", catalog=demo_catalog)
    idx = np.flatnonzero(src["category"].values == "famous")
    np.testing.assert_allclose(fam.values, np.mean([pdist(x[s][idx].astype(np.float64), "correlation")
                                                    for s in range(x.shape[0])], axis=0), atol=2e-5)
    # the stage's r of the group RDM is the Spearman r of this RDM with the layer RDM
    models = xr.open_zarr(demo_catalog.path("model_rdms"))
    for k in (0, models.sizes["layer"] // 2, models.sizes["layer"] - 1):
        rho = spearmanr(got.sel(subject="group").values, models["rdm"].values[k]).statistic
        stored = rsa["r"].sel(subject="group", category="all", region=region).isel(signal=0, layer=k)
        assert float(stored.sel(time=time)) == pytest.approx(rho, abs=1e-4)
    with pytest.raises(InputDataError, match="region 'XX-lh' is not a region of rsa"):
        res.brain_rdm(region="XX-lh", time=time, catalog=demo_catalog)


def test_headline_and_truth_against_brute_force(rsa, demo_catalog):
    from mfrs.results.headline import headline, headline_sentences, read_truth, truth_vs_recovered

    raw = _stored(demo_catalog)
    sig = str(raw["signal"].values[0])
    rows = headline(rsa, signal=sig)
    r = raw["r"].sel(subject="group", signal=sig, category="all")
    pooled = (r.sel(region="FFA-lh") + r.sel(region="FFA-rh")) / 2  # (time, layer)
    for weights in ("imagenet", "untrained-seed0"):
        keep = raw["weights"].values == weights
        sub = pooled.values[:, keep]
        t, k = np.unravel_index(np.nanargmax(sub), sub.shape)
        row = next(x for x in rows if x["region"] == "FFA" and x["weights"] == weights)
        assert row["peak_time"] == pytest.approx(raw["time"].values[t])
        assert row["best_layer"] == raw["layer"].values[keep][k]
        assert row["trained"] == (weights == "imagenet")
    assert any(s.startswith("FFA: best layer mobilenet_v2/imagenet/") for s in headline_sentences(rows))
    truth = {"effects": [{"region": "FFA", "latency": 0.17, "labels": ["FFA-lh", "FFA-rh"],
                          "driver": {"network": "mobilenet_v2", "layer": "features.10"}},
                         {"region": "nowhere", "latency": 0.1, "labels": []}]}
    got = truth_vs_recovered(truth, rows)
    ffa = next(x for x in rows if x["region"] == "FFA" and x["trained"])
    assert got[0]["recovered_latency"] == ffa["peak_time"] and got[0]["driver"] == "features.10"
    assert got[0]["latency_error"] == pytest.approx(ffa["peak_time"] - 0.17)
    assert got[1]["recovered_latency"] is None
    planted = read_truth(demo_catalog)
    assert [e["region"] for e in planted["effects"]] and all("latency" in e for e in planted["effects"])
