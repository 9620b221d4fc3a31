"""Open the result stores with labels that select naturally.

:func:`labelled` is what :func:`open_rsa` and :func:`open_model_rdms` apply to a
store opened lazily from the catalog: every small coordinate (layer metadata,
region, hemi, category, pair labels) is loaded eagerly; the ``layer`` dim gets a
pandas MultiIndex over ``(network, weights, name)`` (the string ids stay in
``layer_id``), so ``ds.sel(weights="imagenet", name="features.12")`` works;
regions named ``<area>-lh``/``<area>-rh`` get ``hemi`` and ``area`` coords;
``model_rdms`` gets the pair coords of ``rsa`` (``stimulus_a``/``stimulus_b``,
``category_a``/``category_b``); and every variable carries ``attrs`` with a
description, its units and, for p-values, the family it corrects over (read from
the store's provenance, never assumed).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.store import load_small_coords

XrObj = TypeVar("XrObj", xr.Dataset, xr.DataArray)  # a function that keeps the kind of its argument

__all__ = ["labelled", "pair_labels", "open_rsa", "open_model_rdms", "layer_ids", "flat_layers", "layer_index",
           "LAYER_LEVELS"]

log = logging.getLogger(__name__)

#: The levels of the ``layer`` MultiIndex.
LAYER_LEVELS = ("network", "weights", "name")
_DIMENSIONLESS = "1"


def _family(name: str, params: dict[str, Any]) -> str | None:
    """The family a p-value variable corrects over, from the stage's parameters."""
    if name == "p":
        return "none: one test per (signal, category, region, time, layer)"
    if name == "p_fwe":
        dims = params.get("fwe_dims") or []
        return (f"max statistic over {', '.join(dims)} within each (signal, category"
                + "".join(f", {d}" for d in ("region", "time", "layer") if d not in dims) + ")")
    if name == "p_cluster":
        return "cluster mass over the whole time axis, within each (signal, category, region, layer)"
    return None


def _describe(name: str, params: dict[str, Any]) -> dict[str, str]:
    method = params.get("method", "spearman")
    metric = params.get("metric", "correlation")
    table = {
        "r": (f"{method} correlation between a brain RDM ({metric} distance between stimulus patterns of a "
              "region at a time) and a layer RDM; subject 'group' is the subject-mean brain RDM", _DIMENSIONLESS),
        "noise_ceiling_lower": (f"lower bound of the noise ceiling: mean {method} r of each subject's RDM with the "
                                "pool of the other subjects (leave one out)", _DIMENSIONLESS),
        "noise_ceiling_upper": (f"upper bound of the noise ceiling: mean {method} r of each subject's RDM with the "
                                "pool of all subjects", _DIMENSIONLESS),
        "noise_ceiling_split_half": ("split-half noise ceiling: r between the pooled RDMs of random halves of the "
                                     "subjects", _DIMENSIONLESS),
        "p": ("permutation p of the group r (stimulus relabellings), uncorrected", "p-value"),
        "p_fwe": ("family-wise corrected permutation p of the group r (max statistic)", "p-value"),
        "p_cluster": ("cluster-mass permutation p of the group r over time", "p-value"),
        "cluster_mass": ("summed excess of r over the cluster-forming threshold in the cluster holding each "
                         "time point", _DIMENSIONLESS),
        "cluster_threshold": ("cluster-forming threshold: the pointwise null quantile of r", _DIMENSIONLESS),
        "rdm": (f"dissimilarities ({metric}) of each stimulus pair, row-major upper triangle", metric),
    }
    if name not in table:
        return {}
    description, units = table[name]
    out = {"description": description, "units": units}
    if name == "rdm":
        out["metric"] = metric
    family = _family(name, params)
    if family:
        out["family"] = family
    return out


def _hemi_coords(ds: xr.Dataset) -> xr.Dataset:
    if "region" not in ds.dims or "hemi" in ds.coords:
        return ds
    names = [str(r) for r in ds["region"].values]
    hemi = [n.rsplit("-", 1)[1] if n.endswith(("-lh", "-rh")) else "both" for n in names]
    area = [n.rsplit("-", 1)[0] if h != "both" else n for n, h in zip(names, hemi)]
    return ds.assign_coords(hemi=("region", hemi), area=("region", area))


