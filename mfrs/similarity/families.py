"""Family-wise statistics of the similarity stage whose family spans several blocks.

A task sees one region block x time block, but a family chosen by ``fwe_dims`` (say
every time point and layer of a region) or the time axis of a cluster test may be
cut into several blocks. Each block then writes a small summary of its permutation
null into a side store inside ``rsa`` (same units, same fingerprint):

- ``fwe_null_max (signal, category, perm, region | region_block, time | time_block[, layer])``:
  the per-permutation maximum over the block's part of the family;
- ``cluster_{inner,left,right,full} (signal, category, perm, region, time_block, layer)``:
  what the block contributes to the largest null cluster mass of each time series
  (:func:`mfrs.similarity.nulls.run_summary`).

Once every block is complete, :func:`finalize` merges the summaries (a max over
blocks; runs joined across block edges) and writes ``p_fwe`` / ``p_cluster`` /
``cluster_mass`` as the ``rsa`` store's final variables. The numbers are those of
one block holding the whole family, which is what a block does when the family fits
in it (then nothing is deferred).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["Families", "families", "summary_templates", "block_statistics", "finalize", "FinalizeJob"]

_AXIS = {"region": 0, "time": 1, "layer": 2}
_RUN_PARTS = ("inner", "left", "right", "full")
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

    @property
    def final_variables(self) -> tuple[str, ...]:
        """``rsa`` variables written by :func:`finalize` instead of by the blocks."""
        return (("p_fwe",) if self.fwe_split else ()) + (("p_cluster", "cluster_mass") if self.cluster_split else ())

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
    return Families(fwe_dims=fwe, fwe_split=bool(fwe) and split, cluster=cluster,
                    cluster_split=cluster and config.time_block < n_time, cluster_alpha=config.cluster_alpha,
                    two_sided=config.alternative == "two-sided")


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
        out[CLUSTER_STORE] = (template({f"cluster_{k}": dims for k in _RUN_PARTS}), ("region", "time_block"))
    return out


def block_statistics(stat: np.ndarray, null: np.ndarray, fam: Families) -> tuple[dict[str, np.ndarray],
                                                                                 dict[str, np.ndarray]]:
    """Statistics of one block's group r against its null, and the summaries deferred to :func:`finalize`.

    ``stat (region, time, layer)`` the group r, ``null (perm, region, time, layer)``.
    Returns ``p`` plus the family statistics whose family fits in the block, and
    ``cluster_threshold``; the summaries are ``fwe_null_max`` (dims as
    :attr:`Families.fwe_summary_dims` after ``perm``, block dims of size 1) and
    ``cluster_{inner,left,right,full} (perm, region, 1, layer)``.
    """
    from mfrs.similarity.nulls import (
        cluster_p,
        cluster_threshold,
        family_max,
        merge_run_summaries,
        p_against,
        run_summary,
    )

    stat, null = (np.abs(stat), np.abs(null)) if fam.two_sided else (stat, null)
    out = {"p": p_against(null, stat)}
    deferred: dict[str, np.ndarray] = {}
    if fam.fwe_dims:
        fmax = family_max(null, tuple(_AXIS[d] for d in fam.fwe_dims))
        if fam.fwe_split:
            deferred["fwe_null_max"] = fmax[..., 0] if "layer" in fam.fwe_dims else fmax
        else:
            out["p_fwe"] = p_against(fmax, stat)
    if fam.cluster:
        thr = cluster_threshold(null, fam.cluster_alpha)
        null_t = np.moveaxis(null, 2, -1)  # (perm, region, layer, time)
        runs = run_summary(null_t, null_t > np.moveaxis(thr, 1, -1)[None])
        out["cluster_threshold"] = thr
        if fam.cluster_split:
            deferred.update({f"cluster_{k}": v[:, :, None, :] for k, v in runs.items()})
        else:
            null_max = merge_run_summaries(*(runs[k][None] for k in _RUN_PARTS), axis=0)
            out.update(cluster_p(stat, thr, null_max, axis=1))
    return out, deferred


def side_store_path(rsa_path: str | Path, name: str) -> Path:
    """Where the side store ``name`` of an ``rsa`` store lives (inside it: deleted and resumed with it)."""
    return Path(rsa_path) / name


@dataclass
class FinalizeJob:
    """The one task that writes the final variables of ``rsa``."""

    rsa_path: str
    fam: Families
    n_permutations: int
    key: str = "final"


def _clusters_of_regions(stat: np.ndarray, threshold: np.ndarray, runs: xr.Dataset,
                         regions: slice) -> dict[str, np.ndarray]:
    """``cluster_mass``/``p_cluster (signal, category, region, time, layer)`` of a block of regions.

    ``stat`` and ``threshold`` hold the block's regions (same order of dims). One region
    at a time: the run summaries of one region over every time block and permutation
    are what is held at once.
    """
    from mfrs.similarity.nulls import cluster_p, merge_run_summaries

    out: dict[str, np.ndarray] = {}
    for g in range(regions.start, regions.stop):
        i = g - regions.start
        parts = [runs[f"cluster_{k}"].isel(region=[g]).transpose("time_block", "perm", "signal", "category",
                                                                 "region", "layer").values for k in _RUN_PARTS]
        res = cluster_p(stat[:, :, i : i + 1], threshold[:, :, i : i + 1], merge_run_summaries(*parts, axis=0),
                        axis=3)
        for name, values in res.items():
            out.setdefault(name, np.empty((*values.shape[:2], regions.stop - regions.start, *values.shape[3:]),
                                          values.dtype))[:, :, g - regions.start] = values[:, :, 0]
    return out


def finalize(job: FinalizeJob) -> None:
    """Merge the block summaries and write ``p_fwe`` / ``p_cluster`` / ``cluster_mass`` into ``rsa``.

    Works one region block at a time (clusters one region at a time), so memory stays
    near one block's null.
    """
    from mfrs.store import ZarrStore

    fam, n_perm = job.fam, job.n_permutations
    rsa = ZarrStore.open(job.rsa_path, entry_name="rsa")
    ds = xr.open_zarr(rsa.path)
    order = ("signal", "category", "region", "time", "layer")
    group = ds["r"].sel(subject="group").transpose(*order)
    if fam.two_sided:
        group = abs(group)
    fwe = xr.open_zarr(side_store_path(job.rsa_path, FWE_STORE))["fwe_null_max"] if fam.fwe_split else None
    runs = xr.open_zarr(side_store_path(job.rsa_path, CLUSTER_STORE)) if fam.cluster_split else None
    by_block: dict[int, list] = {}
    for unit in rsa.units():
        by_block.setdefault(unit.index[0], []).append(unit)
    for units in by_block.values():
        reg = units[0].region["region"]
        stat_block = group.isel(region=reg).load()  # read once per region block, for both statistics
        clusters = None
        if runs is not None:
            threshold = ds["cluster_threshold"].transpose(*order).isel(region=reg).values
            clusters = _clusters_of_regions(stat_block.values, threshold, runs, reg)
        for unit in units:
            tim = unit.region["time"]
            data = {}
            if fwe is not None:
                stat = stat_block.isel(time=tim)
                part = fwe.isel({d: s for d, s in (("region", reg), ("time", tim)) if d in fwe.dims})
                fmax = part.max([d for d in ("region_block", "time_block") if d in part.dims]).load()
                with xr.set_options(arithmetic_join="exact"):
                    k = (fmax >= stat).sum("perm")
                data["p_fwe"] = ((k + 1.0) / (n_perm + 1.0)).where(stat.notnull()).transpose(*order)
            if clusters is not None:
                for name, values in clusters.items():
                    data[name] = (order, values[:, :, :, tim])
            rsa.write_final(unit, xr.Dataset(data))
    rsa.mark_final()
