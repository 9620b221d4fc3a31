"""Topomaps of sensor RSA and the searchlight cortex map, on small synthetic stores (values checked by brute force)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfrs import figures


def _set_store(set_dim: str, labels: list[str], coords: dict, rng: np.random.Generator) -> xr.Dataset:
    r = rng.uniform(-0.1, 0.5, (3, 1, 1, len(labels), 4, 2)).astype(np.float32)
    return xr.Dataset({"r": (("subject", "signal", "category", set_dim, "time", "layer"), r)},
                      coords={"subject": ["sub-01", "sub-02", "group"], "signal": ["broadband"], "category": ["all"],
                              set_dim: labels, "time": [0.0, 0.1, 0.2, 0.3], "layer": ["l0", "l1"], **coords})


def test_sensor_topomaps_show_each_orientation_peak():
    import mne

    rng = np.random.default_rng(0)
    names = [str(n).replace("MEG ", "MEG") for n in mne.channels.read_layout("Vectorview-all").names]
    labels = names + ["mag", "grad"]
    types = ["mag" if n.endswith("1") else "grad" for n in names] + ["mag", "grad"]
    kinds = ["neighbourhood"] * len(names) + ["channel_type"] * 2
    ds = _set_store("channel", labels, {"ch_type": ("channel", types), "set_kind": ("channel", kinds)}, rng)
    fig = figures.sensor_topomaps(ds)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3
    peak = ds.r.sel(subject="group").max(["time", "layer"]).squeeze()
    for title, suffix in zip(titles, ("1", "2", "3")):
        sel = [n for n in names if n.endswith(suffix)]
        whole = "mag" if suffix == "1" else "grad"
        assert f"peak r {float(peak.sel(channel=sel).max()):.2f}" in title
        assert f"all {whole}: {float(peak.sel(channel=whole)):.2f}" in title


def test_searchlight_map_colours_peaks_and_rings_highlighted_regions():
    rng = np.random.default_rng(1)
    n = 40
    hemi = np.repeat(["lh", "rh"], n // 2)
    region = np.where(np.arange(n) % 5 == 0, np.char.add("FFA-", hemi), np.char.add("r001-", hemi))
    xyz = rng.uniform(-50, 50, (n, 3))
    ds = _set_store("vertex", list(range(n)), {"hemi": ("vertex", hemi), "region": ("vertex", region),
                                               "x": ("vertex", xyz[:, 0]), "y": ("vertex", xyz[:, 1]),
                                               "z": ("vertex", xyz[:, 2])}, rng)
    fig = figures.searchlight_map(ds, highlight=["FFA"])
    views = [ax for ax in fig.axes if ax.get_title()]
    assert len(views) == 4
    peak = ds.r.sel(subject="group").max(["time", "layer"]).squeeze().values
    lh = views[0]
    colours = np.asarray(lh.collections[0].get_array())
    np.testing.assert_allclose(np.sort(colours), np.sort(peak[hemi == "lh"]), rtol=1e-6)
    assert len(lh.collections[1].get_offsets()) == ((hemi == "lh") & (region == "FFA-lh")).sum()
