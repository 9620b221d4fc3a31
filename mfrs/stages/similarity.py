"""Similarity: brain RDMs per region and time against every layer RDM, with noise ceilings.

Stage ``similarity``. Reads ``sources`` (``activity (subject, signal, stimulus, time,
vertex)``, vertex coord ``region``, stimulus coord ``category``) and ``model_rdms``
(``rdm (layer, pair)``) and writes ``rsa``: ``r (subject, signal, category, region,
time, layer)`` where the last ``subject`` label ``group`` is the subject-mean RDM,
``noise_ceiling_lower``/``_upper (signal, category, region, time)`` (and
``noise_ceiling_split_half`` with ``split_half``) and, with permutations,
``p``/``p_fwe`` (max statistic over ``fwe_dims``) and, with ``cluster``,
``p_cluster``/``cluster_mass``/``cluster_threshold`` (cluster mass over the whole
time axis, its null the largest cluster mass over the same family as ``p_fwe``)
``(signal, category, region, time, layer)`` of the group RDM; families
that span several blocks are completed by one final task
(:mod:`mfrs.similarity.families`; side stores and the final task in
``mfrs/stages/_similarity_final.py``). Group statistics across subjects (``n_bootstrap``,
``n_signflips``, ``fdr``; :mod:`mfrs.similarity.group_final`) are stored beside them:
``r_ci_low``/``r_ci_high`` per block, ``peak_latency``/``best_layer`` (with CIs),
``p_signflip``/``p_signflip_fwe``, ``p_fdr``/``p_signflip_fdr`` by the final task. With ``store_rdms`` it
also keeps ``rdm (subject, signal, region, time, pair)`` of all stimuli (category
RDMs are selections of its pairs). One task = one block of regions x one block of
time for all subjects, reduced at once by :func:`mfrs.similarity.fused.rsa_block`.

Speed: a task reads its block inside itself (never through the cluster), one signal at a
time, and reduces views of it; the layer RDMs are prepared once per worker process
(:func:`prepared_models`); ``time_block`` defaults to the sources' time chunk. Each task
returns its seconds by phase (:data:`TASK_PHASES`: read, copy, kernel, write, other) and logs
them at DEBUG on ``mfrs.stages.similarity`` as :data:`BREAKDOWN_FORMAT` (parse a line back with
:func:`parse_breakdown`); after :func:`run`, :func:`last_breakdown` gives their sum over the
tasks it ran with ``kernel_fraction`` = kernel / task wall time (``cpu_kernel_fraction`` in the
worker's CPU seconds, ``cpu_*`` keys). With permutations and a
GPU worker that sees CUDA, tasks run there and the permutation null goes through torch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.families import Families, families
from mfrs.similarity.group_final import contrast_coords, contrast_layers, group_stats
from mfrs.similarity.types import FAST_METHODS, Alternative, BrainMode, ClusterFamily, Comparator, Metric, Pooling
from mfrs.stage import ExecSettings, Plan, Settings, StageConfig

if TYPE_CHECKING:
    from mfrs.store import ZarrStore

__all__ = ["NAME", "Config", "Exec", "inputs", "outputs", "plan", "run", "layout", "block_memory", "calibrate",
           "core_seconds", "block_reads", "read_seconds"]

NAME = "similarity"
log = logging.getLogger(__name__)

StageCategory = Literal["all", "famous", "unfamiliar", "scrambled"]
#: Dims of the group r over which ``p_fwe`` takes the max statistic.
FweDim = Literal["region", "time", "layer"]
#: How stored brain RDMs are encoded.
RdmStorage = Literal["none", "float32", "float16"]


class LayerContrast(Settings):
    """Two paired sets of layers, by layer coord values (e.g. ``{weights: imagenet}`` vs ``{weights: untrained-seed0}``)."""

    a: dict[str, str] = Field(min_length=1)
    b: dict[str, str] = Field(min_length=1)


class Exec(ExecSettings):
    """Execution settings of the similarity stage: the same numbers whatever their values."""

    time_batch: int = Field(8, ge=1, description="time points whose RDMs are held at once inside a task")
    worker_memory: str | None = Field(None, description="override the cluster's worker memory limit")


class Config(StageConfig):
    """Settings of the similarity stage."""

    mode: BrainMode = "raw"
    metric: Metric = "correlation"
    method: Comparator = "spearman"
    pooling: Pooling = "normalized"
    categories: list[StageCategory] = Field(
        default_factory=lambda: list[StageCategory](["all", "famous", "unfamiliar", "scrambled"]), min_length=1)
    window: float = Field(0.5, gt=0, description="avg mode: window length in seconds")
    step: float = Field(0.045, gt=0, description="avg mode: window step in seconds")
    window_start: float | None = Field(
        0.0, description="avg mode: the first window starts at the first sample at or after this time "
        "(s; the study: 0 s, stimulus onset); None: at the epoch start")
    regions: list[str] | None = Field(
        None, description="only these regions (names or shell patterns like 'FFA-*'); None: every region")
    region_block: int = Field(4, ge=1, description="regions per task")
    time_block: int | None = Field(
        None, ge=1, description="time points (raw) or windows (avg) per task; None: in raw mode the time chunk "
        "of sources (a task then reads whole chunks, each once), in avg mode 64")
    n_permutations: int = Field(0, ge=0, description="label permutations for p of the group RDM (0: none)")
    alternative: Alternative = "greater"
    fwe_dims: list[FweDim] = Field(default_factory=lambda: list[FweDim](["layer"]),
                                   description="the family of p_fwe (max statistic over these dims of the selected "
                                   "regions), of p_cluster (with clusters along time), p_signflip_fwe and p_fdr")
    cluster: bool = Field(False, description="cluster-mass p over the whole time axis")
    cluster_alpha: float = Field(0.05, gt=0, lt=1, description="cluster-forming pointwise null quantile")
    cluster_family: ClusterFamily = Field(
        "fwe_dims", description="p_cluster: largest null cluster mass over every time course of the fwe_dims family "
        "('fwe_dims'), or per (region, layer) time course ('per_layer', controls one layer's error only)")
    split_half: int = Field(0, ge=0, description="random subject splits for the split-half noise ceiling")
    n_bootstrap: int = Field(0, ge=0, description="subject bootstrap samples (RSA of the mean RDM of resampled "
                             "subjects): CIs of r, peak latency and best layer (0: none)")
    bootstrap_fraction: float = Field(0.5, gt=0, le=1, description="share of the subjects drawn per bootstrap sample "
                                      "(with replacement; the study drew half)")
    ci: float = Field(0.95, gt=0, lt=1, description="coverage of the bootstrap percentile intervals")
    n_signflips: int = Field(0, ge=0, description="sign flips of per-subject r for the test across subjects "
                             "(0: none; all 2^n - 1 when that is no more)")
    fdr: bool = Field(False, description="Benjamini-Hochberg q over the fwe_dims family as p_fdr (and p_signflip_fdr)")
    contrast: LayerContrast | None = Field(
        None, description="model comparison stored as compare_* (signal, category, region, time, contrast): per-subject "
        "r of layers a minus the paired layers b, sign flips (n_signflips), paired t, bootstrap CI, FDR")
    store_rdms: RdmStorage = Field("none", description="also store the brain RDMs of all stimuli")
    seed: int = 0
    exec: Exec = Exec()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.store_rdms != "none" and "all" not in self.categories:
            raise ValueError("store_rdms needs 'all' in categories (category RDMs are selections of its "
                             "pairs); add 'all' to categories or set store_rdms: none")
        if self.split_half and self.method not in FAST_METHODS:
            raise ValueError(f"split_half needs method in {FAST_METHODS}, not {self.method!r}")
        if self.contrast is not None and not self.n_signflips:
            raise ValueError("contrast is tested by sign flips of the per-subject differences; set n_signflips "
                             "(e.g. 1000)")
        if self.fdr and not (self.fwe_dims and (self.n_permutations or self.n_signflips)):
            raise ValueError("fdr corrects the p of n_permutations or n_signflips over the fwe_dims family; set "
                             "fwe_dims (e.g. [time, layer]) and n_permutations or n_signflips")
        return self


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    return ["sources", "model_rdms"]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
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
    if config.regions is not None:
        import fnmatch

        chosen = [r for r in regions if any(fnmatch.fnmatchcase(r, pat) for pat in config.regions)]
        unmatched = [p for p in config.regions if not any(fnmatch.fnmatchcase(r, p) for r in regions)]
        if unmatched:
            raise ConfigError(f"similarity: regions {unmatched} match no region of sources (which has "
                              f"{len(regions)}, e.g. {', '.join(regions[:5])}); fix `regions` in the config")
        regions = chosen
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
        first = 0 if config.window_start is None else int(np.searchsorted(t, config.window_start - dt / 2))
        starts = np.arange(first, t.size - length + 1, step)
        if starts.size == 0:
            raise ConfigError(f"similarity: no window of {config.window} s fits between window_start="
                              f"{config.window_start} s and the epoch end ({t[-1]:.4g} s); shorten the "
                              "window or move window_start earlier")
        times = t[starts] + (length - 1) * dt / 2
    cats = np.asarray(act["category"].values) if "category" in act.coords else None
    stim_index: dict[str, np.ndarray] = {}
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


def resolve(config: Config, sources: xr.Dataset) -> Config:
    """``config`` with ``time_block`` set: when None, the time chunk of ``sources`` (raw mode) or 64 (avg).

    In raw mode a ``time_block`` that is not a multiple of the sources' time chunk makes
    tasks decode chunks they use only in part; that is logged with the fix.
    """
    act = sources["activity"]
    chunk = int(act.chunksizes["time"][0]) if act.chunks is not None else None
    if config.time_block is None:
        return config.model_copy(update={"time_block": (chunk or 64) if config.mode == "raw" else 64})
    if config.mode == "raw" and chunk and config.time_block % chunk and config.time_block < act.sizes["time"]:
        log.warning("similarity: time_block=%d is not a multiple of the sources' time chunk (%d samples), so "
                    "tasks decode chunks they use only in part; set time_block to %d (or leave it unset)",
                    config.time_block, chunk, chunk * max(1, round(config.time_block / chunk)))
    return config


def resolved_time_block(config: Config) -> int:
    """``config.time_block`` once :func:`resolve` has set it (refused before)."""
    if config.time_block is None:
        raise ConfigError("similarity: time_block is unset; resolve(config, sources) sets it from the sources")
    return config.time_block


def _input_stores(config: Config, catalog: Catalog, stores: Mapping[str, ZarrStore] | None) -> tuple[Any, Any]:
    """``sources`` and ``model_rdms``: ``stores`` (from the runner, checked complete) or, to size a plan, as they are."""
    from mfrs.store import open_as_they_are

    stores = open_as_they_are(inputs(config, catalog), catalog=catalog) if stores is None else stores
    return stores["sources"], stores["model_rdms"]


def _open(config: Config, catalog: Catalog,
          stores: Mapping[str, ZarrStore] | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    sources, models = _input_stores(config, catalog, stores)
    return sources.dataset(warn_incomplete=False), models.dataset(warn_incomplete=False)


def block_memory(*, n_sub: int, n_stim: int, n_feat: int, samples: int, block_vertices: int, n_time: int,
                 n_region: int, n_layer: int, n_signal: int, n_cat: int, time_batch: int, n_permutations: int,
                 rdm_bytes: int = 0, itemsize: int = 4, chunk_bytes: int = 0, model_pairs: float | None = None) -> int:
    """Peak RSS of a worker running one similarity task (one region block x time block), by what the code holds.

    The worker itself (:data:`WORKER_BASE_BYTES`), then the larger of two moments:

    - its first task preparing the layer RDMs (:func:`prepared_models`): the matrix read,
      its ranks and their Fortran-ordered copy, ``3 x 4 x layer x pair`` bytes;
    - a task reducing its block: the prepared layer matrices it keeps (``model_pairs``
      pairs per layer over its categories; default: all stimuli's), one signal of the
      block read (``itemsize`` bytes per value, twice while dask joins the chunks, plus
      one decoded store chunk of ``chunk_bytes``; a float32 copy when the store is not
      float32), one region's category subset, the kernel's scratch buffers of
      :func:`mfrs.similarity.fused.rsa_block` (patterns, subject and group RDMs, their
      ranks, the leave-one-out pools: ``3 x (subject + 1)`` RDMs per time of the batch),
      the block's outputs (held and encoded), the permutation nulls and, with
      ``rdm_bytes``, the stored RDMs.

    Examples
    --------
    >>> small = block_memory(n_sub=2, n_stim=10, n_feat=3, samples=4, block_vertices=3, n_time=4, n_region=1,
    ...                      n_layer=2, n_signal=1, n_cat=1, time_batch=2, n_permutations=0)
    >>> 0 < small - WORKER_BASE_BYTES < 1 << 20
    True
    """
    p = n_stim * (n_stim - 1) // 2
    tb = min(time_batch, n_time)
    model = 4 * n_layer * p
    prepare = 3 * model
    held = 4 * n_layer * (p if model_pairs is None else model_pairs)
    block = n_sub * n_stim * samples * block_vertices
    read = 2 * itemsize * block + chunk_bytes + (4 * block if itemsize != 4 else 0)
    subset = 4 * n_sub * n_time * n_stim * n_feat if n_cat > 1 else 0
    scratch = 4 * (3 * (n_sub + 1) * tb * p + n_sub * tb * n_stim * n_feat + n_stim * n_stim) + 64 * p
    outputs = 4 * n_signal * n_cat * n_region * n_time * (2 * (n_sub + 1) * n_layer + 3 + 5 * n_layer)
    perms = 0
    if n_permutations:  # stacks of relabelled RDMs (<= 64 MiB), the block's null, rsa_block's and a statistic's copy
        perms = min(64 << 20, 4 * n_permutations * p) + 4 * n_permutations * (
            n_stim + n_time * n_layer * (2 * n_region + 1))
    stored = rdm_bytes * (n_sub + 1) * n_signal * n_region * n_time * p
    task = held + read + subset + scratch + outputs + perms + stored
    return int(WORKER_BASE_BYTES + max(prepare, task))


#: RSS of a worker after a similarity task of a few stimuli: the imported libraries, the kernels loaded
#: from numba's cache, dask's and zarr's own (measured: 279-296 MiB, ``bench_study_scale.py --size quick``).
WORKER_BASE_BYTES = 280 << 20
# The CPU seconds below were fitted to the worker processes' CPU time (getrusage) in
# ``bench_study_scale.py --size quick`` and ``--size medium`` (18 and 36 tasks, 28 and 142 stimuli).
#: CPU seconds a worker spends once for the stage: imports and loading the compiled kernels.
WORKER_START_S = 1.0
#: CPU seconds of a task outside its kernel and its chunk reads: opening the sources store, the layout,
#: encoding and writing its unit of ``rsa`` and the completion mark.
TASK_OVERHEAD_S = 0.12
#: CPU seconds per store chunk read inside a task (zarr's per-chunk path under dask's synchronous scheduler;
#: ~2 ms per chunk of a few hundred KiB).
CHUNK_READ_S = 2.0e-3
#: Decoded bytes per CPU second (zstd, crc32c, the copy out of the chunk) of the sources store.
READ_RATE = 1.0e9


def read_seconds(n_chunks: float, decoded_bytes: float) -> float:
    """CPU seconds to read ``n_chunks`` store chunks holding ``decoded_bytes`` in all.

    >>> read_seconds(10, 0) == 10 * CHUNK_READ_S
    True
    """
    return n_chunks * CHUNK_READ_S + decoded_bytes / READ_RATE


def block_reads(array: xr.DataArray, time: slice, vertices: slice | np.ndarray) -> tuple[int, int]:
    """Chunks and decoded bytes of ``array`` a task reads for its samples and vertices (every other index).

    Whole chunks are decoded: a block that cuts a chunk pays for all of it.
    """
    chunks = array.chunksizes
    def touched(dim: str, sel: slice | np.ndarray) -> tuple[int, int]:
        sizes = np.asarray(chunks.get(dim, (array.sizes[dim],)))
        edges = np.concatenate([[0], np.cumsum(sizes)])
        idx = np.arange(array.sizes[dim])[sel]
        hit = np.unique(np.searchsorted(edges, idx, side="right") - 1)
        return hit.size, int(sizes[hit].sum())
    n_t, len_t = touched("time", time)
    n_v, len_v = touched("vertex", vertices)
    rest = [d for d in array.dims if d not in ("time", "vertex")]
    n_rest = math.prod(len(chunks.get(d, (1,))) for d in rest)
    return n_rest * n_t * n_v, array.dtype.itemsize * math.prod(array.sizes[d] for d in rest) * len_t * len_v


@functools.lru_cache(maxsize=16)
def calibrate(n_stim: int, n_feat: int, n_layer: int, metric: Metric, method: Comparator, n_sub: int = 2,
              n_time: int = 4) -> dict[str, float]:
    """Measure this machine: CPU seconds per brain RDM of the fused kernel, per permuted comparison and per layer RDM prepared.

    Runs :func:`mfrs.similarity.fused.rsa_block` on random data of the real sizes
    (``n_sub`` subjects x ``n_time`` times, noise ceiling on), one permutation block and the
    preparation of ``n_layer`` layer RDMs, on one thread, timed by the thread's CPU clock (a
    shared machine's other processes do not count). Cached per process; well under a second
    of CPU at 428 stimuli.
    """
    import time

    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.fused import model_matrix, rsa_block
    from mfrs.similarity.nulls import null_block_labels
    from mfrs.similarity.threads import single_threaded

    def best(f: Callable[[], Any]) -> float:
        out = np.inf
        for _ in range(2):
            t0 = time.thread_time()
            f()
            out = min(out, time.thread_time() - t0)
        return out

    rng = np.random.default_rng(0)
    p = n_stim * (n_stim - 1) // 2
    x = rng.standard_normal((n_sub, n_time, n_stim, max(2, n_feat))).astype(np.float32)
    layers = rng.random((n_layer, p)).astype(np.float32)
    perms = np.stack([rng.permutation(n_stim) for _ in range(16)])
    with single_threaded():
        t_model = best(lambda: model_matrix(prepare_block(layers, method)))
        model = model_matrix(prepare_block(layers, method))
        rsa_block(x[:, :1], model, metric=metric, method=method)  # compile / warm up
        t_rdm = best(lambda: rsa_block(x, model, metric=metric, method=method))
        group = prepare_block(rng.random((1, p)).astype(np.float32), method)
        null_block_labels(group, model, perms[:1], method)
        t_perm = best(lambda: null_block_labels(group, model, perms, method))
    return {"seconds_per_rdm": t_rdm / (n_sub * n_time), "seconds_per_permuted_rdm": t_perm / len(perms),
            "seconds_per_model_rdm": t_model / n_layer}


def core_seconds(*, categories: dict[str, int], n_feat: int, n_layer: int, metric: Metric, method: Comparator,
                 n_sub: int, n_images: int, n_tasks: int, n_chunks: float, decoded_bytes: float,
                 model_bytes: float, model_chunks: int,
                 n_permutations: int = 0, n_bootstrap: int = 0, split_half: int = 0) -> dict[str, float]:
    """CPU seconds of the stage on one one-thread worker, by part (kernel calibrated on this machine).

    ``categories`` maps each category to its stimuli; ``n_images`` is the (signal x region x
    time) brain images per subject and category; ``n_chunks``/``decoded_bytes`` what all tasks
    read (:func:`block_reads`), ``model_chunks``/``model_bytes`` the layer RDMs every worker reads once. Parts:
    ``worker`` (once per worker: start, reading and preparing the layer RDMs), ``tasks``
    (:data:`TASK_OVERHEAD_S` each and their reads), ``kernel``, ``permutations``.
    """
    n_all = max(categories.values())
    p_all = n_all * (n_all - 1) // 2
    kernel = perm = 0.0
    model_rdms = 0.0
    for n_stim in categories.values():
        # the group RDM and the ceiling pools weigh less per subject RDM with more subjects
        cal = calibrate(n_stim, n_feat, n_layer, metric, method, n_sub=max(2, min(n_sub, 16)), n_time=8)
        kernel += n_images * (n_sub + 1) * cal["seconds_per_rdm"] * (1 + 2 * split_half / max(n_sub, 1))
        kernel += n_images * n_bootstrap * cal["seconds_per_rdm"]  # one mean RDM ranked per sample
        perm += n_images * n_permutations * cal["seconds_per_permuted_rdm"]
        model_rdms += n_layer * cal["seconds_per_model_rdm"] * (n_stim * (n_stim - 1) // 2) / max(p_all, 1)
    worker = WORKER_START_S + read_seconds(model_chunks, model_bytes) + model_rdms
    return {"worker": worker, "tasks": n_tasks * TASK_OVERHEAD_S + read_seconds(n_chunks, decoded_bytes),
            "kernel": kernel, "permutations": perm}


def plan(*, config: Config, catalog: Any, calibrated: bool = True,
         stores: Mapping[str, ZarrStore] | None = None) -> Plan:
    """Memory, disk, FLOPs and CPU seconds of the stage; refuses (ConfigError) a task that cannot fit ``worker_memory``.

    Seconds are CPU seconds on one one-thread worker (:func:`core_seconds`: the kernel from
    :func:`calibrate`, a short measurement at the real sizes on this machine; reads from the
    sources' chunk grid); ``worker_seconds`` is the part each further worker adds.
    ``calibrated=False`` skips the calibration (seconds 0). Without a ``worker_memory``
    override the fit is checked by the caller against the cluster's limit
    (``Plan.check_fits(mfrs.cluster.worker_memory_limit(client))``).
    """
    from dask.utils import parse_bytes

    sources, models = _open(config, catalog, stores)
    config = resolve(config, sources)
    lay = layout(sources, config)
    act = sources["activity"].transpose("subject", "signal", "stimulus", "time", "vertex")
    n_sub, n_sig, n_stim = act.sizes["subject"], act.sizes["signal"], act.sizes["stimulus"]
    n_layer = models.sizes["layer"]
    n_reg, n_time, n_cat = len(lay.regions), lay.times.size, len(config.categories)
    p = n_stim * (n_stim - 1) // 2
    max_v = max(v.size for v in lay.vertices.values())
    n_block_reg = min(config.region_block, n_reg)
    block_v = sum(sorted((v.size for v in lay.vertices.values()), reverse=True)[:n_block_reg])
    time_block = resolved_time_block(config)
    block_t = min(time_block, n_time)
    samples = (block_t - 1) * (lay.starts[1] - lay.starts[0] if n_time > 1 else 1) + lay.length
    feat = max_v if config.mode == "raw" else lay.length
    rdm_bytes = {"none": 0, "float32": 4, "float16": 2}[config.store_rdms]
    # what the tasks read: one signal at a time of their regions' vertices over their samples, in whole chunks
    n_chunks = decoded = largest = 0
    for r0 in range(0, n_reg, config.region_block):
        verts = np.concatenate([lay.vertices[r] for r in lay.regions[r0 : r0 + config.region_block]])
        for t0 in range(0, n_time, time_block):
            starts = lay.starts[t0 : t0 + time_block]
            c, b = block_reads(act, slice(int(starts[0]), int(starts[-1]) + lay.length), verts)
            n_chunks, decoded, largest = n_chunks + c, decoded + b, max(largest, b)
    chunk = act.dtype.itemsize * math.prod(max(act.chunksizes.get(d, (act.sizes[d],))) for d in act.dims[2:])
    model_pairs = sum(n_pairs(idx.size) for idx in lay.stim_index.values())
    memory = block_memory(n_sub=n_sub, n_stim=n_stim, n_feat=feat, samples=samples, block_vertices=block_v,
                          n_time=block_t, n_region=n_block_reg, n_layer=n_layer, n_signal=n_sig, n_cat=n_cat,
                          time_batch=config.exec.time_batch, n_permutations=config.n_permutations, rdm_bytes=rdm_bytes,
                          itemsize=act.dtype.itemsize, chunk_bytes=chunk, model_pairs=model_pairs)
    n_rdm = n_sig * n_cat * n_reg * n_time * (n_sub + 1)
    flops = n_rdm * (n_stim**2 * feat + 2.0 * p * n_layer)
    n_group = n_sig * n_cat * n_reg * n_time
    flops_perm = n_group * 2.0 * p * n_layer * config.n_permutations
    units = math.ceil(n_reg / config.region_block) * math.ceil(n_time / time_block)
    n_out = (n_sub + 1) * n_layer + 2 + (1 if config.split_half else 0)
    if config.n_permutations:
        n_out += n_layer * (2 + 3 * config.cluster)
    out_bytes = 4 * n_sig * n_cat * n_reg * n_time * n_out + rdm_bytes * (n_sub + 1) * n_sig * n_reg * n_time * p
    fam, gs = families(config, n_reg, n_time), group_stats(config)
    summary_bytes = _summary_bytes(fam, config, n_sig=n_sig, n_cat=n_cat, n_reg=n_reg, n_time=n_time,
                                   n_layer=n_layer)
    summary_bytes += 8 * n_sig * n_cat * config.n_bootstrap * n_reg * math.ceil(n_time / time_block) * n_layer
    out_bytes += 4 * n_sig * n_cat * n_reg * n_layer * (n_time * (2 * bool(gs.n_bootstrap) + 3 * bool(
        gs.n_signflips)) + 3)
    if gs.contrast:  # checks the layer selections before anything is written
        out_bytes += 4 * 7 * n_sig * n_cat * n_reg * n_time * contrast_layers(models["rdm"], gs)[0].size
    memory += 4 * config.n_bootstrap * block_t * n_layer + (12 * 16 * min(config.exec.time_batch, block_t) * p
                                                             if config.n_bootstrap else 0)
    final = fam.final_variables + gs.final_variables
    seconds = worker = 0.0
    notes = [f"{n_rdm} brain RDMs of {n_stim} stimuli ({config.mode}), {n_layer} layers, "
             f"{config.n_permutations} permutations; tasks read {n_chunks} chunks, "
             f"{decoded / 2**20:.1f} MiB decoded (up to {largest / 2**20:.1f} MiB per task)"]
    if calibrated:
        parts = core_seconds(categories={c: idx.size for c, idx in lay.stim_index.items()}, n_feat=feat,
                             n_layer=n_layer, metric=config.metric, method=config.method, n_sub=n_sub,
                             n_images=n_sig * n_reg * n_time, n_tasks=units, n_chunks=n_chunks, decoded_bytes=decoded,
                             model_bytes=models["rdm"].nbytes,
                             model_chunks=math.prod(len(c) for c in models["rdm"].chunks or ()),
                             n_permutations=config.n_permutations,
                             n_bootstrap=config.n_bootstrap, split_half=config.split_half)
        seconds, worker = sum(parts.values()), parts["worker"]
        notes.append("CPU seconds on one worker core (the kernel from a calibration on this machine): " + ", ".join(
            f"{k} {v:.1f} s" for k, v in parts.items()) + " (each further worker adds its 'worker' part)")
    if fam.final_variables:
        notes.append(f"{', '.join(fam.final_variables)}: families span several blocks; blocks store null "
                     f"summaries ({summary_bytes / 2**20:.1f} MiB) and one final task merges them")
    if gs.final_variables:
        notes.append(f"{', '.join(gs.final_variables)}: group statistics over whole time courses and families, "
                     "written by the final task (from bootstrap peak summaries and the stored per-subject r)")
    result = Plan(stage=NAME, reads={"sources": int(act.nbytes), "model_rdms": int(models["rdm"].nbytes)},
                  writes={"rsa": int(out_bytes + summary_bytes)}, n_tasks=units + bool(final),
                  n_units=units, memory_per_task=memory, flops=float(flops + flops_perm), seconds=float(seconds),
                  worker_seconds=float(worker), notes=notes)
    if config.exec.worker_memory is not None:
        result.check_fits(parse_bytes(config.exec.worker_memory))
    return result


def _summary_bytes(fam: Families, cfg: Config, *, n_sig: int, n_cat: int, n_reg: int, n_time: int,
                   n_layer: int) -> int:
    """Bytes of the null summaries that blocks keep for family statistics spanning blocks."""
    size = {"region": n_reg, "time": n_time, "layer": n_layer, "region_block": math.ceil(n_reg / cfg.region_block),
            "time_block": math.ceil(n_time / resolved_time_block(cfg))}
    per = 4 * n_sig * n_cat * cfg.n_permutations
    total = per * math.prod(size[d] for d in fam.fwe_summary_dims[3:]) if fam.fwe_split else 0
    if fam.cluster_split:
        total += 4 * per * n_reg * size["time_block"] * n_layer
    return int(total)


@dataclass
class _Job:
    store: Any
    unit: Any
    sources_path: str
    models_path: str
    config: Config
    gpu: bool = False  # runs on a GPU worker: the permutation null goes through torch on its CUDA device


#: Phases of a task's per-task breakdown (seconds; ``other`` = the task's time minus the rest).
TASK_PHASES: tuple[str, ...] = ("read", "copy", "kernel", "write", "other")
#: Every key of a task's breakdown: wall seconds per phase and ``total``, then the worker process's CPU
#: seconds (all its threads: zarr decodes chunks in a thread pool) per phase and ``cpu_total``.
BREAKDOWN_KEYS: tuple[str, ...] = (*TASK_PHASES, "total", *(f"cpu_{p}" for p in TASK_PHASES), "cpu_total")
#: The debug line each task logs (logger ``mfrs.stages.similarity``), parsed back by :func:`parse_breakdown`.
BREAKDOWN_FORMAT = "similarity task %s: " + " ".join(f"{k}=%.4fs" for k in BREAKDOWN_KEYS)
_LAST_BREAKDOWN: dict[str, float] = {}


class TaskClock:
    """Wall and CPU seconds spent per phase of one task (:data:`TASK_PHASES`); phases may nest (the inner one counts).

    CPU seconds are the process's (``time.process_time``: every thread, since zarr decodes in a
    thread pool), so they are the task's own on a one-thread worker and include the other
    tasks' on a worker running several at once. Unlike wall time they do not grow when other
    processes share the cores.

    Examples
    --------
    >>> clock = TaskClock()
    >>> with clock.phase("read"):
    ...     pass
    >>> sorted(clock.finish()) == sorted(BREAKDOWN_KEYS)
    True
    """

    def __init__(self) -> None:
        import time

        self._now = lambda: np.array([time.perf_counter(), time.process_time()])
        self._start = self._now()
        self.seconds = {p: np.zeros(2) for p in TASK_PHASES}  # phase -> (wall, cpu)
        self._stack: list[tuple[str, np.ndarray]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the enclosed time to ``name`` (pausing the enclosing phase)."""
        t = self._now()
        if self._stack:
            outer, since = self._stack[-1]
            self.seconds[outer] += t - since
        self._stack.append((name, t))
        try:
            yield
        finally:
            t = self._now()
            self.seconds[name] += t - self._stack.pop()[1]
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], t)

    def finish(self) -> dict[str, float]:
        """:data:`BREAKDOWN_KEYS`: phase seconds, ``other`` (the unaccounted rest) and ``total``, wall and CPU."""
        total = self._now() - self._start
        phases = {p: v.copy() for p, v in self.seconds.items()}
        phases["other"] += np.maximum(0.0, total - sum(self.seconds.values()))
        out = {p: float(v[0]) for p, v in phases.items()} | {"total": float(total[0])}
        return out | {f"cpu_{p}": float(v[1]) for p, v in phases.items()} | {"cpu_total": float(total[1])}


