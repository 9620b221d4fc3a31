"""The study's figures, each a function of result datasets returning a matplotlib Figure.

Figures are made without pyplot (``matplotlib.figure.Figure``), so they need no
display and leave no global state: save them with ``fig.savefig(...)``, show them
in Jupyter by evaluating them, or hand them to the report. Every function reads an
``rsa`` dataset as returned by :func:`mfrs.results.open_rsa` (optionally
:func:`mfrs.results.bilateral`-pooled or selected); ``signal`` defaults to the first.

Noise-ceiling bands are drawn with ``fill_between`` labelled ``noise ceiling``;
significant time points are a scatter labelled ``<p> <= <alpha>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.results.stores import flat_layers
from mfrs.results.summary import group_r, is_untrained, peaks

__all__ = ["layer_profile", "time_course", "trained_vs_untrained", "rdm_comparison", "category_panels",
           "latency_summary", "cortex_map", "cortex_values", "NOISE_CEILING_LABEL", "model_labels", "peak_r",
           "sensor_topomaps", "searchlight_map"]

NOISE_CEILING_LABEL = "noise ceiling"
_BAND = {"color": "0.8", "alpha": 0.7, "linewidth": 0}
_MS = 1e3  # seconds -> milliseconds on the axes


def _figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.0, height: float = 3.6, **kw: Any) -> tuple:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _one(ds: xr.Dataset, signal: str | None, category: str | None, region: str | None) -> xr.Dataset:
    """Select one signal, category and region by label (defaults: the first signal, ``all``)."""
    sel: dict[str, Any] = {}
    if "signal" in ds.dims:
        sel["signal"] = signal if signal is not None else ds["signal"].values[0]
    if "category" in ds.dims and category is not None:
        sel["category"] = category
    if region is not None:
        names = [str(r) for r in ds["region"].values]
        if region not in names:
            raise InputDataError(f"figure: region {region!r} is not in the dataset (regions: {', '.join(names)})")
        sel["region"] = region
    for dim, label in sel.items():
        labels = [str(v) for v in ds[dim].values]
        if str(label) not in labels:
            raise InputDataError(f"figure: {dim} {label!r} is not one of {labels}")
    return ds.sel(sel)


def model_labels(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The ``(network, weights)`` pairs along ``layer``, in order of appearance."""
    flat = flat_layers(ds)
    return list(dict.fromkeys(zip(np.asarray(flat["network"].values).astype(str),
                                  np.asarray(flat["weights"].values).astype(str))))


def _model(ds: xr.Dataset, network: str, weights: str) -> xr.Dataset:
    flat = flat_layers(ds)
    assert isinstance(flat, xr.Dataset)  # flat_layers keeps the kind of its argument
    keep = (flat["network"].values.astype(str) == network) & (flat["weights"].values.astype(str) == weights)
    return flat.isel(layer=np.flatnonzero(keep))


