"""Answers over an ``rsa`` dataset: best layers, peaks, bilateral pooling, significance, trained vs untrained.

Pure functions of a (labelled or raw) ``rsa`` Dataset, reducing only the dims they
name; every other dim (``signal``, ``category``, ``region``...) is kept. ``subject``
is chosen by label (default ``group``, the subject-mean RDM).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.results.stores import flat_layers, layer_ids, layer_index

__all__ = ["group_r", "best_layer", "peaks", "bilateral", "significant", "trained_vs_untrained", "p_variables",
           "is_untrained"]

_LAYER_COORDS = ("network", "weights", "name", "depth", "kind")


def _need(ds: xr.Dataset, *names: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise InputDataError(f"rsa results: the dataset has no {missing}; it holds {sorted(map(str, ds.data_vars))}. "
                             "Open the store with mfrs.results.open_rsa()")


def group_r(ds: xr.Dataset, subject: str = "group") -> xr.DataArray:
    """``r`` of one subject label (default ``group``): ``(..., layer)`` without the subject dim."""
    _need(ds, "r")
    r = ds["r"]
    if "subject" in r.dims:
        labels = [str(s) for s in ds["subject"].values]
        if subject not in labels:
            raise InputDataError(f"rsa results: subject {subject!r} is not in the store (subjects: {labels}); "
                                 "'group' is the subject-mean RDM")
        r = r.sel(subject=subject)
    return r.drop_vars("subject", errors="ignore")


def p_variables(ds: xr.Dataset) -> list[str]:
    """Names of the p-value variables (attrs ``units == 'p-value'``, or named ``p``/``p_*``)."""
    return [str(k) for k, v in ds.data_vars.items()
            if v.attrs.get("units") == "p-value" or k == "p" or str(k).startswith("p_")]


def _argmax(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of the max along the last axis, NaN skipped (index -1 where all are NaN)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    idx = filled.argmax(axis=-1)
    best = np.take_along_axis(values, idx[..., None], axis=-1)[..., 0]
    allnan = np.isnan(values).all(axis=-1)
    return np.where(allnan, -1, idx), np.where(allnan, np.nan, best)


def best_layer(ds: xr.Dataset, *, subject: str = "group") -> xr.Dataset:
    """The layer of highest r at every (signal, category, region, time).

    Parameters
    ----------
    ds : xarray.Dataset
        An ``rsa`` dataset (any selection keeping ``layer``).
    subject : str
        Subject label; ``group`` is the subject-mean RDM.

    Returns
    -------
    xarray.Dataset
        ``best_layer`` (layer id ``network/weights/name``), ``r`` (its r) and the
        layer's ``network``, ``weights``, ``name``, ``depth`` over the dims of ``r``
        but ``layer``; empty string and NaN where every r is NaN.
    """
    r = flat_layers(group_r(ds, subject))
    dims = [d for d in r.dims if d != "layer"]
    values = r.transpose(*dims, "layer").values
    idx, best = _argmax(values)
    ids = layer_ids(r)
    pick = np.where(idx >= 0, idx, 0)
    out = xr.Dataset({"best_layer": (dims, np.where(idx >= 0, ids[pick], "")),
                      "r": (dims, best, dict(r.attrs))},
                     coords={k: v for k, v in r.coords.items() if "layer" not in v.dims})
    for c in _LAYER_COORDS:
        if c in r.coords and r[c].dims == ("layer",):
            vals = np.asarray(r[c].values)
            out[c] = (dims, np.where(idx >= 0, vals[pick], np.nan if vals.dtype.kind == "f" else ""))
    out["best_layer"].attrs["description"] = "layer of highest r (NaN skipped)"
    return out


def peaks(ds: xr.Dataset, *, subject: str = "group") -> xr.Dataset:
    """Peak of r over time and layer, per (signal, category, region).

    Every other variable of ``ds`` without a ``subject`` dim (noise ceilings, p-values,
    whatever the store holds) is read at the peak: at the peak time, and at the peak
    layer when it has a ``layer`` dim.

    Returns
    -------
    xarray.Dataset
        ``peak_r``, ``peak_time`` (s), ``best_layer`` (id) with ``network``/``weights``/``name``/``depth``,
        and one variable per other variable of ``ds``.
    """
    r = flat_layers(group_r(ds, subject))
    if "time" not in r.dims:
        raise InputDataError("rsa results: peaks need a 'time' dim; do not select a single time first")
    dims = [d for d in r.dims if d not in ("time", "layer")]
    values = r.transpose(*dims, "time", "layer").values
    n_t, n_l = values.shape[-2:]
    idx, best = _argmax(values.reshape(*values.shape[:-2], n_t * n_l))
    ok = idx >= 0
    ti, li = np.where(ok, idx // n_l, 0), np.where(ok, idx % n_l, 0)
    times = np.asarray(r["time"].values, dtype=float)
    ids = layer_ids(r)
    coords = {k: v for k, v in r.coords.items() if not {"layer", "time"} & set(v.dims)}
    out = xr.Dataset({"peak_r": (dims, best, dict(r.attrs)),
                      "peak_time": (dims, np.where(ok, times[ti], np.nan), {"units": "s"}),
                      "best_layer": (dims, np.where(ok, ids[li], ""))}, coords=coords)
    for c in _LAYER_COORDS:
        if c in r.coords and r[c].dims == ("layer",):
            vals = np.asarray(r[c].values)
            out[c] = (dims, np.where(ok, vals[li], np.nan if vals.dtype.kind == "f" else ""))
    t_ix = xr.DataArray(ti, dims=dims)
    l_ix = xr.DataArray(li, dims=dims)
    for name, var in ds.data_vars.items():
        if name == "r" or "subject" in var.dims or "time" not in var.dims or "pair" in var.dims:
            continue
        if not set(var.dims) - {"time", "layer"} <= set(dims):
            continue
        sel = {"time": t_ix} | ({"layer": l_ix} if "layer" in var.dims else {})
        flat = flat_layers(var)
        along = [c for c, v in flat.coords.items()  # layer metadata (also scalar after a .sel), time
                 if {"time", "layer"} & set(v.dims) or c in (*_LAYER_COORDS, "layer_id", "units")]
        picked = flat.isel(sel).drop_vars(along, errors="ignore").compute()
        out[name] = picked.where(xr.DataArray(ok, dims=dims)).transpose(*[d for d in dims if d in picked.dims])
        out[name].attrs = dict(var.attrs)
    return out


def bilateral(ds: xr.Dataset) -> xr.Dataset:
    """Pool ``<area>-lh`` and ``<area>-rh`` regions into one region ``<area>``.

    r and noise ceilings are averaged over the two hemispheres; p-values become the
    smaller of the two times 2 (Bonferroni over hemispheres, capped at 1); other
    variables (cluster masses, RDMs) are dropped. Regions without a partner are kept
    as they are.

    Returns
    -------
    xarray.Dataset
        ``region`` holds area names in the order of first appearance; coord ``n_hemispheres``.
    """
    if "region" not in ds.dims:
        raise InputDataError("rsa results: bilateral pooling needs a 'region' dim")
    indexed = "layer_id" in ds.coords
    ds = flat_layers(ds)
    names = [str(r) for r in ds["region"].values]
    area = [n.rsplit("-", 1)[0] if n.endswith(("-lh", "-rh")) else n for n in names]
    order = list(dict.fromkeys(area))
    pvars = set(p_variables(ds))
    keep = [k for k, v in ds.data_vars.items() if "region" in v.dims and "pair" not in v.dims
            and (k in pvars or k == "r" or str(k).startswith("noise_ceiling"))]
    base = ds[keep].drop_vars([c for c in ("hemi", "area") if c in ds.coords])
    parts = []
    for a in order:
        members = [n for n, x in zip(names, area) if x == a]
        sub = base.sel(region=members)
        pooled = xr.Dataset(attrs=ds.attrs)
        for k in keep:
            if k in pvars:
                pooled[k] = np.minimum(sub[k].min("region", skipna=False) * len(members), 1.0)
                pooled[k].attrs = {**ds[k].attrs, "pooling": f"Bonferroni over {len(members)} hemisphere(s): "
                                                             "min p times their number, capped at 1"}
            else:
                pooled[k] = sub[k].mean("region", skipna=False)
                pooled[k].attrs = {**ds[k].attrs, "pooling": f"mean over {len(members)} hemisphere(s)"}
        parts.append(pooled.expand_dims(region=[a]).assign_coords(n_hemispheres=("region", [len(members)])))
    out = xr.concat(parts, dim="region", data_vars="all", coords="different", compat="equals",
                    combine_attrs="override")
    return layer_index(out) if indexed else out


def significant(ds: xr.Dataset, *, alpha: float = 0.05, p: str = "p_fwe") -> xr.DataArray:
    """Boolean mask ``p <= alpha`` of a p-value variable (False where p is NaN).

    The mask's attrs name the variable, alpha and the family it corrects over.
    """
    if not 0 < alpha < 1:
        raise InputDataError(f"rsa results: alpha={alpha} must lie in (0, 1)")
    if p not in ds.data_vars:
        raise InputDataError(f"rsa results: no p-value variable {p!r}; the store has {p_variables(ds)} "
                             "(run the similarity stage with n_permutations > 0, and cluster: true for p_cluster)")
    mask = (ds[p] <= alpha).where(ds[p].notnull(), False).astype(bool)
    mask.attrs = {"description": f"{p} <= {alpha}", "alpha": alpha, "p": p,
                  "family": ds[p].attrs.get("family", "unknown")}
    return mask.rename(f"significant_{p}")


def is_untrained(weights: str) -> bool:
    """Whether a ``weights`` label is a random initialisation (``untrained-seed<N>``)."""
    return str(weights).startswith("untrained")


def trained_vs_untrained(ds: xr.Dataset, *, subject: str = "group") -> xr.Dataset:
    """r of each trained layer beside the same layer of the untrained network, and their difference.

    Layers are paired by ``(network, name)``; every trained weights of a network is
    paired with that network's first untrained weights.

    Returns
    -------
    xarray.Dataset
        ``trained``, ``untrained``, ``difference`` (trained - untrained) over the dims of r,
        ``layer`` holding the trained layer ids, coord ``untrained_layer``.
    """
    r = flat_layers(group_r(ds, subject))
    for c in ("network", "weights", "name"):
        if c not in r.coords:
            raise InputDataError(f"rsa results: trained vs untrained needs layer coord {c!r}")
    net, wts, name = (np.asarray(r[c].values).astype(str) for c in ("network", "weights", "name"))
    ids = layer_ids(r)
    untrained: dict[tuple[str, str], dict[str, str]] = {}  # (network, weights) -> layer name -> id
    for n, w, nm, i in zip(net, wts, name, ids):
        if is_untrained(w):
            untrained.setdefault((n, w), {})[nm] = i
    first_untrained: dict[str, dict[str, str]] = {}
    for (n, _w), layers in untrained.items():
        first_untrained.setdefault(n, layers)
    pairs = [(i, first_untrained[n][nm]) for n, w, nm, i in zip(net, wts, name, ids)
             if not is_untrained(w) and nm in first_untrained.get(n, {})]
    if not pairs:
        raise InputDataError(f"rsa results: no trained layer has an untrained twin (weights present: "
                             f"{sorted(set(wts))}); add an untrained-seed<N> network to the model_rdms stage")
    t_ids, u_ids = zip(*pairs)
    trained = r.sel(layer=list(t_ids))
    other = r.sel(layer=list(u_ids)).assign_coords(layer=list(t_ids))
    out = xr.Dataset({"trained": trained, "untrained": other.drop_vars([c for c in _LAYER_COORDS
                                                                       if c in other.coords]),
                      "difference": trained - other.drop_vars([c for c in _LAYER_COORDS if c in other.coords])})
    out = out.assign_coords(untrained_layer=("layer", list(u_ids)))
    out["difference"].attrs = {"description": "r(trained) - r(untrained) of the same layer", "units": "1"}
    return out