def parse_breakdown(line: str) -> dict[str, float] | None:
    """The :data:`BREAKDOWN_KEYS` seconds of one :data:`BREAKDOWN_FORMAT` log line (None if the line is not one).

    Examples
    --------
    >>> line = BREAKDOWN_FORMAT % ("region=0:4,time=0:64", 0.5, 0.0, 4.0, 0.1, 0.4, 5.0, 0.4, 0.0, 4.0, 0.1, 0.1, 4.6)
    >>> b = parse_breakdown(line)
    >>> b["kernel"], b["cpu_total"]
    (4.0, 4.6)
    """
    import re

    found = dict(re.findall(r"(\w+)=([0-9.]+)s", line.split(": ", 1)[-1])) if line.startswith("similarity task") \
        else {}
    if set(found) != set(BREAKDOWN_KEYS):
        return None
    return {k: float(v) for k, v in found.items()}


def sum_breakdowns(breakdowns: Iterable[dict[str, float]]) -> dict[str, float]:
    """Sum per-task breakdowns: every key, ``tasks``, ``kernel_fraction`` (kernel / total, wall) and
    ``cpu_kernel_fraction`` (the same in CPU seconds).

    Examples
    --------
    >>> one = dict(zip(BREAKDOWN_KEYS, (1.0, 0.0, 8.0, 0.5, 0.5, 10.0, 0.5, 0.0, 8.0, 0.5, 0.0, 9.0)))
    >>> b = sum_breakdowns([one] * 2)
    >>> b["tasks"], b["kernel_fraction"], round(b["cpu_kernel_fraction"], 3)
    (2.0, 0.8, 0.889)
    """
    out = dict.fromkeys(BREAKDOWN_KEYS, 0.0)
    n = 0
    for b in breakdowns:
        n += 1
        for k in out:
            out[k] += float(b[k])
    out["tasks"] = float(n)
    out["kernel_fraction"] = out["kernel"] / out["total"] if out["total"] > 0 else float("nan")
    out["cpu_kernel_fraction"] = out["cpu_kernel"] / out["cpu_total"] if out["cpu_total"] > 0 else float("nan")
    return out


