"""Exports to rsatoolbox and MNE, checked by independent re-indexing of the stores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import squareform

import mfrs.results as res
from mfrs.errors import InputDataError
from mfrs.export import to_evoked, to_rsatoolbox, to_source_estimate


def test_to_rsatoolbox_model_rdms_roundtrip_and_inference(demo_catalog):
    import rsatoolbox

    models = res.open_model_rdms(demo_catalog).sel(weights="imagenet")
    raw = xr.open_zarr(demo_catalog.path("model_rdms")).load()
    rdms = to_rsatoolbox(models["rdm"])
    n_layer = models.sizes["layer"]
    assert rdms.n_rdm == n_layer and rdms.n_cond == raw.sizes["stimulus"]
    assert rdms.dissimilarity_measure == raw.attrs["provenance"]["parameters"]["metric"]
    assert rdms.pattern_descriptors["stimulus"] == raw["stimulus"].values.tolist()
    assert rdms.pattern_descriptors["category"] == raw["category"].values.tolist()
    for k in (0, n_layer - 1):
        layer = rdms.rdm_descriptors["layer"][k]
        want = squareform(raw["rdm"].sel(layer=layer).values)
        np.testing.assert_allclose(rdms.get_matrices()[k], want, rtol=1e-6)
        assert rdms.rdm_descriptors["depth"][k] == pytest.approx(float(raw["depth"].sel(layer=layer)))
    # feeds rsatoolbox's inference and plotting
    model = rsatoolbox.model.ModelFixed("last layer", rdms[n_layer - 1])
    result = rsatoolbox.inference.eval_fixed(model, rdms[np.arange(n_layer - 1)], method="spearman")
    assert np.isfinite(result.get_means()).all()
    fig, _, _ = rsatoolbox.vis.show_rdm(rdms[0], pattern_descriptor="category")
    assert fig is not None
    import matplotlib.pyplot as plt

    plt.close("all")


def test_to_rsatoolbox_brain_rdms_with_subjects(demo_catalog, rsa):
    brain = res.brain_rdm(region="V1-rh", time=float(rsa["time"].values[30]), subject=None, catalog=demo_catalog)
    rdms = to_rsatoolbox(brain)
    assert rdms.rdm_descriptors["subject"] == brain["subject"].values.tolist()
    np.testing.assert_allclose(rdms.get_vectors(), brain.values, rtol=1e-6)
    with pytest.raises(InputDataError, match="no 'pair'"):
        to_rsatoolbox(brain.isel(pair=0))


def test_to_source_estimate_vertices_in_freesurfer_order(demo_catalog):
    src = xr.open_zarr(demo_catalog.path("sources"))
    act = src["activity"].isel(subject=0, signal=0, stimulus=3).load()
    stc = to_source_estimate(act)
    hemi, fs = act["hemi"].values, act["fs_vertex"].values
    for h, verts in zip(("lh", "rh"), stc.vertices):
        assert np.all(np.diff(verts) > 0)
        assert sorted(verts.tolist()) == sorted(fs[hemi == h].tolist())
    # independent re-indexing: the row of (hemi, fs_vertex) holds that vertex's time course
    rng = np.random.default_rng(0)
    n_lh = stc.vertices[0].size
    for v in rng.choice(act.sizes["vertex"], 20, replace=False):
        h, f = hemi[v], fs[v]
        row = int(np.searchsorted(stc.vertices[0], f)) if h == "lh" else n_lh + int(np.searchsorted(stc.vertices[1], f))
        np.testing.assert_array_equal(stc.data[row], act.isel(vertex=v).values)
    assert stc.tmin == pytest.approx(float(act["time"].values[0]))
    assert stc.tstep == pytest.approx(float(np.diff(act["time"].values)[0]))
    assert stc.subject == "fsaverage"
    with pytest.raises(InputDataError, match="reduce dims"):
        to_source_estimate(src["activity"].isel(subject=0, signal=0))


def test_to_evoked_averages_stimuli(demo_catalog):
    ep = xr.open_zarr(demo_catalog.path("epochs"))
    sel = ep["data"].isel(subject=1, signal=0).sel(stimulus=ep["category"] == "famous").load()
    ev = to_evoked(sel, comment="famous")
    assert ev.nave == sel.sizes["stimulus"]
    assert ev.ch_names == [str(c) for c in ep["channel"].values]
    k = ev.ch_names.index(str(ep["channel"].values[7]))
    np.testing.assert_allclose(ev.data[k], sel.isel(channel=7).mean("stimulus").values, rtol=1e-6)
    assert ev.info["sfreq"] == pytest.approx(1 / float(np.diff(ep["time"].values)[0]))
    assert ev.get_channel_types()[k] == str(ep["ch_type"].values[7])