def _band(ax: Any, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    ax.fill_between(x, lower, upper, label=NOISE_CEILING_LABEL, **_BAND)


def layer_profile(ds: xr.Dataset, region: str, *, signal: str | None = None, category: str = "all") -> Any:
    """Best r of each layer (max over time) along layer depth, one line per network and weights.

    The noise-ceiling band is the ceiling at the region's peak time (the time of the
    highest r of any layer), over the whole depth axis.
    """
    one = _one(ds, signal, category, region)
    fig, axes = _figure()
    ax = axes[0, 0]
    pk = peaks(one)
    t_peak = float(pk["peak_time"])
    for network, weights in model_labels(one):
        sub = _model(one, network, weights)
        r = group_r(sub).max("time", skipna=True)
        style = "--" if is_untrained(weights) else "-"
        ax.plot(sub["depth"].values, r.values, style, marker="o", ms=3, label=f"{network} {weights}")
    if "noise_ceiling_lower" in one:
        at = one.sel(time=t_peak)
        _band(ax, np.array([0.0, 1.0]), np.repeat(float(at["noise_ceiling_lower"]), 2),
              np.repeat(float(at["noise_ceiling_upper"]), 2))
    ax.set(xlabel="layer depth (0 = input, 1 = output)", ylabel="best r over time",
           title=f"{region}: r along depth ({category}; ceiling at {t_peak * _MS:.0f} ms)")
    ax.legend(fontsize="small")
    return fig


def time_course(ds: xr.Dataset, region: str, *, signal: str | None = None, category: str = "all",
                alpha: float = 0.05, p: str = "p_fwe") -> Any:
    """r over time of each model's best layer (at its peak), the noise-ceiling band, significant times marked.

    For each ``(network, weights)``, the line is the layer holding that model's peak r
    in this region; markers under the lines are the times where that layer's ``p``
    is at most ``alpha``.
    """
    one = _one(ds, signal, category, region)
    fig, axes = _figure(width=6.5)
    ax = axes[0, 0]
    t = np.asarray(one["time"].values, float)
    if "noise_ceiling_lower" in one:
        _band(ax, t * _MS, one["noise_ceiling_lower"].values, one["noise_ceiling_upper"].values)
    models = model_labels(one)
    for k, (network, weights) in enumerate(models):
        sub = _model(one, network, weights)
        pk = peaks(sub)
        layer = str(pk["best_layer"].values)
        if not layer:
            continue
        r = group_r(sub).sel(layer=layer)
        line, = ax.plot(t * _MS, r.values, "--" if is_untrained(weights) else "-",
                        label=f"{layer} (peak {float(pk['peak_r']):.2f} at {float(pk['peak_time']) * _MS:.0f} ms)")
        if p in sub:
            sig = (sub[p].sel(layer=layer) <= alpha).values
            y = np.full(int(sig.sum()), -0.02 - 0.02 * k)
            ax.scatter(t[sig] * _MS, y, marker="|", color=line.get_color(), label=f"{p} <= {alpha}: {weights}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="time (ms)", ylabel="r", title=f"{region}: best layer over time ({category})")
    ax.legend(fontsize="x-small")
    return fig


def trained_vs_untrained(ds: xr.Dataset, *, regions: list[str] | None = None, signal: str | None = None,
                         category: str = "all") -> Any:
    """Per region, the best r over layers at each time for each (network, weights): trained vs untrained."""
    one = _one(ds, signal, category, None)
    regions = regions or [str(r) for r in one["region"].values]
    fig, axes = _figure(ncols=len(regions), width=3.6, sharey=True)
    t = np.asarray(one["time"].values, float) * _MS
    for ax, region in zip(axes[0], regions):
        reg = one.sel(region=region)
        for network, weights in model_labels(reg):
            env = group_r(_model(reg, network, weights)).max("layer", skipna=True)
            ax.plot(t, env.values, "--" if is_untrained(weights) else "-", label=f"{network} {weights}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=region, xlabel="time (ms)")
    axes[0, 0].set_ylabel("best r over layers")
    axes[0, 0].legend(fontsize="x-small")
    fig.suptitle(f"trained vs untrained ({category})")
    return fig


def _category_order(rdm: xr.DataArray) -> np.ndarray:
    from mfrs.similarity.xarray import stimuli_of

    if "category_a" not in rdm.coords:
        return np.arange(stimuli_of(rdm).size)
    return np.argsort(stimuli_of(rdm, coord="category").astype(str), kind="stable")


def rdm_comparison(brain: xr.DataArray, model: xr.DataArray, *, titles: tuple[str, str] | None = None) -> Any:
    """A brain RDM beside a layer RDM (both ``(pair,)``), stimuli ordered by category.

    Each panel shows the dissimilarities as ranks (percentiles), as RSA compares them.
    """
    from scipy.stats import rankdata

    from mfrs.similarity.xarray import to_square

    fig, axes = _figure(ncols=2, width=4.2, height=4.0)
    titles = titles or (str(brain.attrs.get("description", "brain RDM")), str(model.name or "model RDM"))
    for ax, rdm, title in zip(axes[0], (brain, model), titles):
        order = _category_order(rdm)
        ranked = rankdata(rdm.values) / rdm.size * 100.0
        sq_rank = to_square(rdm.copy(data=ranked)).values[np.ix_(order, order)]
        np.fill_diagonal(sq_rank, 0.0)
        im = ax.imshow(sq_rank, cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        if "category_a" in rdm.coords:
            _category_ticks(ax, rdm, order)
    fig.colorbar(im, ax=axes[0].tolist(), label="dissimilarity percentile", shrink=0.8)
    return fig


def _category_ticks(ax: Any, rdm: xr.DataArray, order: np.ndarray) -> None:
    n = order.size
    cat = np.empty(n, dtype=object)
    iu, ju = np.triu_indices(n, 1)
    cat[iu], cat[ju] = rdm["category_a"].values, rdm["category_b"].values
    ordered = cat[order].astype(str)
    names = list(dict.fromkeys(ordered))
    centers = [np.flatnonzero(ordered == c).mean() for c in names]
    ax.set_yticks(centers, names, fontsize="x-small")


def category_panels(ds: xr.Dataset, region: str, *, signal: str | None = None, weights: str | None = None) -> Any:
    """One panel per stimulus category: r over time of that category's best layer, with its noise ceiling.

    ``weights`` (default: the first trained weights) chooses the model.
    """
    one = _one(ds, signal, None, region)
    models = model_labels(one)
    trained = [m for m in models if not is_untrained(m[1])] or models
    network, weights = next(((n, w) for n, w in models if w == weights), trained[0])
    sub = _model(one, network, weights)
    cats = [str(c) for c in one["category"].values]
    fig, axes = _figure(ncols=len(cats), width=3.4, sharey=True)
    t = np.asarray(one["time"].values, float)
    for ax, cat in zip(axes[0], cats):
        c = sub.sel(category=cat)
        if "noise_ceiling_lower" in c:
            _band(ax, t * _MS, c["noise_ceiling_lower"].values, c["noise_ceiling_upper"].values)
        pk = peaks(c)
        layer = str(pk["best_layer"].values)
        if layer:
            ax.plot(t * _MS, group_r(c).sel(layer=layer).values, label=layer.split("/")[-1])
            ax.legend(fontsize="x-small")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=cat, xlabel="time (ms)")
    axes[0, 0].set_ylabel("r")
    fig.suptitle(f"{region}: per category ({network} {weights})")
    return fig


def latency_summary(pk: xr.Dataset, *, truth: dict[str, Any] | None = None) -> Any:
    """Peak latency (and peak r) per region; planted latencies (``truth.json`` effects) as open markers.

    ``pk``: :func:`mfrs.results.peaks` of one signal and category (``(region,)``).
    """
    regions = [str(r) for r in pk["region"].values]
    fig, axes = _figure(ncols=2, width=4.5)
    y = np.arange(len(regions))
    lat = pk["peak_time"].values * _MS
    axes[0, 0].scatter(lat, y, label="recovered peak", zorder=3)
    if truth:
        planted = {}
        for eff in truth.get("effects", []):
            for name in [eff.get("region"), *eff.get("labels", [])]:
                if name in regions and "latency" in eff:
                    planted[name] = float(eff["latency"]) * _MS
        ys = [regions.index(n) for n in planted]
        axes[0, 0].scatter(list(planted.values()), ys, facecolors="none", edgecolors="r", s=80,
                           label="planted latency", zorder=4)
    axes[0, 0].set(yticks=y, yticklabels=regions, xlabel="peak latency (ms)", title="when")
    axes[0, 0].legend(fontsize="x-small")
    axes[0, 1].barh(y, pk["peak_r"].values)
    axes[0, 1].set(yticks=y, yticklabels=regions, xlabel="peak r", title="how much")
    return fig


def cortex_values(ds: xr.Dataset, subjects_dir: str | Path, *, subject: str = "fsaverage",
                  parcellation: str = "aparc_sub", signal: str | None = None,
                  category: str = "all") -> dict[str, np.ndarray]:
    """Per surface vertex of each hemisphere, the peak r of its region (NaN outside the regions of ``ds``).

    ``ds`` holds per-hemisphere regions (``<label>-lh``); labels come from
    ``<subjects_dir>/<subject>/label/<hemi>.<parcellation>.annot``.
    """
    import nibabel.freesurfer as fs

    one = _one(ds, signal, category, None)
    pk = peaks(one)
    peak = dict(zip([str(r) for r in pk["region"].values], pk["peak_r"].values.astype(float)))
    out = {}
    for hemi in ("lh", "rh"):
        path = Path(subjects_dir) / subject / "label" / f"{hemi}.{parcellation}.annot"
        if not path.exists():
            raise InputDataError(f"cortex map: {path} does not exist; the 'anatomy' catalog entry must hold "
                                 f"{subject} with the {parcellation} parcellation")
        labels, _, names = fs.read_annot(str(path))
        table = np.array([peak.get(f"{n.decode() if isinstance(n, bytes) else n}-{hemi}", np.nan)
                          for n in names] + [np.nan])
        out[hemi] = table[np.where(labels >= 0, labels, len(names))]
    return out


def cortex_map(ds: xr.Dataset, subjects_dir: str | Path, *, subject: str = "fsaverage",
               parcellation: str = "aparc_sub", signal: str | None = None, category: str = "all") -> Any:
    """Peak r per region painted on the inflated fsaverage cortex (lateral and ventral views, both hemispheres).

    Drawn with nilearn's matplotlib engine (no OpenGL, no network).
    """
    import nibabel.freesurfer as fs
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from nilearn.plotting import plot_surf_stat_map

    values = cortex_values(ds, subjects_dir, subject=subject, parcellation=parcellation, signal=signal,
                           category=category)
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = []
    for k, (hemi, view) in enumerate([("lh", "lateral"), ("lh", "ventral"), ("rh", "ventral"), ("rh", "lateral")]):
        ax = fig.add_subplot(1, 4, k + 1, projection="3d")
        surf = Path(subjects_dir) / subject / "surf" / f"{hemi}.inflated"
        coords, faces = fs.read_geometry(str(surf))
        stat = np.nan_to_num(values[hemi], nan=0.0)
        plot_surf_stat_map((coords, faces), stat, hemi="left" if hemi == "lh" else "right", view=view,
                           engine="matplotlib", colorbar=False, axes=ax, figure=fig, vmax=vmax,
                           threshold=1e-6, cmap="cold_hot", bg_on_data=False, symmetric_cbar=True)
        ax.set_title(f"{hemi} {view}", fontsize="small")
        axes.append(ax)
    fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), cmap="cold_hot"), ax=axes, shrink=0.6,
                 label=f"peak r over time and layers ({category})")
    return fig



