"""Sensor RSA: brain RDMs of MEG sensor neighbourhoods and channel types against every layer, with noise ceilings.

Stage ``sensor_rsa``. Reads ``epochs`` (``data (subject, signal, stimulus, channel,
time)``, channel coord ``ch_type``) and ``model_rdms`` (``rdm (layer, pair)``) and
writes ``rsa_sensors``: ``r (subject, signal, category, channel, time, layer)`` (the
last subject, ``group``, is the subject-mean RDM), ``noise_ceiling_lower``/``_upper``
and, with permutations, ``p``/``p_fwe`` (max statistic over ``fwe_dims`` of each
channel set) and, with ``cluster``, ``p_cluster``/``cluster_mass`` over time. Along
``channel``: the neighbourhood of every magnetometer and gradiometer (itself and
its neighbours in MNE's Neuromag-306 adjacency, coord ``set_kind = neighbourhood``,
labelled by the centre channel) and one set per channel type (``set_kind =
channel_type``, labelled ``mag``/``grad``). Only channels every subject kept are
used. One task = a block of ``set_block`` channel sets x ``time_block`` times (default:
every analysed time, so that ``p_fwe`` may span time), all
subjects, reduced by the region mode's kernel (:mod:`mfrs.similarity.sets`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from mfrs.similarity.sets import SetRsaConfig
from mfrs.stage import Plan

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.catalog import Catalog
    from mfrs.store import ZarrStore

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "sets_of", "set_block_memory", "run_set_store",
           "open_set_run", "SetJob", "open_set_inputs", "write_set_block"]

NAME = "sensor_rsa"
log = logging.getLogger(__name__)

ChType = Literal["mag", "grad"]
FweDim = Literal["time", "layer"]


class Config(SetRsaConfig):
    """Settings of the sensor RSA stage."""

    ch_types: list[ChType] = Field(default_factory=lambda: list[ChType](["mag", "grad"]),
                                                   min_length=1)
    neighbourhoods: bool = Field(True, description="RSA of every channel's neighbourhood (MNE Neuromag-306 adjacency)")
    channel_types: bool = Field(True, description="RSA of all channels of each type together")
    set_block: int = Field(32, ge=1, description="channel sets per task")
    time_block: int | None = Field(None, ge=1, description="times per task (None: every analysed time; needed for "
                                   "time in fwe_dims or cluster)")
    fwe_dims: list[FweDim] = Field(
        default_factory=lambda: list[FweDim](["time", "layer"]), description="the family of p_fwe within each channel set")
    cluster: bool = Field(False, description="cluster-mass p over time (family: fwe_dims of each channel set)")

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.time_block is not None and self.n_permutations and ("time" in self.fwe_dims or self.cluster):
            raise ValueError("p_fwe over time and cluster p need every time in one task; set time_block: null, or "
                             "fwe_dims: [layer] and cluster: false")
        return self


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    return ["epochs", "model_rdms"]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    return ["rsa_sensors"]


def _input_stores(config: Config, catalog: Catalog, stores: Mapping[str, ZarrStore] | None) -> tuple[Any, Any]:
    """``epochs`` and ``model_rdms``: ``stores`` (from the runner, checked complete) or, to size a plan, as they are."""
    from mfrs.store import open_as_they_are

    stores = open_as_they_are(inputs(config, catalog), catalog=catalog) if stores is None else stores
    return stores["epochs"], stores["model_rdms"]


def sets_of(epochs: xr.Dataset, cfg: Config) -> tuple[Any, np.ndarray]:
    """The channel sets of ``epochs`` under ``cfg`` and the channels they index (kept by every subject)."""
    from mfrs.similarity.sensors import sensor_sets

    data = epochs["data"]
    finite = np.isfinite(data.isel(stimulus=0, time=0).values).all(axis=(0, 1))  # (channel,)
    channels = np.asarray(epochs["channel"].values).astype(str)
    dropped = channels[~finite]
    if dropped.size:
        log.info("sensor_rsa: %d channels missing in some subject are left out: %s", dropped.size,
                 ", ".join(dropped[:10]))
    keep = np.flatnonzero(finite)
    types = np.asarray(epochs["ch_type"].values).astype(str)[keep]
    sets = sensor_sets(channels[keep].tolist(), types.tolist(), types=tuple(cfg.ch_types),
                       neighbourhoods=cfg.neighbourhoods, channel_types=cfg.channel_types)
    return sets, keep


def _fwe_axes(cfg: Config) -> tuple[int, ...]:
    return tuple({"time": 0, "layer": 1}[d] for d in cfg.fwe_dims) if cfg.n_permutations else ()


def set_block_memory(*, n_sets: int, n_union: int, n_feat: int, n_subjects: int, n_stimuli: int, n_times: int,
                     n_layers: int, n_signals: int, n_categories: int, time_batch: int, n_permutations: int) -> int:
    """Peak bytes of one task of a set RSA (:func:`mfrs.similarity.sets.rsa_sets_block`).

    The region mode's :func:`~mfrs.stages.similarity.block_memory` of one set (the
    sets are reduced one after the other, each with its own null) with the input of
    the block's ``n_union`` features, plus the outputs of the other sets.
    """
    from mfrs.stages.similarity import block_memory

    one = block_memory(n_sub=n_subjects, n_stim=n_stimuli, n_feat=n_feat, samples=n_times, block_vertices=n_union,
                       n_time=n_times, n_region=1, n_layer=n_layers, n_signal=n_signals, n_cat=n_categories,
                       time_batch=time_batch, n_permutations=n_permutations)
    others = 4 * n_signals * n_categories * (n_sets - 1) * n_times * ((n_subjects + 1) * n_layers + 2 + 4 * n_layers)
    return int(one + others + 4 * n_subjects * n_stimuli * n_times * n_union)  # + the float64 -> float32 copy


def plan(*, config: Config, catalog: Catalog, calibrated: bool = True,
         stores: Mapping[str, ZarrStore] | None = None) -> Plan:
    """Memory, disk and time of the stage (seconds from the region mode's kernel calibration)."""
    from dask.utils import parse_bytes

    from mfrs.similarity.sets import decimated_times
    from mfrs.stages.similarity import calibrate

    ep_store, md_store = _input_stores(config, catalog, stores)
    epochs, models = ep_store.dataset(warn_incomplete=False), md_store.dataset(warn_incomplete=False)
    sets, _ = sets_of(epochs, config)
    n_sub, n_sig, n_stim = (epochs.sizes[d] for d in ("subject", "signal", "stimulus"))
    n_t = decimated_times(epochs["time"].values, config).size
    n_set, n_layer, n_cat = len(sets.labels), models.sizes["layer"], len(config.categories)
    block = min(config.set_block, n_set)
    block_t = min(config.time_block or n_t, n_t)
    feat = int(sets.sizes.max())
    union = int(min(epochs.sizes["channel"], np.sort(sets.sizes)[::-1][:block].sum()))
    memory = set_block_memory(n_sets=block, n_union=union, n_feat=feat, n_subjects=n_sub, n_stimuli=n_stim,
                              n_times=block_t, n_layers=n_layer, n_signals=n_sig, n_categories=n_cat,
                              time_batch=config.exec.time_batch, n_permutations=config.n_permutations)
    n_rdm = n_sig * n_cat * n_set * n_t * (n_sub + 1)
    n_group = n_sig * n_cat * n_set * n_t
    p = n_stim * (n_stim - 1) // 2
    n_out = (n_sub + 1) * n_layer + 2 + (n_layer * (2 + 2 * config.cluster) if config.n_permutations else 0)
    seconds, notes = 0.0, [f"{n_rdm} sensor RDMs ({n_set} channel sets, {n_t} times) of {n_stim} stimuli, "
                           f"{n_layer} layers, {config.n_permutations} permutations"]
    if calibrated:
        cal = calibrate(n_stim, feat, n_layer, config.metric, config.method, n_sub=max(2, min(n_sub, 8)))
        seconds = n_rdm * cal["seconds_per_rdm"] + n_group * config.n_permutations * cal["seconds_per_permuted_rdm"]
    units = math.ceil(n_set / config.set_block) * math.ceil(n_t / block_t)
    result = Plan(stage=NAME, reads={"epochs": int(epochs["data"].nbytes), "model_rdms": int(models["rdm"].nbytes)},
                  writes={"rsa_sensors": int(4 * n_sig * n_cat * n_set * n_t * n_out)},
                  n_tasks=units, n_units=units,
                  memory_per_task=memory, flops=float(n_rdm * (n_stim**2 * feat + 2.0 * p * n_layer)),
                  seconds=float(seconds), notes=notes)
    if config.exec.worker_memory is not None:
        result.check_fits(parse_bytes(config.exec.worker_memory))
    return result


@dataclass(frozen=True)
class SetJob:
    """One task of a set RSA stage (sensor_rsa, searchlight): a unit of its store and where its inputs lie."""

    store: Any
    unit: Any
    data_entry: str  #: the data's catalog entry: ``epochs`` or ``sources``
    data_path: str
    models_path: str
    config: Any  #: the stage's Config (a :class:`~mfrs.similarity.sets.SetRsaConfig`)
    members: list[np.ndarray] | None = None  #: the searchlight's patches of the unit's centres (found once by run)


def open_set_inputs(job: SetJob) -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """The data (epochs or sources) and model_rdms datasets of ``job``, opened inside its task, and the
    positions along ``time`` of the unit's analysed times."""
    from mfrs.similarity.sets import decimated_times
    from mfrs.store import ZarrStore

    data, models = (ZarrStore.open(path, entry_name=name).dataset(warn_incomplete=False)
                    for path, name in ((job.data_path, job.data_entry), (job.models_path, "model_rdms")))
    return data, models, decimated_times(data["time"].values, job.config)[job.unit.region["time"]]


def write_set_block(job: SetJob, *, stage: str, set_dim: str, data: xr.Dataset, models: xr.Dataset,
                    block: np.ndarray, local: list[np.ndarray], fwe_axes: tuple[int, ...], cluster: bool = False) -> None:
    """RSA of the unit's sets (:func:`mfrs.similarity.sets.rsa_sets_block`) on ``block`` (subject, signal,
    stimulus, time, feature) float32, whose features ``local`` index set by set; written as the unit
    (sets along ``set_dim``)."""
    import dask

    from mfrs.similarity.sets import block_dataset, rsa_sets_block, stimulus_subsets

    with dask.config.set(scheduler="synchronous"):  # read inside this task, never through the cluster
        model = models["rdm"].transpose("layer", "pair").values
    stim_index = stimulus_subsets(data, job.config.categories, what=stage)
    out = rsa_sets_block(block, local, model, stim_index, data["signal"].values.tolist(), job.config,
                         fwe_axes=fwe_axes, cluster=cluster)
    job.store.write_unit(job.unit, block_dataset(out, set_dim, job.unit.labels))


def _compute(job: SetJob) -> None:
    import dask

    from mfrs.similarity.sensors import SCALE
    from mfrs.similarity.sets import union_members

    epochs, models, t_idx = open_set_inputs(job)
    sets, keep = sets_of(epochs, job.config)
    union, local = union_members(sets.members[job.unit.region["channel"]])
    with dask.config.set(scheduler="synchronous"):  # read inside this task, never through the cluster
        data = epochs["data"].isel(channel=keep[union], time=t_idx).transpose(
            "subject", "signal", "stimulus", "time", "channel").values.astype(np.float64)
    types = np.asarray(epochs["ch_type"].values).astype(str)[keep[union]]
    data *= np.array([SCALE.get(t, 1.0) for t in types])
    write_set_block(job, stage=NAME, set_dim="channel", data=epochs, models=models, block=data.astype(np.float32), local=local,
                    fwe_axes=_fwe_axes(job.config), cluster=job.config.cluster)


def open_set_run(*, stage: str, config: SetRsaConfig, catalog: Any, client: Any, sized: Plan,
                 input_stores: tuple[Any, Any], data_entry: str) -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """The start of a set RSA stage's run: refuse a task that would not fit a worker (``sized``, the stage's
    uncalibrated plan), check the data and model RDMs name the same stimuli and the asked categories exist;
    the data, the model RDMs and the analysed times."""
    from dask.utils import parse_bytes

    from mfrs.cluster import worker_memory_limit
    from mfrs.similarity.sets import decimated_times, stimulus_subsets
    from mfrs.stages.model_rdms import check_stimuli

    exec_memory = config.exec.worker_memory
    sized.check_fits(parse_bytes(exec_memory) if exec_memory else worker_memory_limit(client))
    data, models = (st.dataset(warn_incomplete=False) for st in input_stores)
    check_stimuli(models, data, stage=stage, data_entry=data_entry, catalog=catalog)
    stimulus_subsets(data, config.categories, what=stage)
    return data, models, data["time"].values[decimated_times(data["time"].values, config)]


def run_set_store(*, stage: str, entry: str, template: xr.Dataset, config: SetRsaConfig, catalog: Any, client: Any,
                  overwrite: bool, input_stores: tuple[Any, ...], compute: Callable[[SetJob], None],
                  data_entry: str, members: Callable[[Any], list[np.ndarray]] | None = None) -> None:
    """Create or resume the set RSA store ``entry`` from ``template``; ``compute(SetJob)`` per missing unit.

    Shared by the sensor and searchlight stages: provenance from the inputs'
    fingerprints, units along the set dim and ``time``, completed units skipped.
    ``members(unit)``: what the task of ``unit`` is handed in :attr:`SetJob.members`.
    """
    from mfrs.provenance import make_provenance
    from mfrs.runner import run_units
    from mfrs.store import ZarrStore

    fps = {st.entry_name or str(st.path): str(st.provenance.get("fingerprint", "")) for st in input_stores}
    provenance = make_provenance(stage=stage, config=config, inputs=fps, seed=config.seed, client=client)
    set_dim = next(str(d) for d in template["r"].dims if d not in ("subject", "signal", "category", "time", "layer"))
    store = ZarrStore.create(catalog.path(entry), template, unit_dims=(set_dim, "time"), provenance=provenance,
                             overwrite=overwrite, entry_name=entry)
    store.depends_on(*input_stores)
    paths = {"data_path": str(catalog.path(data_entry)), "models_path": str(catalog.path("model_rdms"))}
    jobs = []
    for unit in store.units():
        if store.is_complete(unit):
            log.info("%s: block %s complete in %s, skipping", stage, unit.key, store.path)
            continue
        jobs.append(SetJob(store=store, unit=unit, data_entry=data_entry, config=config,
                           members=members(unit) if members is not None else None, **paths))
    if jobs:
        run_units(client, compute, jobs, key=lambda j: j.unit.key, description=stage, stage=stage)


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Create or resume ``rsa_sensors`` and compute every missing block of channel sets (one task each)."""
    from mfrs.similarity.sets import SetLayout, sets_template

    sized = plan(config=config, catalog=catalog, calibrated=False, stores=inputs)
    input_stores = _input_stores(config, catalog, inputs)
    epochs, models, times = open_set_run(stage=NAME, config=config, catalog=catalog, client=client, sized=sized,
                                         input_stores=input_stores, data_entry="epochs")
    sets, _ = sets_of(epochs, config)
    lay = SetLayout("channel", np.array(sets.labels), {
        "set_kind": ("channel", np.array(sets.kind)), "ch_type": ("channel", np.array(sets.ch_type)),
        "n_channels": ("channel", sets.sizes)}, config.set_block, max(1, config.time_block or times.size))
    family = " x ".join(config.fwe_dims) if config.n_permutations and config.fwe_dims else ""
    template = sets_template([str(s) for s in epochs["subject"].values], epochs["signal"].values, times, models, lay,
                             config, fwe_family=family, cluster=config.cluster and bool(config.n_permutations))
    run_set_store(stage=NAME, entry="rsa_sensors", template=template, config=config, catalog=catalog, client=client,
                  overwrite=overwrite, input_stores=input_stores, compute=_compute, data_entry="epochs")