def last_breakdown() -> dict[str, float]:
    """The summed task breakdown (:func:`sum_breakdowns`) of this process's last :func:`run` ({} before any).

    Blocks found complete (skipped) are not in it; a benchmark reads it after ``run``.
    """
    return dict(_LAST_BREAKDOWN)


@dataclass(frozen=True)
class BlockSpec:
    """What one task reduces: its regions (consecutive vertex runs of the block read), times and stimuli."""

    signals: list[str]
    regions: list[str]
    region_sizes: list[int]  # vertices of each region, in the block's vertex order
    starts: np.ndarray  # first block sample of each output time (0 = the block's first sample)
    length: int  # samples per output time (1 in raw mode)
    first_time: int  # index of the block's first output time in the whole time axis
    stim_index: dict[str, np.ndarray]
    n_stimuli: int


#: Prepared layer matrices per category, kept per worker process (key: store, content digest, method, subsets).
_MODELS: dict[tuple, dict[str, np.ndarray]] = {}
_MODELS_LOCK = threading.Lock()


def _read(array: xr.DataArray) -> np.ndarray:
    """``array``'s values read inside this task (Dask's synchronous scheduler, never through the cluster)."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        return np.asarray(array.values)


def prepared_models(models_path: str, cfg: Config, stim_index: dict[str, np.ndarray],
                    clock: TaskClock | None = None) -> dict[str, np.ndarray]:
    """Layer RDMs prepared for ``cfg.method`` per category, computed once per worker process.

    Keyed by the store's content digest, so a rewritten ``model_rdms`` is read again.
    """
    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.fused import model_matrix
    from mfrs.store import ZarrStore

    clock = clock or TaskClock()
    with clock.phase("read"):
        store = ZarrStore.open(models_path, entry_name="model_rdms")
        key = (models_path, store.content_digest(), cfg.method,
               tuple((c, hash(idx.tobytes())) for c, idx in sorted(stim_index.items())))
    with _MODELS_LOCK:
        hit = _MODELS.get(key)
    if hit is not None:
        return hit
    with clock.phase("read"):
        model = _read(store.dataset(warn_incomplete=False)["rdm"].transpose("layer", "pair")).astype(np.float32,
                                                                                                      copy=False)
    with clock.phase("kernel"):
        n = stim_index["all"].size if "all" in stim_index else int(round((1 + math.sqrt(1 + 8 * model.shape[1])) / 2))
        iu, ju = np.triu_indices(n, 1)
        prepared = {}
        for cat, idx in stim_index.items():
            cols = model if idx.size == n else model[:, np.isin(iu, idx) & np.isin(ju, idx)]
            prepared[cat] = model_matrix(prepare_block(np.ascontiguousarray(cols), cfg.method))
    with _MODELS_LOCK:
        _MODELS.clear()  # one model set per worker at a time
        _MODELS[key] = prepared
    return prepared


def _features(block: np.ndarray, idx: np.ndarray, offset: int, nv: int, spec: BlockSpec, mode: str,
              clock: TaskClock) -> np.ndarray:
    """``(subject, time, stimulus, feature)`` of one region and category: views of ``block`` where possible.

    ``block`` is ``(subject, stimulus, sample, vertex)``. All stimuli: a view (no copy); a
    category subset copies only that region's rows of the subset.
    """
    verts = slice(offset, offset + nv)
    if idx.size == spec.n_stimuli:
        x = block[..., verts]
    else:
        with clock.phase("copy"):
            x = block[:, idx, :, verts]
    if mode == "raw":
        return x.transpose(0, 2, 1, 3)
    with clock.phase("copy"):
        mean = x.mean(axis=-1)  # (subject, stimulus, samples)
        return np.stack([mean[..., a : a + spec.length] for a in spec.starts], axis=1)


def reduce_block(read_signal: Callable[[int], np.ndarray], spec: BlockSpec, models: dict[str, np.ndarray],
                 cfg: Config, *, fam: Families, n_subjects: int, splits: np.ndarray | None = None,
                 clock: TaskClock | None = None, null_device: str | None = None) -> dict[str, Any]:
    """Every statistic of one block from its patterns: the stage's reduction, without Zarr or a cluster.

    Parameters
    ----------
    read_signal : callable
        ``s -> (subject, stimulus, sample, vertex)`` float32 patterns of signal ``s`` over
        the block's samples and vertices (regions' vertices consecutive, in ``spec`` order).
    models : dict
        Category -> prepared layer matrix (:func:`prepared_models`).
    null_device : str, optional
        Torch device of the permutation null (``"cuda"`` on a GPU worker); None: numpy.

    Returns
    -------
    dict
        ``r (subject + 1, signal, category, region, time, layer)``, ``lower``/``upper``/``split``
        ``(signal, category, region, time)``, ``stats`` (name -> ``(..., layer)``), ``deferred``
        (null summaries for the side stores) and ``rdms`` (or None).
    """
    from mfrs.similarity.families import block_statistics
    from mfrs.similarity.fused import rsa_block
    from mfrs.similarity.group import draw_bootstrap_weights, peak_summary, percentile_ci
    from mfrs.similarity.nulls import draw_stimulus_permutations
    from mfrs.similarity.seeds import unit_rng
    from mfrs.similarity.threads import single_threaded

    clock = clock or TaskClock()
    n_sub, n_sig, n_cat, n_reg, n_t = (n_subjects, len(spec.signals), len(cfg.categories), len(spec.regions),
                                       spec.starts.size)
    n_layer = next(iter(models.values())).shape[0]
    shape = (n_sig, n_cat, n_reg, n_t)
    r = np.full((n_sub + 1, *shape, n_layer), np.nan, np.float32)
    lower, upper = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    split = np.full(shape, np.nan, np.float32)
    stats = {k: np.full((*shape, n_layer), np.nan, np.float32)
             for k in _stat_names(cfg) + list(group_stats(cfg).block_variables)}
    deferred: dict[str, np.ndarray] = {}
    n_all = spec.n_stimuli
    rdm_dtype = {"none": None, "float32": np.float32, "float16": np.float16}[cfg.store_rdms]
    rdms_out = None
    if rdm_dtype is not None:
        rdms_out = np.full((n_sub + 1, n_sig, n_reg, n_t, n_all * (n_all - 1) // 2), np.nan, rdm_dtype)
    with single_threaded():
        for s, signal in enumerate(spec.signals):
            # one signal of the block at a time: memory does not grow with the number of signals
            block = read_signal(s)
            for c, cat in enumerate(cfg.categories):
                idx = spec.stim_index[cat]
                perms = None
                if cfg.n_permutations:
                    perms = draw_stimulus_permutations(unit_rng(cfg.seed, "permutation", signal, cat), idx.size,
                                                       cfg.n_permutations)
                null = np.empty((cfg.n_permutations, n_reg, n_t, n_layer), np.float32) if perms is not None else None
                weights = None
                if cfg.n_bootstrap:  # the same samples for every block: peaks join across time blocks
                    weights = draw_bootstrap_weights(unit_rng(cfg.seed, "bootstrap", signal, cat), n_sub,
                                                     cfg.n_bootstrap, cfg.bootstrap_fraction)
                offset = 0
                for g, nv in enumerate(spec.region_sizes):
                    feats = _features(block, idx, offset, nv, spec, cfg.mode, clock)
                    offset += nv
                    sink = None
                    if rdms_out is not None and cat == "all":
                        def sink(t0: int, rdms: np.ndarray, _s: int = s, _g: int = g) -> None:
                            sl = slice(t0, t0 + rdms.shape[1])
                            rdms_out[:-1, _s, _g, sl] = rdms
                            rdms_out[-1, _s, _g, sl] = rdms.mean(axis=0)
                    with clock.phase("kernel"):
                        out = rsa_block(feats, models[cat], metric=cfg.metric, method=cfg.method,
                                        pooling=cfg.pooling, perms=perms, time_batch=cfg.exec.time_batch,
                                        splits=splits,
                                        return_null=True, rdm_sink=sink, boot_weights=weights,
                                        null_device=null_device)
                    r[:, s, c, g] = out["r"]
                    lower[s, c, g], upper[s, c, g] = out["noise_ceiling_lower"], out["noise_ceiling_upper"]
                    if splits is not None:
                        split[s, c, g] = out["noise_ceiling_split_half"]
                    if null is not None:
                        null[:, g] = out["null"]
                    if weights is not None:
                        stats["r_ci_low"][s, c, g], stats["r_ci_high"][s, c, g] = percentile_ci(out["boot_r"], cfg.ci)
                        value, index = peak_summary(out["boot_r"], spec.first_time)  # (sample, layer)
                        for k, v in (("boot_peak_r", value), ("boot_peak_index", index)):
                            deferred.setdefault(k, np.full((n_sig, n_cat, cfg.n_bootstrap, n_reg, 1, n_layer),
                                                           np.nan, np.float32))[s, c, :, g, 0] = v
                if null is not None:
                    with clock.phase("kernel"):
                        res, summaries = block_statistics(r[-1, s, c], null, fam)
                    for k, v in res.items():
                        stats[k][s, c] = v
                    for k, v in summaries.items():
                        deferred.setdefault(k, np.full((n_sig, n_cat, *v.shape), np.nan, np.float32))[s, c] = v
                    del null
            del block
    return {"r": r, "lower": lower, "upper": upper, "split": split, "stats": stats, "deferred": deferred,
            "rdms": rdms_out}


def _block_spec(lay: Layout, unit: Any, signals: list[str], n_stimuli: int) -> tuple[BlockSpec, slice, Any]:
    """The task's :class:`BlockSpec`, its sample range and its vertex selection (a slice when consecutive)."""
    regions = list(unit.labels["region"])
    t_sl = unit.region["time"]
    starts = lay.starts[t_sl]
    s0, s1 = int(starts[0]), int(starts[-1]) + lay.length
    verts = np.concatenate([lay.vertices[r] for r in regions])
    consecutive = verts.size and np.array_equal(verts, np.arange(verts[0], verts[0] + verts.size))
    vsel = slice(int(verts[0]), int(verts[0]) + verts.size) if consecutive else verts
    spec = BlockSpec(signals=signals, regions=regions, region_sizes=[lay.vertices[r].size for r in regions],
                     starts=starts - s0, length=lay.length, first_time=int(t_sl.start),
                     stim_index=lay.stim_index, n_stimuli=n_stimuli)
    return spec, slice(s0, s1), vsel