def peak_r(ds: xr.Dataset, *, signal: str | None = None, category: str = "all") -> xr.DataArray:
    """Peak r of the subject-mean RDM over time and every layer, per element of a set RSA store.

    ``ds``: ``rsa_sensors`` or ``searchlight`` (``r (subject, signal, category, <set>, time, layer)``).
    """
    one = _one(ds, signal, category, None)
    r = one["r"].sel(subject="group") if "subject" in one["r"].dims else one["r"]
    return r.max(["time", "layer"], skipna=True)


def sensor_topomaps(ds: xr.Dataset, *, signal: str | None = None, category: str = "all") -> Any:
    """Topomaps of the peak r of each sensor neighbourhood: magnetometers and the two gradiometer orientations.

    ``ds`` is an ``rsa_sensors`` store; positions come from MNE's ``Vectorview-all``
    layout, drawn with ``mne.viz.plot_topomap``. Each panel's title holds the peak r
    of that channel type taken as one set, when the store has it.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from mne.viz import plot_topomap

    from mfrs.similarity.sensors import gradiometer_orientation, sensor_positions

    peak = peak_r(ds, signal=signal, category=category)
    kind = np.asarray(ds["set_kind"].values).astype(str)
    names = np.asarray(ds["channel"].values).astype(str)
    ch_type = np.asarray(ds["ch_type"].values).astype(str)
    near = kind == "neighbourhood"
    panels = [("mag", "magnetometers", near & (ch_type == "mag"))]
    orient = np.array([gradiometer_orientation(n) for n in names])
    panels += [(o, f"gradiometers ({o})", near & (ch_type == "grad") & (orient == o)) for o in ("grad1", "grad2")]
    panels = [p for p in panels if p[2].any()]
    if not panels:
        raise InputDataError("sensor topomaps: rsa_sensors holds no sensor neighbourhood (run sensor_rsa with "
                             "neighbourhoods: true)")
    values = peak.values
    vmax = float(np.nanmax(values[near])) if np.isfinite(values[near]).any() else 1.0
    fig, axes = _figure(len(panels), 1, width=3.4, height=3.4)
    pos = sensor_positions(names.tolist())
    for ax, (t, title, sel) in zip(axes[0], panels):
        xy = (pos[sel] - 0.5) * 0.2  # layout units (0..1) to a head of radius 0.1
        plot_topomap(values[sel], xy, axes=ax, show=False, sphere=0.1, cmap="Reds", vlim=(0.0, vmax), contours=0)
        whole = t if t == "mag" else "grad"
        extra = (f"; all {whole}: {float(peak.sel(channel=whole)):.2f}" if whole in names.tolist() else "")
        ax.set_title(f"{title}\npeak r {np.nanmax(values[sel]):.2f}{extra}", fontsize="small")
    fig.colorbar(ScalarMappable(Normalize(0.0, vmax), cmap="Reds"), ax=axes[0].tolist(), shrink=0.7,
                 label=f"peak r over time and layers ({category})")
    return fig


def searchlight_map(ds: xr.Dataset, *, signal: str | None = None, category: str = "all",
                    highlight: list[str] | None = None) -> Any:
    """Peak r of every searchlight centre on its white-surface position (lateral and ventral views).

    ``ds`` is a ``searchlight`` store (centre coords ``x, y, z`` in mm, ``hemi``,
    ``region``). Centres of the regions named in ``highlight`` (prefixes such as
    ``FFA``; e.g. the regions a simulation planted) are ringed in black.
    """
    peak = peak_r(ds, signal=signal, category=category).values
    hemi = np.asarray(ds["hemi"].values).astype(str)
    xyz = np.c_[ds["x"].values, ds["y"].values, ds["z"].values]
    region = np.asarray(ds["region"].values).astype(str) if "region" in ds.coords else np.full(hemi.size, "")
    ring = np.zeros(hemi.size, bool)
    for h in highlight or []:
        ring |= np.char.startswith(region, f"{h}-") | (region == h)
    finite = np.isfinite(peak)
    vmax = float(np.nanmax(peak)) if finite.any() else 1.0
    views = [("lh", "lateral", 0.0, 180.0), ("lh", "ventral", -90.0, 180.0), ("rh", "ventral", -90.0, 0.0),
             ("rh", "lateral", 0.0, 0.0)]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.4), layout="constrained")
    order = np.argsort(np.nan_to_num(peak, nan=-np.inf))  # strongest drawn last (on top)
    for k, (h, view, elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, 4, k + 1, projection="3d")
        sel = order[hemi[order] == h]
        sc = ax.scatter(*xyz[sel].T, c=peak[sel], cmap="Reds", vmin=0.0, vmax=vmax, s=12, depthshade=False)
        rim = sel[ring[sel]]
        if rim.size:
            ax.scatter(*xyz[rim].T, facecolors="none", edgecolors="k", s=30, linewidths=0.6, depthshade=False)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_title(f"{h} {view}", fontsize="small")
    fig.colorbar(sc, ax=fig.axes, shrink=0.6, label=f"peak r over time and layers ({category})")
    return fig