def layer_index(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with ``layer`` indexed by ``(network, weights, name)`` (string ids kept in ``layer_id``)."""
    if "layer" not in ds.dims or not set(LAYER_LEVELS) <= set(ds.coords):
        return ds
    if isinstance(ds.indexes.get("layer"), pd.MultiIndex):
        return ds
    ids = ds["layer"].values if "layer" in ds.coords else np.arange(ds.sizes["layer"])
    out = ds.assign_coords(layer_id=("layer", np.asarray(ids).astype(str))).drop_vars("layer", errors="ignore")
    return out.set_xindex(list(LAYER_LEVELS), xr.indexes.PandasMultiIndex)


def pair_labels(ds: xr.Dataset) -> xr.Dataset:
    """Stores written before pair labels (``model_rdms`` kept positions ``pair_i``/``pair_j``) read with
    the pair coords of every stored RDM (:func:`mfrs.similarity.pair_coords`)."""
    if "pair" not in ds.dims or "stimulus_a" in ds.coords or "pair_i" not in ds.coords or "stimulus" not in ds.coords:
        return ds
    from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords

    iu, ju = np.triu_indices(ds.sizes["stimulus"], 1)
    if not (np.array_equal(ds["pair_i"].values, iu) and np.array_equal(ds["pair_j"].values, ju)):
        raise InputDataError("model_rdms: pair_i/pair_j are not the row-major upper triangle "
                             "(np.triu_indices(n, 1)); the store was not written by mfrs' model_rdms stage")
    return ds.drop_vars(["pair_i", "pair_j"]).assign_coords(pair_coords(ds["stimulus"],
                                                                        with_coords=STORED_PAIR_COORDS))


def labelled(ds: xr.Dataset) -> xr.Dataset:
    """A result store with eager small coords, the layer MultiIndex, hemi/area and pair labels, and attrs.

    Parameters
    ----------
    ds : xarray.Dataset
        An ``rsa`` or ``model_rdms`` store as opened by :func:`mfrs.open` (lazy).

    Returns
    -------
    xarray.Dataset
        The same data variables (still lazy), relabelled.

    Examples
    --------
    >>> ds = xr.Dataset({"r": (("region", "layer"), [[0.1, 0.3]])},
    ...                 coords={"region": ["FFA-lh"], "layer": ["m/i/a", "m/i/b"], "network": ("layer", ["m", "m"]),
    ...                         "weights": ("layer", ["i", "i"]), "name": ("layer", ["a", "b"])})
    >>> float(labelled(ds).sel(weights="i", name="b")["r"].squeeze())
    0.3
    >>> labelled(ds)["hemi"].values.tolist()
    ['lh']
    """
    params = ds.attrs.get("provenance", {}).get("parameters", {})
    out = layer_index(pair_labels(_hemi_coords(load_small_coords(ds))))
    for name, var in out.data_vars.items():
        for key, value in _describe(str(name), params).items():
            var.attrs.setdefault(key, value)
    if "time" in out.coords:
        out["time"].attrs.setdefault("units", "s")
    return out


def _open(name: str, catalog: Any) -> xr.Dataset:
    from mfrs.catalog import Catalog, load_catalog

    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    return labelled(cat.open(name))


def open_rsa(catalog: Any = None) -> xr.Dataset:
    """The ``rsa`` store, labelled (see :func:`labelled`): ``r (subject, signal, category, region, time, layer)``..."""
    return _open("rsa", catalog)


def open_model_rdms(catalog: Any = None) -> xr.Dataset:
    """The ``model_rdms`` store, labelled: ``rdm (layer, pair)`` with the ``rsa`` pair coords."""
    return _open("model_rdms", catalog)


def layer_ids(obj: xr.Dataset | xr.DataArray) -> np.ndarray:
    """The string layer ids along ``layer`` (``network/weights/name``), MultiIndex or not."""
    if "layer_id" in obj.coords:
        return np.asarray(obj["layer_id"].values).astype(str)
    if "layer" in obj.coords:
        values = obj["layer"].values
        if values.dtype == object and values.size and isinstance(values.flat[0], tuple):
            return np.array(["/".join(map(str, v)) for v in values])
        return np.asarray(values).astype(str)
    return np.array([str(i) for i in range(obj.sizes["layer"])])


def flat_layers(obj: XrObj) -> XrObj:
    """``obj`` with a plain string ``layer`` index (the MultiIndex levels kept as plain coords).

    Selecting all levels of the MultiIndex but one leaves that level as the dim (xarray's
    MultiIndex rule, e.g. ``network`` after ``.sel(weights=..., name=...)``); it is
    renamed back to ``layer`` here.
    """
    left = [d for d in LAYER_LEVELS if d in obj.dims and "layer_id" in obj.coords and obj["layer_id"].dims == (d,)]
    if "layer" not in obj.dims and left:
        level = left[0]
        values = np.asarray(obj[level].values)
        obj = obj.drop_vars(level).rename({level: "layer"}).assign_coords({level: ("layer", values)})
    if "layer" not in obj.dims:
        return obj
    ids = layer_ids(obj)
    levels = {lvl: ("layer", np.asarray(obj[lvl].values).astype(str)) for lvl in LAYER_LEVELS
              if lvl in obj.coords and obj[lvl].dims == ("layer",)}
    scalars = {lvl: obj[lvl].values for lvl in LAYER_LEVELS if lvl in obj.coords and obj[lvl].ndim == 0}
    out = obj.drop_vars([c for c in ("layer", "layer_id", *LAYER_LEVELS) if c in obj.coords])
    out = out.assign_coords({"layer": ids, **levels})
    for lvl, value in scalars.items():  # a level fixed by .sel(...) is the same for every layer
        out = out.assign_coords({lvl: ("layer", np.full(ids.size, value).astype(str))})
    return out
