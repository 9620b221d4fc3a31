"""Similarity: brain RDMs per region and time against every layer RDM, with noise ceilings.

Stage ``similarity``. Reads ``sources`` (``activity (subject, signal, stimulus, time,
vertex)``, vertex coord ``region``, stimulus coord ``category``) and ``model_rdms``
(``rdm (layer, pair)``) and writes ``rsa``: ``r (subject, signal, category, region,
time, layer)`` where the last ``subject`` label ``group`` is the subject-mean RDM,
``noise_ceiling_lower``/``_upper (signal, category, region, time)`` and, with
permutations, ``p``/``p_fwe_layer (signal, category, region, time, layer)`` of the
group RDM. One task = one block of regions x one block of time for all subjects,
reduced at once by :func:`mfrs.similarity.fused.rsa_block` (no RDM movie is kept).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from mfrs.errors import ConfigError, InputDataError
from mfrs.stage import Plan, StageConfig
from mfrs.similarity.types import BrainMode, Comparator, Pooling

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "layout"]

NAME = "similarity"
log = logging.getLogger("mfrs.similarity")

StageCategory = Literal["all", "famous", "unfamiliar", "scrambled"]
#: Seconds per brain RDM of 428 stimuli for the fused kernel (benchmarks/bench_similarity.py, 1 core).
_SECONDS_PER_RDM = 1.5e-3
_GEMM_FLOPS = 5e10


class Config(StageConfig):
    """Settings of the similarity stage."""

    mode: BrainMode = "raw"
    metric: Literal["correlation", "abs_correlation", "euclidean", "sqeuclidean", "cosine"] = "correlation"
    method: Comparator = "spearman"
    pooling: Pooling = "normalized"
    categories: list[StageCategory] = Field(default_factory=lambda: ["all", "famous", "unfamiliar", "scrambled"],
                                            min_length=1)
    window: float = Field(0.5, gt=0, description="avg mode: window length in seconds")
    step: float = Field(0.045, gt=0, description="avg mode: window step in seconds")
    region_block: int = Field(4, ge=1, description="regions per task")
    time_block: int = Field(64, ge=1, description="time points (raw) or windows (avg) per task")
    time_batch: int = Field(8, ge=1, description="time points whose RDMs are held at once inside a task")
    n_permutations: int = Field(0, ge=0, description="label permutations for p of the group RDM (0: none)")
    seed: int = 0
    worker_memory: str = Field("4GiB", description="memory of one worker; plans needing more are refused")


def inputs(cfg: Config) -> list[str]:
    return ["sources", "model_rdms"]


def outputs(cfg: Config) -> list[str]:
    return ["rsa"]


@dataclass(frozen=True)
class Layout:
    """Where each region's vertices and each output time come from."""

    regions: list[str]
    vertices: dict[str, np.ndarray]
    times: np.ndarray
    starts: np.ndarray  # first input sample of each output time
    length: int  # input samples per output time (1 in raw mode)
    stim_index: dict[str, np.ndarray]


def layout(sources: xr.Dataset, config: Config) -> Layout:
    """Regions, output times and stimulus subsets of ``sources`` under ``config``."""
    act = sources["activity"]
    if "region" not in act.coords:
        raise InputDataError("similarity: sources has no 'region' coord on its vertex dim; write sources with "
                             "vertex coords 'hemi' and 'region' (design.md §3)")
    region_of = np.asarray(act["region"].values)
    regions = list(dict.fromkeys(region_of.tolist()))
    vertices = {r: np.flatnonzero(region_of == r) for r in regions}
    t = np.asarray(act["time"].values, dtype=float)
    if config.mode == "raw":
        starts, length, times = np.arange(t.size), 1, t
    else:
        dt = float(np.median(np.diff(t)))
        length = int(round(config.window / dt))
        step = max(1, int(round(config.step / dt)))
        if length > t.size:
            raise ConfigError(f"similarity: window={config.window} s is longer than the epochs "
                              f"({t.size} samples of {dt:.4g} s); shorten it")
        starts = np.arange(0, t.size - length + 1, step)
        times = t[starts] + (length - 1) * dt / 2
    cats = np.asarray(act["category"].values) if "category" in act.coords else None
    stim_index = {}
    for c in config.categories:
        if c == "all":
            stim_index[c] = np.arange(act.sizes["stimulus"])
        else:
            if cats is None:
                raise InputDataError(f"similarity: category {c!r} asked but sources has no stimulus coord 'category'")
            stim_index[c] = np.flatnonzero(cats == c)
            if stim_index[c].size < 3:
                raise InputDataError(f"similarity: category {c!r} has {stim_index[c].size} stimuli in sources; "
                                     "drop it from `categories`")
    return Layout(regions, vertices, times, starts, length, stim_index)


