"""Searchlight: brain RDMs of cortical patches around every source vertex against every layer.

Stage ``searchlight``. Reads ``sources`` (``activity (subject, signal, stimulus, time,
vertex)``, vertex coords ``hemi``/``fs_vertex``), the ``anatomy`` template's white
surface (vertex positions) and ``model_rdms``, and writes ``searchlight``: ``r
(subject, signal, category, vertex, time, layer)`` over the centres (the last
subject, ``group``, is the subject-mean RDM), ``noise_ceiling_lower``/``_upper`` and,
with permutations, ``p``/``p_fwe`` (max statistic over layers). A centre's patch is
every grid vertex of its hemisphere within ``radius`` mm on the white surface
(:mod:`mfrs.similarity.searchlight`); centres are every vertex or those of a coarser
ico grid (``centres``). One task = ``centre_block`` centres x ``time_block`` times,
all subjects, reduced by the region mode's kernel one patch at a time (RDMs of one
time batch in memory). :func:`searchlight_plan` sizes any shape without data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from mfrs.errors import InputDataError
from mfrs.similarity.sets import SetRsaConfig
from mfrs.stage import Plan

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.catalog import Catalog
    from mfrs.stages.sensor_rsa import SetJob
    from mfrs.store import ZarrStore

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "searchlight_plan", "geometry"]

NAME = "searchlight"
log = logging.getLogger(__name__)


class Config(SetRsaConfig):
    """Settings of the searchlight stage."""

    radius: float = Field(10.0, gt=0, description="patch radius in mm (Euclidean, white surface, one hemisphere)")
    centres: Literal["ico1", "ico2", "ico3", "ico4", "ico5"] | None = Field(
        None, description="centres: the sources vertices of this ico grid (None: every vertex)")
    centre_block: int = Field(256, ge=1, description="centres per task")
    time_block: int = Field(64, ge=1, description="time points per task")


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    return ["sources", "model_rdms"]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    return ["searchlight"]


def _input_stores(config: Config, catalog: Catalog, stores: Mapping[str, ZarrStore] | None) -> tuple[Any, Any]:
    """``sources`` and ``model_rdms``: ``stores`` (from the runner, checked complete) or, to size a plan, as they are."""
    from mfrs.store import open_as_they_are

    stores = open_as_they_are(inputs(config, catalog), catalog=catalog) if stores is None else stores
    return stores["sources"], stores["model_rdms"]


@dataclass(frozen=True)
class Geometry:
    """Centres (indices into the sources vertices), their patches and the vertex positions (mm)."""

    centres: np.ndarray
    patches: list[np.ndarray]
    positions: np.ndarray


def geometry(sources: xr.Dataset, cfg: Config, subjects_dir: str, subject: str = "fsaverage") -> Geometry:
    """Centres and patches of ``sources`` under ``cfg``, positions from ``subjects_dir/subject``."""
    from mfrs.similarity.searchlight import centre_indices, patches, surface_positions

    for c in ("hemi", "fs_vertex"):
        if c not in sources.coords:
            raise InputDataError(f"searchlight: sources has no vertex coord {c!r}; rewrite sources with the meg "
                                 "stage (it records hemi and fs_vertex)")
    hemi = np.asarray(sources["hemi"].values).astype(str)
    pos = surface_positions(subjects_dir, subject, hemi, np.asarray(sources["fs_vertex"].values))
    centres = centre_indices(sources["fs_vertex"].values, cfg.centres)
    if centres.size == 0:
        raise InputDataError(f"searchlight: no sources vertex is on the {cfg.centres} grid; set centres: null")
    return Geometry(centres, patches(pos, hemi, centres, cfg.radius), pos)


def _anatomy(catalog: Any) -> tuple[str, str]:
    anat = catalog.entry("anatomy")
    return str(anat.path), anat.freesurfer.subject


def searchlight_plan(n_centres: int, n_times: int, n_subjects: int, *, n_stimuli: int = 428, n_layers: int = 72,
                     patch_size: int = 30, n_signals: int = 1, n_categories: int = 1, n_permutations: int = 0,
                     centre_block: int = 256, time_block: int = 64, time_batch: int = 8,
                     seconds_per_rdm: float = 0.0, seconds_per_permuted_rdm: float = 0.0) -> Plan:
    """Size a searchlight of any shape without data: memory per task, output bytes, FLOPs and seconds on one core.

    The default shape's sizes are the study's (reference.md: 428 stimuli; 20,484
    centres of the ico5 grid hold about 30 vertices within 10 mm). Seconds come from
    ``seconds_per_rdm`` / ``seconds_per_permuted_rdm`` (e.g. measured by
    :func:`mfrs.stages.similarity.calibrate`; 0: not timed).

    Examples
    --------
    >>> from mfrs.stage import format_bytes
    >>> p = searchlight_plan(20484, 1101, 16)
    >>> p.n_units, format_bytes(p.writes["searchlight"]), 2**30 < p.memory_per_task < 8 * 2**30
    (1458, '103.0 GiB', True)
    """
    from mfrs.stages.sensor_rsa import set_block_memory

    block_c, block_t = min(centre_block, n_centres), min(time_block, n_times)
    union = min(n_centres, 2 * block_c + patch_size)  # a block's centres are neighbours (sorted by region)
    memory = set_block_memory(n_sets=block_c, n_union=union, n_feat=patch_size, n_subjects=n_subjects,
                              n_stimuli=n_stimuli, n_times=block_t, n_layers=n_layers, n_signals=n_signals,
                              n_categories=n_categories, time_batch=time_batch, n_permutations=n_permutations)
    n_rdm = n_signals * n_categories * n_centres * n_times * (n_subjects + 1)
    n_group = n_signals * n_categories * n_centres * n_times
    p = n_stimuli * (n_stimuli - 1) // 2
    n_out = (n_subjects + 1) * n_layers + 2 + (2 * n_layers if n_permutations else 0)
    units = math.ceil(n_centres / centre_block) * math.ceil(n_times / time_block)
    seconds = n_rdm * seconds_per_rdm + n_group * n_permutations * seconds_per_permuted_rdm
    return Plan(stage=NAME, reads={"sources": 4 * n_subjects * n_signals * n_stimuli * n_times * n_centres},
                writes={NAME: 4 * n_signals * n_categories * n_centres * n_times * n_out}, n_tasks=units,
                n_units=units, memory_per_task=int(memory),
                flops=float(n_rdm * (n_stimuli**2 * patch_size + 2.0 * p * n_layers)), seconds=float(seconds),
                notes=[f"{n_rdm} patch RDMs ({n_centres} centres x {n_times} times x {n_subjects + 1} subjects "
                       f"with the group) of {n_stimuli} stimuli, about {patch_size} vertices each, {n_layers} "
                       f"layers, {n_permutations} permutations"])


def plan(*, config: Config, catalog: Catalog, calibrated: bool = True,
         stores: Mapping[str, ZarrStore] | None = None) -> Plan:
    """:func:`searchlight_plan` at the shape of ``sources`` and ``model_rdms`` (seconds calibrated on this machine)."""
    from dask.utils import parse_bytes

    from mfrs.similarity.sets import decimated_times
    from mfrs.stages.similarity import calibrate

    src_store, md_store = _input_stores(config, catalog, stores)
    sources, models = src_store.dataset(warn_incomplete=False), md_store.dataset(warn_incomplete=False)
    geo = geometry(sources, config, *_anatomy(catalog))
    act = sources["activity"]
    n_t = decimated_times(act["time"].values, config).size
    patch = int(max(p.size for p in geo.patches))
    shape = dict(n_stimuli=act.sizes["stimulus"], n_layers=models.sizes["layer"], patch_size=patch,
                 n_signals=act.sizes["signal"], n_categories=len(config.categories),
                 n_permutations=config.n_permutations, centre_block=config.centre_block,
                 time_block=config.time_block, time_batch=config.exec.time_batch)
    cal = {}
    if calibrated:
        cal = calibrate(act.sizes["stimulus"], patch, models.sizes["layer"], config.metric, config.method,
                        n_sub=max(2, min(act.sizes["subject"], 8)))
    result = searchlight_plan(geo.centres.size, n_t, act.sizes["subject"], **shape,
                              seconds_per_rdm=cal.get("seconds_per_rdm", 0.0),
                              seconds_per_permuted_rdm=cal.get("seconds_per_permuted_rdm", 0.0))
    result.reads = {"sources": int(act.nbytes), "model_rdms": int(models["rdm"].nbytes)}
    result.notes.append(f"patches of {config.radius:g} mm: {min(p.size for p in geo.patches)} to {patch} vertices "
                        f"(mean {np.mean([p.size for p in geo.patches]):.1f})")
    if config.exec.worker_memory is not None:
        result.check_fits(parse_bytes(config.exec.worker_memory))
    return result


def _compute(job: SetJob) -> None:
    import dask

    from mfrs.similarity.sets import union_members
    from mfrs.stages.sensor_rsa import open_set_inputs, write_set_block

    sources, models, t_idx = open_set_inputs(job)
    assert job.members is not None, "searchlight tasks are handed their centres' patches"
    union, local = union_members(job.members)
    act = sources["activity"].transpose("subject", "signal", "stimulus", "time", "vertex")
    with dask.config.set(scheduler="synchronous"):  # read inside this task, never through the cluster
        block = act.isel(vertex=union, time=t_idx).values.astype(np.float32)
    write_set_block(job, stage=NAME, set_dim="vertex", data=sources, models=models, block=block, local=local,
                    fwe_axes=(1,) if job.config.n_permutations else ())


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Create or resume ``searchlight`` and compute every missing block of centres x times (one task each)."""
    from mfrs.similarity.sets import SetLayout, sets_template
    from mfrs.stages.sensor_rsa import open_set_run, run_set_store

    sized = plan(config=config, catalog=catalog, calibrated=False, stores=inputs)
    input_stores = _input_stores(config, catalog, inputs)
    sources, models, times = open_set_run(stage=NAME, config=config, catalog=catalog, client=client, sized=sized,
                                          input_stores=input_stores, data_entry="sources")
    subjects_dir, subject = _anatomy(catalog)
    geo = geometry(sources, config, subjects_dir, subject)
    c = geo.centres
    coords = {k: ("vertex", np.asarray(sources[k].values)[c]) for k in ("hemi", "region", "fs_vertex")
              if k in sources.coords}
    coords.update({ax: ("vertex", geo.positions[c, i]) for i, ax in enumerate("xyz")})
    coords["n_vertices"] = ("vertex", np.array([p.size for p in geo.patches]))
    lay = SetLayout("vertex", np.asarray(sources["vertex"].values)[c], coords, config.centre_block,
                    config.time_block)
    template = sets_template([str(s) for s in sources["subject"].values], sources["signal"].values, times, models,
                             lay, config, fwe_family="layer" if config.n_permutations else "")
    for ax in "xyz":
        template[ax].attrs = {"description": f"{ax} of the centre on the white surface of {subject}", "units": "mm"}
    template.attrs["radius_mm"] = config.radius
    run_set_store(stage=NAME, entry=NAME, template=template, config=config, catalog=catalog, client=client,
                  overwrite=overwrite, input_stores=input_stores, compute=_compute, data_entry="sources",
                  members=lambda unit: geo.patches[unit.region["vertex"]])