def _to_dataset(res: dict[str, Any], unit: Any, cfg: Config, fam: Families) -> xr.Dataset:
    """The block's variables as the Dataset written into its unit of ``rsa``."""
    dims = ("signal", "category", "region", "time")
    data = xr.Dataset(
        {"r": (("subject", *dims, "layer"), res["r"]), "noise_ceiling_lower": (dims, res["lower"]),
         "noise_ceiling_upper": (dims, res["upper"])},
        coords={"region": unit.labels["region"], "time": unit.labels["time"]})
    if cfg.split_half:
        data["noise_ceiling_split_half"] = (dims, res["split"])
    for name in _stat_names(cfg) + list(group_stats(cfg).block_variables):
        if name not in fam.final_variables:
            data[name] = ((*dims, "layer"), res["stats"][name])
    if res["rdms"] is not None:
        data["rdm"] = (("subject", "signal", "region", "time", "pair"), res["rdms"])
    return data


def _has_cuda() -> bool:
    """Whether this process sees a CUDA device through torch (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _gpu_tasks(client: Any, config: Config) -> bool:
    """Send the tasks to GPU workers: permutations asked and a worker with ``GPU=1`` that sees CUDA."""
    from mfrs.cluster import gpu_workers

    gpus = gpu_workers(client) if config.n_permutations else []
    if not gpus:
        return False
    cuda = client.run(_has_cuda, workers=gpus)
    if any(cuda.values()):
        log.info("similarity: the permutation nulls (%d permutations) run through torch on GPU workers %s",
                 config.n_permutations, [w for w, ok in cuda.items() if ok])
        return True
    return False


def _compute(job: _Job) -> dict[str, float]:
    """One task: read the block inside the task, reduce it, write it; returns its breakdown (:data:`TASK_PHASES`)."""
    from mfrs.similarity.seeds import unit_rng
    from mfrs.stages._similarity_final import write_summaries
    from mfrs.store import ZarrStore

    clock = TaskClock()
    cfg, unit = job.config, job.unit
    with clock.phase("read"):
        sources = ZarrStore.open(job.sources_path, entry_name="sources").dataset(warn_incomplete=False)
    lay = layout(sources, cfg)
    fam = families(cfg, len(lay.regions), lay.times.size)
    act = sources["activity"].transpose("subject", "signal", "stimulus", "time", "vertex")
    spec, samples, vsel = _block_spec(lay, unit, sources["signal"].values.tolist(), act.sizes["stimulus"])
    models = prepared_models(job.models_path, cfg, lay.stim_index, clock)
    splits = None
    if cfg.split_half:
        rng = unit_rng(cfg.seed, "noise_ceiling_split_half")
        splits = np.stack([rng.permutation(act.sizes["subject"]) for _ in range(cfg.split_half)])

    def read_signal(s: int) -> np.ndarray:
        with clock.phase("read"):
            return _read(act.isel(signal=s, time=samples, vertex=vsel)).astype(np.float32, copy=False)

    res = reduce_block(read_signal, spec, models, cfg, fam=fam, n_subjects=act.sizes["subject"], splits=splits,
                       clock=clock, null_device="cuda" if job.gpu and _has_cuda() else None)
    with clock.phase("write"):
        if res["deferred"]:
            write_summaries(job.store, fam, unit, res["deferred"])
        job.store.write_unit(unit, _to_dataset(res, unit, cfg, fam))
    times = clock.finish()
    log.debug(BREAKDOWN_FORMAT, unit.key, *(times[k] for k in BREAKDOWN_KEYS))
    return times


def _stat_names(cfg: Config) -> list[str]:
    if not cfg.n_permutations:
        return []
    return (["p"] + (["p_fwe"] if cfg.fwe_dims else [])
            + (["p_cluster", "cluster_mass", "cluster_threshold"] if cfg.cluster else []))


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
    if cfg.split_half:
        variables["noise_ceiling_split_half"] = zeros(dims)
    gs = group_stats(cfg)
    for name in _stat_names(cfg) + list(gs.block_variables):
        variables[name] = zeros((*dims, "layer"))
    contrast = contrast_coords(models["rdm"], gs) if gs.contrast else {}
    if contrast:
        sizes["contrast"] = chunks["contrast"] = len(contrast["contrast"])
    for name, var_dims in gs.final_dims.items():
        variables[name] = zeros(var_dims)
    fam = families(cfg, len(lay.regions), lay.times.size)
    attrs = {**_ATTRS, **fam.attrs(cfg.n_permutations), **gs.attrs(act.sizes["subject"])}
    attrs["r"] = {**attrs["r"], "description": attrs["r"]["description"].format(method=cfg.method)}
    coords: dict[str, Any] = {"subject": subjects, "signal": act["signal"].values, "category": list(cfg.categories),
                              "region": lay.regions, "time": lay.times}
    if cfg.store_rdms != "none":
        from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords

        n_stim = act.sizes["stimulus"]
        p = n_stim * (n_stim - 1) // 2
        rdm_dims = ("subject", "signal", "region", "time", "pair")
        # pair split so that one Zarr chunk stays near 8 MB whatever the block
        per_pair = 4 * cfg.region_block * resolved_time_block(cfg)
        pair_chunk = max(1, min(p, (8 << 20) // per_pair))
        rdm_chunks = (1, 1, cfg.region_block, cfg.time_block, pair_chunk)
        shape = (sizes["subject"], sizes["signal"], sizes["region"], sizes["time"], p)
        variables["rdm"] = (rdm_dims, da.zeros(shape, chunks=rdm_chunks, dtype=cfg.store_rdms))
        coords.update(pair_coords(act["stimulus"], with_coords=STORED_PAIR_COORDS))
    layer = models["layer"]
    coords.update({str(c): models[c].variable for c in models.coords if models[c].dims == ("layer",)})
    coords.setdefault("layer", layer.values)
    out = xr.Dataset(variables, coords={**coords, **contrast})
    for var in out.data_vars:
        out[var].attrs = dict(attrs.get(str(var), {}))
    return out


#: attrs of the variables that do not depend on the family settings (those come from Families.attrs).
_ATTRS = {
    "r": {"description": "{method} r between the brain RDM and the layer RDM; subject 'group' is the "
          "subject-mean RDM", "units": "1"},
    "noise_ceiling_lower": {"description": "leave-one-out noise ceiling: each subject vs the pool of the others, "
                            "mean over subjects", "units": "1"},
    "noise_ceiling_upper": {"description": "noise ceiling: each subject vs the pool of all, mean over subjects",
                            "units": "1"},
    "noise_ceiling_split_half": {"description": "split-half noise ceiling: pool of one half of the subjects vs the "
                                 "other half, mean over random splits", "units": "1"},
    "rdm": {"description": "brain RDM (config 'metric') of all stimuli; subject 'group' is the subject mean",
            "units": "1"},
}


def run(*, config: Config, catalog: Any, client: Any, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Create or resume ``rsa`` and compute every missing region x time block (one task each)."""
    from dask.utils import parse_bytes

    from mfrs.cluster import worker_memory_limit
    from mfrs.provenance import make_provenance
    from mfrs.runner import run_units
    from mfrs.stages._similarity_final import FinalizeJob, create_side_stores, finalize
    from mfrs.stages.model_rdms import check_stimuli
    from mfrs.store import ZarrStore

    # refuse plans that cannot fit before anything is written
    limit = parse_bytes(config.exec.worker_memory) if config.exec.worker_memory else worker_memory_limit(client)
    plan(config=config, catalog=catalog, calibrated=False, stores=inputs).check_fits(limit)
    input_stores = _input_stores(config, catalog, inputs)
    sources, models = (st.dataset(warn_incomplete=False) for st in input_stores)
    config = resolve(config, sources)
    check_stimuli(models, sources, stage=NAME, data_entry="sources", catalog=catalog)
    lay = layout(sources, config)
    fps = {name: str(ds.attrs.get("provenance", {}).get("fingerprint", "")) for name, ds in
           (("sources", sources), ("model_rdms", models))}
    provenance = make_provenance(stage=NAME, config=config, inputs=fps, seed=config.seed, client=client)
    fam, gs = families(config, len(lay.regions), lay.times.size), group_stats(config)
    final_variables = fam.final_variables + gs.final_variables
    template = _template(sources, models, lay, config)
    store = ZarrStore.create(catalog.path("rsa"), template, unit_dims=("region", "time"), provenance=provenance,
                             overwrite=overwrite, entry_name="rsa", final_variables=final_variables)
    store.depends_on(*input_stores)  # blocks computed from other inputs than these count as stale
    labels = {d: template[d].values for d in ("signal", "category", "region", "time", "layer")}
    create_side_stores(store, fam, gs, labels=labels, config=config, provenance=provenance)
    jobs = []
    gpu = _gpu_tasks(client, config)
    for unit in store.units():
        if store.is_complete(unit):
            log.info("similarity: block %s complete in %s, skipping", unit.key, store.path)
            continue
        log.info("similarity: block %s not marked complete in %s, computing", unit.key, store.path)
        jobs.append(_Job(store, unit, str(catalog.path("sources")), str(catalog.path("model_rdms")), config, gpu))
    if jobs:
        times = run_units(client, _compute, jobs, key=lambda j: j.unit.key, description=NAME, stage=NAME,
                          resources={"GPU": 1} if gpu else None)
        _LAST_BREAKDOWN.clear()
        _LAST_BREAKDOWN.update(sum_breakdowns(times.values()))
        b = _LAST_BREAKDOWN
        log.info("similarity: %d tasks, %.1f s of task time: read %.1f, copy %.1f, kernel %.1f (%.0f %%; %.0f %% of "
                 "their CPU seconds), write %.1f, other %.1f", b["tasks"], b["total"], b["read"], b["copy"],
                 b["kernel"], 100 * b["kernel_fraction"], 100 * b["cpu_kernel_fraction"], b["write"], b["other"])
    if store.is_final_complete():
        if final_variables:
            log.info("similarity: final variables %s complete in %s, skipping", final_variables, store.path)
        return
    log.info("similarity: merging the null summaries of %d blocks into %s", len(store.units()),
             ", ".join(final_variables))
    run_units(client, finalize, [FinalizeJob(str(store.path), fam, gs)], key=lambda j: j.key,
              description=f"{NAME} (final)", stage=NAME)