def _open(catalog: Any) -> tuple[xr.Dataset, xr.Dataset]:
    return xr.open_zarr(catalog.path("sources")), xr.open_zarr(catalog.path("model_rdms"))


def plan(*, config: Config, catalog: Any) -> Plan:
    """Memory, disk, FLOPs and time of the stage; refuses (ConfigError) a task that cannot fit a worker."""
    from dask.utils import parse_bytes

    sources, models = _open(catalog)
    lay = layout(sources, config)
    act = sources["activity"]
    n_sub, n_sig, n_stim = act.sizes["subject"], act.sizes["signal"], act.sizes["stimulus"]
    n_layer = models.sizes["layer"]
    n_reg, n_time, n_cat = len(lay.regions), lay.times.size, len(config.categories)
    p = n_stim * (n_stim - 1) // 2
    max_v = max(v.size for v in lay.vertices.values())
    block_v = sum(sorted((v.size for v in lay.vertices.values()), reverse=True)[: config.region_block])
    samples = (min(config.time_block, n_time) - 1) * (lay.starts[1] - lay.starts[0] if n_time > 1 else 1) + lay.length
    mem_in = 4 * n_sub * n_sig * n_stim * samples * block_v
    mem_work = 4 * 4 * (n_sub + 1) * config.time_batch * p + 2 * 4 * n_cat * n_layer * p + (64 << 20)
    memory = int(mem_in + mem_work)
    n_rdm = n_sig * n_cat * n_reg * n_time * (n_sub + 1)
    feat = max_v if config.mode == "raw" else lay.length
    flops = n_rdm * (n_stim**2 * feat + 2.0 * p * n_layer)
    flops_perm = n_sig * n_cat * n_reg * n_time * 2.0 * p * n_layer * config.n_permutations
    units = math.ceil(n_reg / config.region_block) * math.ceil(n_time / config.time_block)
    out_bytes = 4 * n_sig * n_cat * n_reg * n_time * ((n_sub + 1) * n_layer + 2
                                                      + (2 * n_layer if config.n_permutations else 0))
    result = Plan(stage=NAME, reads={"sources": int(act.nbytes), "model_rdms": int(models["rdm"].nbytes)},
                  writes={"rsa": int(out_bytes)}, n_tasks=units, n_units=units, memory_per_task=memory,
                  flops=float(flops + flops_perm), seconds=n_rdm * _SECONDS_PER_RDM + flops_perm / _GEMM_FLOPS,
                  notes=[f"{n_rdm} brain RDMs of {n_stim} stimuli ({config.mode}), {n_layer} layers, "
                         f"{config.n_permutations} permutations; seconds are for one core"])
    result.check_fits(parse_bytes(config.worker_memory))
    return result


@dataclass
class _Job:
    store: Any
    unit: Any
    sources_path: str
    models_path: str
    config: Config


def _compute(job: _Job) -> None:
    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.fused import rsa_block
    from mfrs.similarity.nulls import draw_pair_permutations
    from mfrs.similarity.seeds import unit_rng
    from mfrs.similarity.threads import single_threaded

    cfg, unit = job.config, job.unit
    sources, models = xr.open_zarr(job.sources_path), xr.open_zarr(job.models_path)
    lay = layout(sources, cfg)
    regions = unit.labels["region"]
    t_sl = unit.region["time"]
    starts = lay.starts[t_sl]
    s0, s1 = int(starts[0]), int(starts[-1]) + lay.length
    verts = np.concatenate([lay.vertices[r] for r in regions])
    act = sources["activity"].transpose("subject", "signal", "stimulus", "time", "vertex")
    block = act.isel(time=slice(s0, s1), vertex=verts).values.astype(np.float32)
    model = models["rdm"].transpose("layer", "pair").values.astype(np.float32)
    n_sub, n_sig = block.shape[:2]
    n_t, n_layer, n_cat = starts.size, model.shape[0], len(cfg.categories)
    shape = (n_sig, n_cat, len(regions), n_t)
    r = np.full((n_sub + 1, *shape, n_layer), np.nan, np.float32)
    lower, upper = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    p = np.full((*shape, n_layer), np.nan, np.float32)
    p_fwe = np.full((*shape, n_layer), np.nan, np.float32)
    n_all = act.sizes["stimulus"]
    iu, ju = np.triu_indices(n_all, 1)
    with single_threaded():
        for c, cat in enumerate(cfg.categories):
            idx = lay.stim_index[cat]
            keep = np.isin(iu, idx) & np.isin(ju, idx)
            prepared = prepare_block(np.ascontiguousarray(model[:, keep]), cfg.method)
            for s, signal in enumerate(sources["signal"].values.tolist()):
                perms = None
                if cfg.n_permutations:
                    perms = draw_pair_permutations(unit_rng(cfg.seed, "permutation", signal, cat), idx.size,
                                                   cfg.n_permutations, "labels")
                offset = 0
                for g, region in enumerate(regions):
                    nv = lay.vertices[region].size
                    x = block[:, s][:, idx][..., offset : offset + nv]  # (subject, stimulus, time, vertex)
                    offset += nv
                    if cfg.mode == "raw":
                        feats = x.transpose(0, 2, 1, 3)  # (subject, time, stimulus, vertex)
                    else:
                        mean = x.mean(axis=-1)  # (subject, stimulus, samples)
                        rel = starts - s0
                        feats = np.stack([mean[..., a : a + lay.length] for a in rel], axis=1)
                    out = rsa_block(np.ascontiguousarray(feats), prepared, metric=cfg.metric, method=cfg.method,
                                    pooling=cfg.pooling, pair_perms=perms, time_batch=cfg.time_batch)
                    r[:, s, c, g] = out["r"]
                    lower[s, c, g], upper[s, c, g] = out["noise_ceiling_lower"], out["noise_ceiling_upper"]
                    if perms is not None:
                        p[s, c, g], p_fwe[s, c, g] = out["p"], out["p_fwe_layer"]
    dims = ("signal", "category", "region", "time")
    data = xr.Dataset(
        {"r": (("subject", *dims, "layer"), r), "noise_ceiling_lower": (dims, lower),
         "noise_ceiling_upper": (dims, upper)},
        coords={"region": regions, "time": unit.labels["time"]})
    if cfg.n_permutations:
        data["p"] = ((*dims, "layer"), p)
        data["p_fwe_layer"] = ((*dims, "layer"), p_fwe)
    job.store.write_unit(unit, data)


