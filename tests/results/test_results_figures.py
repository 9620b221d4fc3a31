"""Figures read back from their Axes artists, against the stored numbers (brute force, not the figure code)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

import mfrs.figures as F
import mfrs.results as res
from mfrs.figures import NOISE_CEILING_LABEL

MS = 1e3


@pytest.fixture(scope="module")
def raw(demo_catalog):
    return xr.open_zarr(demo_catalog.path("rsa")).load()


def _pooled(raw: xr.Dataset, var: str, area: str) -> xr.DataArray:
    """Mean of the two hemispheres of ``area`` (the oracle of bilateral pooling)."""
    return (raw[var].sel(region=f"{area}-lh") + raw[var].sel(region=f"{area}-rh")) / 2


def _band_points(ax) -> set[tuple[float, float]]:
    bands = [c for c in ax.collections if c.get_label() == NOISE_CEILING_LABEL]
    assert len(bands) == 1
    return {(round(float(x), 4), round(float(y), 4)) for x, y in bands[0].get_paths()[0].vertices}


def _assert_band(ax, x, lower, upper):
    pts = _band_points(ax)
    for xi, lo, up in zip(x, lower, upper):
        assert (round(float(xi), 4), round(float(lo), 4)) in pts
        assert (round(float(xi), 4), round(float(up), 4)) in pts


def test_time_course_band_line_and_significance(rsa, raw):
    pooled = rsa.rsa.bilateral()
    fig = F.time_course(pooled, "FFA", category="all", alpha=0.05, p="p_fwe")
    ax = fig.axes[0]
    sig = raw["signal"].values[0]
    t = raw["time"].values
    lower = _pooled(raw, "noise_ceiling_lower", "FFA").sel(signal=sig, category="all").values
    upper = _pooled(raw, "noise_ceiling_upper", "FFA").sel(signal=sig, category="all").values
    _assert_band(ax, t * MS, lower, upper)
    r = _pooled(raw, "r", "FFA").sel(subject="group", signal=sig, category="all")  # (time, layer)
    lines = [ln for ln in ax.lines if ln.get_label().startswith("mobilenet_v2/")]
    assert len(lines) == 2
    for weights, line in zip(("imagenet", "untrained-seed0"), lines):
        keep = raw["weights"].values == weights
        sub = r.values[:, keep]
        ti, k = np.unravel_index(np.nanargmax(sub), sub.shape)
        best = raw["layer"].values[keep][k]
        assert line.get_label().startswith(best)
        np.testing.assert_allclose(line.get_ydata(), sub[:, k], rtol=1e-5)
        p = np.minimum(2 * np.minimum(raw["p_fwe"].sel(region="FFA-lh"), raw["p_fwe"].sel(region="FFA-rh")), 1)
        want = t[(p.sel(signal=sig, category="all", layer=best).values <= 0.05)] * MS
        marks = [c for c in ax.collections if c.get_label() == f"p_fwe <= 0.05: {weights}"]
        got = marks[0].get_offsets()[:, 0] if marks else np.array([])
        np.testing.assert_allclose(np.sort(got), np.sort(want))


def test_layer_profile_band_is_the_ceiling_at_the_peak(rsa, raw):
    pooled = rsa.rsa.bilateral()
    fig = F.layer_profile(pooled, "V1")
    ax = fig.axes[0]
    sig = raw["signal"].values[0]
    r = _pooled(raw, "r", "V1").sel(subject="group", signal=sig, category="all")
    ti, _ = np.unravel_index(np.nanargmax(r.values), r.shape)
    lo = float(_pooled(raw, "noise_ceiling_lower", "V1").sel(signal=sig, category="all")[ti])
    up = float(_pooled(raw, "noise_ceiling_upper", "V1").sel(signal=sig, category="all")[ti])
    _assert_band(ax, [0.0, 1.0], [lo, lo], [up, up])
    line = next(ln for ln in ax.lines if ln.get_label() == "mobilenet_v2 imagenet")
    keep = raw["weights"].values == "imagenet"
    np.testing.assert_allclose(line.get_xdata(), raw["depth"].values[keep])
    np.testing.assert_allclose(line.get_ydata(), np.nanmax(r.values[:, keep], axis=0), rtol=1e-5)


def test_trained_vs_untrained_lines(rsa, raw):
    fig = F.trained_vs_untrained(rsa.rsa.bilateral())
    assert [a.get_title() for a in fig.axes] == list(dict.fromkeys(str(r).rsplit("-", 1)[0]
                                                                   for r in raw["region"].values))
    sig = raw["signal"].values[0]
    r = _pooled(raw, "r", "OFA").sel(subject="group", signal=sig, category="all")
    for line in fig.axes[1].lines[:2]:
        weights = line.get_label().split()[-1]
        keep = raw["weights"].values == weights
        np.testing.assert_allclose(line.get_ydata(), np.nanmax(r.values[:, keep], axis=1), rtol=1e-5)


def test_category_panels_bands(rsa, raw):
    fig = F.category_panels(rsa.rsa.bilateral(), "STS")
    sig = raw["signal"].values[0]
    cats = [str(c) for c in raw["category"].values]
    assert [a.get_title() for a in fig.axes] == cats
    for ax, cat in zip(fig.axes, cats):
        lower = _pooled(raw, "noise_ceiling_lower", "STS").sel(signal=sig, category=cat).values
        upper = _pooled(raw, "noise_ceiling_upper", "STS").sel(signal=sig, category=cat).values
        _assert_band(ax, raw["time"].values * MS, lower, upper)


def test_rdm_comparison_images(demo_catalog, rsa):
    brain = res.brain_rdm(region="FFA-rh", time=float(rsa["time"].values[25]), catalog=demo_catalog)
    models = res.flat_layers(res.open_model_rdms(demo_catalog))
    model = models["rdm"].isel(layer=10).load()
    fig = F.rdm_comparison(brain, model)
    images = [a.images[0].get_array() for a in fig.axes if a.images]
    assert len(images) == 2
    src = xr.open_zarr(demo_catalog.path("sources"))
    order = np.argsort(src["category"].values.astype(str), kind="stable")
    for img, rdm in zip(images, (brain, model)):
        want = squareform(rankdata(rdm.values) / rdm.size * 100.0)[np.ix_(order, order)]
        np.testing.assert_allclose(np.asarray(img), want, rtol=1e-6)


def test_latency_summary_with_truth(demo_catalog, rsa, raw):
    from mfrs.demo.simulate import TRUTH_FILE

    truth = json.loads((demo_catalog.path("ds000117") / TRUTH_FILE).read_text())
    pk = rsa.rsa.bilateral().rsa.peaks().isel(signal=0).sel(category="all")
    fig = F.latency_summary(pk, truth=truth)
    ax = fig.axes[0]
    regions = [t.get_text() for t in ax.get_yticklabels()]
    rec = ax.collections[0].get_offsets()
    sig = raw["signal"].values[0]
    for (x, y) in rec:
        area = regions[int(y)]
        r = _pooled(raw, "r", area).sel(subject="group", signal=sig, category="all").values
        ti, _ = np.unravel_index(np.nanargmax(r), r.shape)
        assert x == pytest.approx(raw["time"].values[ti] * MS)
    planted = {(regions[int(y)], round(x, 6)) for x, y in ax.collections[1].get_offsets()}
    want = {(e["region"], round(e["latency"] * MS, 6)) for e in truth["effects"] if e["region"] in regions}
    assert planted == want and want


def test_cortex_values_and_map(demo_catalog, rsa, raw):
    import mne

    anat = demo_catalog.entry("anatomy")
    values = F.cortex_values(rsa, anat.path)
    sig = raw["signal"].values[0]
    labels = {lab.name: lab for lab in mne.read_labels_from_annot("fsaverage", "aparc_sub", subjects_dir=anat.path,
                                                                  verbose="error")}
    for region in raw["region"].values.astype(str):
        want = float(np.nanmax(raw["r"].sel(subject="group", signal=sig, category="all", region=region)))
        lab = labels[region]
        np.testing.assert_allclose(values[lab.hemi][lab.vertices], want, rtol=1e-6)
    analysed = np.zeros_like(values["lh"], dtype=bool)
    for region in raw["region"].values.astype(str):
        if region.endswith("-lh"):
            analysed[labels[region].vertices] = True
    assert np.isnan(values["lh"][~analysed]).all()
    fig = F.cortex_map(rsa, anat.path)
    assert sum(a.name == "3d" for a in fig.axes) == 4
    cbar = next(a for a in fig.axes if a.name != "3d")
    vmax = float(np.nanmax(np.abs(np.concatenate([values["lh"], values["rh"]]))))
    assert cbar.get_ylim() == pytest.approx((-vmax, vmax))


def test_figure_errors_name_the_label(rsa):
    from mfrs.errors import InputDataError

    with pytest.raises(InputDataError, match=r"region 'FFA' is not in the dataset \(regions: .*FFA-lh"):
        F.time_course(rsa, "FFA")
    with pytest.raises(InputDataError, match=r"category 'faces' is not one of \['all', 'famous'"):
        F.layer_profile(rsa, "FFA-lh", category="faces")
