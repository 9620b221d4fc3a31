"""Family-wise statistics of the similarity stage whose family spans several blocks.

A task sees one region block x time block, but a family chosen by ``fwe_dims`` (say
every time point and layer of a region) or the time axis of a cluster test may be
cut into several blocks. Each block then writes a small summary of its permutation
null into a side store inside ``rsa`` (same units, same fingerprint):

- ``fwe_null_max (signal, category, perm, region | region_block, time | time_block[, layer])``:
  the per-permutation maximum over the block's part of the family;
- ``cluster_{inner,left,right,full} (signal, category, perm, region, time_block, layer)``:
  what the block contributes to the largest null cluster mass of each time series
  (:func:`mfrs.similarity.inference.run_summary`).

Once every block is complete, the stage's final task (``mfrs/stages/_similarity_final.py``,
which owns the side stores) merges the summaries with :func:`final_fwe_p` (a max over
blocks), :func:`family_null_max` and :func:`clusters_of_regions` (runs joined across block
edges, then the largest cluster mass over every time series of the family) and writes
``p_fwe`` / ``p_cluster`` / ``cluster_mass`` as the ``rsa`` store's final variables. The numbers are those of one block holding the
whole family, which is what a block does when the family fits in it (then nothing
is deferred).

The family of ``p_cluster`` is that of ``p_fwe`` with clusters along time: the null of
the largest cluster mass is the maximum over every (region, layer) time course that
``fwe_dims`` names, so ``p_cluster`` controls the family-wise error as ``p_fwe`` does.
Only ``cluster_family: per_layer`` takes it per time course (the error of one layer's
time course). :meth:`Families.attrs` says which family each p corrects over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from mfrs.similarity.inference import RUN_PARTS

__all__ = ["Families", "families", "summary_templates", "block_statistics", "family_null_max",
           "clusters_of_regions", "final_fwe_p"]

_AXIS = {"region": 0, "time": 1, "layer": 2}
_SERIES_AXIS = {"region": 0, "layer": 1}  # axes of a time course's statistic once time is dropped
FWE_STORE = "fwe_null_max"
CLUSTER_STORE = "cluster_null_runs"


@dataclass(frozen=True)
class Families:
    """Which family statistics are asked for and whether their families span several blocks."""

    fwe_dims: tuple[str, ...]
    fwe_split: bool
    cluster: bool
    cluster_split: bool
    cluster_alpha: float
    two_sided: bool
    #: dims besides time over which the largest null cluster mass is maximised (``region``, ``layer``)
    cluster_dims: tuple[str, ...] = ()

    @property
    def final_variables(self) -> tuple[str, ...]:
        """``rsa`` variables written by the final task instead of by the blocks."""
        return (("p_fwe",) if self.fwe_split else ()) + (("p_cluster", "cluster_mass") if self.cluster_split else ())

    def attrs(self, n_permutations: int) -> dict[str, dict[str, str]]:
        """``attrs`` (description, units, family) of the permutation variables of ``rsa``."""
        per = "signal, category" + "".join(f", {d}" for d in ("region", "time", "layer") if d not in self.fwe_dims)
        fwe = " x ".join(self.fwe_dims)
        cluster_over = " x ".join(("time", *self.cluster_dims))
        cluster_per = "signal, category" + "".join(f", {d}" for d in ("region", "layer")
                                                   if d not in self.cluster_dims)
        test = f"{n_permutations} stimulus relabellings of the subject-mean RDM" + (
            ", |r| (two-sided)" if self.two_sided else ", r (greater)")
        return {
            "p": {"description": f"uncorrected permutation p of the group r, (k + 1) / (n + 1) over {test}",
                  "units": "1", "family": "none (each element alone)"},
            "p_fwe": {"description": f"family-wise p of the group r, max statistic over {fwe}, {test}",
                      "units": "1", "family": f"{fwe} (one family per {per})"},
            "p_cluster": {"description": "cluster-mass p of the group r: runs over time above cluster_threshold, "
                          f"each run's mass against the largest null run mass over {cluster_over}, {test}; "
                          "1 outside clusters", "units": "1",
                          "family": f"{cluster_over} (one family per {cluster_per})"},
            "cluster_mass": {"description": "sum of the group r over the supra-threshold run (over time) holding "
                             "this point; 0 outside clusters", "units": "1 (sum of r)",
                             "family": f"{cluster_over} (one family per {cluster_per})"},
            "cluster_threshold": {"description": f"cluster-forming threshold: the {1 - self.cluster_alpha:g} "
                                  "quantile of the permutation null of this element", "units": "1 (r)"},
        }

    @property
    def fwe_summary_dims(self) -> tuple[str, ...]:
        """Dims of ``fwe_null_max``: family dims become block indices, ``layer`` is dropped when in the family."""
        return ("signal", "category", "perm",
                "region_block" if "region" in self.fwe_dims else "region",
                "time_block" if "time" in self.fwe_dims else "time") + (() if "layer" in self.fwe_dims else ("layer",))


def families(config: Any, n_region: int, n_time: int) -> Families:
    """The :class:`Families` of a similarity ``config`` over ``n_region`` regions and ``n_time`` times."""
    on = config.n_permutations > 0
    fwe = tuple(config.fwe_dims) if on else ()
    split = ("region" in fwe and config.region_block < n_region) or ("time" in fwe and config.time_block < n_time)
    cluster = on and config.cluster
    per_layer = getattr(config, "cluster_family", "fwe_dims") == "per_layer"
    cluster_dims = () if per_layer or not cluster else tuple(d for d in fwe if d != "time")
    cluster_split = cluster and (config.time_block < n_time
                                 or ("region" in cluster_dims and config.region_block < n_region))
    return Families(fwe_dims=fwe, fwe_split=bool(fwe) and split, cluster=cluster, cluster_split=cluster_split,
                    cluster_alpha=config.cluster_alpha, two_sided=config.alternative == "two-sided",
                    cluster_dims=cluster_dims)


def summary_templates(fam: Families, *, coords: dict[str, Any], n_perm: int, region_block: int,
                      time_block: int) -> dict[str, tuple[xr.Dataset, tuple[str, str]]]:
    """Templates and unit dims of the side stores this ``fam`` needs (none when nothing spans blocks).

    ``coords`` holds the ``rsa`` labels of ``signal``, ``category``, ``region``, ``time``
    and ``layer``.
    """
    import dask.array as da

    n_rb = -(-len(coords["region"]) // region_block)
    n_tb = -(-len(coords["time"]) // time_block)
    labels = {"signal": coords["signal"], "category": coords["category"], "perm": np.arange(n_perm),
              "region": coords["region"], "time": coords["time"], "region_block": np.arange(n_rb),
              "time_block": np.arange(n_tb), "layer": coords["layer"]}
    chunk = {"signal": len(labels["signal"]), "category": len(labels["category"]), "perm": n_perm,
             "region": region_block, "time": time_block, "region_block": 1, "time_block": 1,
             "layer": len(labels["layer"])}

    def template(variables: dict[str, tuple[str, ...]]) -> xr.Dataset:
        dims = next(iter(variables.values()))
        data = {name: (d, da.full(tuple(len(labels[x]) for x in d), np.nan, chunks=tuple(chunk[x] for x in d),
                                  dtype="float32")) for name, d in variables.items()}
        return xr.Dataset(data, coords={d: labels[d] for d in dims})

    out = {}
    if fam.fwe_split:
        dims = fam.fwe_summary_dims
        out[FWE_STORE] = (template({"fwe_null_max": dims}), (dims[3], dims[4]))
    if fam.cluster_split:
        dims = ("signal", "category", "perm", "region", "time_block", "layer")
        out[CLUSTER_STORE] = (template({f"cluster_{k}": dims for k in RUN_PARTS}), ("region", "time_block"))
    return out


def block_statistics(stat: np.ndarray, null: np.ndarray, fam: Families) -> tuple[dict[str, np.ndarray],
                                                                                 dict[str, np.ndarray]]:
    """Statistics of one block's group r against its null, and the summaries deferred to the final task.

    ``stat (region, time, layer)`` the group r, ``null (perm, region, time, layer)``.
    Returns ``p`` plus the family statistics whose family fits in the block, and
    ``cluster_threshold``; the summaries are ``fwe_null_max`` (dims as
    :attr:`Families.fwe_summary_dims` after ``perm``, block dims of size 1) and
    ``cluster_{inner,left,right,full} (perm, region, 1, layer)``.
    """
    from mfrs.similarity.inference import (
        cluster_p,
        cluster_threshold,
        family_max,
        fwe_p,
        merge_run_summaries,
        p_against,
        run_summary,
    )

    stat, null = (np.abs(stat), np.abs(null)) if fam.two_sided else (stat, null)
    out = {"p": p_against(null, stat)}
    deferred: dict[str, np.ndarray] = {}
    if fam.fwe_dims:
        axes = tuple(_AXIS[d] for d in fam.fwe_dims)
        if fam.fwe_split:
            fmax = family_max(null, axes)
            deferred["fwe_null_max"] = fmax[..., 0] if "layer" in fam.fwe_dims else fmax
        else:
            out["p_fwe"] = fwe_p(null, stat, axes)
    if fam.cluster:
        thr = cluster_threshold(null, fam.cluster_alpha)
        null_t = np.moveaxis(null, 2, -1)  # (perm, region, layer, time)
        runs = run_summary(null_t, null_t > np.moveaxis(thr, 1, -1)[None])
        out["cluster_threshold"] = thr
        if fam.cluster_split:
            deferred.update({f"cluster_{k}": v[:, :, None, :] for k, v in runs.items()})
        else:
            inner, left, right, full = (runs[k][None] for k in RUN_PARTS)
            null_max = merge_run_summaries(inner, left, right, full, axis=0)  # (perm, region, layer)
            null_max = family_max(null_max, tuple(_SERIES_AXIS[d] for d in fam.cluster_dims))
            out.update(cluster_p(stat, thr, null_max, axis=1))
    return out, deferred


def _series_null_max(runs: xr.Dataset, g: int, fam: Families) -> np.ndarray:
    """Largest null cluster mass of region ``g``'s time courses, maximised over the family's layers.

    ``-> (perm, signal, category, 1, layer | 1)``: the run summaries of every time block
    joined (:func:`mfrs.similarity.inference.merge_run_summaries`), then the max over
    ``layer`` when the family holds it.
    """
    from mfrs.similarity.inference import family_max, merge_run_summaries

    inner, left, right, full = [runs[f"cluster_{k}"].isel(region=[g]).transpose("time_block", "perm", "signal", "category",
                                                             "region", "layer").values for k in RUN_PARTS]
    return family_max(merge_run_summaries(inner, left, right, full, axis=0), (3,) if "layer" in fam.cluster_dims else ())


def family_null_max(runs: xr.Dataset, fam: Families) -> np.ndarray | None:
    """The largest null cluster mass over every region (and layer) of the family; None unless ``region`` is in it.

    One region at a time, so what is held is one region's summaries plus the running max.
    """
    if "region" not in fam.cluster_dims:
        return None
    best = None
    for g in range(runs.sizes["region"]):
        m = _series_null_max(runs, g, fam)
        best = m if best is None else np.maximum(best, m)
    return best


def clusters_of_regions(stat: np.ndarray, threshold: np.ndarray, runs: xr.Dataset, regions: slice, fam: Families,
                         family_null: np.ndarray | None) -> dict[str, np.ndarray]:
    """``cluster_mass``/``p_cluster (signal, category, region, time, layer)`` of a block of regions.

    ``stat`` and ``threshold`` hold the block's regions (same order of dims).
    ``family_null`` is the family's largest null cluster mass when the family spans
    regions; otherwise each region's own (from its run summaries, one region at a time).
    """
    from mfrs.similarity.inference import cluster_p

    out: dict[str, np.ndarray] = {}
    for g in range(regions.start, regions.stop):
        i = g - regions.start
        null_max = family_null if family_null is not None else _series_null_max(runs, g, fam)
        res = cluster_p(stat[:, :, i : i + 1], threshold[:, :, i : i + 1], null_max, axis=3)
        for name, values in res.items():
            out.setdefault(name, np.empty((*values.shape[:2], regions.stop - regions.start, *values.shape[3:]),
                                          values.dtype))[:, :, g - regions.start] = values[:, :, 0]
    return out


def final_fwe_p(stat: xr.DataArray, fwe: xr.DataArray, regions: slice, times: slice) -> np.ndarray:
    """``p_fwe (signal, category, region, time, layer)`` of one block from every block's ``fwe_null_max``.

    ``stat``: the block's group r (|r| when two-sided) with dims ``(signal, category,
    region, time, layer)``; ``fwe``: the whole ``fwe_null_max`` summary (dims
    :attr:`Families.fwe_summary_dims`), whose region / time dims are cut to the block
    where they are not part of the family.
    """
    from mfrs.similarity.inference import fwe_p

    part = fwe.isel({d: s for d, s in (("region", regions), ("time", times)) if d in fwe.dims})
    if "layer" not in part.dims:  # the family holds layer: one maximum for all layers
        part = part.expand_dims(layer=1, axis=-1)
    part = part.transpose("perm", "signal", "category", ...)
    blocks = tuple(i for i, d in enumerate(part.dims[1:]) if d in ("region_block", "time_block"))
    return fwe_p(part.values, stat.transpose("signal", "category", "region", "time", "layer").values, blocks)