def _template(sources: xr.Dataset, models: xr.Dataset, lay: Layout, cfg: Config) -> xr.Dataset:
    import dask.array as da

    act = sources["activity"]
    subjects = [str(s) for s in act["subject"].values] + ["group"]
    sizes = {"subject": len(subjects), "signal": act.sizes["signal"], "category": len(cfg.categories),
             "region": len(lay.regions), "time": lay.times.size, "layer": models.sizes["layer"]}
    chunks = {**sizes, "region": cfg.region_block, "time": cfg.time_block}

    def zeros(dims: tuple[str, ...]) -> tuple:
        return dims, da.zeros(tuple(sizes[d] for d in dims), chunks=tuple(chunks[d] for d in dims),
                              dtype="float32")

    dims = ("signal", "category", "region", "time")
    variables = {"r": zeros(("subject", *dims, "layer")), "noise_ceiling_lower": zeros(dims),
                 "noise_ceiling_upper": zeros(dims)}
    if cfg.n_permutations:
        variables["p"] = zeros((*dims, "layer"))
        variables["p_fwe_layer"] = zeros((*dims, "layer"))
    coords: dict[str, Any] = {"subject": subjects, "signal": act["signal"].values, "category": list(cfg.categories),
                              "region": lay.regions, "time": lay.times}
    layer = models["layer"]
    coords.update({c: models[c].variable for c in models.coords if models[c].dims == ("layer",)})
    coords.setdefault("layer", layer.values)
    return xr.Dataset(variables, coords=coords)


def run(*, config: Config, catalog: Any, client: Any, overwrite: bool = False) -> None:
    """Create or resume ``rsa`` and compute every missing region x time block (one task each)."""
    from mfrs.provenance import make_provenance
    from mfrs.runner import run_units
    from mfrs.store import ZarrStore

    plan(config=config, catalog=catalog)  # refuses plans that cannot fit before anything is written
    sources, models = _open(catalog)
    if models.sizes["pair"] != sources.sizes["stimulus"] * (sources.sizes["stimulus"] - 1) // 2:
        raise InputDataError(f"similarity: model_rdms has {models.sizes['pair']} pairs but sources has "
                             f"{sources.sizes['stimulus']} stimuli; make both from the same stimulus list")
    lay = layout(sources, config)
    fps = {name: str(ds.attrs.get("provenance", {}).get("fingerprint", "")) for name, ds in
           (("sources", sources), ("model_rdms", models))}
    provenance = make_provenance(stage=NAME, config=config, inputs=fps, seed=config.seed, client=client)
    store = ZarrStore.create(catalog.path("rsa"), _template(sources, models, lay, config), unit_dims=("region", "time"),
                             provenance=provenance, overwrite=overwrite, entry_name="rsa")
    jobs = []
    for unit in store.units():
        if store.is_complete(unit):
            log.info("similarity: block %s complete in %s, skipping", unit.key, store.path)
            continue
        log.info("similarity: block %s not marked complete in %s, computing", unit.key, store.path)
        jobs.append(_Job(store, unit, str(catalog.path("sources")), str(catalog.path("model_rdms")), config))
    if jobs:
        run_units(client, _compute, jobs, key=lambda j: j.unit.key, description=NAME, stage=NAME)
