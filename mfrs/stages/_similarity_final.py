"""The similarity stage's side stores and its final task (stage layer: it opens and writes Zarr stores).

When a family of ``p_fwe``/``p_cluster`` or a group statistic spans several blocks, each
block task writes a small summary into a side store inside ``rsa`` (same units, same
fingerprint; see :mod:`mfrs.similarity.families` and :mod:`mfrs.similarity.group_final`
for what they hold), and one final task merges them into the ``rsa`` store's final
variables. The statistics themselves are computed by those two domain modules; this
module only creates, writes and reads the stores. Not a stage (its name starts with
``_``, so :data:`mfrs.pipeline.STAGES` skips it): the ``similarity`` stage owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mfrs.similarity.families import (
    CLUSTER_STORE,
    FWE_STORE,
    Families,
    clusters_of_regions,
    family_null_max,
    final_fwe_p,
    summary_templates,
)
from mfrs.similarity.group_final import BOOT_STORE, GroupFinal, GroupStats, bootstrap_template
from mfrs.similarity.inference import RUN_PARTS
from mfrs.store import Unit, ZarrStore

__all__ = ["side_store_path", "create_side_stores", "write_summaries", "FinalizeJob", "finalize"]

#: variables of each side store and their dims (as the block tasks write them)
_SIDE_VARIABLES = {FWE_STORE: ["fwe_null_max"], CLUSTER_STORE: [f"cluster_{k}" for k in RUN_PARTS],
                   BOOT_STORE: ["boot_peak_r", "boot_peak_index"]}


def side_store_path(rsa_path: str | Path, name: str) -> Path:
    """Where the side store ``name`` of an ``rsa`` store lives (inside it: deleted and resumed with it)."""
    return Path(rsa_path) / name


def create_side_stores(store: ZarrStore, fam: Families, gs: GroupStats, *, labels: dict[str, Any], config: Any,
                       provenance: dict[str, Any]) -> None:
    """Create (or resume) the side stores that ``fam`` and ``gs`` need inside the ``rsa`` ``store``.

    ``labels`` holds the ``rsa`` labels of ``signal``, ``category``, ``region``, ``time``
    and ``layer``; ``config`` the similarity stage's config.
    """
    sides = summary_templates(fam, coords=labels, n_perm=config.n_permutations, region_block=config.region_block,
                              time_block=config.time_block)
    if gs.n_bootstrap:
        sides[BOOT_STORE] = bootstrap_template(gs, coords=labels, time_block=config.time_block,
                                               region_block=config.region_block)
    for name, (side, unit_dims) in sides.items():
        ZarrStore.create(side_store_path(store.path, name), side, unit_dims=unit_dims, provenance=provenance,
                         entry_name=f"rsa/{name}")


def write_summaries(store: ZarrStore, fam: Families, unit: Unit, deferred: dict[str, np.ndarray]) -> None:
    """Write a block's null summaries into the side stores (before the block's own completion mark)."""
    for name, variables in _SIDE_VARIABLES.items():
        if variables[0] not in deferred:
            continue
        side = ZarrStore.open(side_store_path(store.path, name), entry_name=f"rsa/{name}")
        side_unit = next(u for u in side.units() if u.index == unit.index)
        dims = {FWE_STORE: fam.fwe_summary_dims, CLUSTER_STORE: ("signal", "category", "perm", "region", "time_block",
                                                                 "layer"),
                BOOT_STORE: ("signal", "category", "sample", "region", "time_block", "layer")}[name]
        coords = {d: side_unit.labels[d] for d in dims if d in ("region", "time")}
        side.write_unit(side_unit, xr.Dataset({v: (dims, deferred[v]) for v in variables}, coords=coords))


@dataclass
class FinalizeJob:
    """The one task that writes the final variables of ``rsa``."""

    rsa_path: str
    fam: Families
    group: GroupStats | None = None
    key: str = "final"


def finalize(job: FinalizeJob) -> None:
    """Merge the block summaries and write ``p_fwe`` / ``p_cluster`` / ``cluster_mass`` into ``rsa``.

    With ``job.group`` it also writes the group statistics of
    :class:`mfrs.similarity.group_final.GroupFinal` (bootstrap peaks, sign flips, FDR).

    Works one region block at a time (clusters one region at a time), so memory stays
    near one block's null; a cluster family spanning regions first reads every
    region's run summaries once for the family's largest null cluster mass.
    """
    fam = job.fam
    rsa = ZarrStore.open(job.rsa_path, entry_name="rsa")
    ds = xr.open_zarr(rsa.path)
    order = ("signal", "category", "region", "time", "layer")
    group = ds["r"].sel(subject="group").transpose(*order)
    if fam.two_sided:
        group = abs(group)
    fwe = xr.open_zarr(side_store_path(job.rsa_path, FWE_STORE))["fwe_null_max"] if fam.fwe_split else None
    runs = xr.open_zarr(side_store_path(job.rsa_path, CLUSTER_STORE)) if fam.cluster_split else None
    family_null = family_null_max(runs, fam) if runs is not None else None
    by_block: dict[int, list] = {}
    for unit in rsa.units():
        by_block.setdefault(unit.index[0], []).append(unit)
    gf = None
    if job.group is not None and job.group.final_variables:
        peaks = xr.open_zarr(side_store_path(job.rsa_path, BOOT_STORE)) if job.group.n_bootstrap else None
        gf = GroupFinal(ds, job.group, [units[0].region["region"] for units in by_block.values()], peaks=peaks)
    for units in by_block.values():
        reg = units[0].region["region"]
        stat_block = group.isel(region=reg).load()  # read once per region block, for both statistics
        group_values = {}
        if gf is not None:
            raw = ds["r"].sel(subject="group").transpose(*order).isel(region=reg).values if fam.two_sided else (
                stat_block.values)
            group_values = gf.region_block(reg, raw)
        clusters = None
        if runs is not None:
            threshold = ds["cluster_threshold"].transpose(*order).isel(region=reg).values
            clusters = clusters_of_regions(stat_block.values, threshold, runs, reg, fam, family_null)
        for unit in units:
            tim = unit.region["time"]
            data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
            if fwe is not None:
                data["p_fwe"] = (order, final_fwe_p(stat_block.isel(time=tim), fwe, reg, tim))
            if clusters is not None:
                for name, values in clusters.items():
                    data[name] = (order, values[:, :, :, tim])
            for name, (dims, values) in group_values.items():
                data[name] = (dims, values[:, :, :, tim] if "time" in dims else values)
            rsa.write_final(unit, xr.Dataset(data))
    rsa.mark_final()
